"""The documentation site: it builds with warnings as errors, names every public API, and its snippets run."""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import re
import subprocess
import sys
from typing import List, Optional, Tuple

import pytest

import stochastic_depth_tf as sdt
from tests.markdown_snippets import ROOT, SNIPPET, python_snippets, run_snippet

DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
# docs/index.md is the README (test_home_page_follows_the_readme), whose snippets tests/test_readme.py runs.
SNIPPETS = [
    (page, index, code)
    for page in PAGES
    if page != DOCS / "index.md"
    for index, code in enumerate(python_snippets(page))
]

# The modules whose public names the API reference documents, by the name users import them under.
PUBLIC_MODULES = (
    "stochastic_depth_tf",
    "stochastic_depth_tf.layers",
    "stochastic_depth_tf.ops",
    "stochastic_depth_tf.schedules",
    "stochastic_depth_tf.callbacks",
    "stochastic_depth_tf.models",
    "stochastic_depth_tf.recipes",
    "stochastic_depth_tf.datasets",
    "stochastic_depth_tf.pruning",
    "stochastic_depth_tf.hub",
    "stochastic_depth_tf.saving",
)


def public_names(module_name: str) -> set:
    """The module's `__all__`, or else what it defines itself without a leading underscore."""
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if names is None:
        names = [
            name
            for name, value in vars(module).items()
            if not name.startswith("_")
            and not inspect.ismodule(value)
            and getattr(value, "__module__", module_name) == module_name
            and (inspect.isclass(value) or inspect.isfunction(value) or name.isupper())
        ]
    # typing's TYPE_CHECKING flag is imported, not the module's own.
    skip = {"__version__", "TYPE_CHECKING"}
    return {name for name in names if not inspect.ismodule(getattr(module, name)) and name not in skip}


def documented() -> set:
    """Every `::: dotted.name` of the API reference pages."""
    text = "\n".join(page.read_text(encoding="utf-8") for page in (DOCS / "api").glob("*.md"))
    return set(re.findall(r"^::: ([\w.]+)", text, flags=re.MULTILINE))


@pytest.mark.one_backend
def test_site_builds_with_warnings_as_errors(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"NO_MKDOCS_2_WARNING": "1", **__import__("os").environ},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "api" / "layers" / "index.html").exists()
    # No page shows a private base class ("Bases: StochasticMerge"): mkdocs.yml
    # sets show_bases off, and each class says in words what it is.
    pages = {page: page.read_text("utf-8") for page in sorted((tmp_path / "site" / "api").rglob("*.html"))}
    assert not [page for page, html in pages.items() if "Bases:" in html or "StochasticMerge" in html]


def resolve(dotted: str) -> object:
    """The object a `::: dotted.name` entry documents."""
    module_name, _, attribute = dotted.rpartition(".")
    try:  # an attribute first, as Python finds it
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError):
        return importlib.import_module(dotted)


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_name_has_a_reference_entry(module_name):
    references = {id(resolve(dotted)) for dotted in documented()}
    module = importlib.import_module(module_name)
    missing = [name for name in sorted(public_names(module_name)) if id(getattr(module, name)) not in references]
    assert not missing, f"{module_name}: no `::: ` entry in docs/api/ for {missing}"


def test_every_reference_entry_names_a_real_object():
    for dotted in documented():
        resolve(dotted)  # raises if the name is gone


def is_module_file(dotted: str) -> bool:
    """Whether `dotted` names a module of its own (`models/cifar_resnet.py`), whatever its package imports over it."""
    try:
        return importlib.util.find_spec(dotted) is not None
    except ModuleNotFoundError:  # a parent that is a module, not a package
        return False


def test_no_reference_entry_names_a_function_its_submodule_shadows():
    # griffe, which reads the entries for mkdocstrings, takes `package.name` for the submodule
    # `package/name.py` even where the package imports a function `name` over it
    # (mkdocstrings/griffe#124): `::: stochastic_depth_tf.models.cifar_resnet` renders the
    # module, not the function, and the strict build does not warn. Name the function in its module.
    shadowed = sorted(
        dotted for dotted in documented() if is_module_file(dotted) and not inspect.ismodule(resolve(dotted))
    )
    assert not shadowed, f"these entries would render a module, not the function: {shadowed}"
    assert not inspect.ismodule(resolve("stochastic_depth_tf.models.cifar_resnet"))  # the case the rule is for
    assert is_module_file("stochastic_depth_tf.models.cifar_resnet")


