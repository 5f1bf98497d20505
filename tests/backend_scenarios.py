"""Scenarios that need a Keras backend of their own, run by `tests/test_backends.py` as subprocesses.

Keras fixes its backend at import, so each scenario runs in a fresh
interpreter with `KERAS_BACKEND` set and prints one JSON line of findings:

    KERAS_BACKEND=jax python tests/backend_scenarios.py NAME [ARGS...]
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

BATCH = 8
SHAPE = (8, 8, 4)


def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((4 * BATCH,) + SHAPE).astype("float32"), rng.integers(0, 3, 4 * BATCH)


def model(seed: int = 0):
    """A small network with every layer of the package: block (batch and subset), merge layer, ShakeDrop."""
    import keras

    import stochastic_depth_tf as sdt

    def branch(name):
        return keras.Sequential(
            [
                keras.layers.Conv2D(4, 3, padding="same", use_bias=False),
                keras.layers.BatchNormalization(),
                keras.layers.ReLU(),
                keras.layers.Conv2D(4, 3, padding="same"),
            ],
            name=name,
        )

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(SHAPE)
    x = sdt.StochasticDepthBlock(branch("batch_branch"), survival_probability=0.6, seed=1, name="block")(inputs)
    x = sdt.StochasticDepthBlock(
        branch("subset_branch"), survival_probability=0.5, mode="subset", seed=2, name="subset_block"
    )(x)
    residual = keras.layers.Conv2D(4, 3, padding="same", name="conv")(x)
    x = sdt.StochasticDepth(0.7, seed=3, name="merge")([x, residual])
    residual = keras.layers.Conv2D(4, 3, padding="same", name="shake_conv")(x)
    x = sdt.ShakeDrop(0.8, seed=4, name="shake")([x, residual])
    outputs = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs)


def train_and_save(directory: str) -> dict:
    """Trains two epochs, moves a survival probability, saves `.keras` and the predictions."""
    import keras

    images, labels = data()
    network = model()
    network.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile="auto")
    history = network.fit(images, labels, batch_size=BATCH, epochs=2, verbose=0)
    network.get_layer("merge").survival_probability_variable.assign(0.55)
    backend = keras.backend.backend()
    network.save(os.path.join(directory, f"{backend}.keras"))
    np.save(os.path.join(directory, f"{backend}.npy"), network.predict(images, verbose=0))
    return {"backend": backend, "loss": [float(value) for value in history.history["loss"]]}


def load_all(directory: str, *backends: str) -> dict:
    """Loads the `.keras` file each backend saved; the largest difference to that backend's predictions."""
    import keras

    import stochastic_depth_tf  # noqa: F401  (registers the layers, as a user's import does)

    images, _ = data()
    differences = {}
    for saved_by in backends:
        # compile=False: a file compiled under JAX records jit_compile=True,
        # which PyTorch would take as torch.compile (minutes for this model).
        network = keras.models.load_model(os.path.join(directory, f"{saved_by}.keras"), compile=False)
        expected = np.load(os.path.join(directory, f"{saved_by}.npy"))
        differences[saved_by] = {
            "prediction": float(np.max(np.abs(network.predict(images, verbose=0) - expected))),
            "survival_probability": float(
                keras.ops.convert_to_numpy(network.get_layer("merge").survival_probability_variable)
            ),
        }
    return {"backend": keras.backend.backend(), "differences": differences}


def without_tensorflow() -> dict:
    """Imports the package and trains where TensorFlow is not installed; calls a TensorFlow-only feature.

    Run by `tests/test_backends.py` with `python -S` and a `PYTHONPATH` of
    site-packages without TensorFlow, as on a machine that never had it.
    """
    import importlib.util

    import keras

    import stochastic_depth_tf as sdt

    images, labels = data()
    network = model()
    network.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = network.fit(images, labels, batch_size=BATCH, epochs=1, verbose=0)
    stripped = sdt.strip_stochastic_depth(network)
    difference = float(np.max(np.abs(stripped.predict(images, verbose=0) - network.predict(images, verbose=0))))
    try:
        sdt.recipes.training_dataset(sdt.recipes.DIGITS, images, labels)
        error = None
    except ImportError as raised:
        error = str(raised)
    return {
        "backend": keras.backend.backend(),
        "tensorflow_installed": importlib.util.find_spec("tensorflow") is not None,
        "loss": float(history.history["loss"][0]),
        "strip_difference": difference,
        "tensorflow_imported": any(
            module is not None and (name == "tensorflow" or name.startswith("tensorflow."))
            for name, module in sys.modules.items()
        ),
        "tensorflow_only_error": error,
    }


SCENARIOS = {"train_and_save": train_and_save, "load_all": load_all, "without_tensorflow": without_tensorflow}

if __name__ == "__main__":
    from scenario_runner import run  # from the script's folder, tests/, on sys.path

    run(SCENARIOS)
