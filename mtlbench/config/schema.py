"""The run spec: what a YAML file under benchmarks/ may say. Every model forbids unknown keys.

A spec names one dataset and one or more methods; each (method, seed) pair is one run and one result record.
A method entry is ``{name: taan, label: "TAAN+L_cos", backbone: {...}?, <the method's own params>}``: the
params are validated by the ``Params`` model declared in the method's file (see loader.py).
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator

from mtlbench.config.launcher import LauncherSpec
from mtlbench.nn.backbone import BackboneSpec
from mtlbench.seeds import SEED_MAX

Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]
Unit = Annotated[float, Field(ge=0, lt=1)]


class Strict(BaseModel):
    # a number in a spec is finite: .inf or .nan would pass a range check (nan compares false) and train nothing
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class DataSpec(Strict):
    """The one dataset of the spec: its name, where its prepared files are, its split and its own options."""

    dataset: str = Field(description="a registered dataset (mtlbench list datasets)")
    path: Path | None = Field(default=None, description="directory written by `mtlbench prepare` "
                                                        "(relative to the working directory)")
    split_seed: Seed = Field(default=0, description="seed of the train/val/test split")
    options: dict[str, Any] = Field(default_factory=dict, description="the dataset's own options")


class WeightingEntry(Strict):
    """How the row's training step combines the task losses: ``weighting: pcgrad`` or ``weighting: {name:
    dwa, options: {temperature: 2}}`` (mtlbench list weightings). ``ew``, the default, is the mean of the task
    losses."""

    name: str = Field(default="ew", description="a registered weighting (mtlbench list weightings)")
    options: dict[str, Any] = Field(default_factory=dict, description="the weighting's own options")

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value):
        return {"name": value} if isinstance(value, str) else value

    @property
    def is_default(self) -> bool:
        return self.name == "ew" and not self.options


class MethodEntry(Strict):
    """One method row: a registered method, its row label, its options, optionally its own backbone."""

    name: str = Field(description="a registered method (mtlbench list methods)")
    label: str | None = Field(default=None, description="row name in tables (default: the method name)")
    backbone: BackboneSpec | None = Field(default=None, description="overrides the spec's backbone for this method")
    params: dict[str, Any] = Field(default_factory=dict, description="the method's own options, checked by its "
                                   "Params model (docs/methods.md)")
    weighting: WeightingEntry | list[WeightingEntry] = Field(
        default_factory=WeightingEntry, description="how the task losses are combined (default ew: their mean); "
        "a list crosses the row with each weighting: one row per weighting, labelled '<row> (<weighting>)' "
        "(the ew one keeps the row's label)")
    tasks: list[str] | None = Field(default=None, min_length=1, description=(
        "the tasks this row trains, jointly (names of the data's tasks; default: all of them), e.g. one run per "
        "task group as MTAL's Tables 2 and 4 train their baselines"))
    table_row: str | None = Field(default=None, description=(
        "the table row this run fills: the rows naming one table_row render as that one row, each filling its "
        "own tasks' cells (a baseline trained as one run per task group)"))

    @field_validator("label")
    @classmethod
    def label_names_a_folder(cls, label: str | None) -> str | None:
        from mtlbench.results import slug
        if label is not None and slug(label) in (".", ".."):
            raise ValueError(f"the label would name the folder {slug(label)!r}, not a folder of its own; use "
                             "letters or digits")
        return label

    @property
    def row(self) -> str:
        return self.label or self.name

    @property
    def shown_as(self) -> str:
        """The row of the rendered table this run appears in."""
        return self.table_row or self.row

    @field_validator("tasks")
    @classmethod
    def tasks_unique(cls, tasks: list[str] | None) -> list[str] | None:
        if tasks is not None and len(set(tasks)) != len(tasks):
            raise ValueError(f"a task is named twice in {tasks}")
        return tasks

    @property
    def weighting_name(self) -> str:
        return self.weighting.name if isinstance(self.weighting, WeightingEntry) else "ew"

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        # ew is left out of the dump (and so of the run identity): rows written before weightings existed, and
        # ew rows now, are the same runs
        out = handler(self)
        if isinstance(self.weighting, WeightingEntry) and self.weighting.is_default:
            out.pop("weighting", None)
        # tasks / table_row left out while unset, so records written before they existed keep their run identity
        for key in ("tasks", "table_row"):
            if out.get(key, 0) is None:
                out.pop(key)
        return out


def weighting_row(row: str, weighting: WeightingEntry) -> str:
    """The row label of a row crossed with a weighting: the row itself for ew, else ``<row> (<name>)``."""
    return row if weighting.is_default else f"{row} ({weighting.name})"


def cross_weightings(methods: list[MethodEntry]) -> list[MethodEntry]:
    """Rows whose ``weighting`` is a list, expanded into one row per weighting."""
    out = []
    for m in methods:
        if isinstance(m.weighting, WeightingEntry):
            out.append(m)
            continue
        out += [m.model_copy(update={"weighting": w, "label": m.label if w.is_default else weighting_row(m.row, w)})
                for w in m.weighting]
    return out


GROUP_KEYS = ("lr_mult", "weight_decay_mult")


class OptimizerSpec(Strict):
    """One optimizer for every parameter; per named parameter group (``heads``, ``stems``, ``trunk`` and the
    method's own, e.g. TAAN's ``alpha``: ``mtlbench list methods``) the learning rate and the weight
    decay can be scaled: ``lr_mult: {heads: 50}`` trains the heads at 50 x lr (times the method's own
    multiplier, e.g. NDDR's 100 on its reductions), ``weight_decay_mult: {alpha: 0}`` exempts TAAN's alpha."""

    name: Literal["adam", "adamw", "sgd"] = Field(default="adam", description="sgd: with momentum")
    lr: float = Field(default=1e-3, gt=0, description="learning rate of every group, before multipliers")
    betas: tuple[Unit, Unit] = Field(default=(0.9, 0.999), description="adam and adamw")
    momentum: float = Field(default=0.9, ge=0, description="sgd")
    weight_decay: float = Field(default=0.0, ge=0, description="every group's, unless weight_decay_mult scales it")
    lr_mult: dict[str, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict, description="learning-rate multiplier per parameter group, e.g. {heads: 50}")
    weight_decay_mult: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict, description="weight-decay multiplier per parameter group, e.g. {alpha: 0}")

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        # the group multipliers are left out while empty, so records written before they existed keep their
        # run identity (`train` skips them, `compare` groups a row's seeds by it)
        return {k: v for k, v in handler(self).items() if k not in GROUP_KEYS or v}


class TrainingSpec(Strict):
    """How every run of the spec trains: steps, batches, evaluation and model selection, device and precision."""

    iterations: int = Field(default=1000, ge=1, description="optimizer steps; one step = one batch per task")
    batch_per_task: int = Field(default=64, ge=1, description="examples of each task in one step")
    eval_every: int = Field(default=100, ge=1, description="iterations between validation evaluations")
    patience: int | None = Field(default=None, ge=1, description="stop after this many evaluations without improvement")
    eval_batch: int = Field(default=2048, ge=1, description="examples per forward when scoring val and test "
                                                       "(memory only: not part of a run's identity)")
    select_on: Literal["val", "test"] = Field(
        default="val", description="'test' is the labelled paper_faithful mode of code that selected on test")
    device: str = Field(default="auto", description="auto | cpu | cuda | cuda:N")

    @field_validator("device")
    @classmethod
    def known_device(cls, device: str) -> str:
        if device == "auto":
            return device
        import torch
        try:
            torch.device(device)
        except RuntimeError:
            raise ValueError(f"expected auto, cpu, cuda or cuda:N, got {device!r}") from None
        return device
    threads: int | None = Field(default=None, ge=1, description="torch CPU threads (default: torch's choice)")
    checkpoint_every: int | None = Field(
        default=None, ge=1, description="iterations between saves of the resumable training state "
                                        "(default: eval_every); a killed run resumes from the last save")
    deterministic: bool = Field(default=True, description="deterministic torch algorithms (same spec and seed, "
                                                            "same record on CPU)")
    amp: Literal["none", "bf16", "fp16"] = Field(
        default="none", description="mixed precision: autocast to bfloat16 or float16 (fp16 with a loss scaler)")
    kernel: Literal["auto", "eager", "fused"] = Field(
        default="auto", description="conv blocks: fused (channels_last, pooling before BatchNorm's affine map "
        "and ReLU: the same function, fewer passes), eager (the blocks as written: the reference), auto (fused "
        "on conv and vgg trunks)")
    sync_batchnorm: bool = Field(
        default=False, description="data-parallel runs (torchrun): BatchNorm statistics over the global batch "
                                   "instead of each rank's slice")


class EvaluationSpec(Strict):
    """What is scored on the validation and test splits."""

    metrics: list[str] | None = Field(
        default=None, description="extra metrics (the dataset's primary metric is always stored); "
                                  "default: the primary metric and, for multi-label tasks, GAP@20 and Hit@1")


class OutputSpec(Strict):
    """Where records and weights go."""

    dir: Path = Field(default=Path("results/runs"), description="result records go to DIR/<spec name>/")
    save_checkpoint: bool = Field(default=True, description="keep the selected weights beside each record "
                                                              "(DMTRL's stl init reads them)")


class SweepSpec(Strict):
    """One option of one method row varied over values (``mtlbench sweep``): each value is a run of its own,
    labelled ``<row> <param>=<value>``, with its own record and run identity."""

    method: str = Field(description="the row (label, or name when unlabelled) of the method to vary")
    param: str = Field(description="one of that method's options, e.g. delta (MTAL) or reg_coef (TAAN)")
    values: list[Any] = Field(min_length=1, description="the option's values, one run (per seed) each")


class CheckSpec(Strict):
    """Tolerances of ``mtlbench check`` (fresh records against reference records, e.g. in CI). A mean score
    may fall below the reference's by at most ``tolerance`` (absolute) -- or, when the reference has at least
    ``min_seeds`` seeds, by ``std_k`` times the reference's standard deviation over seeds, never less than
    ``min_tolerance``. Timing ratios (``timing.json``) may grow by at most ``timing_tolerance`` (relative)."""

    metric: str | None = Field(default=None, description="metric compared (default: the dataset's primary one)")
    split: Literal["test", "val"] = Field(default="test", description="split whose scores are compared")
    per_task: bool = Field(default=False, description="check every task's score too, not only the mean over tasks")
    tolerance: float = Field(default=0.02, ge=0, description="allowed absolute drop with fewer than min_seeds "
                                                              "reference seeds")
    std_k: float = Field(default=3.0, ge=0, description="allowed drop in reference standard deviations "
                                                         "(with >= min_seeds reference seeds)")
    min_seeds: int = Field(default=3, ge=2, description="reference seeds needed for the std_k rule")
    min_tolerance: float = Field(default=0.005, ge=0, description="the std_k rule never allows less than this "
                                                                   "(seeds that agree closely have a std near 0)")
    timing_tolerance: float = Field(default=0.25, ge=0, description="allowed relative growth of a timing ratio "
                                                                     "to the reference method")


class RunSpec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="names the results folder")
    description: str = Field(default="", description="free text about the spec (not part of a run's identity)")
    table: str | None = Field(default=None, description="paper table (mtlbench list tables) rendered beside ours")
    data: DataSpec
    backbone: BackboneSpec = Field(default_factory=BackboneSpec)
    methods: list[MethodEntry] = Field(min_length=1)
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    seeds: list[Seed] = Field(default=[0], min_length=1, description="one run per method and seed (--seeds overrides)")
    output: OutputSpec = Field(default_factory=OutputSpec)
    launcher: LauncherSpec = Field(default_factory=LauncherSpec, description="how the cells run: in process, "
                                   "as local processes or as Slurm jobs (mtlbench.config.launcher)")
    sweep: SweepSpec | None = Field(default=None, description="an option to vary (mtlbench sweep)")
    check: CheckSpec = Field(default_factory=CheckSpec, description="tolerances of `mtlbench check`")

    @field_validator("name")
    @classmethod
    def name_is_one_folder(cls, name: str) -> str:
        if set(name) == {"."}:  # '.' or '..' would write beside or above the output folder
            raise ValueError("a name of dots only would write outside the output folder; use letters or digits")
        return name

    @field_validator("methods")
    @classmethod
    def rows_unique(cls, methods: list[MethodEntry]) -> list[MethodEntry]:
        methods = cross_weightings(methods)
        rows = [m.row for m in methods]
        dup = sorted({r for r in rows if rows.count(r) > 1})
        if dup:
            raise ValueError(f"two methods have the row name {dup[0]!r}; give them distinct 'label's")
        for m in methods:
            if m.table_row is None:
                continue
            if m.table_row in rows:
                raise ValueError(f"table_row {m.table_row!r} of row {m.row!r} is another row's label; a joined "
                                 "row needs a name of its own")
            if m.tasks is None:
                raise ValueError(f"row {m.row!r} has a table_row but no tasks: a joined row's runs fill the cells "
                                 "of their own tasks")
            parts = [p for p in methods if p.table_row == m.table_row]
            named = [t for p in parts for t in p.tasks or []]
            if len(set(named)) != len(named):
                raise ValueError(f"the rows joined as {m.table_row!r} name a task twice ({named}): each fills "
                                 "its own tasks' cells")
        return methods

    def backbone_for(self, entry: MethodEntry) -> BackboneSpec:
        return entry.backbone or self.backbone