# Fences with more on their line than "python", each run by a test of its own: where they may be, and which.
OTHER_RUNNERS = {"python torchrun": ("docs/guides/distributed.md", "tests/test_engines.py runs it on two ranks")}
# Every fence opening, backticks or tildes, three or more, indented or not, and its info string.
FENCE = re.compile(r"^ *(?:`{3,}|~{3,})[ \t]*([^`\n]*)$", flags=re.MULTILINE)


def python_fences(text: str) -> List[str]:
    """The info strings of the fences of `text` whose language is Python (python, py, pycon, ipython, ...)."""
    infos = [info.rstrip() for info in FENCE.findall(text)]
    return [info for info in infos if info and info.split()[0].lower().lstrip("{.").startswith(("py", "ipython"))]


def fences_not_run(text: str, collected: int, where: str) -> List[str]:
    """What of the Python fences of `text` no test runs, given that the runner collected `collected` blocks.

    A block is run when it is fenced exactly ```python (and collected), or with an info string of
    OTHER_RUNNERS on its page; anything else fenced as Python (```py, ~~~python, ````python,
    "```python " with a trailing space that the runner's pattern misses) is reported.
    """
    infos = python_fences(text)
    other = [info for info in infos if info in OTHER_RUNNERS and OTHER_RUNNERS[info][0] == where]
    plain = [info for info in infos if info == "python"]
    missed = [info for info in infos if info != "python" and info not in other]
    if len(plain) != collected:  # fenced ```python but not the runner's exact form (four backticks, say)
        missed.append(f"{len(plain) - collected} python fence(s) the runner does not collect")
    return missed


def test_fences_not_run_are_found():
    text = "```py\nx = 1\n```\n  ~~~pycon\n  >>> 1\n  ~~~\n````python\ny = 2\n````\n```python\nz = 3\n```\n"
    assert python_fences(text) == ["py", "pycon", "python", "python"]
    assert fences_not_run(text, 1, "page.md") == ["py", "pycon", "1 python fence(s) the runner does not collect"]
    assert fences_not_run("```python torchrun\n```\n", 0, "docs/guides/distributed.md") == []
    assert fences_not_run("```python torchrun\n```\n", 0, "docs/guides/export.md") == ["python torchrun"]


def test_every_python_fence_of_the_pages_is_run():
    for page in PAGES + [ROOT / "README.md"]:
        where = str(page.relative_to(ROOT))
        missed = fences_not_run(page.read_text(encoding="utf-8"), len(python_snippets(page)), where)
        assert not missed, f"{where}: no test runs {missed}; fence Python examples ```python"


def test_every_python_fence_of_the_docstrings_is_run():
    for name, docstring in DOCSTRINGS:
        collected = len(SNIPPET.findall(docstring))
        missed = fences_not_run(docstring, collected, name)
        assert not missed, f"{name}'s docstring: no test runs {missed}; fence Python examples ```python"


def test_every_page_is_in_the_navigation():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for page in PAGES:
        assert str(page.relative_to(DOCS)) in nav, page


def test_readme_links_into_the_docs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for target in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / target).exists(), target
    assert len(re.findall(r"\]\(docs/", readme)) >= 5


def site_home(readme: str) -> str:
    """The README as the site's home page (docs/index.md): the same text with its links made relative to docs/.

    `](docs/page.md)` becomes `](page.md)`; a link to a file outside docs/, which the site
    does not hold (`[Changelog](CHANGELOG.md)`), becomes its text and the path in code.
    """
    text = readme.replace("](docs/", "](")
    return re.sub(r"\[([^\]]+)\]\((?!https?://|#)([^)]+)\)", outside_docs_link, text)


def outside_docs_link(match: re.Match[str]) -> str:
    text, target = match.group(1), match.group(2)
    if (DOCS / target.split("#")[0]).exists():
        return match.group(0)
    return f"{text}: `{target}`"


def test_home_page_follows_the_readme():
    # The home page is the README with its links rewritten, so the two cannot drift:
    # edit README.md, then write `site_home(README)` to docs/index.md.
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    home = (DOCS / "index.md").read_text(encoding="utf-8")
    expected = site_home(readme)
    difference = "".join(
        difflib.unified_diff(
            expected.splitlines(keepends=True), home.splitlines(keepends=True), "site_home(README.md)", "docs/index.md"
        )
    )
    assert home == expected, "docs/index.md differs from the README (links aside):\n" + difference


