"""The package's shape: no import circle among mxgen's modules, counting
imports inside functions too (a lazy import only hides a circle)."""
import ast
import os

import mxgen

PACKAGE = os.path.dirname(os.path.abspath(mxgen.__file__))


def _modules():
    """``{module name: source path}`` of every module under mxgen/."""
    found = {}
    for dirpath, dirs, files in os.walk(PACKAGE):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__")))
        for name in files:
            if name.endswith(".py"):
                rel = os.path.relpath(os.path.join(dirpath, name), os.path.dirname(PACKAGE))
                module = rel[:-3].replace(os.sep, ".")
                found[module[:-len(".__init__")] if module.endswith(".__init__")
                      else module] = os.path.join(dirpath, name)
    return found


def import_graph():
    """``{module: {mxgen modules it imports anywhere in its source}}``."""
    modules = _modules()
    graph = {}
    for module, path in modules.items():
        package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    parent = ".".join(parts[:len(parts) - node.level + 1])
                    base = parent + ("." + base if base else "")
                for alias in node.names:       # `from pkg import submodule` names a module
                    sub = base + "." + alias.name
                    targets.add(sub if sub in modules else base)
        graph[module] = {t for t in targets if t in modules and t != module}
    return graph


def _cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_is_read_from_every_module():
    graph = import_graph()
    assert len(graph) > 40 and "mxgen.train.common" in graph
    assert "mxgen.utils.checkpoint" in graph["mxgen.train.common"]


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle_among_mxgen_modules():
    cycles = _cycles(import_graph())
    assert not cycles, "import circles (lazy imports included): %s" % "; ".join(
        " <-> ".join(c) for c in cycles)
