"""The documentation's claims that a test can check."""
import argparse
import os
import re

import pytest

from fastgrok.cli import build_parser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(*parts):
    with open(os.path.join(ROOT, *parts)) as fh:
        return fh.read()


def test_the_guide_names_every_command_line_option():
    guide = _read("docs", "guide.md")
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    missing = {}
    for name, cmd in sub.choices.items():
        opts = [o for a in cmd._actions if a.help != argparse.SUPPRESS for o in a.option_strings
                if o.startswith("--") and o != "--help"]
        missing[name] = [o for o in opts if not re.search(re.escape(o) + r"(?![\w-])", guide)]
    assert not any(missing.values()), f"options missing from docs/guide.md: {missing}"


def test_the_readme_is_a_front_door():
    readme = _read("README.md")
    assert len(readme.splitlines()) <= 170
    assert "arxiv.org/abs/2310.02541" in readme and "@inproceedings" in readme
    # Every local link and picture exists.
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme):
        if not target.startswith("http"):
            assert os.path.exists(os.path.join(ROOT, target)), target


@pytest.mark.parametrize("page", ["guide.md", "performance.md", "studies.md", "gpu.md",
                                  "design.md", "reproduction.md"])
def test_the_docs_links_resolve(page):
    text = _read("docs", page)
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if not target.startswith("http"):
            assert os.path.exists(os.path.join(ROOT, "docs", target)), (page, target)


@pytest.mark.slow
def test_the_readme_python_block_runs(tmp_path, monkeypatch):
    block = re.search(r"```python\n(.*?)```", _read("README.md"), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})


def _run_guide_example(heading, tmp_path, monkeypatch):
    """Run the first Python block after ``heading`` in docs/guide.md, in ``tmp_path``."""
    guide = _read("docs", "guide.md")
    section = guide[guide.index(heading):]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "guide.md", "exec"), {})


def test_the_guide_research_example_runs(tmp_path, monkeypatch, capsys):
    _run_guide_example("## fastgrok from your research code", tmp_path, monkeypatch)
    assert "train_acc_flipped" in capsys.readouterr().out


def test_the_guide_patches_example_runs(tmp_path, monkeypatch, capsys):
    _run_guide_example("## Patches: the two-layer CNN", tmp_path, monkeypatch)
    out = capsys.readouterr().out
    assert "noise_memorization" in out and "signal_learning" in out
