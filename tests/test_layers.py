"""The code reads top-down: API -> planning -> driver -> engines -> kernels, never back up.

Every import in the package, lazy ones included, is checked: against the layer of the module
that makes it; for circles (the imports between fastgrok's modules form a DAG); and for the
kernels' independence (``fastgrok.kernels`` imports nothing from the rest of fastgrok, so it is
the one module every layer may use). Shared foundations (configuration, data, sources, the
reference, utilities) may be imported from any layer but import no layer above the kernels.
"""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYERS = {"kernels": 0, "engines": 1, "driver": 2, "plan": 3, "devices": 3,
          "api": 4, "trainer": 4, "results": 4, "sweeps": 4, "studies": 4, "cli": 4, "__init__": 4}


def _modules():
    for base, pkg in ((os.path.join(ROOT, "fastgrok"), "fastgrok"),
                      (os.path.join(ROOT, "kernels"), "fastgrok.kernels")):
        for dirpath, _, files in os.walk(base):
            for f in files:
                if f.endswith(".py"):
                    rel = os.path.relpath(os.path.join(dirpath, f), base)[:-3].replace(os.sep, ".")
                    name = pkg if rel == "__init__" else f"{pkg}.{rel}"
                    if name.endswith(".__init__"):
                        name = name[: -len(".__init__")]
                    yield name, os.path.join(dirpath, f), f == "__init__.py"


def _layer(module):
    parts = module.split(".")
    if parts[:2] == ["fastgrok", "kernels"]:
        return LAYERS["kernels"]
    if parts[:2] == ["fastgrok", "engines"]:
        return LAYERS["engines"]
    if module == "fastgrok":
        return LAYERS["__init__"]
    return LAYERS.get(parts[1]) if len(parts) > 1 else None  # None: a foundation module


def _imports(module, path, is_pkg):
    pkg = module if is_pkg else module.rsplit(".", 1)[0]
    with open(path) as fh:
        tree = ast.parse(fh.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = pkg.split(".")
            base = base[: len(base) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
            if node.module is None:  # from . import x, y
                for alias in node.names:
                    yield f"{target}.{alias.name}"
            else:
                yield target
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fastgrok"):
            yield node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("fastgrok"):
                    yield alias.name


def _graph():
    """module -> the fastgrok modules it imports (a name that is not a module, as in
    ``from .engines import get_ops``, stands for its package)."""
    mods = {name: (path, is_pkg) for name, path, is_pkg in _modules()}
    graph = {}
    for name, (path, is_pkg) in mods.items():
        targets = set()
        for t in _imports(name, path, is_pkg):
            while t not in mods and "." in t:
                t = t.rsplit(".", 1)[0]
            if t != name:
                targets.add(t)
        graph[name] = targets
    return graph


def test_no_layer_imports_a_layer_above_it():
    bad = []
    for module, targets in _graph().items():
        mine = _layer(module)
        for target in targets:
            theirs = _layer(target)
            if theirs is None or theirs == 0:
                continue  # foundations and the kernels may be imported from anywhere
            if mine is None or theirs > mine:
                bad.append(f"{module} imports {target}")
    assert not bad, "imports that reach up a layer:\n" + "\n".join(sorted(set(bad)))


def test_the_kernels_import_nothing_from_the_rest_of_fastgrok():
    bad = [f"{m} imports {t}" for m, ts in _graph().items() if m.startswith("fastgrok.kernels")
           for t in ts if not t.startswith("fastgrok.kernels")]
    assert not bad, "the kernels must be a leaf:\n" + "\n".join(sorted(bad))


def test_the_imports_have_no_circle():
    """A package's __init__ imports its modules; a module importing a sibling through the
    package (``from . import x``) is that sibling, so a circle here is a real one."""
    graph = _graph()
    state, circles = {}, []

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                circles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_the_circle_check_finds_a_circle(tmp_path, monkeypatch):
    """The check above can fail: two modules that import each other are reported."""
    pkg = tmp_path / "fastgrok"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import g\n")
    (tmp_path / "kernels").mkdir()
    monkeypatch.setattr(__import__(__name__), "ROOT", str(tmp_path))
    try:
        test_the_imports_have_no_circle()
    except AssertionError as exc:
        assert "fastgrok.a -> fastgrok.b -> fastgrok.a" in str(exc)
    else:
        raise AssertionError("a circle between fastgrok.a and fastgrok.b went unnoticed")
