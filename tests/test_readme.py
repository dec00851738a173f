"""The README's claims that a test can check."""
import os
import re

from fastgrok.cli import build_parser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_readme_lists_every_command_line_option():
    with open(os.path.join(ROOT, "README.md")) as fh:
        readme = fh.read()
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    missing = {}
    for name, cmd in sub.choices.items():
        opts = [o for a in cmd._actions for o in a.option_strings
                if o.startswith("--") and o != "--help"]
        missing[name] = [o for o in opts if not re.search(re.escape(o) + r"(?![\w-])", readme)]
    assert not any(missing.values()), f"options missing from the README: {missing}"
