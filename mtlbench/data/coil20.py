"""COIL-20 (Nene, Nayar & Murase 1996) as one MTAL task (Feng & Chen, Tables 4-5), read from
``mtlbench prepare coil20``: 10 seeded objects of the processed 32x32 set (or the 5-object unprocessed set)."""
from __future__ import annotations

from mtlbench.registry import DATASETS
from mtlbench.store.prepared import PreparedSource


@DATASETS.register("coil20")
class Coil20(PreparedSource):
    """COIL-20 object recognition, one task over 10 seeded objects (MTAL Tables 4-5)."""

    description = "COIL-20, one 10-object task (MTAL Tables 4-5)"
    kind = "coil20"
    prepare_command = "mtlbench prepare coil20 --src ../shared/data/coil20 --out prepared/coil20"
