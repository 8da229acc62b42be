"""MTL methods: one module per method, each registering itself in ``mtlbench.registry.METHODS``."""
