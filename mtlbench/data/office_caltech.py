"""Office-Caltech10 SURF features (Gong et al., CVPR 2012), one task per domain, read from
``mtlbench prepare office-caltech``. Inputs are 800-bin SURF histograms (vectors, not images): each row is
divided by its sum and each feature standardised with the training rows' statistics at load time.
MTAL (Feng & Chen, Tables 4-5) uses the Amazon domain."""
from __future__ import annotations

from mtlbench.registry import DATASETS
from mtlbench.store.prepared import PreparedSource


@DATASETS.register("office_caltech")
class OfficeCaltech(PreparedSource):
    """Office-Caltech10 SURF vectors: Amazon, Caltech, DSLR, Webcam tasks of 10 classes."""

    description = "Office-Caltech10 SURF 800-d vectors, one task per domain (MTAL: Amazon)"
    kind = "office_caltech"
    prepare_command = ("mtlbench prepare office-caltech --src ../shared/data/office_caltech10 "
                       "--out prepared/office_caltech")
