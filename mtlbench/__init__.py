"""mtlbench: reproduce and extend the TAAN and MTAL multi-task-learning tables."""
__version__ = "0.1.0"
