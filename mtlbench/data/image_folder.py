"""Any image set laid out as ``<root>/<task>/<class>/<image>``, read from ``mtlbench prepare image-folder``
-- how a user brings Office-Home Art (MTAL, Feng & Chen, Tables 4-5) or any other image collection."""
from __future__ import annotations

from mtlbench.registry import DATASETS
from mtlbench.store.prepared import PreparedSource


@DATASETS.register("image_folder")
class ImageFolder(PreparedSource):
    """Images from a folder per task and a sub-folder per class."""

    description = "a folder per task, a sub-folder per class (e.g. Office-Home Art)"
    kind = "image_folder"
    prepare_command = "mtlbench prepare image-folder --src DIR --out prepared/NAME"
