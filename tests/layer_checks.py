"""The standard checks every layer of the package goes through.

`run_standard_layer_checks(make_layer, input_shapes)` builds the layer with
`make_layer(**kwargs)` and checks, in order:

1. symbolic shapes (functional API) equal `compute_output_shape` and the
   eager output shape;
2. `get_config` / `from_config` round trip gives an equal config and the same
   inference output;
3. a `.keras` file saved and loaded in safe mode without `custom_objects`
   gives the same inference output and config;
4. one training step of `fit` runs and gives finite losses;
5. under `mixed_float16` and `mixed_bfloat16` the layer returns its compute
   dtype in training and inference.

Layers with more than one input take a list of input shapes (without batch).
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Callable, Sequence

import keras
import numpy as np

BATCH = 4


def _inputs_for(input_shapes: Sequence[tuple], seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(BATCH,) + tuple(shape)).astype("float32") for shape in input_shapes]


def _as_json(config: dict) -> Any:
    """A config as a `.keras` file stores it (tuples become lists)."""
    return json.loads(json.dumps(config))


def _functional_model(layer: keras.layers.Layer, input_shapes: Sequence[tuple]) -> keras.Model:
    inputs = [keras.Input(shape) for shape in input_shapes]
    outputs = layer(inputs if len(inputs) > 1 else inputs[0])
    return keras.Model(inputs, outputs)


def _call(layer: keras.layers.Layer, arrays: list, training: bool) -> np.ndarray:
    inputs = arrays if len(arrays) > 1 else arrays[0]
    return keras.ops.convert_to_numpy(layer(inputs, training=training))


def assert_shapes(make_layer: Callable[..., Any], input_shapes: Sequence[tuple]) -> None:
    layer = make_layer()
    model = _functional_model(layer, input_shapes)
    batched = [(None,) + tuple(shape) for shape in input_shapes]
    expected = tuple(layer.compute_output_shape(batched if len(batched) > 1 else batched[0]))
    assert tuple(model.output.shape) == expected
    for training in (False, True):
        output = _call(layer, _inputs_for(input_shapes), training)
        assert output.shape == (BATCH,) + expected[1:]


def assert_config_round_trip(make_layer: Callable[..., Any], input_shapes: Sequence[tuple]) -> None:
    layer = make_layer()
    arrays = _inputs_for(input_shapes)
    expected = _call(layer, arrays, training=False)
    config = layer.get_config()
    clone = layer.__class__.from_config(config)
    assert clone.get_config() == config
    _call(clone, arrays, training=False)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(_call(clone, arrays, training=False), expected, rtol=1e-6, atol=1e-6)


def assert_keras_file_round_trip(make_layer: Callable[..., Any], input_shapes: Sequence[tuple]) -> None:
    model = _functional_model(make_layer(), input_shapes)
    arrays = _inputs_for(input_shapes)
    expected = model.predict(arrays, verbose=0)
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "model.keras")
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(loaded.predict(arrays, verbose=0), expected, rtol=1e-6, atol=1e-6)
    assert _as_json(loaded.layers[-1].get_config()) == _as_json(model.layers[-1].get_config())


def assert_training_step(make_layer: Callable[..., Any], input_shapes: Sequence[tuple], jit_compile: bool = False) -> None:
    inputs = [keras.Input(shape) for shape in input_shapes]
    # A trainable layer in front, so that fit has something to update even
    # when the layer under test has no weights of its own.
    dense = keras.layers.Dense(input_shapes[-1][-1])
    branches = inputs[:-1] + [dense(inputs[-1])]
    outputs = make_layer()(branches if len(branches) > 1 else branches[0])
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss="mse", jit_compile=jit_compile)
    arrays = _inputs_for(input_shapes)
    target = model.predict(arrays, verbose=0)
    history = model.fit(arrays, target, batch_size=BATCH, epochs=2, verbose=0)
    assert all(np.isfinite(history.history["loss"]))


def assert_mixed_precision(make_layer: Callable[..., Any], input_shapes: Sequence[tuple]) -> None:
    arrays = _inputs_for(input_shapes)
    for policy in ("mixed_float16", "mixed_bfloat16"):
        layer = make_layer(dtype=policy)
        compute_dtype = keras.DTypePolicy(policy).compute_dtype
        for training in (False, True):
            inputs = arrays if len(arrays) > 1 else arrays[0]
            output = layer(inputs, training=training)
            assert keras.backend.standardize_dtype(output.dtype) == compute_dtype, (policy, training)
            assert np.all(np.isfinite(keras.ops.convert_to_numpy(keras.ops.cast(output, "float32"))))


def run_standard_layer_checks(make_layer: Callable[..., Any], input_shapes: Sequence[tuple]) -> None:
    """Runs every standard check on `make_layer(**kwargs)` with these input shapes."""
    assert_shapes(make_layer, input_shapes)
    assert_config_round_trip(make_layer, input_shapes)
    assert_keras_file_round_trip(make_layer, input_shapes)
    assert_training_step(make_layer, input_shapes)
    assert_mixed_precision(make_layer, input_shapes)
