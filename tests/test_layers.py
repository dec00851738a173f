"""The code reads top-down: API -> planning -> driver -> engines -> kernels, never back up.

Every import in the package, lazy ones included, is checked against the layer of the module
that makes it. Shared foundations (configuration, data, sources, the reference, utilities) may
be imported from anywhere but import no layer themselves.
"""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYERS = {"kernels": 0, "engines": 1, "driver": 2, "plan": 3, "devices": 3,
          "api": 4, "results": 4, "sweeps": 4, "studies": 4, "cli": 4, "__init__": 4}


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


def test_no_layer_imports_a_layer_above_it():
    bad = []
    for module, path, is_pkg in _modules():
        mine = _layer(module)
        for target in _imports(module, path, is_pkg):
            theirs = _layer(target)
            if theirs is None:
                continue  # foundations may be imported from anywhere
            if mine is None or theirs > mine:
                bad.append(f"{module} imports {target}")
    assert not bad, "imports that reach up a layer:\n" + "\n".join(sorted(set(bad)))
