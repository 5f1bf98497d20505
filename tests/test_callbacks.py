"""Tests of `SurvivalProbabilityScheduler` and the layer finder behind it."""

import keras
import numpy as np
import pytest

import stochastic_depth_tf as sdt
from stochastic_depth_tf.callbacks import SurvivalProbabilityScheduler, stochastic_depth_layers
from tests.layer_checks import GateLog, skip_torch_compile

TARGETS = (0.8, 0.5)


class TraceCounter(keras.layers.Layer):
    """Identity that counts how often its call is traced (Python runs once per trace)."""

    traces = 0

    def call(self, x):
        TraceCounter.traces += 1
        return x


def small_model(targets=TARGETS, nested=True):
    """Two residual blocks; the second sits inside a nested functional model."""
    inputs = keras.Input((6,))
    x = keras.layers.Dense(6)(inputs)
    branch = keras.layers.Dense(6)(x)
    x = sdt.StochasticDepth(targets[0], seed=1, name="block_1")([x, branch])
    inner_in = keras.Input((6,))
    inner_out = sdt.StochasticDepth(targets[1], seed=2, name="block_2")([inner_in, keras.layers.Dense(6)(inner_in)])
    inner = keras.Model(inner_in, inner_out, name="inner")
    x = inner(x) if nested else x
    outputs = keras.layers.Dense(1)(TraceCounter()(x))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss="mse")
    return model


def data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6)).astype("float32"), rng.normal(size=(n, 1)).astype("float32")


class Recorder(keras.callbacks.Callback):
    """Records every layer's survival probability at the start of each epoch/batch."""

    def __init__(self, per_batch=False):
        super().__init__()
        self.per_batch = per_batch
        self.values = []

    def _record(self):
        self.values.append(
            tuple(
                round(float(layer.survival_probability_variable.numpy()), 6)
                for layer in stochastic_depth_layers(self.model)
            )
        )

    def on_epoch_begin(self, epoch, logs=None):
        if not self.per_batch:
            self._record()

    def on_train_batch_begin(self, batch, logs=None):
        if self.per_batch:
            self._record()


def test_finds_layers_in_nested_models():
    names = [layer.name for layer in stochastic_depth_layers(small_model())]
    assert names == ["block_1", "block_2"]


def test_linear_ramp_over_epochs():
    model = small_model()
    recorder = Recorder()
    x, y = data()
    model.fit(x, y, epochs=5, batch_size=8, verbose=0, callbacks=[SurvivalProbabilityScheduler(duration=4), recorder])
    expected = [tuple(round(1.0 + min(e / 4, 1) * (t - 1.0), 6) for t in TARGETS) for e in range(5)]
    assert recorder.values == expected
    # The configured targets are untouched: only the variables move.
    assert [layer.survival_probability for layer in stochastic_depth_layers(model)] == list(TARGETS)


def test_linear_ramp_over_steps():
    model = small_model()
    recorder = Recorder(per_batch=True)
    x, y = data(n=32)
    model.fit(
        x,
        y,
        epochs=2,
        batch_size=8,
        verbose=0,
        callbacks=[SurvivalProbabilityScheduler(duration=6, unit="step"), recorder],
    )
    expected = [tuple(round(1.0 + min(s / 6, 1) * (t - 1.0), 6) for t in TARGETS) for s in range(8)]
    assert recorder.values == expected


def test_step_unit_changes_the_gates_the_training_step_draws():
    """The values reach the step, not only the variables (JAX's trainer keeps its own copy)."""
    steps, duration = 40, 20
    inputs = keras.Input((3,))
    zeros = keras.layers.Lambda(lambda x: keras.ops.zeros_like(x))(inputs)
    ones = keras.layers.Lambda(lambda x: keras.ops.ones_like(x))(inputs)
    log = GateLog(steps)
    outputs = keras.layers.Dense(1)(log(sdt.StochasticDepth(0.0, seed=1)([zeros, ones])))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss="mse")
    model.fit(
        np.ones((steps, 3)),
        np.zeros((steps, 1)),
        batch_size=1,
        epochs=1,
        verbose=0,
        shuffle=False,
        callbacks=[SurvivalProbabilityScheduler(duration=duration, unit="step")],
    )
    gates = keras.ops.convert_to_numpy(log.gates)
    # p(t) = 1 - t / 20: the first step keeps the branch for sure, the steps from t = 20 drop it for sure.
    assert gates[0] == 1.0 and 0 < gates[:duration].sum() < duration
    np.testing.assert_array_equal(gates[duration:], 0.0)


def test_user_schedule_function():
    model = small_model()
    recorder = Recorder()
    x, y = data()
    scheduler = SurvivalProbabilityScheduler(schedule=lambda epoch, target: target if epoch >= 2 else 1.0)
    model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[scheduler, recorder])
    assert recorder.values == [(1.0, 1.0), (1.0, 1.0), TARGETS]


