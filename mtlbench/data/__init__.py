"""Datasets: one module per dataset, each registering itself in ``mtlbench.registry.DATASETS``."""
