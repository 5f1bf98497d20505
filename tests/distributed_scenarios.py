"""Scenarios that need a process of their own, run by the tests as subprocesses.

`tf.distribute.MirroredStrategy` on two logical CPU devices must split the
CPU before TensorFlow runs any op, and op determinism is process-wide; so
each scenario runs in a fresh interpreter and prints one JSON line of
findings for the test to assert on:

    python tests/distributed_scenarios.py NAME [ARGS...]
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

STEPS = 200
PER_REPLICA_BATCH = 8


def split_cpu(count: int = 2) -> None:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)


def mirrored() -> tf.distribute.Strategy:
    split_cpu()
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def gate_step(strategy: tf.distribute.Strategy, layers: dict) -> tf.types.experimental.GenericFunction:
    """A step that returns, per replica, each layer's gates (shortcut 0, residual 1)."""

    @tf.function
    def step():
        def on_replica():
            zeros = tf.zeros((PER_REPLICA_BATCH, 1))
            ones = tf.ones((PER_REPLICA_BATCH, 1))
            return {name: layer([zeros, ones], training=True)[:, 0] for name, layer in layers.items()}

        return strategy.run(on_replica)

    return step


def record_gates(strategy: tf.distribute.Strategy, layers: dict, steps: int) -> dict:
    """{name: array [steps, replicas, batch]} of the gates drawn on each local replica."""
    step = gate_step(strategy, layers)
    gates = {name: [] for name in layers}
    for _ in range(steps):
        result = step()
        for name in layers:
            gates[name].append([r.numpy() for r in strategy.experimental_local_results(result[name])])
    return {name: np.asarray(values) for name, values in gates.items()}


def mirrored_gates() -> dict:
    """Batch and sample gates of seeded merge layers over 200 steps on 2 replicas."""
    strategy = mirrored()
    import stochastic_depth_tf as sdt

    with strategy.scope():
        layers = {
            "batch": sdt.StochasticDepth(0.5, mode="batch", seed=3),
            "sample": sdt.StochasticDepth(0.5, mode="sample", seed=3),
        }
    gates = record_gates(strategy, layers, STEPS)
    return {name: value.tolist() for name, value in gates.items()}


def resume_model(width: int = 1):
    """Two skipping blocks, a per-example merge layer, a Dense head of `width` outputs; seeded."""
    import keras

    import stochastic_depth_tf as sdt

    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 4))
    h = inputs
    for index in range(2):
        branch = keras.Sequential([keras.layers.Conv2D(4, 3, padding="same"), keras.layers.BatchNormalization()])
        h = sdt.StochasticDepthBlock(branch, survival_probability=0.5, seed=10 + index)(h)
    h = sdt.StochasticDepth(0.6, mode="sample", seed=20)([h, keras.layers.Conv2D(4, 1)(h)])
    outputs = keras.layers.Dense(width)(keras.layers.GlobalAveragePooling2D()(h))
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), "mse")
    return model


def toy_data(n: int = 32, shape=(6, 6, 4)) -> tuple:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n,) + shape).astype("float32"), rng.normal(size=(n, 1)).astype("float32")


def toy_model(kind: str, mode: str, synchronized: bool = False, seed: int = 1):
    import keras

    import stochastic_depth_tf as sdt

    inputs = keras.Input((6, 6, 4))
    if kind == "merge":
        branch = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
        x = sdt.StochasticDepth(0.5, mode=mode, seed=seed, name="sd")([inputs, branch])
    elif kind == "shake":
        branch = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
        x = sdt.ShakeDrop(0.5, mode=mode, seed=seed, name="sd")([inputs, branch])
    elif kind == "add":  # the plain residual network, for comparison
        branch = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
        branch = keras.layers.BatchNormalization(synchronized=synchronized, name="bn")(branch)
        x = keras.layers.Add(name="sd")([inputs, branch])
    else:
        branch = keras.Sequential(
            [
                keras.layers.Conv2D(4, 3, padding="same", name="conv"),
                keras.layers.BatchNormalization(synchronized=synchronized, name="bn"),
            ],
            name="branch",
        )
        x = sdt.StochasticDepthBlock(branch, survival_probability=0.5, mode=mode, seed=seed, name="sd")(inputs)
    outputs = keras.layers.Dense(1, name="head")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.SGD(0.01), "mse")
    return model


