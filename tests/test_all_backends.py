"""The runner of the three backends' suites (`tests/all_backends.py`) and the grouping it relies on."""

from __future__ import annotations

import os
import subprocess

import keras
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


@pytest.fixture(scope="module")
def shared_value():
    return object()


@pytest.fixture(scope="module")
def built_from_shared_value(shared_value):
    return [shared_value]


@pytest.fixture(scope="module")
def other_shared_value():
    return object()


def group(request):
    return request.node.get_closest_marker("xdist_group").args


# A group is named after the first, alphabetically, of the fixtures it joins.
def test_a_module_fixture_user_is_grouped_by_its_fixture(request, shared_value):
    assert group(request) == ("tests/test_all_backends.py::built_from_shared_value",)


def test_a_fixture_built_from_another_shares_its_group(request, built_from_shared_value):
    # built_from_shared_value needs shared_value: one worker must compute both
    assert group(request) == ("tests/test_all_backends.py::built_from_shared_value",)


def test_another_module_fixture_makes_another_group(request, other_shared_value):
    assert group(request) == ("tests/test_all_backends.py::other_shared_value",)


def test_a_test_without_module_fixtures_is_not_grouped(request, tmp_path):
    # tmp_path comes from pytest's session-scoped tmp_path_factory: not a reason to group
    assert request.node.get_closest_marker("xdist_group") is None


def test_under_two_workers_a_module_fixture_is_set_up_once(tmp_path):
    # The real scheduling: `pytest -n 2 --dist loadgroup` with this suite's
    # conftest. Before the grouping hook ran ahead of pytest-xdist's, the six
    # users went to both workers and the fixture was set up on each.
    log = tmp_path / "setups.txt"
    completed = subprocess.run(
        [
            *all_backends.pytest_command("tensorflow", [], workers=2),
            "-p",
            "no:cacheprovider",
            "tests/grouping_probe.py",
        ],
        cwd=all_backends.ROOT,
        env={**os.environ, "GROUPING_PROBE_LOG": str(log), "KERAS_BACKEND": keras.backend.backend()},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout[-3000:]
    assert "18 passed" in completed.stdout
    setups = log.read_text(encoding="utf-8").split()
    assert len(setups) == 1 and setups[0].startswith("gw"), setups


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
