"""Datasets: one module per dataset, each registering itself in ``mtlbench.registry.DATASETS`` (found by name,
nothing else to edit). The contract is ``mtlbench.store.dataset.DatasetSource``; prepared datasets build on
``mtlbench.store.prepared.PreparedSource``."""