def mirrored_fit_save_reload() -> dict:
    """fit, evaluate, .keras save and reload (with and without the strategy) per layer and mode."""
    strategy = mirrored()
    import keras

    x, y = toy_data()
    findings = {}
    with tempfile.TemporaryDirectory() as directory:
        for kind, mode in [
            ("merge", "batch"),
            ("merge", "sample"),
            ("block", "batch"),
            ("block", "sample"),
            ("shake", "batch"),
            ("shake", "sample"),
            ("add", ""),
        ]:
            name = f"{kind}-{mode}" if mode else kind
            with strategy.scope():
                model = toy_model(kind, mode)
            history = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
            loss = model.evaluate(x, y, batch_size=16, verbose=0)
            path = os.path.join(directory, f"{name}.keras")
            model.save(path)
            with strategy.scope():
                mirrored_copy = keras.saving.load_model(path)
            plain_copy = keras.saving.load_model(path)
            predictions = model.predict(x, batch_size=16, verbose=0)
            findings[name] = {
                "losses": history.history["loss"] + [loss],
                "mirrored_vs_original": float(
                    np.max(np.abs(mirrored_copy.predict(x, batch_size=16, verbose=0) - predictions))
                ),
                "plain_vs_mirrored": float(
                    np.max(
                        np.abs(plain_copy.predict(x, verbose=0) - mirrored_copy.predict(x, batch_size=16, verbose=0))
                    )
                ),
                "evaluate_reloaded": float(plain_copy.evaluate(x, y, verbose=0)),
            }
    return findings


def moving_mean_recorder(strategy: tf.distribute.Strategy, layer):
    """A callback that reads a BatchNormalization's moving mean on every replica after each batch."""
    import keras

    class Recorder(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.values = []

        def on_train_batch_end(self, batch, logs=None):
            components = strategy.experimental_local_results(layer.moving_mean.value)
            self.values.append([np.asarray(component).tolist() for component in components])

    return Recorder()


def mirrored_synchronized_batch_normalization() -> dict:
    """A skipping block whose branch holds synchronized (and plain) BatchNormalization."""
    strategy = mirrored()
    x, y = toy_data(n=160)
    findings = {}
    for synchronized in (True, False):
        with strategy.scope():
            model = toy_model("block", "batch", synchronized=synchronized)
        recorder = moving_mean_recorder(strategy, model.get_layer("sd").branch.get_layer("bn"))
        model.fit(x, y, epochs=1, batch_size=16, verbose=0, shuffle=False, callbacks=[recorder])
        findings["synchronized" if synchronized else "plain"] = recorder.values
    findings["custom_collective_error"] = custom_collective_error(strategy, x, y)
    return findings


def custom_collective_error(strategy: tf.distribute.Strategy, x: np.ndarray, y: np.ndarray) -> str:
    """What `fit` raises for a skipping block whose branch all-reduces by itself."""
    import keras

    import stochastic_depth_tf as sdt

    class ReplicaMean(keras.layers.Layer):
        def call(self, inputs):
            context = tf.distribute.get_replica_context()
            if context is None:  # symbolic build, in the cross-replica context
                return inputs
            return context.all_reduce(tf.distribute.ReduceOp.MEAN, inputs)

    with strategy.scope():
        inputs = keras.Input((6, 6, 4))
        branch = keras.Sequential([keras.layers.Conv2D(4, 3, padding="same"), ReplicaMean()])
        x_out = sdt.StochasticDepthBlock(branch, survival_probability=0.5, seed=1)(inputs)
        model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.GlobalAveragePooling2D()(x_out)))
        model.compile("sgd", "mse")
    try:
        model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    except RuntimeError as error:
        return str(error)
    return ""


def resume(interrupt_after: str) -> dict:
    """Uninterrupted and interrupted-then-resumed runs under op determinism.

    A model of two skipping blocks and a per-example merge layer, ramped by
    `SurvivalProbabilityScheduler`, trained for 5 epochs; the second run is
    interrupted after epoch `interrupt_after` and resumed by a new model (a
    new process would build one) through `keras.callbacks.BackupAndRestore`.
    """
    import keras

    import stochastic_depth_tf as sdt

    tf.config.experimental.enable_op_determinism()
    x, y = toy_data(n=48)

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == int(interrupt_after):
                raise RuntimeError("interrupted")

    def fit(model, callbacks):
        scheduler = sdt.callbacks.SurvivalProbabilityScheduler(duration=3)
        model.fit(
            x,
            y,
            epochs=5,
            batch_size=8,
            shuffle=False,
            verbose=0,
            callbacks=[*callbacks[:1], scheduler, *callbacks[1:]],
        )
        return [np.asarray(v).tolist() for v in model.variables]

    reference = fit(resume_model(), [])
    with tempfile.TemporaryDirectory() as directory:
        try:
            fit(resume_model(), [keras.callbacks.BackupAndRestore(directory), Interrupt()])
            interrupted = False
        except RuntimeError:
            interrupted = True
        resumed = fit(resume_model(), [keras.callbacks.BackupAndRestore(directory)])
    return {"interrupted": interrupted, "reference": reference, "resumed": resumed}


