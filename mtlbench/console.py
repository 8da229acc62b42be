"""What every command shares: the consoles and the mapping of errors to one-line messages and exit codes."""
from __future__ import annotations

import functools
import sys

import typer
from rich.console import Console
from rich.markup import escape

from mtlbench.errors import MTLBenchError

# Wide enough for a 16-task table when writing to a file or a CI log (a terminal keeps its own width).
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)


def error_line(text: str) -> None:
    """``error: <text>`` on stderr, the text taken literally (a message may hold brackets, e.g. mtlbench[plot])."""
    err.print(f"[red]error:[/red] {escape(text)}", highlight=False, soft_wrap=True)


def user_errors(on_interrupt: str):
    """Decorator: an MTLBenchError becomes its message on stderr (one line per problem) and its exit code; an
    OSError (a full disk, a folder that cannot be written) one line and exit 1; Ctrl-C prints ``on_interrupt``
    (what was kept on disk) and exits 130. No traceback for any of them."""
    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except MTLBenchError as e:
                for line in str(e).splitlines():
                    error_line(line)
                raise typer.Exit(e.exit_code) from None
            except OSError as e:  # the machine failed us while working (disk full, permissions): exit 1
                error_line(f"{e.filename}: {e.strerror or e}" if e.filename else str(e.strerror or e))
                raise typer.Exit(1) from None
            except KeyboardInterrupt:
                err.print(on_interrupt)
                raise typer.Exit(130) from None
        return wrapper
    return decorate
