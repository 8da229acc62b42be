"""Chars74K English (de Campos et al., VISAPP 2009) as MTAL's character tasks (Feng & Chen, Tables 2-3),
read from ``mtlbench prepare chars74k``: HD (handwritten digits), A and a (10 seeded upper / lower-case
letters, handwritten) and Typographic* (computer-font digits, the stand-in for MTAL's typographic set)."""
from __future__ import annotations

from mtlbench.registry import DATASETS
from mtlbench.store.prepared import PreparedSource


@DATASETS.register("chars74k")
class Chars74K(PreparedSource):
    """Chars74K tasks HD, A, a (64x64 handwritten) and Typographic* (28x28 font digits)."""

    description = "Chars74K: HD, A, a (handwritten 64x64) and Typographic* (font digits 28x28), MTAL"
    kind = "chars74k"
    prepare_command = "mtlbench prepare chars74k --src ../shared/data/chars74k --out prepared/chars74k"
