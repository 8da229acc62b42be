"""A small named registry (the timm / lm-eval habit): ``@METHODS.register("taan")`` on a class, look-up by
name with a "did you mean" error, and discovery of every module in a package so that adding a method or a
dataset is adding one file."""
from __future__ import annotations

import difflib
import fnmatch
import importlib
import pkgutil
import warnings
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """Raised for a name that is not registered; the message lists the closest names."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain sentence
        return str(self.args[0])


def unknown_name_message(kind: str, name: str, known) -> str:
    """"unknown metric 'map@1O'; did you mean 'map@10'? (known: ...)" -- one wording for every name look-up."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {kind} {name!r}{hint} (known: {', '.join(known)})"


class Registry(Generic[T]):
    def __init__(self, kind: str, package: str):
        self.kind = kind
        self._package = package  # modules in this package are imported on first look-up
        self._entries: dict[str, T] = {}
        self._discovered = False

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                warnings.warn(f"{self.kind} {name!r} registered twice; the later one wins", stacklevel=2)
            self._entries[name] = obj
            setattr(obj, "registry_name", name)
            return obj

        return add

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        pkg = importlib.import_module(self._package)
        for mod in pkgutil.iter_modules(pkg.__path__):
            if not mod.name.startswith("_"):
                importlib.import_module(f"{self._package}.{mod.name}")

    def get(self, name: str) -> T:
        self._discover()
        if name not in self._entries:
            raise UnknownNameError(self.unknown_message(name))
        return self._entries[name]

    def unknown_message(self, name: str) -> str:
        return unknown_name_message(self.kind, name, self.names())

    def names(self, pattern: str = "*") -> list[str]:
        self._discover()
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: str) -> bool:
        self._discover()
        return name in self._entries

    def __iter__(self) -> Iterator[tuple[str, T]]:
        self._discover()
        return iter(sorted(self._entries.items()))


METHODS: Registry = Registry("method", "mtlbench.methods")
DATASETS: Registry = Registry("dataset", "mtlbench.data")
