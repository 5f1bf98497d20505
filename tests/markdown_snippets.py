"""The Python snippets of a Markdown page, so the tests can run every one (README and docs alike)."""

from __future__ import annotations

import pathlib
import re
import textwrap
from typing import List

ROOT = pathlib.Path(__file__).resolve().parents[1]

# A fence of exactly "```python": a fence with more on its line ("```python torchrun")
# is an example that needs another launcher, run by a test of its own.
SNIPPET = re.compile(r"^```python\n(.*?)^```", flags=re.DOTALL | re.MULTILINE)
# The same, indented as a block inside a list item; the closing fence is indented alike.
INDENTED_SNIPPET = re.compile(r"^( *)```python\n(.*?)^\1```", flags=re.DOTALL | re.MULTILINE)


def python_snippets(path: pathlib.Path) -> List[str]:
    """Every ```python block of `path`, in order, indented ones (in list items) dedented."""
    text = path.read_text(encoding="utf-8")
    return [textwrap.dedent(code) for _, code in INDENTED_SNIPPET.findall(text)]


def fenced(path: pathlib.Path, info: str) -> List[str]:
    """Every block of `path` fenced with the info string `info` (e.g. "python torchrun")."""
    pattern = re.compile(rf"^```{re.escape(info)}\n(.*?)^```", flags=re.DOTALL | re.MULTILINE)
    return pattern.findall(path.read_text(encoding="utf-8"))


def run_snippet(code: str, name: str) -> None:
    """Runs one snippet in a fresh namespace, named for the tracebacks."""
    exec(compile(code, name, "exec"), {"__name__": "__snippet__"})
