"""Runs every Python snippet of the README, so the front page cannot rot."""

import pytest

from tests.markdown_snippets import ROOT, python_snippets, run_snippet

# TensorFlow only: the README's quick start saves a .keras file the way the docs show under TensorFlow.
pytestmark = pytest.mark.tensorflow_only

README = ROOT / "README.md"
SNIPPETS = python_snippets(README)


def test_readme_has_the_quick_start():
    assert SNIPPETS and "StochasticDepth" in SNIPPETS[0]


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_readme_snippet_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # snippets that save files write here
    run_snippet(SNIPPETS[index], f"README.md snippet {index}")
