"""A run already finished under another spec name or row label is the same run: copied, not trained again.

A run's identity (results.run_key) is its data, method entry, backbone, optimizer, training settings, metrics,
seed and code version. Two of those entries differ only in presentation -- the spec's name and the row's
label -- and neither reaches training (seeding, sampling and initialisation depend on the seed alone), so a
finished record whose identity equals a cell's up to the label is the record that training the cell would
write. TAAN's Figure 3 spec, for example, repeats Table 3's TAAN and TAAN + L_dis (c = 0.3) rows under other
labels. The copy names the original in ``reused_from``; the original's environment (commit, machine, times)
is kept, since that is where the numbers were made; its weights are copied beside it when it saved any.

``finished_runs`` is the planning step that uses it: which cells a spec's records (or such copies) finish.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from mtlbench.errors import InputError, UsageError
from mtlbench.io import atomic_write
from mtlbench.results import RunRecord, read_record, write_record
from mtlbench.training.run_plan import RunCell, conflict_message, stored_key


def finished_runs(cells: list[RunCell], force: bool) -> dict[int, RunRecord]:
    """{index of cell: its finished record}: its own, or the same run finished under another spec name or row
    label in the same results folder (copied to the cell's place). Raises UsageError
    (nothing trained yet) when a record of another identity sits where a cell would write, unless ``force``
    (then every cell retrains)."""
    if force:
        return {}
    finished, conflicts, seen = {}, [], {}
    for i, cell in enumerate(cells):
        if not cell.record_path.exists():
            if (same := same_run_elsewhere(cell, seen)) is not None:
                finished[i] = reuse(cell, same)
            continue
        record = read_record(cell.record_path)
        key = stored_key(record)
        if key == cell.key:
            finished[i] = record
        else:
            conflicts.append((cell, key))
    if conflicts:
        raise UsageError(conflict_message(conflicts))
    return finished


def without_label(key: dict) -> dict:
    """A run key with the row label taken out of its method entry."""
    method = {k: v for k, v in (key["experiment"].get("method") or {}).items() if k != "label"}
    return {**key, "experiment": {**key["experiment"], "method": method}}


def same_run_elsewhere(cell: RunCell, seen: dict[Path, tuple]) -> RunRecord | None:
    """A finished record of ``cell``'s run under another spec or row of the same results folder, or None.
    ``seen``: the records already read while planning (path -> (record, its key without label)), so that each
    file is parsed once however many cells look."""
    out_dir, want = cell.results_folder, without_label(cell.key)
    for path in sorted(out_dir.glob(f"*/*/seed{cell.seed}.json")):
        if path == cell.record_path:
            continue
        if path not in seen:
            seen[path] = read_unlabelled(path)
        record, key = seen[path]
        if key is not None and key == want:
            return record
    return None


def read_unlabelled(path: Path) -> tuple[RunRecord | None, dict | None]:
    """A record and its run key without the label; (None, None) for a file that is no record of today's schema."""
    try:
        record = read_record(path)
    except InputError:  # a stray or damaged file is not a run to copy
        return None, None
    key = stored_key(record)
    return record, None if key is None else without_label(key)


def reuse(cell: RunCell, record: RunRecord) -> RunRecord:
    """Write ``record`` as ``cell``'s (its spec, name and row; the original named in reused_from, relative to
    the results folder, so that the name stays true when the folder is moved or copied, e.g. to a reference)."""
    original = record.reused_from or Path(record.path).relative_to(cell.results_folder).as_posix()
    copy = record.model_copy(update={
        "spec_name": cell.spec["name"], "row": cell.row, "spec": cell.spec, "spec_file": cell.spec_file,
        "identity": cell.identity, "reused_from": original})
    weights = Path(record.path).with_suffix(".pt")
    if weights.exists():
        atomic_write(cell.weights_path, lambda tmp: shutil.copyfile(weights, tmp))
    write_record(cell.record_path, copy)
    return copy