def test_version_is_the_package_version():
    assert sdt.__version__ in (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")


def rendered_docstrings(obj: object, name: str, seen: set) -> List[Tuple[str, str]]:
    """(name, docstring) of `obj` and of the members its API entry renders: a class's public
    methods and properties, a module's public functions and classes (those it defines)."""
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    found = [(name, inspect.getdoc(obj) or "")]
    if inspect.isclass(obj):
        members = {key: value for key, value in vars(obj).items() if not key.startswith("_") or key == "__init__"}
    elif inspect.ismodule(obj):
        keys = getattr(obj, "__all__", [key for key in vars(obj) if not key.startswith("_")])
        members = {
            key: getattr(obj, key) for key in keys if getattr(getattr(obj, key), "__module__", None) == obj.__name__
        }
    else:
        members = {}
    for key, value in members.items():
        value = value.fget if isinstance(value, property) else value
        if inspect.isfunction(value) or inspect.isclass(value):
            found += rendered_docstrings(value, f"{name}.{key}", seen)
    return found


def api_docstrings() -> List[Tuple[str, str]]:
    """(name, docstring) of everything the API pages render (each `:::` entry and its members),
    a newline added so that a fence closing the docstring ends its line."""
    seen: set = set()
    return [
        (name, docstring + "\n")
        for dotted in sorted(documented())
        for name, docstring in rendered_docstrings(resolve(dotted), dotted, seen)
    ]


DOCSTRINGS = api_docstrings()
# (name, code) of every ```python block in those docstrings.
EXAMPLES = [(name, code) for name, docstring in DOCSTRINGS for code in SNIPPET.findall(docstring)]


LIST_ITEM = re.compile(r"^(\s*)([-*+]|\d+\.)\s+\S")


def lists_without_a_blank_line(docstring: str) -> List[str]:
    """The list items of `docstring` that Markdown would run into the paragraph above them.

    Markdown starts a list only after a blank line (or another list item): an
    item right under a line of text is that line's continuation, and the
    rendered page shows "... explicit: - `mode="batch"` ... - ..." as one
    paragraph. Fenced code is left out.
    """
    found = []
    previous = ""
    in_list_indent: Optional[int] = None
    in_fence = False
    for line in docstring.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
            previous, in_list_indent = line, None
            continue
        if in_fence:
            continue
        item = LIST_ITEM.match(line)
        if not line.strip():
            in_list_indent = None
        elif item:
            if previous.strip() and in_list_indent is None:
                found.append(line.strip())
            in_list_indent = len(item.group(1))
        elif in_list_indent is not None and len(line) - len(line.lstrip()) <= in_list_indent:
            in_list_indent = None
        previous = line
    return found


def test_lists_without_a_blank_line_are_found():
    assert lists_without_a_blank_line("Made explicit:\n- one\n- two\n") == ["- one"]
    assert lists_without_a_blank_line("Made explicit:\n\n- one\n  continued\n- two\n\nText.\n") == []
    assert lists_without_a_blank_line("Text.\n1. first\n") == ["1. first"]
    assert lists_without_a_blank_line("```python\nx = 1\n- 2\n```\n") == []


def test_docstring_lists_render_as_lists():
    problems = [f"{name}: {line}" for name, docstring in DOCSTRINGS for line in lists_without_a_blank_line(docstring)]
    assert not problems, "a list item needs a blank line above it:\n" + "\n".join(problems)


def test_docstring_examples_are_collected():
    names = {name for name, _ in EXAMPLES}
    assert {"stochastic_depth_tf.StochasticDepth", "stochastic_depth_tf.saving"} <= names, names
    # The builders' entries name the functions, whose examples are collected (not their modules').
    assert {
        "stochastic_depth_tf.models.efficientnet.efficientnet",
        "stochastic_depth_tf.models.EfficientNetB7",
    } <= names


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("name, code", EXAMPLES, ids=[name for name, _ in EXAMPLES])
def test_docstring_example_runs(name, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that save files write here
    if "keras_hub" in code:
        pytest.importorskip("keras_hub")
    namespace = {"__name__": "__docstring__"}
    exec(compile(code, name, "exec"), namespace)


@pytest.mark.tensorflow_only
@pytest.mark.parametrize(
    "page, index, code", SNIPPETS, ids=[f"{page.relative_to(DOCS)}[{index}]" for page, index, _ in SNIPPETS]
)
def test_docs_snippet_runs(page, index, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # snippets that save files write here
    if "import keras_hub" in code:
        pytest.importorskip("keras_hub")
    run_snippet(code, f"{page.relative_to(ROOT)} snippet {index}")