def multi_worker() -> dict:
    """One worker of a two-process `MultiWorkerMirroredStrategy` on loopback (`TF_CONFIG` from the environment)."""
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    import stochastic_depth_tf as sdt

    with strategy.scope():
        # Unseeded on purpose: each worker process picks its own seed, and
        # the batch gates must still agree (initial values come from worker 0).
        layers = {"batch": sdt.StochasticDepth(0.5, mode="batch"), "sample": sdt.StochasticDepth(0.5, mode="sample")}
    gates = record_gates(strategy, layers, 50)
    x, y = toy_data()
    with strategy.scope():
        model = toy_model("block", "batch", seed=None)
        optimizer = model.optimizer
    # A custom loop: Keras 3.15's `fit` under this strategy fails before the
    # first step for any model (its symbolic build all-reduces the input
    # batch, which TensorFlow refuses), a plain `Add` network included.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16).with_options(options)

    @tf.function
    def train_step(inputs, targets):
        def on_replica(inputs, targets):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(model(inputs, training=True) - targets))
            gradients = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))
            return loss

        return strategy.run(on_replica, args=(inputs, targets))

    for _ in range(2):
        for inputs, targets in strategy.experimental_distribute_dataset(dataset):
            train_step(inputs, targets)
    return {
        "replicas": strategy.num_replicas_in_sync,
        "gates": {name: value.tolist() for name, value in gates.items()},
        "weights": [np.asarray(w).tolist() for w in model.trainable_weights],
    }


def multi_worker_fit() -> dict:
    """One worker (`TF_CONFIG` from the environment): what Keras' `fit` does under `MultiWorkerMirroredStrategy`.

    A plain `Add` network, no layer of ours, fed three ways: NumPy arrays,
    and a `tf.data.Dataset` with each auto-shard policy that applies to
    in-memory data (`DATA`, `OFF`). Returns, per way, the error and whether
    it was raised from Keras' `_maybe_symbolic_build`, or the losses.
    """
    import traceback

    import keras

    keras.config.disable_traceback_filtering()  # keep Keras' own frames, to name the one that raises
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    x, y = toy_data()
    outcomes = {}
    for feed in ("numpy", "dataset_data", "dataset_off"):
        with strategy.scope():
            model = toy_model("add", "")
        if feed == "numpy":
            arguments = {"x": x, "y": y, "batch_size": 16}
        else:
            options = tf.data.Options()
            policy = "DATA" if feed == "dataset_data" else "OFF"
            options.experimental_distribute.auto_shard_policy = getattr(tf.data.experimental.AutoShardPolicy, policy)
            arguments = {"x": tf.data.Dataset.from_tensor_slices((x, y)).batch(16).with_options(options)}
        try:
            history = model.fit(**arguments, epochs=1, verbose=0)
            outcomes[feed] = {"losses": history.history["loss"]}
        except Exception as error:  # what fails is the finding
            frames = [frame.name for frame in traceback.extract_tb(error.__traceback__)]
            outcomes[feed] = {
                "error": type(error).__name__,
                "message": str(error).splitlines()[0],
                "raised_in_symbolic_build": "_maybe_symbolic_build" in frames,
            }
    return {
        "replicas": strategy.num_replicas_in_sync,
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
        "outcomes": outcomes,
    }


SCENARIOS = {
    "mirrored_gates": mirrored_gates,
    "mirrored_fit_save_reload": mirrored_fit_save_reload,
    "mirrored_synchronized_batch_normalization": mirrored_synchronized_batch_normalization,
    "resume": resume,
    "multi_worker": multi_worker,
    "multi_worker_fit": multi_worker_fit,
}

if __name__ == "__main__":
    from scenario_runner import run  # from the script's folder, tests/, on sys.path

    run(SCENARIOS)
