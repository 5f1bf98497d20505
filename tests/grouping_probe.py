"""Not collected by itself (no `test_` prefix): tests/test_all_backends.py runs it on two pytest-xdist workers.

Six tests share a module-scoped fixture, which appends this worker's name
to the file `$GROUPING_PROBE_LOG` each time it is set up; twelve others
keep the second worker busy.
"""

import os
import time

import pytest


@pytest.fixture(scope="module")
def shared_setup():
    with open(os.environ["GROUPING_PROBE_LOG"], "a", encoding="utf-8") as log:
        log.write(os.environ.get("PYTEST_XDIST_WORKER", "main") + "\n")
    time.sleep(0.2)


@pytest.mark.parametrize("index", range(6))
def test_uses_the_shared_setup(shared_setup, index):
    time.sleep(0.05)


@pytest.mark.parametrize("index", range(12))
def test_needs_no_setup(index):
    time.sleep(0.05)
