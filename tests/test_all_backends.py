"""The runner of the three backends' suites (`tests/all_backends.py`) and the worker groups it relies on."""

from __future__ import annotations

import ast
import pathlib
from typing import List, Set

import pytest

from tests import all_backends

# The runner and the scheduling: nothing here depends on the backend.
pytestmark = pytest.mark.one_backend


def test_workers_run_the_suite_in_groups():
    command = all_backends.pytest_command("tensorflow", ["-k", "block"], workers=2)
    assert command[-6:] == ["-n", "2", "--dist", "loadgroup", "-k", "block"]


def test_no_workers_runs_one_process_and_other_backends_skip_slow_tensorflow_only_and_one_backend_tests():
    command = all_backends.pytest_command("jax", [], workers=0)
    assert "-n" not in command
    assert command[-2:] == ["-m", "not tensorflow_only and not slow and not one_backend"]


def test_negative_workers_are_refused(capsys):
    with pytest.raises(SystemExit):
        all_backends.main(["--workers", "-1"])
    assert "argument --workers: expected a non-negative int, received -1" in capsys.readouterr().err


# Under `pytest -n 2 --dist loadgroup` tests go one by one to any free
# worker, except those with the same `xdist_group` mark, which go to one
# worker together. A module- or session-scoped fixture (a minute-long
# subprocess scenario, say) is computed once per worker that needs it, so
# every test using one carries the mark naming it: pytest-xdist reads the
# mark itself, with no hook of ours to order against its own.
SHARED_SCOPES = ("session", "package", "module", "class")


def shared_fixtures(tree: ast.Module) -> Set[str]:
    """The names of a test module's fixtures whose scope is wider than one test."""
    names = set()
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            if isinstance(decorator, ast.Call) and any(
                keyword.arg == "scope" and getattr(keyword.value, "value", None) in SHARED_SCOPES
                for keyword in decorator.keywords
            ):
                names.add(node.name)
    return names


def xdist_groups(function: ast.FunctionDef) -> List[str]:
    """The names in `@pytest.mark.xdist_group(...)` marks on `function`."""
    return [
        decorator.args[0].value
        for decorator in function.decorator_list
        if isinstance(decorator, ast.Call)
        and ast.unparse(decorator.func) == "pytest.mark.xdist_group"
        and decorator.args
        and isinstance(decorator.args[0], ast.Constant)
    ]


def ungrouped_users(path: pathlib.Path, root: pathlib.Path) -> List[str]:
    """One line for each function in `path` that takes a shared fixture of its module and lacks that fixture's group mark."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    shared = shared_fixtures(tree)
    relative = path.relative_to(root).as_posix()
    problems = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef):
            continue
        used = sorted(argument.arg for argument in node.args.args if argument.arg in shared)
        if not used:
            continue
        expected = [f"{relative}::{name}" for name in used]
        if not set(xdist_groups(node)) & set(expected):
            problems.append(f"{relative}::{node.name} uses {', '.join(used)} without xdist_group({expected[0]!r})")
    return problems


def test_every_user_of_a_shared_fixture_is_grouped_with_it():
    root = pathlib.Path(all_backends.ROOT)
    problems = [problem for path in sorted((root / "tests").rglob("*.py")) for problem in ungrouped_users(path, root)]
    assert not problems, "\n".join(problems)


def test_the_group_check_names_an_ungrouped_user_and_accepts_a_grouped_one(tmp_path):
    module = tmp_path / "tests" / "test_example.py"
    module.parent.mkdir()
    module.write_text(
        "import pytest\n\n\n"
        '@pytest.fixture(scope="module")\ndef built():\n    return 1\n\n\n'
        "def test_uses_it(built):\n    pass\n\n\n"
        '@pytest.mark.xdist_group("tests/test_example.py::built")\n'
        "def test_grouped(built):\n    pass\n\n\n"
        '@pytest.mark.xdist_group("tests/test_example.py::other")\n'
        "def test_grouped_elsewhere(built):\n    pass\n",
        encoding="utf-8",
    )
    assert ungrouped_users(module, tmp_path) == [
        "tests/test_example.py::test_uses_it uses built without xdist_group('tests/test_example.py::built')",
        "tests/test_example.py::test_grouped_elsewhere uses built without xdist_group('tests/test_example.py::built')",
    ]


def test_processes_past_the_limit_are_stopped_with_their_stacks_in_the_error(tmp_path):
    from tests import scenario_runner

    script = tmp_path / "waits.py"
    script.write_text("import time\n\n\ndef wait_for_a_peer():\n    time.sleep(600)\n\n\nwait_for_a_peer()\n")
    with pytest.raises(AssertionError) as error:
        scenario_runner.run_processes(str(script), count=2, timeout=2, environment=lambda index, ports: {})
    message = str(error.value)
    assert "passed the 2 s limit" in message
    # faulthandler's dump, written when the runner stopped it: where it waited
    assert "most recent call first" in message and "in wait_for_a_peer" in message
