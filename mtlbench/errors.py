"""User-facing errors. The CLI prints their message on one line and exits with their code, the same rule in
every command:

- 2: refused before any work -- a bad command line, a bad spec, or an input (a prepared directory, a result
  record, a source folder) that is missing, of the wrong kind or fails its checks. Nothing was written.
- 1: the work started and failed -- a run diverged, ``check`` found a regression, raw data turned out damaged
  while ``prepare`` converted it, data turned out corrupt while training read it. Finished work is kept.
"""
from __future__ import annotations


class MTLBenchError(Exception):
    exit_code = 1


class DataError(MTLBenchError):
    """Raw or prepared data that cannot be read as what it claims to be (names the file and the place),
    found while working on it (exit 1)."""


class SpecError(MTLBenchError):
    """A spec that cannot run; ``problems`` holds one line per problem, each naming file, line and field."""

    exit_code = 2

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class UsageError(MTLBenchError):
    """A bad command-line value (exit 2, nothing was run)."""

    exit_code = 2


class InputError(DataError):
    """An input file or directory that is missing, of the wrong kind, or fails its checks before any work
    starts (exit 2, nothing was run). A DataError, so code that reads data catches both alike."""

    exit_code = 2
