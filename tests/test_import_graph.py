"""The package's import graph has no cycles (layering: conventions < data/models < train, eval < commands/cli).

Every module of ``sim2real`` is parsed (not imported) with ``ast``; every ``import sim2real...`` and
``from sim2real... import ...`` counts, at module level and inside functions alike (a lazy import is still a
dependency: the circles this test was written against were lazy ones), relative imports resolved.
``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``; the parent packages an
import runs first are not edges of the importer. Imports by string (``importlib.import_module``, the CLI's
command table) are not seen.
"""

from __future__ import annotations

import ast
import pkgutil
from pathlib import Path

import sim2real

PACKAGE = "sim2real"


def _modules() -> dict[str, Path]:
    """Module name -> source file, for the package and everything under it."""
    root = Path(sim2real.__file__).parent
    out = {PACKAGE: root / "__init__.py"}
    for info in pkgutil.walk_packages([str(root)], prefix=f"{PACKAGE}."):
        rel = Path(*info.name.split(".")[1:])
        out[info.name] = root / rel / "__init__.py" if info.ispkg else (root / rel).with_suffix(".py")
    return out


def import_graph(modules: dict[str, Path]) -> dict[str, dict[str, int]]:
    """``{module: {imported sim2real module: line of its first import}}``."""

    def owner(name: str) -> str | None:  # the longest prefix of a dotted name that is one of our modules
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, dict[str, int]] = {}
    for mod, path in modules.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: one level is the current package, each further one its parent
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - node.level + 1])
                    src = f"{base}.{node.module}" if node.module else base
                else:
                    src = node.module or ""
                targets = [f"{src}.{a.name}" if f"{src}.{a.name}" in modules else src for a in node.names]
            else:
                continue
            for t in targets:
                o = owner(t) if t == PACKAGE or t.startswith(f"{PACKAGE}.") else None
                if o is not None and o != mod:
                    edges.setdefault(o, node.lineno)
        graph[mod] = edges
    return graph


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle ``[a, b, ..., a]`` per strongly connected component with more than one module (or a self-loop)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def strongconnect(v: str) -> None:  # Tarjan; graphs here are ~100 nodes, recursion depth is no concern
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, {}):
                components.append(comp)

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    cycles = []
    for comp in components:  # a shortest cycle through the component's first module (breadth-first)
        start = min(comp)
        prev: dict[str, str] = {}
        frontier = [start]
        found = None
        while frontier and found is None:
            nxt = []
            for v in frontier:
                for w in sorted(graph[v]):
                    if w == start:
                        found = v
                        break
                    if w in comp and w not in prev:
                        prev[w] = v
                        nxt.append(w)
                if found is not None:
                    break
            frontier = nxt
        path = [start]
        v = found
        while v != start:
            path.append(v)
            v = prev[v]
        path.append(start)
        cycles.append([start] + path[1:-1][::-1] + [start])
    return cycles


def _describe(cycle: list[str], graph: dict[str, dict[str, int]], modules: dict[str, Path]) -> str:
    root = Path(sim2real.__file__).parent.parent
    steps = [f"    {modules[a].relative_to(root)}:{graph[a][b]} imports {b}" for a, b in zip(cycle, cycle[1:])]
    return " -> ".join(cycle) + "\n" + "\n".join(steps)


def test_the_package_has_no_import_cycles():
    modules = _modules()
    graph = import_graph(modules)
    cycles = find_cycles(graph)
    assert not cycles, "import cycles in sim2real:\n" + "\n".join(_describe(c, graph, modules) for c in cycles)


def test_training_and_evaluation_meet_only_in_low_level_modules():
    """Evaluation never imports a training loop; training uses evaluation's pure metrics only; model loading
    (:mod:`sim2real.models.loading`) imports neither a loop nor evaluation."""
    graph = import_graph(_modules())
    loops = {"sim2real.train.pose", "sim2real.adapt.pixelda.train", "sim2real.adapt.feature.train", "sim2real.engine.loop",
             "sim2real.adapt.dtn.train"}
    for mod, deps in graph.items():
        if mod.startswith("sim2real.eval") or mod == "sim2real.models.loading":
            assert not loops & set(deps), f"{mod} imports a training loop: {sorted(loops & set(deps))}"
        if mod.startswith("sim2real.train") or mod == "sim2real.models.loading":
            evals = {d for d in deps if d.startswith("sim2real.eval")} - {"sim2real.eval.metrics"}
            assert not evals, f"{mod} imports evaluation: {sorted(evals)}"


def test_the_graph_sees_lazy_relative_and_from_imports():
    """The walk is not vacuous: known edges of each import form are found."""
    modules = _modules()
    assert {"sim2real.conventions", "sim2real.models.loading", "sim2real.eval.metrics", "sim2real.train.pose"} <= set(modules)
    graph = import_graph(modules)
    assert "sim2real.models.loading" in graph["sim2real.eval.predictor"]  # module-level from-import
    assert "sim2real.losses" in graph["sim2real.train.pose"]  # function-level (lazy) import in task_loss
    assert "sim2real.models.task" in graph["sim2real.models"]  # from sim2real.models.task import ... in __init__
    assert "sim2real.data.h5" in graph["sim2real.adapt.data"]  # from sim2real.data import h5 -> the submodule


def test_the_import_parser_and_cycle_finder_on_a_toy_package(tmp_path):
    """Relative imports, lazy imports and ``from pkg import submodule`` resolve; a circle is reported, a chain is not."""
    pkg = tmp_path / "sim2real"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "a.py": "from . import b\n",
        "b.py": "def f():\n    from sim2real.sub import c\n",
        "sub/__init__.py": "",
        "sub/c.py": "from ..a import x\nimport numpy\n",
        "d.py": "import sim2real.a\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    modules = {("sim2real." + name[:-3].replace("/", ".")).removesuffix(".__init__"): pkg / name for name in files}
    graph = import_graph(modules)
    assert graph["sim2real.a"] == {"sim2real.b": 1}
    assert graph["sim2real.b"] == {"sim2real.sub.c": 2}
    assert graph["sim2real.sub.c"] == {"sim2real.a": 1}
    assert graph["sim2real.d"] == {"sim2real.a": 1}
    assert find_cycles(graph) == [["sim2real.a", "sim2real.b", "sim2real.sub.c", "sim2real.a"]]
    del graph["sim2real.sub.c"]["sim2real.a"]
    assert find_cycles(graph) == []
