"""Across Keras backends: `.keras` files move between TensorFlow, JAX and PyTorch; no TensorFlow needed elsewhere.

Keras fixes its backend at import, so every scenario runs in a fresh
interpreter (`tests/backend_scenarios.py`) with `KERAS_BACKEND` set. These
tests start all three backends themselves, so they run once, in the
TensorFlow pass of `tests/all_backends.py`, not again in the JAX and
PyTorch passes.
"""

import os
import subprocess
import sys
import sysconfig

import keras
import pytest

from tests import scenario_runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCENARIOS = os.path.join(ROOT, "tests", "backend_scenarios.py")
BACKENDS = ("tensorflow", "jax", "torch")
TIMEOUT = 300  # seconds per scenario; each takes 10 to 30 s on 2 cores

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="starts every backend in subprocesses itself: run once, in the TensorFlow pass",
)


def run_scenario(backend, name, *args, python_flags=(), pythonpath=None):
    environment = {"KERAS_BACKEND": backend}
    if pythonpath is not None:
        environment["PYTHONPATH"] = os.pathsep.join(pythonpath)
    return scenario_runner.run_scenario(
        SCENARIOS, name, *args, timeout=TIMEOUT, environment=environment, python_flags=python_flags
    )


@pytest.fixture(scope="module")
def saved_by_every_backend(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("saved_by_every_backend"))
    trained = {backend: run_scenario(backend, "train_and_save", directory) for backend in BACKENDS}
    return directory, trained


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_trains_the_layers_with_fit(saved_by_every_backend, backend):
    _, trained = saved_by_every_backend
    assert trained[backend]["backend"] == backend
    losses = trained[backend]["loss"]
    assert len(losses) == 2 and all(0.0 < loss < 10.0 for loss in losses)


@pytest.mark.parametrize("loaded_by", BACKENDS)
def test_keras_files_load_under_every_backend_with_the_same_predictions(saved_by_every_backend, loaded_by):
    directory, _ = saved_by_every_backend
    found = run_scenario(loaded_by, "load_all", directory, *BACKENDS)
    assert found["backend"] == loaded_by
    for saved_by in BACKENDS:
        # float32 convolutions in another library: rounding, not semantics
        assert found["differences"][saved_by]["prediction"] < 1e-5, (saved_by, loaded_by)
        # the state a schedule moved comes along
        assert found["differences"][saved_by]["survival_probability"] == pytest.approx(0.55)


@pytest.fixture(scope="module")
def site_without_tensorflow(tmp_path_factory):
    """This interpreter's site-packages minus TensorFlow, as symbolic links: a machine that never had it."""
    site = tmp_path_factory.mktemp("site_without_tensorflow")
    for directory in dict.fromkeys((sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"])):
        for entry in os.listdir(directory):
            if entry.lower().startswith("tensorflow") or entry.endswith(".pth") or (site / entry).exists():
                continue
            os.symlink(os.path.join(directory, entry), site / entry)
    return str(site)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_the_package_imports_and_trains_without_tensorflow(site_without_tensorflow, backend):
    # `-S`: no site-packages (and no .pth files) but the ones given here
    found = run_scenario(backend, "without_tensorflow", python_flags=["-S"], pythonpath=[ROOT, site_without_tensorflow])
    assert found["backend"] == backend
    assert not found["tensorflow_installed"]
    assert not found["tensorflow_imported"]
    assert 0.0 < found["loss"] < 10.0
    assert found["strip_difference"] < 1e-5
    # a TensorFlow-only feature asks for TensorFlow, naming itself
    assert found["tensorflow_only_error"].startswith("`recipes.training_dataset` (a tf.data pipeline) needs TensorFlow")


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_the_demo_trains_and_compares_under_jax_and_torch(backend):
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "stochastic_depth_tf",
            "--depth",
            "8",
            "--epochs",
            "1",
            "--seeds",
            "1",
            "--verbose",
            "0",
        ],
        cwd=ROOT,
        env={**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "| plain |" in completed.stdout and "| stochastic depth |" in completed.stdout
    assert "Time per epoch: stochastic depth took" in completed.stdout
    assert "(s / epoch of the one epoch, compilation included)" in completed.stdout
    assert "SavedModel" not in completed.stdout  # TensorFlow's export check is not attempted
