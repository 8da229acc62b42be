"""User-facing errors. The CLI prints their message on one line and exits non-zero: 2 for a bad spec or bad
command-line input (nothing was run), 1 for a failure while running (corrupt data, a missing file)."""
from __future__ import annotations


class MTLBenchError(Exception):
    exit_code = 1


class DataError(MTLBenchError):
    """Raw or prepared data that cannot be read as what it claims to be (names the file and the place)."""


class SpecError(MTLBenchError):
    """A spec that cannot run; ``problems`` holds one line per problem, each naming file, line and field."""

    exit_code = 2

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class UsageError(MTLBenchError):
    """A bad command-line value (exit 2, nothing was run)."""

    exit_code = 2
