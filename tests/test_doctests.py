"""Every Example in the package's docstrings runs, and gives what it shows."""
import doctest
import importlib
import inspect
import pkgutil

import pytest

import fastgrok
import fastgrok.kernels

# kernels/ installs as fastgrok.kernels (an editable install maps it from the top level).
MODULES = sorted({m.name for pkg in (fastgrok, fastgrok.kernels)
                  for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")})


def test_the_public_api_has_examples():
    """The functions a researcher calls first each show how (numpydoc Examples)."""
    for obj in (fastgrok.run, fastgrok.fit, fastgrok.step, fastgrok.preset, fastgrok.Config,
                fastgrok.xor_clusters, fastgrok.linear_clusters, fastgrok.sweep, fastgrok.study):
        # cleandoc: Python 3.13 strips the indentation of docstrings itself.
        assert "\nExamples\n--------\n" in inspect.cleandoc(obj.__doc__), obj.__name__


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS,
                             verbose=False, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
