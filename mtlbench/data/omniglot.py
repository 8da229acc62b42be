"""Omniglot, one classification task per alphabet (TAAN, Liu et al. AAAI 2020, Table 3 and Figure 4), read from
``mtlbench prepare omniglot``. Per-task inputs: 1x105x105 images, ink = 1. Options: ``split: default``
(per character 14/2/4, seeded) or ``split: paper_faithful`` (p = 0.9 to train, selection on test, as the
TAAN code did; tables should footnote it)."""
from __future__ import annotations

from mtlbench.registry import DATASETS
from mtlbench.store.prepared import PreparedSource


@DATASETS.register("omniglot")
class Omniglot(PreparedSource):
    """Omniglot: 50 alphabet tasks, 1,623 characters, 105x105 images (TAAN Table 3)."""

    description = "Omniglot, 50 alphabet tasks, 105x105 images (TAAN Table 3)"
    kind = "omniglot"
    prepare_command = "mtlbench prepare omniglot --src ../shared/data/omniglot --out prepared/omniglot"
