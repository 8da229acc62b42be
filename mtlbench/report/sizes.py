"""Parameter counts at the papers' sizes, without data: build a method for the shapes of TAAN Table 1
(YouTube-8M: 1152-d input, MLP 1152 -> 3 x 1024, 16 vertical tasks with YouTube-8M's class counts per vertical) and
count. Building is cheap for every method (DMTRL factorises a random tensor of that size, a few seconds).

    >>> from mtlbench.report.sizes import count_at_paper_size
    >>> count_at_paper_size("hard_share")["trainable"]
    6925797
"""
from __future__ import annotations

from typing import Any

import torch

from mtlbench.nn.backbone import BackboneSpec
from mtlbench.nn.method import parameter_counts
from mtlbench.registry import METHODS
from mtlbench.store.dataset import DataInfo, TaskInfo

# Vertical1 counts of vocabulary.csv, in the TAAN code's task order (data_prep/README.md)
YOUTUBE8M_CLASSES = (525, 734, 466, 167, 278, 302, 259, 150, 132, 86, 116, 26, 120, 116, 48, 32)
YOUTUBE8M_INPUT = 1152


def youtube8m_paper_info() -> DataInfo:
    tasks = [TaskInfo(f"vertical{i + 1}", c, "multilabel", (YOUTUBE8M_INPUT,))
             for i, c in enumerate(YOUTUBE8M_CLASSES)]
    return DataInfo("youtube8m_paper_shapes", tasks, "shared", "map_at10_sample")


def paper_backbone() -> BackboneSpec:
    return BackboneSpec(kind="mlp", hidden=[1024, 1024, 1024])


def count_at_paper_size(method: str, params: dict[str, Any] | None = None,
                        backbone: BackboneSpec | None = None, info: DataInfo | None = None) -> dict[str, int]:
    """{"trainable": ..., "frozen": ..., "buffers": ...} of ``method`` built for TAAN Table 1's shapes."""
    cls = METHODS.get(method)
    info, backbone = info or youtube8m_paper_info(), backbone or paper_backbone()
    p = cls.Params(**(params or {}))
    problems = cls.check(info, backbone, p)
    if problems:
        raise ValueError("; ".join(problems))
    with torch.no_grad():
        model = cls(info, backbone, p)
    return parameter_counts(model)


def counts_for_spec(resolved) -> list[dict[str, Any]]:
    """Parameter counts of every method of a validated spec, built for its dataset (no training, no data
    loaded beyond the task list): what `mtlbench list methods --params SPEC` prints."""
    rows = []
    for m in resolved.methods:
        with torch.no_grad():
            model = m.cls(resolved.info, resolved.spec.backbone_for(m.entry), m.params_for(resolved.spec.seeds[0]))
        rows.append({"row": m.entry.row, "method": m.entry.name, **parameter_counts(model)})
    return rows
