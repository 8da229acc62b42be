"""The result record of a finished run (``results.RunRecord``): what the trainer measured plus what the spec,
the data and the environment say about the run."""
from __future__ import annotations

import torch

from mtlbench.config.resolved import ResolvedSpec
from mtlbench.nn.method import MTLMethod, count_parameters
from mtlbench.results import RECORD_SCHEMA, RunRecord, code_version
from mtlbench.store.dataset import MTLData
from mtlbench.training.env import fingerprint
from mtlbench.training.run_plan import RunCell


def make_record(resolved: ResolvedSpec, cell: RunCell, data: MTLData, model: MTLMethod, device: torch.device,
                env_extra: dict | None = None, **outcome) -> RunRecord:
    """``outcome``: status / failure, trained_by, metrics, best_iteration, iterations_run, history and times;
    ``env_extra``: facts of the run's execution added to the environment (e.g. the data-parallel world size)."""
    spec, tr = resolved.spec, resolved.spec.training
    ok = outcome.get("status", "ok") == "ok"
    outcome = {"metrics": None, "best_iteration": None, **outcome}
    return RunRecord(
        schema_version=RECORD_SCHEMA, spec_name=spec.name, row=cell.row, method=cell.method.entry.name,
        seed=cell.seed, identity=cell.identity, code_version=code_version(), spec_file=cell.spec_file,
        spec=cell.spec, params=cell.method.params_for(cell.seed).model_dump(mode="json"),
        dataset=data.info.name, tasks=data.info.task_names, data_metadata=data.info.metadata,
        primary_metric=data.info.primary_metric, selected_on=tr.select_on,
        # selecting on test, or on a split whose "validation" rows are test rows (Omniglot's paper_faithful)
        paper_faithful=tr.select_on == "test" or bool(data.info.metadata.get("val_is_test")),
        deterministic=tr.deterministic, n_params=count_parameters(model), data_checksum=data.info.checksum,
        env={**fingerprint(device), **(env_extra or {})}, summary=model.summary() if ok else {},
        plugins=cell.key.get("plugins"), method_version=cell.key.get("method_version"), **outcome)
