"""The package's import layers, checked: ``python -m mtlbench._layers`` (and tests/test_layers.py).

Each top-level part of the package (a subpackage or a module directly under ``mtlbench``) sits in one layer. A
module may import its own part and any part of a lower layer; never a part of its own layer or a higher one, and
no chain of imports may come back to where it started. Imports inside functions count: a lazy import is still a
dependency, and a circle through one is still a circle. A new top-level part must be placed here before the check
passes.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

# Top to bottom. "" is the package's own __init__ (its version); "__main__" is ``python -m mtlbench``.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__main__", "docs"),  # docs: `python -m mtlbench.docs` writes the generated parts of docs/
    ("cli",),
    ("launch",),
    ("report", "training", "prepare"),
    ("config",),
    ("methods", "data"),
    ("nn", "weighting"),  # weighting: how a step combines the task losses (TorchJD's scalarizers, aggregators)
    ("store",),
    ("taan", "metrics", "results", "plugins"),  # plugins: methods and datasets from outside the package
    ("registry", "io", "seeds", "_layers"),
    ("errors", ""),
)


def module_files(root: Path, package: str) -> dict[str, Path]:
    """{dotted module name: its file} for every module of the package at ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imported(module: str, path: Path, modules: dict[str, Path], package: str) -> set[str]:
    """The package's modules that ``module`` imports, anywhere in its file (``from pkg import submodule``
    counts as the submodule; ``from pkg.mod import name`` as pkg.mod)."""
    here = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = from_module(node, here)
            found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names)
    return {m for m in found if m in modules and m != module and in_package(m, package)}


def from_module(node: ast.ImportFrom, here: str) -> str:
    """The absolute name of the module a ``from ... import`` reads (``here``: the importing module's package)."""
    if not node.level:
        return node.module or ""
    parts = here.split(".")
    up = parts[: len(parts) - (node.level - 1)]
    return ".".join(up + ([node.module] if node.module else []))


def in_package(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def part(module: str, package: str) -> str:
    return module[len(package) + 1:].split(".")[0] if module != package else ""


def layer_of(name: str, layers=LAYERS) -> int | None:
    return next((i for i, group in enumerate(layers) if name in group), None)


def upward_problems(graph: dict[str, set[str]], package: str, layers=LAYERS) -> list[str]:
    problems = []
    for module, deps in sorted(graph.items()):
        src = part(module, package)
        if layer_of(src, layers) is None:
            problems.append(f"{module}: {package}.{src or '__init__'} is in no layer (add it to LAYERS in "
                            f"{package}/_layers.py)")
            continue
        for dep in sorted(deps):
            dst = part(dep, package)
            if dst != src and layer_of(dst, layers) is not None and layer_of(dst, layers) <= layer_of(src, layers):
                where = "the same layer as" if layer_of(dst, layers) == layer_of(src, layers) else "a higher layer than"
                problems.append(f"{module} imports {dep}: {dst} is in {where} {src}")
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a closed path) per strongly connected group of modules (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [closed_path(graph, set(g)) for g in groups]


def closed_path(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """The shortest path from the group's first module back to itself, inside the group (breadth-first)."""
    start = min(group)
    came: dict[str, str] = {start: start}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & group):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(came[path[-1]])
                    return [*reversed(path), start]
                if w not in came:
                    came[w] = v
                    nxt.append(w)
        frontier = nxt
    return sorted(group)


def check(root: Path, package: str, layers=LAYERS) -> list[str]:
    """Every problem with the imports of the package at ``root``: one line each, none when it is layered."""
    modules = module_files(root, package)
    graph = {m: imported(m, p, modules, package) for m, p in modules.items()}
    problems = upward_problems(graph, package, layers)
    problems += ["import cycle: " + " -> ".join(c) for c in cycles(graph)]
    return problems


def main() -> int:
    problems = check(Path(__file__).parent, __package__ or "mtlbench")
    for line in problems:
        print(line)
    if not problems:
        print("imports are layered: no cycle, nothing imported from a higher layer")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
