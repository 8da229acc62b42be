"""YAML -> validated spec, with every problem reported as ``FILE:LINE: field: what was expected``.

Problems are collected, not raised one by one, so a user fixes a spec in one pass. Checks, in order: UTF-8
text, YAML syntax and duplicate keys; the RunSpec schema (unknown keys with "did you mean"); the paper table,
``output.dir`` and, when data are checked, the device; registered dataset and method names; each dataset's
and method's own options; the prepared data (checksums, and the manifest against its shards); whether each
method's backbone fits the tasks (every layer's output shape, for the trunk input every task reaches through
its stem); whether each method can run on the dataset (``MTLMethod.check``); the metrics named; a ``sweep:``
section's row, option and values. Nothing is trained before all of them pass.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from mtlbench.config.launcher import env_world
from mtlbench.config.resolved import ResolvedMethod, ResolvedSpec
from mtlbench.config.schema import RunSpec
from mtlbench.config.sweep import option_names, sweep_problems
from mtlbench.errors import MTLBenchError, SpecError
from mtlbench.metrics import get_metric
from mtlbench.nn.layer_plan import backbone_problems, trunk_kind
from mtlbench.registry import DATASETS, METHODS, UnknownNameError
from mtlbench.store.dataset import DataInfo, DatasetSource

Loc = tuple[Any, ...]


# -- YAML with line numbers -----------------------------------------------------------------------------------
class _Loader(yaml.SafeLoader):
    pass


def _no_duplicates(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise SpecError([f"{{file}}:{key_node.start_mark.line + 1}: duplicate key {key!r} "
                             f"(first at line {seen[key]})"])
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def line_map(node: yaml.Node, loc: Loc = ()) -> dict[Loc, int]:
    """Every path of the document -> the line it starts on (1-based); keys map to their key's line."""
    lines = {loc: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            sub = (*loc, k.value)
            lines.update(line_map(v, sub))
            lines[sub] = k.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            lines.update(line_map(v, (*loc, i)))
    return lines


# A spec is untrusted input: its size, its expansion through aliases and its nesting are bounded before
# anything walks it (a "billion laughs" document of a few hundred bytes expands to 10**9 nodes). The largest
# spec under benchmarks/ is ~3 KB, ~400 nodes and 6 levels deep.
MAX_SPEC_BYTES = 1 << 20
MAX_NODES = 100_000
MAX_DEPTH = 50


def read_text(path: Path) -> str:
    """The spec's text; a file that is not UTF-8 text (a binary, a spec saved in another encoding) is one
    line naming the first offending byte; a file over MAX_SPEC_BYTES is refused unread."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_SPEC_BYTES + 1)
    except OSError as e:
        raise SpecError([f"{path}: cannot read the spec ({e.strerror})"]) from None
    if len(raw) > MAX_SPEC_BYTES:
        too_big = f"{path}: larger than {MAX_SPEC_BYTES // 1024} KiB; a spec is a small YAML text, refused unread"
        raise SpecError([too_big])
    if b"\0" in raw:
        raise SpecError([f"{path}: a binary file (NUL byte at offset {raw.index(0)}), not a YAML spec"])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError([(f"{path}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); save the "
                          "spec as UTF-8")]) from None


def read_yaml(path: Path) -> tuple[dict, dict[Loc, int]]:
    return yaml_document(read_text(path), path)


def yaml_document(text: str, path: Path) -> tuple[dict, dict[Loc, int]]:
    """The spec as a dict, and the line of every field; every problem is one line naming ``path``."""
    try:
        data, node = parse_yaml(text)
    except SpecError as e:
        raise SpecError([p.replace("{file}", str(path)) for p in e.problems]) from None
    except yaml.YAMLError as e:
        if json_with_tabs(text):
            # JSON is YAML, but for tabs: JSON allows them between tokens and nowhere else (a tab inside a
            # string is written \\t), so each can become a space without changing the document or its lines
            return yaml_document(text.replace("\t", " "), path)
        raise SpecError([yaml_problem(path, e, text)]) from None
    except RecursionError:
        raise SpecError([f"{path}: nested too deeply to read; a spec is a few levels of keys"]) from None
    if not isinstance(data, dict):
        raise SpecError([f"{path}:1: the spec must be a mapping of keys (name, data, methods, ...)"])
    return data, line_map(node)


def parse_yaml(text: str) -> tuple[Any, yaml.Node | None]:
    """The document and its node tree, composed once; the tree is measured before anything is built from it.
    Only the safe loader's plain types are constructed (a ``!!python/...`` tag is refused)."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        check_expansion(node)
        return loader.construct_document(node), node
    finally:
        loader.dispose()


def check_expansion(root: yaml.Node) -> None:
    """SpecError unless the document, every alias expanded, has at most MAX_NODES nodes and MAX_DEPTH levels
    and no alias inside its own anchor. Shared (aliased) nodes are measured once, so this is linear in the
    text even when the expansion is exponential."""
    size: dict[int, int] = {}
    open_: set[int] = set()

    def refuse(node: yaml.Node, what: str) -> None:
        raise SpecError([f"{{file}}:{node.start_mark.line + 1}: {what}"])

    def measure(node: yaml.Node, depth: int) -> int:
        if id(node) in size:
            return size[id(node)]
        if id(node) in open_:
            refuse(node, "an alias inside its own anchor (a structure that contains itself)")
        if depth > MAX_DEPTH:
            refuse(node, f"nested more than {MAX_DEPTH} levels deep; a spec is a few levels of keys")
        open_.add(id(node))
        children = ([n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else
                    node.value if isinstance(node, yaml.SequenceNode) else [])
        total = 1 + sum(measure(child, depth + 1) for child in children)
        if total > MAX_NODES:
            refuse(node, f"expands through its aliases to more than {MAX_NODES} YAML nodes (a spec has a few "
                         "hundred); write the repeated parts out")
        open_.discard(id(node))
        size[id(node)] = total
        return total

    measure(root, 0)


def yaml_problem(path: Path, e: yaml.YAMLError, text: str) -> str:
    """One line: where YAML stopped reading and why (a tag it would not construct, a tab, a control character)."""
    if isinstance(e, yaml.reader.ReaderError):  # a character YAML allows nowhere (a control character)
        line = text[:e.position].count("\n") + 1
        return (f"{path}:{line}: not valid YAML (character {e.character!r} at offset {e.position} is not allowed "
                "in YAML; a spec is plain text)")
    mark = getattr(e, "problem_mark", None)
    where = f":{mark.line + 1}" if mark else ""
    problem = str(getattr(e, "problem", None) or e)
    if isinstance(e, yaml.constructor.ConstructorError) and "constructor for the tag" in problem:
        tag = problem.split("tag ", 1)[1].strip("'").replace("tag:yaml.org,2002:", "!!")
        return f"{path}{where}: the tag {tag} is not allowed; a spec holds plain values (mappings, lists, scalars)"
    if "'\\t'" in problem:
        problem += "; YAML indents with spaces, not tabs"
    return f"{path}{where}: not valid YAML ({' '.join(problem.split())})"


def json_with_tabs(text: str) -> bool:
    import json
    if "\t" not in text:
        return False
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


# -- error formatting -------------------------------------------------------------------------------------------
def dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, str) and not part.isprintable():
            part = repr(part)  # a key holding a newline or a control character stays on the problem's line
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class Problems:
    def __init__(self, file: Path, lines: dict[Loc, int]):
        self.file, self.lines, self.items = file, lines, []

    def add(self, loc: Loc, message: str, line_at: Loc | None = None) -> None:
        """One problem at field ``loc``, on the line of ``line_at`` (default: ``loc``, or its nearest parent)."""
        at = loc if line_at is None else line_at
        line = next((self.lines[at[:i]] for i in range(len(at), -1, -1) if at[:i] in self.lines), 1)
        self.items.append(f"{self.file}:{line}: {dotted(loc) or '(top level)'}: {message}")

    def add_validation(self, err: ValidationError, prefix: Loc, model: type[BaseModel]) -> None:
        for e in err.errors():
            loc = prefix + tuple(e["loc"])
            self.add(loc, describe_error(e, model, tuple(e["loc"])))


def describe_error(e: dict, model: type[BaseModel], loc: Loc) -> str:
    if e["type"] == "extra_forbidden":
        known = fields_at(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown key{hint} (allowed: {', '.join(known)})"
    if e["type"] == "missing":
        return "required key is missing"
    got = e.get("input")
    shown = "" if isinstance(got, (dict, list)) else f" (got {got!r})"
    return f"expected: {e['msg'][0].lower() + e['msg'][1:]}{shown}"


def fields_at(model: Any, loc: Loc) -> list[str]:
    """Field names of the (nested) pydantic model at ``loc`` within ``model`` -- for "did you mean"."""
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = nested_model(field.annotation)
    return option_names(model) if hasattr(model, "model_fields") else []


def nested_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = nested_model(arg)
        if found is not None:
            return found
    return None


# -- the checks ----------------------------------------------------------------------------------------------------
def load_spec(path: str | Path, check_data: bool = True) -> ResolvedSpec:
    """Read, validate and resolve a spec; raise SpecError listing every problem found."""
    path = Path(path)
    raw, lines = read_yaml(path)
    problems = Problems(path, lines)
    try:
        spec = RunSpec.model_validate(raw)
    except ValidationError as err:
        problems.add_validation(err, (), RunSpec)
        raise SpecError(problems.items) from None
    check_table(spec, problems)
    if spec.output.dir.exists() and not spec.output.dir.is_dir():
        problems.add(("output", "dir"), f"{spec.output.dir} is a file; expected a directory (created if missing)")
    if check_data:
        check_device(spec, problems)
    dataset, options, info = resolve_data(spec, problems, check_data)
    methods = [m for i, entry in enumerate(spec.methods) if (m := resolve_method(i, entry, problems))]
    check_optimizer_groups(spec, methods, problems)
    if info is not None:
        check_methods(spec, methods, info, problems)
        check_kernel(spec, methods, info, problems)
    check_metrics(spec, info, problems)
    check_weightings(spec, methods, problems)
    check_data_parallel(spec, methods, problems)
    if spec.sweep is not None:
        sweep_problems(spec, methods, info, problems)
    if problems.items:
        raise SpecError(problems.items)
    return ResolvedSpec(spec, path, dataset, options, methods, info)


def resolve_data(spec: RunSpec, problems: Problems, check_data: bool):
    if spec.data.dataset not in DATASETS:
        problems.add(("data", "dataset"), DATASETS.unknown_message(spec.data.dataset))
        return None, None, None
    dataset = DATASETS.get(spec.data.dataset)
    try:
        options = dataset.Options.model_validate(spec.data.options)
    except ValidationError as err:
        problems.add_validation(err, ("data", "options"), dataset.Options)
        return dataset, None, None
    if not check_data:  # compare / static checks: the data need not be on this machine
        return dataset, options, None
    if dataset.needs_path and not path_ok(spec, dataset, problems):
        return dataset, options, None
    try:
        return dataset, options, dataset.describe(options, spec.data.split_seed, spec.data.path)
    except MTLBenchError as e:
        problems.add(("data", "path"), str(e))
        return dataset, options, None


def path_ok(spec: RunSpec, dataset: type[DatasetSource], problems: Problems) -> bool:
    path = spec.data.path
    how = f"; create it with `{dataset.prepare_command}`" if dataset.prepare_command else ""
    if path is None:
        problems.add(("data",), f"dataset {spec.data.dataset!r} reads prepared data: set data.path{how}")
        return False
    reason = dataset.check_path(path)
    if reason:
        problems.add(("data", "path"), reason + (how if not path.exists() else ""))
    return reason is None


def resolve_method(i: int, entry, problems: Problems) -> ResolvedMethod | None:
    if entry.name not in METHODS:
        problems.add(("methods", i, "name"), METHODS.unknown_message(entry.name))
        return None
    cls = METHODS.get(entry.name)
    try:
        return ResolvedMethod(entry, cls, cls.Params.model_validate(entry.params))
    except ValidationError as err:
        problems.add_validation(err, ("methods", i, "params"), cls.Params)
        return None


def check_optimizer_groups(spec: RunSpec, methods: list[ResolvedMethod], problems: Problems) -> None:
    """Every group named in optimizer.lr_mult / weight_decay_mult must be a group of some method of the spec
    (a group another method lacks simply does not apply to it: TAAN's alpha beside Hard-Share)."""
    if len(methods) < len(spec.methods):
        return  # an unknown method is reported already; its groups are unknown
    has = {m.entry.row: m.cls.group_names() for m in methods}
    known = sorted({g for groups in has.values() for g in groups})
    for field in ("lr_mult", "weight_decay_mult"):
        for group in getattr(spec.optimizer, field):
            if group not in known:
                close = difflib.get_close_matches(group, known, n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                problems.add(("optimizer", field, group), f"no method of this spec has a parameter group "
                             f"{group!r}{hint} ({group_listing(has)})")


def group_listing(has: dict[str, list[str]]) -> str:
    """'groups of every method: heads, stems, trunk; of TAAN: alpha, hinges'."""
    common = [g for g in next(iter(has.values())) if all(g in groups for groups in has.values())]
    own = [f"of {row}: {', '.join(extra)}" for row, groups in has.items()
           if (extra := [g for g in groups if g not in common])]
    return "; ".join([f"groups of every method: {', '.join(common)}", *own])


def check_methods(spec: RunSpec, methods: list[ResolvedMethod], info: DataInfo, problems: Problems) -> None:
    reported: set = set()
    full = info
    for m in methods:
        i = spec.methods.index(m.entry)
        if unknown := unknown_tasks(full, m.entry.tasks):
            problems.add(("methods", i, "tasks"), f"dataset {full.name!r} has no task {unknown[0]!r} (its tasks: "
                                                  f"{', '.join(full.task_names)})")
            continue
        info = full.only_tasks(m.entry.tasks)  # the tasks this row trains
        if not info.tasks:
            problems.add(("methods", i, "tasks"), f"none of {m.entry.tasks} is prepared (missing: "
                                                  f"{', '.join(full.metadata.get('missing_tasks', []))})")
            continue
        if not m.cls.raw_inputs and not backbone_fits(spec, i, info, problems, reported):
            continue
        # a `{seed}` option is checked once per seed (each seed may name its own checkpoint)
        variants = dict.fromkeys(m.params_for(seed).model_dump_json() for seed in spec.seeds)
        reasons = [r for v in variants for r in m.cls.check(info, spec.backbone_for(m.entry),
                                                             type(m.params).model_validate_json(v))]
        for reason in dict.fromkeys(reasons):
            problems.add(("methods", i, "name"), reason)


def unknown_tasks(info: DataInfo, names: list[str] | None) -> list[str]:
    """The names that are no task of the data; a default task left out because it is not prepared (MTAL's
    Office-Home Art) is not unknown: its row trains the others, and tables say the task is missing."""
    known = {*info.task_names, *info.metadata.get("missing_tasks", [])}
    return [n for n in names or [] if n not in known]


def backbone_fits(spec: RunSpec, i: int, info: DataInfo, problems: Problems, reported: set) -> bool:
    """Report (once per backbone) why method ``i``'s backbone does not fit the tasks; the line is the
    method's backbone override, the spec's ``backbone`` key, or -- for the default backbone -- the dataset."""
    entry = spec.methods[i]
    errors = backbone_problems(info, spec.backbone_for(entry))
    base: Loc = ("methods", i, "backbone") if entry.backbone else ("backbone",)
    for e in errors:
        if (base, e.message) in reported:
            continue
        reported.add((base, e.message))
        if base in problems.lines:
            problems.add(base + e.field, e.message)
        else:
            problems.add(base + e.field, e.message + " (the default backbone: the spec has no backbone key)",
                         line_at=("data", "dataset"))
    return not errors


def check_weightings(spec: RunSpec, methods: list[ResolvedMethod], problems: Problems) -> None:
    """Each row's weighting: registered, its options valid, its solver installed, and -- for a gradient
    weighting -- a method that shares parameters between tasks and trains by steps."""
    from mtlbench.weighting.checks import weighting_problems
    for m in methods:
        i = spec.methods.index(m.entry)
        for where, reason in weighting_problems(m.entry.weighting, m.cls):
            problems.add(("methods", i, "weighting", *where), reason)


def check_kernel(spec: RunSpec, methods: list[ResolvedMethod], info: DataInfo, problems: Problems) -> None:
    """``training.kernel: fused`` needs a conv block to run on and float32/float64 activations."""
    if spec.training.kernel != "fused":
        return
    kinds = {trunk_kind(info, spec.backbone_for(m.entry)) for m in methods if not m.cls.raw_inputs}
    if kinds and not kinds & {"conv", "vgg"}:
        problems.add(("training", "kernel"), f"fused runs conv blocks, and every trunk of this spec is "
                     f"{'/'.join(sorted(kinds))}; use auto or eager")
    elif spec.training.amp != "none":
        problems.add(("training", "kernel"), f"fused runs float32 and float64 blocks, not amp: "
                     f"{spec.training.amp}; use auto (eager under amp) or eager")


def check_metrics(spec: RunSpec, info: DataInfo | None, problems: Problems) -> None:
    """Every metric named (``evaluation.metrics``, ``check.metric``) exists and scores this dataset's tasks."""
    named = [(("evaluation", "metrics", i), name) for i, name in enumerate(spec.evaluation.metrics or [])]
    if spec.check.metric is not None:
        named.append((("check", "metric"), spec.check.metric))
    targets = {t.target for t in info.tasks} if info is not None else set()
    for where, name in named:
        try:
            metric = get_metric(name)
        except UnknownNameError as e:
            problems.add(where, str(e))
            continue
        if info is not None and metric.targets != "any" and targets != {metric.targets}:
            problems.add(where, f"{name} scores {metric.targets} tasks; dataset {info.name!r} has "
                                f"{', '.join(sorted(targets))} tasks")


def check_table(spec: RunSpec, problems: Problems) -> None:
    from mtlbench.config.paper_tables import paper_tables
    from mtlbench.registry import unknown_name_message
    if spec.table is not None and spec.table not in paper_tables():
        problems.add(("table",), unknown_name_message("paper table", spec.table, paper_tables()))


def check_device(spec: RunSpec, problems: Problems) -> None:
    import torch
    device = spec.training.device
    if not device.startswith("cuda"):
        return
    if not torch.cuda.is_available():
        problems.add(("training", "device"), f"{device!r} asked for, but this torch build sees no CUDA device "
                                             "(use auto or cpu)")
    elif torch.device(device).index is not None and torch.device(device).index >= torch.cuda.device_count():
        problems.add(("training", "device"), f"{device!r} asked for, but this machine has "
                                             f"{torch.cuda.device_count()} CUDA device(s)")


def check_data_parallel(spec: RunSpec, methods: list[ResolvedMethod], problems: Problems) -> None:
    """Under torchrun (several processes): every method must train by steps, and every rank needs a row."""
    world = env_world()
    if world == 1:
        return
    for m in methods:
        if m.cls.closed_form:
            problems.add(("methods", spec.methods.index(m.entry), "name"),
                         f"{m.entry.name} is fitted in closed form (one fit, no steps) and cannot be split across "
                         f"the {world} processes torchrun started; run it without torchrun")
    if spec.training.batch_per_task < world:
        problems.add(("training", "batch_per_task"), f"{spec.training.batch_per_task} row(s) per task cannot be "
                     f"split across the {world} processes torchrun started (at least one row each)")
