"""Inputs and small models that several test modules build: one copy of each.

Tests call them with their own arguments (`images((12, 12, 3), n=8)`), so
they are plain functions, imported as `from tests.helpers import images`.
Every input is drawn from a generator seeded by the caller (0 by default):
a test that states an expected value gets the same numbers every run.
"""

import keras
import numpy as np

import stochastic_depth_tf as sdt


def numpy(tensor):
    """A tensor of any backend as a NumPy array."""
    return keras.ops.convert_to_numpy(tensor)


def images(shape, n=4, seed=0):
    """`n` standard normal float32 inputs of `shape` (any rank), from a generator seeded with `seed`."""
    return np.random.default_rng(seed).normal(size=(n,) + tuple(shape)).astype("float32")


def vectors(n=3, width=4, seed=0):
    """`n` standard normal float32 vectors of `width`: inputs of the small Dense models."""
    return images((width,), n=n, seed=seed)


def stochastic_depth_layers(model):
    """The `StochasticDepth` merge layers of `model` (not of the models nested in it)."""
    return [layer for layer in model.layers if isinstance(layer, sdt.StochasticDepth)]


def stochastic_layers(model):
    """The `StochasticDepth` merge layers and `StochasticDepthBlock`s of `model` (not of the models nested in it)."""
    return [layer for layer in model.layers if isinstance(layer, (sdt.StochasticDepth, sdt.StochasticDepthBlock))]


def residual_model(layer, shape=(4, 4, 3)):
    """A model of one merge `layer([inputs, Conv2D(inputs)])`: the layer under test on a convolutional branch."""
    inputs = keras.Input(shape)
    branch = keras.layers.Conv2D(shape[-1], 3, padding="same", name="branch")(inputs)
    return keras.Model(inputs, layer([inputs, branch]))


def merge_model(mode, inverted):
    """An 8x8x3 model: a stem, `StochasticDepth` over a convolution and BatchNormalization, a Dense head."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="stem")(inputs)
    branch = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(x)
    branch = keras.layers.BatchNormalization(name="bn")(branch)
    x = sdt.StochasticDepth(0.6, mode=mode, inverted=inverted, seed=1, name="merge")([x, branch])
    outputs = keras.layers.Dense(3, name="head")(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs)


def block_model(mode, inverted):
    """An 8x8x3 model: a `StochasticDepthBlock` with a Sequential branch and projection shortcut (stride 2), a Dense head."""
    inputs = keras.Input((8, 8, 3))
    branch = keras.Sequential(
        [
            keras.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.Conv2D(8, 3, padding="same", use_bias=False),
            keras.layers.BatchNormalization(),
        ],
        name="branch",
    )
    projection = keras.Sequential(
        [keras.layers.Conv2D(8, 1, strides=2, use_bias=False), keras.layers.BatchNormalization()],
        name="projection",
    )
    x = sdt.StochasticDepthBlock(
        branch,
        shortcut=projection,
        survival_probability=0.6,
        mode=mode,
        inverted=inverted,
        seed=2,
        name="block",
    )(inputs)
    outputs = keras.layers.Dense(3, name="head")(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs)


def as_trained(model):
    """`model` with its BatchNormalization statistics and survival probabilities moved, as training leaves them.

    What a saved or exported model must carry, and a configured value
    would not show: the moving statistics, and a survival probability that
    a schedule moved away from the layer's configured one.
    """
    rng = np.random.default_rng(0)
    for weight in model.weights:
        if weight.path.endswith("moving_mean"):
            weight.assign(rng.normal(scale=0.1, size=weight.shape).astype("float32"))
        elif weight.path.endswith("moving_variance"):
            weight.assign(rng.uniform(0.5, 2.0, size=weight.shape).astype("float32"))
    for layer in model.layers:
        if isinstance(layer, (sdt.StochasticDepth, sdt.StochasticDepthBlock)):
            layer.survival_probability_variable.assign(min(1.0, layer.survival_probability + 0.1))
    return model


def run_tflite(flatbuffer, x):
    """The output of a TFLite model (a `flatbuffer`) on the batch `x`, from TensorFlow's interpreter."""
    import tensorflow as tf  # TensorFlow only: the other backends never call this

    interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    (inputs,) = interpreter.get_input_details()
    interpreter.resize_tensor_input(inputs["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inputs["index"], x)
    interpreter.invoke()
    (outputs,) = interpreter.get_output_details()
    return interpreter.get_tensor(outputs["index"])
