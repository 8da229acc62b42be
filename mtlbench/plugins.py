"""Methods, datasets and weightings from outside the package: ``--plugin FILE.py`` files, and what a plugin
adds to a run's identity.

The two other ways in live in the registry itself (mtlbench/registry.py): entry points (groups
``mtlbench.methods``, ``mtlbench.datasets``, ``mtlbench.weightings``) load with the built-ins, and a
``package.module:Class`` name in a spec is imported on first look-up.

A plugin file is imported as a module of its own (named after its path, so that a worker process that loads the
same file gets the same module and can unpickle its classes); what it registers remembers the file as its origin.
Loading a file again after an edit replaces what it registered; the same name from two places is refused.

A row whose method, dataset or weighting comes from outside the package stores the hash of that code's file in
its record and run key (``plugins``): an edited plugin is a new run, never a skipped one. A row of built-ins
only has no ``plugins`` key at all, so its identity is what it always was.
"""
from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path

from mtlbench.registry import Origin, PluginError, Registry, loading_from, one_line

_files: dict[str, tuple[str, Origin]] = {}  # resolved path -> (sha256 of its bytes, its origin), this process


def load_plugin_files(paths: Iterable[str | Path]) -> list[Origin]:
    return [load_plugin_file(p) for p in paths]


def loaded_files() -> dict[str, str]:
    """Every plugin file loaded in this process -> the sha256 of what was loaded (what a job must load, unchanged,
    before it unpickles its spec)."""
    return {path: digest for path, (digest, _) in _files.items()}


def load_as_submitted(files: dict[str, str]) -> None:
    """A job's plugin files, each as it was when the job was submitted: one edited while the job waited in a
    queue would train other code than was planned (and under another run identity), so it is refused."""
    for path, digest in files.items():
        now = hashlib.sha256(read_source(Path(path))).hexdigest()
        if now != digest:
            raise PluginError(f"{path}: changed since this job was submitted (sha256 {digest[:16]} -> {now[:16]}); "
                              "run the same `mtlbench train` command again to resubmit it")
        load_plugin_file(path)


def load_plugin_file(path: str | Path) -> Origin:
    """Import ``path`` as a plugin; PluginError (one line, exit 2) when it is no Python file, does not compile,
    fails at import, registers nothing or clashes with another registration."""
    path = Path(path)
    resolved = path.resolve()
    source = read_source(path)
    digest = hashlib.sha256(source).hexdigest()
    known = _files.get(str(resolved))
    if known and known[0] == digest:
        return known[1]
    try:
        code = compile(source, str(resolved), "exec")
    except SyntaxError as e:
        raise PluginError(f"{path}:{e.lineno}: not valid Python ({e.msg}); expected a plugin file that "
                          f"registers methods, datasets or weightings") from None
    except ValueError as e:  # NUL bytes
        raise PluginError(f"{path}: not a Python source file ({e})") from None
    for registry in Registry.all:  # the built-ins first, so that a clash names the plugin as the second
        registry.names()
    origin = Origin("file", str(resolved))
    for registry in Registry.all:
        registry.drop_origin(origin)
    run_module(path, resolved, code, origin)
    if not any(r.from_origin(origin) for r in Registry.all):
        raise PluginError(f"{path}: registers nothing; expected a class decorated with a registry's register, "
                          f"e.g. @METHODS.register(\"my_method\") (from mtlbench.registry import METHODS)")
    _files[str(resolved)] = (digest, origin)
    return origin


def read_source(path: Path) -> bytes:
    if not path.is_file():
        raise PluginError(f"--plugin {path}: no such file" if not path.exists()
                          else f"--plugin {path}: a directory; expected a Python file (.py)")
    if path.suffix != ".py":
        raise PluginError(f"--plugin {path}: expected a Python file ending in .py")
    return path.read_bytes()


def module_name(resolved: Path) -> str:
    stem = "".join(c if c.isalnum() else "_" for c in resolved.stem)
    return f"mtlbench_plugin_{hashlib.sha256(str(resolved).encode()).hexdigest()[:10]}_{stem}"


def run_module(path: Path, resolved: Path, code, origin: Origin) -> None:
    name = module_name(resolved)
    spec = importlib.util.spec_from_file_location(name, resolved)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before running it: dataclasses and pickling look their module up by name
    try:
        with loading_from(origin):
            exec(code, module.__dict__)
    except (Exception, SystemExit) as e:  # nothing of a plugin that failed stays registered
        del sys.modules[name]
        for registry in Registry.all:
            registry.drop_origin(origin)
        if isinstance(e, PluginError):
            raise
        raise PluginError(f"{path}:{failing_line(e, resolved)}: fails at import: {one_line(e)}") from None


def failing_line(e: BaseException, resolved: Path) -> int | str:
    """The line of the plugin file the exception came through last (deepest frame in that file)."""
    lines = [f.lineno for f in traceback.extract_tb(e.__traceback__) if f.filename == str(resolved)]
    return lines[-1] if lines else "?"


# -- what a plugin adds to a run's identity ---------------------------------------------------------------------
def names_used(spec: dict, row: str) -> dict[str, str]:
    """{registry kind: the name this row of the spec uses}: its method, the dataset, its weighting (if any)."""
    entry = next((m for m in spec.get("methods") or [] if (m.get("label") or m["name"]) == row), {})
    used = {"method": entry.get("name"), "dataset": (spec.get("data") or {}).get("dataset")}
    weighting = entry.get("weighting")
    used["weighting"] = weighting.get("name") if isinstance(weighting, dict) else weighting
    return {k: v for k, v in used.items() if isinstance(v, str)}


def row_plugins(spec: dict, row: str, objects: dict[str, object] | None = None) -> dict[str, str]:
    """{kind: hash of the code's file} for each entry of this row that is not built in; {} for built-ins only.
    ``objects``: the row's resolved classes by kind (a job's worker has them unpickled, whatever its registry
    holds); the other kinds are looked up by name."""
    used, out = names_used(spec, row), {}
    for registry in Registry.all:
        obj, name = (objects or {}).get(registry.kind), used.get(registry.kind)
        if obj is None and name is not None and name in registry:
            obj = registry.get(name)
        if obj is not None and not builtin(obj):
            out[registry.kind] = code_digest(obj)
    return out


def builtin(obj) -> bool:
    module = getattr(obj, "__module__", "") or ""
    return module == "mtlbench" or module.startswith("mtlbench.")


def code_digest(obj) -> str:
    """The sha256 (16 hex digits) of the file of the module that defines ``obj`` (a plugin file is its own
    module); of the module's name when it has no file."""
    module = getattr(obj, "__module__", "") or ""
    file = getattr(sys.modules.get(module), "__file__", None)
    data = Path(file).read_bytes() if file and Path(file).is_file() else module.encode()
    return hashlib.sha256(data).hexdigest()[:16]


def with_plugins(key: dict, plugins: dict | None) -> dict:
    """A run key with the row's plugin hashes -- only when it uses a plugin, so built-in rows keep their key."""
    return {**key, "plugins": plugins} if plugins else key
