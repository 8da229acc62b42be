"""A small named registry (the timm / lm-eval habit): ``@METHODS.register("taan")`` on a class, look-up by
name with a "did you mean" error, and discovery of every module in a package so that adding a method or a
dataset is adding one file.

Entries may also come from outside the package (mtlbench/plugins.py loads ``--plugin FILE.py``): each entry
remembers its ``Origin``; the registry's entry-point group (``mtlbench.methods``, ``mtlbench.datasets``, ...) is
loaded with the built-ins; a ``package.module:Class`` name is imported on first look-up. A name registered twice
by two different objects is refused (exit 2, both origins named): never "the later one wins"."""
from __future__ import annotations

import contextlib
import difflib
import fnmatch
import importlib
import pkgutil
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from mtlbench.errors import UsageError

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


class PluginError(UsageError):
    """A plugin that cannot be used (does not import, registers nothing, clashes): one line, exit 2."""


@dataclass(frozen=True)
class Origin:
    """Where a registered entry comes from. ``kind``: built-in | file (--plugin) | module (a ``module:Class``
    name, or a module outside the package) | entry point; ``where``: the module, the file's path, or the entry
    point and its distribution."""

    kind: str
    where: str

    def __str__(self) -> str:
        return self.where if self.kind in ("built-in", "file") else f"{self.kind} {self.where}"

    @property
    def label(self) -> str:
        """What `mtlbench list` shows: built-in, the plugin file, the module or the entry point."""
        return "built-in" if self.builtin else str(self)

    @property
    def builtin(self) -> bool:
        return self.kind == "built-in"


_loading: list[Origin] = []  # the origin of what is being imported now (innermost last)


@contextlib.contextmanager
def loading_from(origin: Origin):
    """Registrations made inside this block come from ``origin`` (a plugin file, an entry point)."""
    _loading.append(origin)
    try:
        yield
    finally:
        _loading.pop()


def origin_of(obj) -> Origin:
    """The origin of an object registered outside any plugin load: a module of the package is built-in."""
    module = getattr(obj, "__module__", "") or ""
    kind = "built-in" if module == "mtlbench" or module.startswith("mtlbench.") else "module"
    return Origin(kind, module)


