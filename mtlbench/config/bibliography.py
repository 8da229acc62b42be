"""The one bibliography (``bibliography.yaml`` beside this file): every paper a method or dataset of mtlbench
implements. Code names an entry by its key -- a method class says ``cite = "liu2020"`` -- so each citation is
written once; ``mtlbench list methods`` shows the short form and docs/methods.md the full entry."""
from __future__ import annotations

from functools import lru_cache
from importlib import resources

import yaml
from pydantic import BaseModel, ConfigDict, Field

from mtlbench.registry import UnknownNameError, unknown_name_message


class Reference(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    key: str
    authors: list[str] = Field(min_length=1)
    title: str
    venue: str = Field(description="where it appeared, in full")
    short_venue: str = Field(description="the venue as the short form names it: AAAI, CVPR, arXiv ...")
    year: int
    pages: str | None = None
    arxiv: str | None = None
    doi: str | None = None
    note: str | None = None

    def short(self) -> str:
        """'Liu et al., AAAI 2020', 'Feng & Chen, arXiv 2021', 'Caruana, Machine Learning 1997'."""
        surnames = [a.split()[-1] for a in self.authors]
        who = surnames[0] if len(surnames) == 1 else (
            " & ".join(surnames) if len(surnames) == 2 else f"{surnames[0]} et al.")
        return f"{who}, {self.short_venue} {self.year}"

    def full(self) -> str:
        """Authors, "Title", venue, pages. arXiv id and DOI where known -- one line of Markdown."""
        parts = [f'{", ".join(self.authors)}. "{self.title}". {self.venue}']
        if self.pages:
            parts[0] += f", pp. {self.pages}"
        if self.arxiv:
            parts.append(f"arXiv:[{self.arxiv}](https://arxiv.org/abs/{self.arxiv})")
        if self.doi:
            parts.append(f"doi:[{self.doi}](https://doi.org/{self.doi})")
        return ". ".join(parts) + "."


@lru_cache(maxsize=1)
def bibliography() -> dict[str, Reference]:
    text = resources.files("mtlbench").joinpath("config/bibliography.yaml").read_text(encoding="utf-8")
    return {key: Reference(key=key, **fields) for key, fields in yaml.safe_load(text).items()}


def reference(key: str) -> Reference:
    refs = bibliography()
    if key not in refs:
        raise UnknownNameError(unknown_name_message("bibliography key", key, list(refs)))
    return refs[key]


def cited_by(method_cls) -> Reference | None:
    """The paper a method class cites (its ``cite`` key), or None for a method that names none."""
    key = getattr(method_cls, "cite", "")
    return reference(key) if key else None