# A compiled step is traced once: TensorFlow's graph mode and XLA, JAX's
# jit. Un-jitted JAX and eager PyTorch run the Python of every step.
@pytest.mark.parametrize(
    "jit_compile",
    [
        pytest.param(False, marks=pytest.mark.tensorflow_only),
        pytest.param(True, marks=skip_torch_compile),
    ],
)
def test_schedule_changes_values_without_retracing(jit_compile):
    model = small_model()
    model.compile(optimizer="sgd", loss="mse", jit_compile=jit_compile)
    x, y = data()
    TraceCounter.traces = 0
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    traces_without = TraceCounter.traces
    model.fit(
        x, y, epochs=4, batch_size=8, verbose=0, callbacks=[SurvivalProbabilityScheduler(duration=3, unit="step")]
    )
    assert TraceCounter.traces == traces_without, "the scheduled fit traced the step again"
    assert model.get_layer("block_1").survival_probability_variable.numpy() == pytest.approx(TARGETS[0])


def test_logs_mean_survival_probability():
    model = small_model()
    x, y = data()
    history = model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[SurvivalProbabilityScheduler(duration=2)])
    means = history.history["mean_survival_probability"]
    assert means == pytest.approx([1.0, 1.0 - 0.5 * (1 - np.mean(TARGETS)), np.mean(TARGETS)])


def test_verbose_prints_values(capsys):
    model = small_model()
    x, y = data()
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[SurvivalProbabilityScheduler(duration=2, verbose=1)])
    assert "SurvivalProbabilityScheduler set 2 layers, mean survival probability 1.0000" in capsys.readouterr().out


class InterruptAfterEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("interrupted")


@pytest.mark.parametrize("unit, duration", [("epoch", 4), ("step", 14)])
def test_resumed_run_matches_uninterrupted_run(tmp_path, unit, duration):
    x, y = data(n=32)
    per_batch = unit == "step"
    epochs = 5

    keras.utils.set_random_seed(0)
    reference = Recorder(per_batch=per_batch)
    small_model().fit(
        x,
        y,
        epochs=epochs,
        batch_size=8,
        verbose=0,
        shuffle=False,
        callbacks=[SurvivalProbabilityScheduler(duration=duration, unit=unit), reference],
    )

    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    keras.utils.set_random_seed(0)
    first = Recorder(per_batch=per_batch)
    with pytest.raises(RuntimeError, match="interrupted"):
        small_model().fit(
            x,
            y,
            epochs=epochs,
            batch_size=8,
            verbose=0,
            shuffle=False,
            callbacks=[
                backup,
                SurvivalProbabilityScheduler(duration=duration, unit=unit),
                first,
                InterruptAfterEpoch(1),
            ],
        )
    # A new process would build a new model: so do we.
    resumed = Recorder(per_batch=per_batch)
    model = small_model()
    model.fit(
        x,
        y,
        epochs=epochs,
        batch_size=8,
        verbose=0,
        shuffle=False,
        callbacks=[
            keras.callbacks.BackupAndRestore(str(tmp_path / "backup")),
            SurvivalProbabilityScheduler(duration=duration, unit=unit),
            resumed,
        ],
    )
    assert first.values + resumed.values == reference.values
    assert len(resumed.values) < len(reference.values), "the second run resumed, it did not restart"


def test_model_without_stochastic_depth_is_refused():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs), name="plain")
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match=r"found no stochastic-depth layer in model 'plain'"):
        model.fit(np.ones((4, 3)), np.ones((4, 1)), verbose=0, callbacks=[SurvivalProbabilityScheduler(duration=2)])


@pytest.mark.parametrize("duration", [None, 0, -1, 2.5, True])
def test_bad_duration_is_refused(duration):
    with pytest.raises(ValueError, match=r"argument `duration`. Expected a positive int"):
        SurvivalProbabilityScheduler(duration=duration)


def test_bad_unit_is_refused():
    with pytest.raises(
        ValueError, match=r"argument `unit`. Expected one of \('epoch', 'step'\). Received: unit='batch'"
    ):
        SurvivalProbabilityScheduler(duration=2, unit="batch")


def test_bad_schedule_is_refused():
    with pytest.raises(TypeError, match=r"argument `schedule`. Expected a callable"):
        SurvivalProbabilityScheduler(schedule=0.5)


def test_bad_initial_survival_probability_is_refused():
    with pytest.raises(ValueError, match=r"argument `initial_survival_probability`. Expected a float between 0 and 1"):
        SurvivalProbabilityScheduler(duration=2, initial_survival_probability=1.5)


def test_schedule_returning_bad_value_is_refused():
    model = small_model()
    x, y = data()
    with pytest.raises(
        ValueError,
        match=r"argument `schedule\(t, target\)`. Expected a float between 0 and 1. Received: schedule\(t, target\)=2.0",
    ):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[SurvivalProbabilityScheduler(schedule=lambda t, target: 2.0)])
