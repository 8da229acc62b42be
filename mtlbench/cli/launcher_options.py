"""``mtlbench train``'s launcher flags, derived from ``LauncherSpec``: one option per field that
``config.launcher.FLAG_NAMES`` gives a flag, typed and explained by the field itself, so a field added to the
``launcher:`` section needs only its flag name to be settable from the command line."""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, Literal, get_args, get_origin

import typer

from mtlbench.config.launcher import FLAG_NAMES, LauncherSpec

# How a flag's value is written where the field's own type does not say it (a dict given as repeated KEY=VALUE).
FORMS = {"sbatch": "as KEY=VALUE, repeatable, e.g. account=my_lab"}


def flag_type(annotation: Any) -> type:
    """The option's type for a field's annotation: a choice (Literal) is a string, a mapping is repeated
    strings, anything else its type without None."""
    args = [a for a in get_args(annotation) if a is not type(None)]
    inner = args[0] if get_origin(annotation) is not Literal and len(args) == 1 else annotation
    if get_origin(inner) is Literal:
        return str
    if get_origin(inner) is dict:
        return list[str]
    return inner


def flag_help(name: str) -> str:
    field = LauncherSpec.model_fields[name]
    parts = [field.description or name.replace("_", " ")]
    if name in FORMS:
        parts.append(FORMS[name])
    return "; ".join(parts) + f" (default: the spec's launcher.{name})"


def launcher_parameters() -> list[inspect.Parameter]:
    return [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                              default=typer.Option(None, flag, help=flag_help(name)),
                              annotation=flag_type(LauncherSpec.model_fields[name].annotation) | None)
            for name, flag in FLAG_NAMES.items()]


def with_launcher_options(command: Callable) -> Callable:
    """``command`` with the launcher flags as options, in place of its ``launcher_flags`` parameter, which
    receives them as one dict ({field: value or None}) for ``config.launcher.with_flags``."""
    signature = inspect.signature(command)
    params = list(signature.parameters.values())
    at = [p.name for p in params].index("launcher_flags")
    added = launcher_parameters()

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        flags = {name: kwargs.pop(name, None) for name in FLAG_NAMES}
        flags = {k: None if v in ([], ()) else v for k, v in flags.items()}  # an empty --sbatch list: not given
        return command(*args, launcher_flags=flags, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=[*params[:at], *added, *params[at + 1:]])
    wrapper.__annotations__ = {**{k: v for k, v in command.__annotations__.items() if k != "launcher_flags"},
                               **{p.name: p.annotation for p in added}}
    return wrapper
