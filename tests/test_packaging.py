"""Packaging: a non-editable install must ship every subpackage and data file."""
import os
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_subpackage_is_listed_in_pyproject():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        tool = tomllib.load(fh)["tool"]["setuptools"]
    listed = set(tool["packages"])
    found = set()
    for base, name in ((os.path.join(ROOT, "fastgrok"), "fastgrok"),
                       (os.path.join(ROOT, "kernels"), "fastgrok.kernels")):
        for dirpath, _, files in os.walk(base):
            if "__init__.py" in files and "__pycache__" not in dirpath:
                rel = os.path.relpath(dirpath, base)
                found.add(name if rel == "." else name + "." + rel.replace(os.sep, "."))
    assert found <= listed, f"missing from [tool.setuptools] packages: {sorted(found - listed)}"
    assert "*.cu" in tool["package-data"]["fastgrok.kernels"]
