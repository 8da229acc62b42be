"""What every command shares: the consoles and the mapping of errors to one-line messages and exit codes."""
from __future__ import annotations

import functools
import inspect
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

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


PLUGIN_HELP = ("a Python file that registers methods, datasets or weightings (repeatable; see docs/plugins.md), "
               "loaded before the command runs")


def takes_plugins(fn):
    """Decorator (under ``user_errors``): the command gets ``--plugin FILE.py`` (repeatable), and the files are
    loaded before it runs -- one declaration for every command that reads a spec or builds a model."""
    signature = inspect.signature(fn)
    option = inspect.Parameter("plugin", inspect.Parameter.KEYWORD_ONLY, annotation=list[Path] | None,
                               default=typer.Option(None, "--plugin", metavar="FILE.py", help=PLUGIN_HELP))

    @functools.wraps(fn)
    def wrapper(*args, plugin: list[Path] | None = None, **kwargs):
        from mtlbench.plugins import load_plugin_files
        load_plugin_files(plugin or [])
        return fn(*args, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=[*signature.parameters.values(), option])
    wrapper.__annotations__ = {**fn.__annotations__, "plugin": list[Path] | None}
    return wrapper


class OneLineUsageErrors(TyperGroup):
    """The command group, with click's own usage errors (an unknown option, a missing argument, a value of the
    wrong type) printed as one line and exit 2 -- the rule of every other refusal -- instead of click's usage
    line, hint and boxed message. Caught by duck type (``format_message`` and ``exit_code``: click's
    ClickException), since typer may bring its own copy of click."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.Abort:
            error_line("aborted")
            sys.exit(1)
        except Exception as e:
            if not (hasattr(e, "format_message") and isinstance(getattr(e, "exit_code", None), int)):
                raise
            if type(e).__name__ != "NoArgsIsHelpError":  # that one has printed the help already
                error_line(usage_error_line(e))
            sys.exit(e.exit_code)
        sys.exit(code if isinstance(code, int) else 0)


def usage_error_line(e: Exception) -> str:
    """``mtlbench compare: No such option: --colour (see mtlbench compare --help)``."""
    ctx = getattr(e, "ctx", None)
    message = " ".join(e.format_message().split())
    if ctx is None:
        return message
    return f"{ctx.command_path}: {message} (see {ctx.command_path} --help)"
