"""Tests of the `StochasticDepth` merge layer."""

import math
import os

import keras
import numpy as np
import pytest

import stochastic_depth_tf as sdt
from tests.helpers import images, residual_model
from tests.layer_checks import (
    JIT_COMPILE,
    assert_training_step,
    holds_survival_probability,
    run_standard_layer_checks,
    skip_torch_compile,
)

SIGMAS = 5.0  # see tests/test_ops.py: 5-sigma binomial bounds, fixed seeds
SHAPE = (4, 4, 3)  # of the inputs, and of `residual_model`'s by default


class ConstantResidual(keras.layers.Layer):
    """Emits ones shaped like its input: a residual whose gate is readable."""

    def call(self, x):
        return keras.ops.ones_like(x)


class GateRecorder(keras.layers.Layer):
    """Counts training calls and how many of them saw an open gate.

    Fed `shortcut + b * 1` with a zero shortcut, its input mean is the gate.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = self.add_weight(shape=(), initializer="zeros", trainable=False, name="calls")
        self.kept = self.add_weight(shape=(), initializer="zeros", trainable=False, name="kept")

    def call(self, x, training=None):
        if training:
            self.calls.assign_add(1.0)
            self.kept.assign_add(keras.ops.mean(x))
        return x


# The standard checks shared by every layer.


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"survival_probability": 0.8, "mode": "sample", "seed": 3},
        {"survival_probability": 0.5, "inverted": True},
        {"survival_probability": 1.0},
    ],
)
def test_standard_layer_checks(kwargs):
    run_standard_layer_checks(lambda **extra: sdt.StochasticDepth(**kwargs, **extra), [(5, 5, 3), (5, 5, 3)])


@skip_torch_compile
def test_training_step_under_xla():
    assert_training_step(lambda **extra: sdt.StochasticDepth(0.5, **extra), [(5, 5, 3), (5, 5, 3)], jit_compile=True)


# Semantics through the layer.


def test_plain_call_is_inference():
    shortcut, residual = images(SHAPE, seed=1), images(SHAPE, seed=2)
    layer = sdt.StochasticDepth(0.3)
    np.testing.assert_allclose(layer([shortcut, residual]), shortcut + np.float32(0.3) * residual, rtol=1e-6)


def test_predict_and_evaluate_are_deterministic():
    model = residual_model(sdt.StochasticDepth(0.5, mode="sample", seed=0))
    x = images(SHAPE, n=16)
    first = model.predict(x, verbose=0)
    np.testing.assert_array_equal(model.predict(x, verbose=0), first)
    model.compile(loss="mse")
    assert model.evaluate(x, first, verbose=0) < 1e-10


def test_survival_probability_one_matches_add_model_in_training():
    x = images(SHAPE, n=8)
    sd_model = residual_model(sdt.StochasticDepth(1.0))
    add_model = residual_model(keras.layers.Add())
    add_model.set_weights(sd_model.get_weights())
    for _ in range(5):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(sd_model(x, training=True)),
            keras.ops.convert_to_numpy(add_model(x, training=True)),
        )


def test_fit_draws_fresh_gates_every_step():
    steps, p = 200, 0.5
    inputs = keras.Input((3,))
    zeros = keras.layers.Lambda(lambda x: keras.ops.zeros_like(x))(inputs)
    gated = sdt.StochasticDepth(p, seed=21)([zeros, ConstantResidual()(inputs)])
    recorder = GateRecorder()
    outputs = keras.layers.Dense(1)(recorder(gated))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss="mse")
    data = np.ones((steps, 3), "float32")
    model.fit(data, np.zeros((steps, 1)), batch_size=1, epochs=1, verbose=0)
    calls, kept = float(keras.ops.convert_to_numpy(recorder.calls)), float(keras.ops.convert_to_numpy(recorder.kept))
    assert calls == steps
    assert abs(kept / steps - p) <= SIGMAS * math.sqrt(p * (1 - p) / steps)


@pytest.mark.tensorflow_only  # tf.function; test_fit_draws_fresh_gates_every_step runs jitted under JAX
@pytest.mark.parametrize("mode", ["batch", "sample"])
def test_xla_step_draws_fresh_gates(mode):
    import tensorflow as tf

    layer = sdt.StochasticDepth(0.5, mode=mode, seed=4)
    shortcut = np.zeros((2, 3), "float32")
    residual = np.ones((2, 3), "float32")

    @tf.function(jit_compile=True)
    def step():
        return layer([shortcut, residual], training=True)

    outcomes = {float(step().numpy()[0, 0]) for _ in range(60)}
    assert outcomes == {0.0, 1.0}


def test_same_seed_same_gates_and_unseeded_layers_independent():
    shortcut = np.zeros((64, 1), "float32")
    residual = np.ones((64, 1), "float32")

    def gates(layer, calls=30):
        return np.concatenate(
            [keras.ops.convert_to_numpy(layer([shortcut, residual], training=True))[:, 0] for _ in range(calls)]
        )

    np.testing.assert_array_equal(
        gates(sdt.StochasticDepth(0.5, mode="sample", seed=8)),
        gates(sdt.StochasticDepth(0.5, mode="sample", seed=8)),
    )
    first = gates(sdt.StochasticDepth(0.5, mode="sample"))
    second = gates(sdt.StochasticDepth(0.5, mode="sample"))
    # Independent fair gates agree with probability 1/2.
    agreement = np.mean(first == second)
    assert abs(agreement - 0.5) <= SIGMAS * math.sqrt(0.25 / len(first))


@pytest.mark.tensorflow_only  # counts tf.function traces
def test_changing_survival_probability_does_not_retrace():
    import tensorflow as tf

    layer = sdt.StochasticDepth(0.5)
    shortcut, residual = images(SHAPE, seed=1), images(SHAPE, seed=2)
    traces = []

    @tf.function(jit_compile=True)
    def infer(s, r):
        traces.append(1)
        return layer([s, r], training=False)

    for p in (0.5, 0.9, 0.1):
        layer.survival_probability_variable.assign(p)
        np.testing.assert_allclose(infer(shortcut, residual), shortcut + np.float32(p) * residual, rtol=1e-5, atol=1e-6)
    assert len(traces) == 1


def test_survival_probability_setter_updates_variable_and_config():
    layer = sdt.StochasticDepth(0.5)
    layer.survival_probability = 0.25
    assert layer.survival_probability == 0.25
    assert float(layer.survival_probability_variable.numpy()) == 0.25
    assert layer.get_config()["survival_probability"] == 0.25


def test_survival_probability_setter_validates():
    layer = sdt.StochasticDepth(0.5, inverted=True)
    with pytest.raises(ValueError, match="Expected a value greater than 0 with `inverted=True`"):
        layer.survival_probability = 0.0
    with pytest.raises(ValueError, match="Expected a float between 0 and 1. Received: survival_probability=2.0"):
        layer.survival_probability = 2.0
    assert layer.survival_probability == 0.5


# State: the variable is checkpointed but is not a weight.


def test_survival_probability_is_not_a_weight():
    layer = sdt.StochasticDepth(0.5)
    model = residual_model(layer)
    assert layer.weights == [] and layer.count_params() == 0
    assert holds_survival_probability(layer)
    assert len(model.get_weights()) == len(residual_model(keras.layers.Add()).get_weights())


def test_weights_transfer_from_add_model_through_legacy_h5(tmp_path):
    add_model = residual_model(keras.layers.Add())
    path = str(tmp_path / "plain.h5")
    add_model.save(path)  # the legacy HDF5 format of keras.applications weights
    sd_model = residual_model(sdt.StochasticDepth(1.0))
    sd_model.load_weights(path)
    x = images(SHAPE)
    np.testing.assert_allclose(sd_model.predict(x, verbose=0), add_model.predict(x, verbose=0), rtol=1e-6)


def test_weights_file_keeps_current_survival_probability(tmp_path):
    model = residual_model(sdt.StochasticDepth(0.5))
    model.layers[-1].survival_probability_variable.assign(0.8)
    model.save_weights(str(tmp_path / "model.weights.h5"))
    restored = residual_model(sdt.StochasticDepth(0.5))
    restored.load_weights(str(tmp_path / "model.weights.h5"))
    assert float(restored.layers[-1].survival_probability_variable.numpy()) == pytest.approx(0.8)


@pytest.mark.tensorflow_only
def test_tf_train_checkpoint_keeps_current_survival_probability(tmp_path):
    import tensorflow as tf

    model = residual_model(sdt.StochasticDepth(0.5))
    model.layers[-1].survival_probability_variable.assign(0.8)
    checkpoint_prefix = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    restored = residual_model(sdt.StochasticDepth(0.5))
    tf.train.Checkpoint(model=restored).restore(checkpoint_prefix).assert_existing_objects_matched()
    assert float(restored.layers[-1].survival_probability_variable.numpy()) == pytest.approx(0.8)


def test_keras_file_keeps_current_survival_probability(tmp_path):
    model = residual_model(sdt.StochasticDepth(0.5))
    model.layers[-1].survival_probability_variable.assign(0.8)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert float(loaded.layers[-1].survival_probability_variable.numpy()) == pytest.approx(0.8)
    x = images(SHAPE)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


def test_registered_for_serialization():
    assert keras.saving.get_registered_name(sdt.StochasticDepth) == "stochastic_depth_tf>StochasticDepth"
    assert keras.saving.get_registered_object("stochastic_depth_tf>StochasticDepth") is sdt.StochasticDepth


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("inverted", [False, True])
def test_saved_model_export_serves_deterministic_inference(tmp_path, inverted):
    import tensorflow as tf

    model = residual_model(sdt.StochasticDepth(0.6, mode="sample", inverted=inverted, seed=1))
    path = str(tmp_path / "exported")
    model.export(path, verbose=False)
    served = tf.saved_model.load(path)
    x = images(SHAPE, n=8)
    first = served.serve(x).numpy()
    np.testing.assert_array_equal(served.serve(x).numpy(), first)
    np.testing.assert_allclose(first, model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    graph = served.serve.get_concrete_function(tf.TensorSpec((None, 4, 4, 3), tf.float32)).graph
    op_types = {op.type for op in graph.get_operations()}
    for function in graph.as_graph_def().library.function:
        op_types |= {node.op for node in function.node_def}
    assert not {t for t in op_types if "Random" in t}, op_types


# Symbolic use and mixed precision.


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX's symbolic shapes")
@pytest.mark.parametrize(
    "make_layer",
    [
        lambda: sdt.StochasticDepth(0.6, mode="sample", seed=1),
        lambda: sdt.ShakeDrop(0.6, seed=1),
    ],
    ids=["StochasticDepth", "ShakeDrop"],
)
def test_inference_traces_with_a_symbolic_batch_size(make_layer):
    """As `model.export()` traces under JAX: the shapes are checked without comparing a symbolic size."""
    import jax
    import jax.export  # JAX before 0.4.35 does not load it with jax

    model = residual_model(make_layer())
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    def infer(trainable, non_trainable, x):
        return model.stateless_call(trainable, non_trainable, x, training=False)[0]

    spec = jax.ShapeDtypeStruct(jax.export.symbolic_shape("batch, 4, 4, 3"), "float32")
    exported = jax.export.export(jax.jit(infer))(trainable, non_trainable, spec)
    x = images(SHAPE, n=5)
    np.testing.assert_allclose(
        exported.call(trainable, non_trainable, x), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )


def test_symbolic_output_shape_and_compute_output_shape():
    layer = sdt.StochasticDepth(0.5)
    a, b = keras.Input((None, 7)), keras.Input((5, 7))
    assert tuple(layer([a, b]).shape) == (None, 5, 7)
    assert layer.compute_output_shape([(None, None, 7), (None, 5, 7)]) == (None, 5, 7)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("jit_compile", JIT_COMPILE)
def test_global_mixed_precision_policy_in_fit_and_predict(policy, jit_compile):
    keras.config.set_dtype_policy(policy)
    layer = sdt.StochasticDepth(0.5, mode="sample", seed=0)
    model = residual_model(layer)
    assert layer.compute_dtype == keras.DTypePolicy(policy).compute_dtype
    assert keras.backend.standardize_dtype(model.output.dtype) == layer.compute_dtype
    model.compile(optimizer="sgd", loss="mse", jit_compile=jit_compile)
    x = images(SHAPE, n=8)
    history = model.fit(x, x, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert np.all(np.isfinite(model.predict(x, verbose=0)))


# Bad input.


def test_bad_constructor_arguments_are_refused():
    with pytest.raises(
        ValueError,
        match=r"argument `survival_probability`. Expected a float between 0 and 1. Received: survival_probability=1.5",
    ):
        sdt.StochasticDepth(1.5)
    with pytest.raises(
        TypeError, match=r"argument `survival_probability`. Expected a float.*Received: survival_probability=True"
    ):
        sdt.StochasticDepth(True)
    with pytest.raises(
        TypeError, match=r"argument `survival_probability`. Expected a float.*Received: survival_probability='high'"
    ):
        sdt.StochasticDepth("high")
    with pytest.raises(
        ValueError, match=r"argument `mode`. Expected one of \('batch', 'sample', 'subset'\). Received: mode='row'"
    ):
        sdt.StochasticDepth(0.5, mode="row")
    with pytest.raises(ValueError, match=r"greater than 0 with `inverted=True`"):
        sdt.StochasticDepth(0.0, inverted=True)
    with pytest.raises(TypeError, match=r"argument `seed`. Expected None or an int"):
        sdt.StochasticDepth(0.5, seed=keras.random.SeedGenerator(1))


@pytest.mark.parametrize(
    "inputs, received",
    [
        (lambda x: x, "an object of type"),
        (lambda x: [x], "a list of length 1"),
        (lambda x: (x, x, x), "a tuple of length 3"),
    ],
)
def test_inputs_not_a_pair_are_refused(inputs, received):
    x = images(SHAPE)
    with pytest.raises(
        ValueError,
        match=rf"argument `inputs`. Expected a list or tuple of exactly two tensors \[shortcut, residual\]. Received: {received}",
    ):
        sdt.StochasticDepth(0.5)(inputs(x))


def test_symbolic_shapes_that_differ_are_refused():
    with pytest.raises(ValueError, match=r"shortcut.shape=\(None, 8, 8, 16\), residual.shape=\(None, 4, 4, 32\)"):
        sdt.StochasticDepth(0.5)([keras.Input((8, 8, 16)), keras.Input((4, 4, 32))])


def test_integer_inputs_are_refused():
    x = np.ones((2, 3), "int32")
    with pytest.raises(TypeError, match=r"Expected a floating point tensor.*dtype=int32"):
        sdt.StochasticDepth(0.5)([x, x])


def test_package_exports_version():
    assert isinstance(sdt.__version__, str) and sdt.__version__.count(".") == 2
    assert os.path.basename(os.path.dirname(sdt.__file__)) == "stochastic_depth_tf"


def test_keras_file_keeps_the_seed_generator_state(tmp_path):
    """A saved layer continues the gate sequence where the original stands."""
    inputs = keras.Input((4,))
    outputs = sdt.StochasticDepth(0.5, mode="sample", seed=5)([inputs, keras.layers.Dense(4)(inputs)])
    model = keras.Model(inputs, outputs)
    layer = model.layers[-1]
    ones = np.ones((64, 4), "float32")
    for _ in range(3):  # advance the generator past its initial state
        layer([np.zeros_like(ones), ones], training=True)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras").layers[-1]
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded.seed_generator.state),
        keras.ops.convert_to_numpy(layer.seed_generator.state),
    )
    expected = layer([np.zeros_like(ones), ones], training=True)
    actual = loaded([np.zeros_like(ones), ones], training=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(actual), keras.ops.convert_to_numpy(expected))


def test_weights_saved_without_a_seed_state_still_load():
    """Files written before the seed state was saved hold only the probability."""
    layer = sdt.StochasticDepth(0.5, seed=1)
    state = keras.ops.convert_to_numpy(layer.seed_generator.state)
    layer.load_own_variables({"0": np.float32(0.25)})
    assert float(layer.survival_probability_variable.numpy()) == 0.25
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.seed_generator.state), state)


@pytest.mark.tensorflow_only
def test_tf_train_checkpoint_keeps_the_seed_generator_state(tmp_path):
    """`tf.train.Checkpoint` restores the gate sequence, not only the weights."""
    import tensorflow as tf

    layer = sdt.StochasticDepth(0.5, mode="sample", seed=5)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, layer([inputs, keras.layers.Dense(4)(inputs)]))
    layer.seed_generator.state.assign([5, 77])
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "checkpoint"))
    layer.seed_generator.state.assign([0, 0])
    tf.train.Checkpoint(model=model).restore(path).assert_existing_objects_matched()
    np.testing.assert_array_equal(layer.seed_generator.state.numpy(), [5, 77])
    assert len(model.get_weights()) == 2  # the dense kernel and bias only
