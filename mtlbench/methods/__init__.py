"""MTL methods: one module per method, each registering itself in ``mtlbench.registry.METHODS`` (found by
name, nothing else to edit). The contract every method implements is ``mtlbench.nn.method.MTLMethod``; the
layer machinery they share is in ``mtlbench.nn``."""
