"""Which cells of a grid wait for which, and in which order they run.

A cell depends on another when one of its method's string options names the other cell's weights file once
``{seed}`` is filled in: DMTRL's ``stl_checkpoint: results/runs/<spec>/STL/seed{seed}.pt`` makes each DMTRL
cell wait for the STL cell of its seed (or of the one seed it names). Nothing here knows a method's name: any
option pointing at a run of the same grid counts. A cell of wave k depends only on cells of waves < k; with
no such options every cell is in wave 0.

The in-process run needs no ordering beyond the spec's (STL is listed first); jobs need it, because they run
at once: the local launcher starts a cell once the cells it depends on have finished (and never when one of
them failed or diverged), and the Slurm launcher submits each wave as one job array whose jobs start only
after the jobs they depend on ended well (``--dependency=afterok:...``, with ``--kill-on-invalid-dep=yes`` so
a failed STL job cancels its dependents instead of leaving them pending).
"""
from __future__ import annotations

from pathlib import Path

from mtlbench.training.run_plan import RunCell


def dependencies(cells: list[RunCell]) -> dict[int, list[int]]:
    """{cell index: indices of the cells whose weights its options name} (cells without any are absent)."""
    by_weights = {cell.weights_path.resolve(): i for i, cell in enumerate(cells)}
    deps: dict[int, list[int]] = {}
    for i, cell in enumerate(cells):
        named = [by_weights.get(Path(v).resolve()) for _, v in cell.method.params_for(cell.seed)
                 if isinstance(v, str) and v.endswith(".pt")]
        found = sorted({j for j in named if j is not None and j != i})
        if found:
            deps[i] = found
    return deps


def waves(n: int, deps: dict[int, list[int]]) -> list[int]:
    """The wave of each of ``n`` cells: 0 without dependencies, else one more than its latest dependency."""
    out: list[int | None] = [None] * n

    def wave(i: int, seen: frozenset[int]) -> int:
        if out[i] is None:
            out[i] = 1 + max((wave(j, seen | {i}) for j in deps.get(i, []) if j not in seen), default=-1)
        return out[i]
    return [wave(i, frozenset()) for i in range(n)]
