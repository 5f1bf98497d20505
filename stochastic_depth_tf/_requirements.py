"""Checks, once at import, that TensorFlow >= 2.16 backs Keras 3."""

import os

MINIMUM_TENSORFLOW = (2, 16)


def check_tensorflow() -> None:
    """Raises ImportError unless TensorFlow >= 2.16 is installed and is Keras' backend."""
    try:
        import tensorflow as tf
    except ImportError as error:
        raise ImportError(
            "stochastic_depth_tf needs TensorFlow >= 2.16. Install it with "
            "`pip install \"stochastic_depth_tf[cpu]\"` (or `[gpu]`, or your "
            "own TensorFlow distribution)."
        ) from error
    version = tuple(int(part) for part in tf.__version__.split(".")[:2])
    if version < MINIMUM_TENSORFLOW:
        raise ImportError(
            "stochastic_depth_tf needs TensorFlow >= 2.16 (Keras 3). "
            f"Received: tensorflow=={tf.__version__}"
        )
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend != "tensorflow":
        raise ImportError(
            "stochastic_depth_tf runs on Keras' TensorFlow backend. "
            f"Received: KERAS_BACKEND={backend!r}; unset it or set it to 'tensorflow'."
        )
