"""The command line: ``app`` (every ``mtlbench`` command, in ``app``) and ``prepare`` (``mtlbench prepare ...``).
The top layer: it parses flags and calls launch, report, training and prepare; nothing imports it."""
from mtlbench.cli.app import app

__all__ = ["app"]
