"""Shared pytest set-up: quiet TensorFlow, isolate global Keras state, skip TensorFlow-only tests elsewhere.

The suite runs under every Keras backend (`KERAS_BACKEND=jax python -m
pytest`); a test of a TensorFlow-only feature (SavedModel, `tf.distribute`,
XLA's conditional rewrite, graph-mode placement) carries the
`tensorflow_only` mark, or its module a `pytestmark` of it, and is skipped
under JAX and PyTorch. `tests/all_backends.py` runs the three.

The inputs and small models that several test modules build are not
fixtures: tests call them with arguments of their own, so they are plain
functions in `tests/helpers.py`.
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


def pytest_collection_modifyitems(config, items):
    if BACKEND == "tensorflow":
        return
    skip = pytest.mark.skip(reason=f"TensorFlow only (KERAS_BACKEND={BACKEND})")
    for item in items:
        if "tensorflow_only" in item.keywords:
            item.add_marker(skip)


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
