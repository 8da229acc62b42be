"""A spec's ``sweep:`` section -- one option of one method row over a list of values (MTAL's delta, Figure 9; TAAN's
regularizer coefficient) -- checked at ``validate`` and expanded into ordinary method rows:

    sweep: {method: MTAL, param: delta, values: [0.1, 0.2, 0.55]}
    -> rows "MTAL delta=0.1", "MTAL delta=0.2", "MTAL delta=0.55": the MTAL entry with that one option changed

``param: weighting`` sweeps the row's loss weighting instead (values: weighting names or {name, options}).

Each point is a normal run (its own record, weights and run identity), so `mtlbench sweep` skips finished
points and resumes an interrupted one exactly as `mtlbench train` does.
"""
from __future__ import annotations

import difflib
from dataclasses import replace

from pydantic import ValidationError

from mtlbench.config.resolved import ResolvedMethod
from mtlbench.config.schema import MethodEntry, RunSpec, WeightingEntry
from mtlbench.results import sweep_row


def option_names(params_model) -> list[str]:
    """The names a spec may use for a method's options (a field's alias where it has one, e.g. ``lambda``)."""
    return [field.alias or name for name, field in params_model.model_fields.items()]


def sweep_entries(spec: RunSpec) -> list[MethodEntry]:
    """The method entries of the sweep's points, in the order of ``values``."""
    sw = spec.sweep
    base = next(m for m in spec.methods if m.row == sw.method)
    if sw.param == WEIGHTING:  # the loss weighting as the swept axis: {method: TAAN, param: weighting, values: [...]}
        return [base.model_copy(update={"label": sweep_row(sw.method, sw.param, weighting_label(v)),
                                        "weighting": WeightingEntry.model_validate(v)}) for v in sw.values]
    return [base.model_copy(update={"label": sweep_row(sw.method, sw.param, v), "params": {**base.params,
                                                                                              sw.param: v}})
            for v in sw.values]


WEIGHTING = "weighting"


def weighting_label(value) -> str:
    """A swept weighting's name in its row label (``TAAN weighting=pcgrad``)."""
    if isinstance(value, dict):
        return str(value.get("name", "ew"))
    return str(value)


def sweep_problems(spec: RunSpec, resolved_methods, info, problems) -> None:
    """Add to ``problems`` why the sweep cannot run: an unknown row or option, or a value the option refuses."""
    sw = spec.sweep
    rows = [m.row for m in spec.methods]
    if sw.method not in rows:
        problems.add(("sweep", "method"), f"no method row {sw.method!r} in this spec (rows: {', '.join(rows)})")
        return
    method = next((m for m in resolved_methods if m.entry.row == sw.method), None)
    if method is None:  # the row's own problem is reported where it is
        return
    if sw.param == WEIGHTING:
        weighting_sweep_problems(sw, method, rows, problems)
        return
    names = option_names(method.cls.Params)
    if sw.param not in names:
        close = difflib.get_close_matches(sw.param, names, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        problems.add(("sweep", "param"), f"{method.entry.name} has no option {sw.param!r}{hint} (options: "
                                         f"{', '.join(names)})")
        return
    labels = [sweep_row(sw.method, sw.param, v) for v in sw.values]
    for i, (value, label) in enumerate(zip(sw.values, labels)):
        if labels.index(label) != i or label in rows:
            problems.add(("sweep", "values", i), f"{value!r} gives the row {label!r} twice")
            continue
        try:
            params = method.cls.Params.model_validate({**method.entry.params, sw.param: value})
        except ValidationError as e:
            problems.add(("sweep", "values", i), f"{sw.param}: {e.errors()[0]['msg']} (got {value!r})")
            continue
        if info is not None:
            for reason in method.cls.check(info, spec.backbone_for(method.entry), params):
                problems.add(("sweep", "values", i), reason)


def weighting_sweep_problems(sw, method, rows, problems) -> None:
    from mtlbench.weighting.checks import weighting_problems
    labels = [sweep_row(sw.method, sw.param, weighting_label(v)) for v in sw.values]
    for i, (value, label) in enumerate(zip(sw.values, labels)):
        if labels.index(label) != i or label in rows:
            problems.add(("sweep", "values", i), f"{value!r} gives the row {label!r} twice")
            continue
        try:
            entry = WeightingEntry.model_validate(value)
        except ValidationError as e:
            problems.add(("sweep", "values", i), f"expected a weighting name or {{name, options}}: "
                                                 f"{e.errors()[0]['msg']} (got {value!r})")
            continue
        for _where, reason in weighting_problems(entry, method.cls):
            problems.add(("sweep", "values", i), reason)


def require_sweep(resolved):
    """``resolved`` itself, or a one-line error (exit 2) when its spec has no sweep section."""
    from mtlbench.errors import UsageError

    if resolved.spec.sweep is None:
        raise UsageError(f"{resolved.file}: the spec has no sweep section (add e.g. `sweep: {{method: MTAL, param: "
                         "delta, values: [0.1, 0.5, 0.9]}`)")
    return resolved


def expand_sweep(resolved):
    """The resolved spec whose methods are the sweep's points (same data, backbone, optimizer, training)."""
    spec = resolved.spec
    entries = sweep_entries(spec)
    base = next(m for m in resolved.methods if m.entry.row == spec.sweep.method)
    methods = [ResolvedMethod(e, base.cls, base.cls.Params.model_validate(e.params)) for e in entries]
    return replace(resolved, spec=spec.model_copy(update={"methods": entries}), methods=methods)
