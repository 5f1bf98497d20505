"""Checks, once at import, that Keras runs on a backend the package supports.

TensorFlow is needed only where TensorFlow is used: on Keras' TensorFlow
backend (>= 2.16, Keras 3), and for the features that exist only there
(SavedModel export, `tf.data` pipelines, `tf.distribute`). Under JAX and
PyTorch the package imports without it and `import_tensorflow` asks for it
where such a feature is called.
"""

from __future__ import annotations

from typing import Any

import keras

MINIMUM_TENSORFLOW = (2, 16)
BACKENDS = ("tensorflow", "jax", "torch")
INSTALL_TENSORFLOW = (
    'Install it with `pip install "stochastic_depth_tf[cpu]"` (or `[gpu]`, or your own TensorFlow distribution).'
)


def check_backend() -> str:
    """Returns Keras' backend name; raises ImportError for one the package does not support."""
    name = str(keras.backend.backend())
    if name not in BACKENDS:
        raise ImportError(
            f"stochastic_depth_tf runs on Keras' {', '.join(BACKENDS[:-1])} or {BACKENDS[-1]} backend. "
            f"Received: KERAS_BACKEND={name!r}"
        )
    if name == "tensorflow":
        check_tensorflow()
    return name


def check_tensorflow() -> None:
    """Raises ImportError unless TensorFlow >= 2.16 is installed."""
    import_tensorflow("Keras' TensorFlow backend")


def import_tensorflow(feature: str) -> Any:
    """Returns the `tensorflow` module, or raises an ImportError naming `feature`, what needs it."""
    try:
        import tensorflow as tf
    except ImportError as error:
        raise ImportError(
            f"{feature} needs TensorFlow >= 2.16, which is not installed. {INSTALL_TENSORFLOW}"
        ) from error
    version = tuple(int(part) for part in tf.__version__.split(".")[:2])
    if version < MINIMUM_TENSORFLOW:
        raise ImportError(f"{feature} needs TensorFlow >= 2.16 (Keras 3). Received: tensorflow=={tf.__version__}")
    return tf
