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

`run_keras_layer_test(layer_cls, init_kwargs, **kwargs)` runs Keras' own
contract, `keras.src.testing.TestCase.run_layer_test` (build, weight and
seed-generator counts, `torch_params` under PyTorch, serialization, symbolic
and eager calls, a training step of `fit`, mixed precision), from pytest.

For tests that hold on every backend: `outputs_and_gradients`
differentiates a function of layers on whichever backend Keras runs, and
`GateLog` records the gate of each step inside a compiled `fit`.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Callable, List, Sequence, Tuple

import keras
import numpy as np
import pytest
from keras.src import testing as keras_testing

BATCH = 4

# `jit_compile` of `fit`: False is TensorFlow's graph mode and PyTorch's
# eager step, True TensorFlow's XLA and JAX's jitted step. The other two
# combinations are slow and test nothing those do not: JAX without `jit`
# dispatches op by op (30 times slower), and PyTorch with it runs
# `torch.compile`, about half a minute per small model here.
skip_jax_eager = pytest.mark.skipif(
    keras.backend.backend() == "jax", reason="un-jitted JAX fit is slow; the jitted step is tested"
)
skip_torch_compile = pytest.mark.skipif(
    keras.backend.backend() == "torch", reason="torch.compile of a fit step is slow; eager PyTorch is tested"
)
JIT_COMPILE = [pytest.param(False, marks=skip_jax_eager), pytest.param(True, marks=skip_torch_compile)]


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


def assert_training_step(
    make_layer: Callable[..., Any], input_shapes: Sequence[tuple], jit_compile: bool = False
) -> None:
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


def holds_survival_probability(layer: keras.layers.Layer) -> bool:
    """Whether `layer` holds its survival probability as state: a Keras variable, under PyTorch a module buffer.

    Under PyTorch it is no Keras variable, which Keras would make a torch
    parameter (see `stochastic_depth_tf.backend.torch.hold_state`).
    """
    variable = layer.survival_probability_variable
    if keras.backend.backend() == "torch":
        return any(buffer is variable.value for buffer in layer.buffers())
    return any(v is variable for v in layer.non_trainable_variables)


class _KerasLayerTest(keras_testing.TestCase):
    """Keras' own test case, held to call its `run_layer_test` from a pytest test."""

    def runTest(self):
        """Nothing: pytest tests call `run_layer_test` themselves (unittest needs a method to name)."""


def run_keras_layer_test(layer_cls: Callable[..., Any], init_kwargs: dict, **kwargs: Any) -> None:
    """Keras' `run_layer_test(layer_cls, init_kwargs, **kwargs)`, as Keras' own layer tests call it.

    `layer_cls` is the class, or a function making a fresh layer from
    `init_kwargs` (a block needs a fresh branch per layer: the test makes
    several). The training and mixed-precision checks are on, as Keras'
    defaults have them (Keras itself skips mixed precision under PyTorch
    on the CPU).
    """
    _KerasLayerTest().run_layer_test(layer_cls, init_kwargs, **kwargs)


def outputs_and_gradients(
    function: Callable[..., Any],
    inputs: Sequence[np.ndarray],
    variables: Sequence[keras.Variable] = (),
    state: Sequence[keras.Variable] = (),
    jit_compile: bool = False,
    calls: int = 1,
) -> Tuple[np.ndarray, List[np.ndarray]]:
    """Calls `function(*inputs)` `calls` times and differentiates the sum of each output.

    The gradients are taken with respect to the `inputs`, then the
    `variables`, on Keras' backend: `tf.GradientTape` (in one
    `tf.function(jit_compile=True)` with `jit_compile`), `jax.grad` of a
    stateless call (jitted with `jit_compile`), or PyTorch's autograd
    (always eager). Under JAX the non-trainable `state` the function
    assigns (seed generator states, moving statistics) is threaded through
    the calls, so that every call draws afresh as on the other backends;
    variables must exist before the call (build the layers first).

    Returns:
        `(outputs, gradients)`: the outputs stacked on a new first axis, and
        for each input and variable its gradients stacked likewise, all as
        float32 NumPy arrays.
    """
    name = keras.backend.backend()
    step = {"tensorflow": _tensorflow_step, "jax": _jax_step, "torch": _torch_step}[name](
        function, list(variables), list(state), jit_compile
    )
    results = [step([np.asarray(array) for array in inputs]) for _ in range(calls)]

    def as_float32(tensor):
        return keras.ops.convert_to_numpy(keras.ops.cast(tensor, "float32"))

    outputs = np.stack([as_float32(output) for output, _ in results])
    gradients = [np.stack([as_float32(grads[i]) for _, grads in results]) for i in range(len(results[0][1]))]
    return outputs, gradients


def _tensorflow_step(function, variables, state, jit_compile):
    import tensorflow as tf

    def step(arrays):
        arrays = [tf.convert_to_tensor(array) for array in arrays]
        with tf.GradientTape() as tape:
            tape.watch(arrays)
            output = function(*arrays)
            loss = tf.reduce_sum(tf.cast(output, tf.float32))
        return output, tape.gradient(loss, arrays + variables)

    return tf.function(step, jit_compile=True) if jit_compile else step


def _jax_step(function, variables, state, jit_compile):
    import jax

    def loss(arrays, values, state_values):
        mapping = list(zip(variables, values)) + list(zip(state, state_values))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            output = function(*arrays)
        new_state = [scope.get_current_value(v) for v in state]
        return keras.ops.sum(keras.ops.cast(output, "float32")), (output, new_state)

    differentiate = jax.grad(loss, argnums=(0, 1), has_aux=True)
    differentiate = jax.jit(differentiate) if jit_compile else differentiate

    def step(arrays):
        (input_gradients, variable_gradients), (output, new_state) = differentiate(
            arrays, [v.value for v in variables], [v.value for v in state]
        )
        for variable, value in zip(state, new_state):
            variable.assign(value)
        return output, list(input_gradients) + list(variable_gradients)

    return step


def _torch_step(function, variables, state, jit_compile):
    import torch

    def step(arrays):
        arrays = [keras.ops.convert_to_tensor(array).detach().requires_grad_() for array in arrays]
        output = function(*arrays)
        sources = arrays + [v.value for v in variables]
        gradients = torch.autograd.grad(torch.sum(output.float()), sources, allow_unused=True)
        return output.detach(), [torch.zeros_like(s) if g is None else g for s, g in zip(sources, gradients)]

    return step


class GateLog(keras.layers.Layer):
    """Identity that records, at training step `t`, the mean of its input in `gates[t]`.

    Fed `shortcut + b * 1` with a zero shortcut, that mean is the step's
    batch gate `b`. The record is a variable assigned with `keras.ops`, so it
    records inside compiled steps on every backend.
    """

    def __init__(self, steps, **kwargs):
        super().__init__(**kwargs)
        self.steps = steps
        self.gates = self.add_weight(shape=(steps,), initializer="zeros", trainable=False, name="gates")
        self.step = self.add_weight(shape=(), initializer="zeros", trainable=False, name="step")

    def call(self, x, training=None):
        if training:
            at_step = keras.ops.one_hot(keras.ops.cast(self.step, "int32"), self.steps)
            self.gates.assign(self.gates + at_step * keras.ops.mean(keras.ops.cast(x, "float32")))
            self.step.assign_add(1.0)
        return x
