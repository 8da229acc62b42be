"""What `validate` says about a row's weighting, before anything is built."""
from __future__ import annotations

from pydantic import ValidationError

from mtlbench.registry import WEIGHTINGS


def weighting_problems(entry, method_cls) -> list[tuple[tuple, str]]:
    """[(where under the row's ``weighting``, why)] -- empty when the row can train with it."""
    if entry.is_default:
        return []
    if entry.name not in WEIGHTINGS:
        return [(("name",), WEIGHTINGS.unknown_message(entry.name))]
    cls = WEIGHTINGS.get(entry.name)
    problems = []
    try:
        cls.Options.model_validate(entry.options)
    except ValidationError as e:
        problems += [(("options", *err["loc"]), option_problem(entry.name, cls, err)) for err in e.errors()]
    if method_cls.closed_form:
        problems.append((("name",), (f"{method_cls.registry_name} is fitted in closed form (no training steps): "
                                    "it takes no weighting")))
    elif cls.kind == "gradient" and not method_cls.shared_params:
        problems.append((("name",), (f"{entry.name} combines the per-task gradients of the parameters the tasks "
                                    f"share, and {method_cls.registry_name} declares none shared; use a loss "
                                    "weighting (uw, dwa, famo, rlw, ...: mtlbench list weightings)")))
    if missing := cls.missing():
        problems.append((("name",), f"{entry.name} needs {', '.join(missing)}, not installed: {cls.install}"))
    return problems


def option_problem(name: str, cls, err: dict) -> str:
    if err["type"] == "extra_forbidden":
        return f"unknown option of {name} (allowed: {', '.join(cls.Options.model_fields) or 'none'})"
    got = err.get("input")
    shown = "" if isinstance(got, (dict, list)) else f" (got {got!r})"
    return f"expected: {err['msg'][0].lower() + err['msg'][1:]}{shown}"