class Registry(Generic[T]):
    all: list[Registry] = []  # every registry, so plugins can be loaded for (and counted in) all of them

    def __init__(self, kind: str, package: str, base: str | None = None, group: str | None = None):
        self.kind = kind
        self._package = package  # modules in this package are imported on first look-up
        self.base = base  # "module:Class" every entry from outside the package must subclass
        self.group = group or f"mtlbench.{kind}s"  # the entry-point group
        self._entries: dict[str, T] = {}
        self._origins: dict[str, Origin] = {}
        self._failed: dict[str, str] = {}  # "module:Class" names that did not resolve -> why
        self._discovered = False
        Registry.all.append(self)

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            self.add(name, obj, _loading[-1] if _loading else None)
            return obj

        return add

    def add(self, name: str, obj: T, origin: Origin | None = None) -> None:
        origin = origin or origin_of(obj)
        if name in self._entries and self._entries[name] is not obj:
            raise PluginError(f"{self.kind} {name!r} is registered twice: {self.origin(name)} and {origin}")
        if not origin.builtin:
            self.check_base(obj, f"{origin}: {self.kind} {name!r}")
        self._entries[name], self._origins[name] = obj, origin
        if "registry_name" not in getattr(obj, "__dict__", {}):  # a module:Class alias keeps the class's name
            obj.registry_name = name

    def check_base(self, obj, what: str) -> None:
        if self.base is None:
            return
        module, attr = self.base.split(":")
        base = getattr(importlib.import_module(module), attr)
        if not (isinstance(obj, type) and issubclass(obj, base)):
            raise PluginError(f"{what} is {describe(obj)}; expected a {self.kind} (a subclass of {module}.{attr})")

    def origin(self, name: str) -> Origin:
        self._discover()
        return self._origins.get(name) or origin_of(self._entries[name])

    def drop_origin(self, origin: Origin) -> None:
        """Forget what ``origin`` registered (a plugin file loaded again after an edit replaces its entries)."""
        for name in [n for n, o in self._origins.items() if o == origin]:
            del self._entries[name], self._origins[name]

    def from_origin(self, origin: Origin) -> list[str]:
        return sorted(n for n, o in self._origins.items() if o == origin)

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        pkg = importlib.import_module(self._package)
        for mod in pkgutil.iter_modules(pkg.__path__):
            if not mod.name.startswith("_"):
                importlib.import_module(f"{self._package}.{mod.name}")
        for ep in entry_points(self.group):
            self._load_entry_point(ep)

    def _load_entry_point(self, ep) -> None:
        """An entry point names a class (registered under the entry point's name) or a module whose import
        registers entries itself (pytest's habit)."""
        dist = getattr(ep, "dist", None)
        where = f"{ep.name} = {ep.value} ({self.group}" + (f", {dist.name} {dist.version})" if dist else ")")
        origin = Origin("entry point", where)
        try:
            with loading_from(origin):
                obj = ep.load()
        except PluginError:
            raise
        except Exception as e:
            raise PluginError(f"entry point {where}: fails to load: {one_line(e)}") from None
        if not isinstance(obj, types.ModuleType):
            if self._entries.get(ep.name) is not obj:
                self.add(ep.name, obj, origin)
            self._origins[ep.name] = origin
        elif not any(getattr(o, "__module__", None) == obj.__name__ for r in Registry.all
                     for o in r._entries.values()):  # (imported already by another registry's entry point)
            raise PluginError(f"entry point {where}: module {obj.__name__} registers no {self.kind}; expected "
                              f"a class, or a module whose import registers one")

    def _resolve(self, name: str) -> bool:
        """Import a ``package.module:Class`` name and register the class under it; False (and why, in
        ``_failed``) when it does not import or is not a {kind}."""
        module_name, _, attr = name.partition(":")
        if not module_name or not attr:
            return False
        try:
            module = importlib.import_module(module_name)
        except PluginError:
            raise
        except Exception as e:
            self._failed[name] = f"{name!r}: module {module_name!r} does not import ({one_line(e)})"
            return False
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part, None)
        if obj is None:
            self._failed[name] = f"{name!r}: module {module_name!r} ({module.__file__}) has no attribute {attr!r}"
            return False
        try:
            self.check_base(obj, f"{name!r} ({module.__file__})")
        except PluginError as e:
            self._failed[name] = str(e)
            return False
        self.add(name, obj, Origin("module", name))
        return True

    def get(self, name: str) -> T:
        if name not in self:
            raise UnknownNameError(self.unknown_message(name))
        return self._entries[name]

    def unknown_message(self, name: str) -> str:
        if name in self._failed:
            return self._failed[name]
        return unknown_name_message(self.kind, name, self.names())

    def names(self, pattern: str = "*") -> list[str]:
        self._discover()
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: str) -> bool:
        self._discover()
        return name in self._entries or (":" in name and name not in self._failed and self._resolve(name))

    def __iter__(self) -> Iterator[tuple[str, T]]:
        self._discover()
        return iter(sorted(self._entries.items()))


def entry_points(group: str) -> list:
    from importlib.metadata import entry_points as installed
    return sorted(installed(group=group), key=lambda ep: ep.name)


def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def describe(obj) -> str:
    return f"the {type(obj).__name__} {getattr(obj, '__qualname__', obj)!r}" if not isinstance(obj, type) \
        else f"the class {obj.__qualname__!r}"


METHODS: Registry = Registry("method", "mtlbench.methods", base="mtlbench.nn.method:MTLMethod")
DATASETS: Registry = Registry("dataset", "mtlbench.data", base="mtlbench.store.dataset:DatasetSource")
WEIGHTINGS: Registry = Registry("weighting", "mtlbench.weighting", base="mtlbench.weighting.base:Weighting")
