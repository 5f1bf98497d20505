"""The runner of the three backends' suites (`tests/all_backends.py`) and how it shares work between processes."""

from __future__ import annotations

import pytest

from tests import all_backends

# The runner and the scheduling: nothing here depends on the backend.
pytestmark = pytest.mark.one_backend


def test_workers_run_the_suite_in_groups():
    command = all_backends.pytest_command("tensorflow", ["-k", "block"], workers=2)
    assert command[-6:] == ["-n", "2", "--dist", "loadfile", "-k", "block"]


def test_no_workers_runs_one_process_and_other_backends_skip_slow_tensorflow_only_and_one_backend_tests():
    command = all_backends.pytest_command("jax", [], workers=0)
    assert "-n" not in command
    assert command[-2:] == ["-m", "not tensorflow_only and not slow and not one_backend"]


def test_negative_workers_are_refused(capsys):
    with pytest.raises(SystemExit):
        all_backends.main(["--workers", "-1"])
    assert "argument --workers: expected a non-negative int, received -1" in capsys.readouterr().err


# Under `pytest -n 2 --dist loadfile` each test file goes to one worker as a
# whole, so a module-scoped fixture (a minute-long subprocess scenario, say)
# is computed once. `--dist loadgroup` with `xdist_group` marks was the
# finer way, until pytest 9.2 stored node ids where pytest-xdist 3.8 no
# longer renames them: the marks were silently ignored and such fixtures ran
# on both workers. This runs the scheduling itself, so a runner or plugin
# release that breaks it fails here.
SUITE = {
    "test_shared.py": (
        "import os\nimport time\n\nimport pytest\n\n\n"
        '@pytest.fixture(scope="module")\ndef built():\n'
        '    with open(os.environ["SETUPS"], "a") as log:\n        log.write("built\\n")\n    return 1\n\n\n'
        '@pytest.mark.parametrize("case", range(6))\ndef test_uses_it(built, case):\n    time.sleep(0.05)\n\n\n'
        '@pytest.mark.parametrize("case", range(6))\ndef test_does_not(case):\n    time.sleep(0.05)\n'
    ),
    "test_other.py": (
        'import time\n\nimport pytest\n\n\n@pytest.mark.parametrize("case", range(8))\n'
        "def test_elsewhere(case):\n    time.sleep(0.05)\n"
    ),
}


def test_under_two_workers_a_module_fixture_is_set_up_once(tmp_path):
    import os
    import subprocess

    for name, text in SUITE.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    setups = tmp_path / "setups.txt"
    command = all_backends.pytest_command("tensorflow", ["-q", "-p", "no:cacheprovider", str(tmp_path)], workers=2)
    result = subprocess.run(
        command, cwd=tmp_path, env={**os.environ, "SETUPS": str(setups)}, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "20 passed" in result.stdout
    assert setups.read_text(encoding="utf-8").split() == ["built"]


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
