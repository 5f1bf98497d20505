"""Shared pytest set-up: quiet TensorFlow, isolate global Keras state, skip TensorFlow-only tests elsewhere.

The suite runs under every Keras backend (`KERAS_BACKEND=jax python -m
pytest`); a test of a TensorFlow-only feature (SavedModel, `tf.distribute`,
XLA's conditional rewrite, graph-mode placement) carries the
`tensorflow_only` mark, or its module a `pytestmark` of it, and is skipped
under JAX and PyTorch. `tests/all_backends.py` runs the three.
"""

import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Under JAX, XLA compiles the same small models test after test and worker
# after worker. JAX's persistent compilation cache (keyed by the computation,
# the JAX version and the flags, so it cannot change a result) lets the
# second compile read the first: tests/models and tests/layers under JAX on
# two workers took 252 s with a cold cache against 282 s without it.
# Set before Keras imports JAX; an environment that sets it wins.
if os.environ.get("KERAS_BACKEND") == "jax":
    os.environ.setdefault(
        "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "stochastic_depth_tf_jax_cache")
    )
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

import keras  # noqa: E402
import pytest  # noqa: E402

BACKEND = keras.backend.backend()


def pytest_report_header(config):
    return f"Keras {keras.__version__}, backend: {BACKEND}"


# Fixture scopes wider than one test: their value is computed once per
# pytest process, so under pytest-xdist its users should share a worker.
SHARED_SCOPES = ("session", "package", "module", "class")


# First, before pytest-xdist's own hook in the workers: that hook appends
# each test's `xdist_group` to its node id, which is what `--dist loadgroup`
# schedules by, so a mark added after it is ignored and the group's tests
# spread over the workers, each running the module's fixture again (seen:
# the minute-long JAX distribution scenario ran twice).
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    _group_by_shared_fixtures(items)
    if BACKEND == "tensorflow":
        return
    skip = pytest.mark.skip(reason=f"TensorFlow only (KERAS_BACKEND={BACKEND})")
    for item in items:
        if "tensorflow_only" in item.keywords:
            item.add_marker(skip)


def _shared_fixtures(item):
    """`(module file, name)` of the module's own shared-scope fixtures that `item` uses, directly or not."""
    module_file = item.nodeid.split("::")[0]
    fixture_definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    # Only the module's own fixtures: pytest's (tmp_path_factory) and the
    # plugins' session fixtures are cheap and shared by nearly every test.
    return sorted(
        (module_file, name)
        for name, definitions in fixture_definitions.items()
        if definitions and definitions[-1].scope in SHARED_SCOPES and definitions[-1].baseid == module_file
    )


def _group_by_shared_fixtures(items):
    """Under `pytest -n N --dist loadgroup` (tests/all_backends.py), tests run one by one on any worker,
    except that the users of a module's shared fixture (a subprocess scenario of a minute, say) go to
    one worker together, so that it runs once, not once per worker. One group per fixture, not per
    module, so that a module's scenarios spread over the workers; fixtures that one test uses together
    (one built from the other, say) share a group.
    """
    parent = {}

    def root(key):
        while parent.setdefault(key, key) != key:
            key = parent[key]
        return key

    first_fixture = {}
    for item in items:
        keys = _shared_fixtures(item)
        if not keys:
            continue
        first_fixture[item] = keys[0]
        for key in keys[1:]:
            low, high = sorted((root(keys[0]), root(key)))
            parent[high] = low
    for item, key in first_fixture.items():
        module_file, name = root(key)
        item.add_marker(pytest.mark.xdist_group(f"{module_file}::{name}"))


@pytest.fixture(autouse=True)
def _restore_keras_globals():
    """Every test starts and ends with the float32 policy and a fresh session.

    Without Keras' full garbage collection at every test: it took a third
    of a run's time (JAX: 46 of 124 s over tests/test_surgery.py and
    tests/test_safe_mode.py), and Python's own collections free the memory.
    """
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")
    keras.utils.clear_session(free_memory=False)
