"""Scenarios of the other backends' distributed engines, run by `tests/test_engines.py` as subprocesses.

PyTorch DDP runs one process per rank (gloo on loopback; the rank and the
rendezvous come from the variables `torchrun` sets: `RANK`, `WORLD_SIZE`,
`MASTER_ADDR`, `MASTER_PORT`). JAX's `keras.distribution` needs its host
devices split before JAX starts (`XLA_FLAGS`), and Keras fixes its backend
at import. So each scenario runs in a fresh interpreter with
`KERAS_BACKEND` set and prints one JSON line of findings:

    KERAS_BACKEND=torch RANK=0 WORLD_SIZE=2 ... python tests/engine_scenarios.py ddp_gates
"""

from __future__ import annotations

import datetime
import json
import os
import sys
from typing import NoReturn

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

GATE_STEPS = 120
PER_RANK_BATCH = 8
TRAIN_STEPS = 12
SURVIVAL_PROBABILITY = 0.5
# Bounds the rendezvous and every collective: a rank whose peer died fails
# instead of waiting forever (the test kills both at its own limit anyway).
COLLECTIVE_TIMEOUT = datetime.timedelta(seconds=60)


def gate_model(seed: int = 3):
    """[zeros] -> one gate per output row and mode: `shortcut + b * residual` with shortcut 0, residual 1.

    The residual is a Dense layer with a zero kernel and a bias of one, so
    the model has a weight (DDP wraps only a module with parameters) and the
    outputs are exactly the gates. Each mode gets a seed of its own.
    """
    import keras

    import stochastic_depth_tf as sdt

    inputs = keras.Input((1,))
    residual = keras.layers.Dense(1, kernel_initializer="zeros", bias_initializer="ones", name="ones")(inputs)
    outputs = {
        mode: sdt.StochasticDepth(SURVIVAL_PROBABILITY, mode=mode, seed=seed + index, name=mode)([inputs, residual])
        for index, mode in enumerate(("batch", "sample", "subset"))
    }
    return keras.Model(inputs, outputs)


def train_model():
    """A network with every layer: a skipping block (batch mode, BatchNormalization), the merge layer, ShakeDrop, a subset block.

    Unseeded on purpose: each rank picks its own seeds, and DDP's broadcast
    of rank 0's state must still make the batch gates agree.
    """
    import keras

    import stochastic_depth_tf as sdt

    inputs = keras.Input((8,))
    branch = keras.Sequential(
        [keras.layers.Dense(8, name="dense"), keras.layers.BatchNormalization(name="bn")], name="branch"
    )
    x = sdt.StochasticDepthBlock(branch, survival_probability=SURVIVAL_PROBABILITY, name="block")(inputs)
    x = sdt.StochasticDepth(0.7, mode="sample", name="merge")([x, keras.layers.Dense(8, name="residual")(x)])
    x = sdt.ShakeDrop(0.8, mode="sample", name="shake")([x, keras.layers.Dense(8, name="shake_residual")(x)])
    subset_branch = keras.Sequential([keras.layers.Dense(8)], name="subset_branch")
    x = sdt.StochasticDepthBlock(subset_branch, survival_probability=0.5, mode="subset", name="subset_block")(x)
    return keras.Model(inputs, keras.layers.Dense(1, name="head")(x))


def _ddp_start():
    import torch

    torch.distributed.init_process_group("gloo", timeout=COLLECTIVE_TIMEOUT)
    return torch.distributed.get_rank()


def _end_rank(findings: dict) -> NoReturn:
    """Writes a DDP rank's findings and leaves the interpreter at once.

    The teardown is skipped on purpose. Twice in fresh-clone runs a rank of
    `ddp_train` hung to its 240 s limit; the second time faulthandler placed
    it in `main`, on the line that calls the function (which had finished),
    with one other thread in C. That is the destruction of the function's
    locals (the DDP reducer, its gloo threads) after `destroy_process_group`.
    The findings are complete by then, so the rank writes them, flushes and
    exits with `os._exit`.
    """
    import torch

    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    print(json.dumps(findings), flush=True)
    sys.stderr.flush()
    os._exit(0)


def ddp_gates() -> NoReturn:
    """One rank: the gates of every mode over `GATE_STEPS` forward passes of a DDP-wrapped model."""
    import keras
    import torch

    rank = _ddp_start()
    model = torch.nn.parallel.DistributedDataParallel(gate_model())
    zeros = torch.zeros((PER_RANK_BATCH, 1))
    gates = {mode: [] for mode in ("batch", "sample", "subset")}
    with torch.no_grad():
        for _ in range(GATE_STEPS):
            outputs = model(zeros, training=True)
            for mode in gates:
                gates[mode].append(keras.ops.convert_to_numpy(outputs[mode])[:, 0].tolist())
    _end_rank({"rank": rank, "gates": gates})


def ddp_train() -> NoReturn:
    """One rank: `TRAIN_STEPS` optimizer steps of DDP on its shard; when the block's branch ran, and the weights."""
    import keras
    import torch

    rank = _ddp_start()
    world = torch.distributed.get_world_size()
    model = train_model()
    block_branch = model.get_layer("block").branch
    moving_mean = block_branch.get_layer("bn").moving_mean
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    # A small step: at 0.05 some unseeded draws diverged within 12 steps, and a NaN upstream
    # gradient makes even a skipped branch's 0 * weights gradient NaN.
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.01)
    rng = np.random.default_rng(0)  # the same global data on every rank; each takes its rows
    branch_ran, zero_gradients = [], []
    for _ in range(TRAIN_STEPS):
        x = rng.standard_normal((world * PER_RANK_BATCH, 8)).astype("float32")
        y = x.sum(axis=1, keepdims=True)
        rows = slice(rank * PER_RANK_BATCH, (rank + 1) * PER_RANK_BATCH)
        before = keras.ops.convert_to_numpy(moving_mean).copy()
        loss = torch.nn.functional.mse_loss(ddp(torch.from_numpy(x[rows]), training=True), torch.from_numpy(y[rows]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        ran = bool(np.any(keras.ops.convert_to_numpy(moving_mean) != before))
        branch_ran.append(ran)
        if not ran:  # a skipped branch's weights get zero gradients, which DDP all-reduced
            zero_gradients.append(
                all(
                    variable.value.grad is not None and not torch.any(variable.value.grad != 0).item()
                    for variable in block_branch.trainable_variables
                )
            )
    weights = [keras.ops.convert_to_numpy(variable).tolist() for variable in model.trainable_variables]
    seed_states = [
        keras.ops.convert_to_numpy(variable).tolist()
        for variable in model.non_trainable_variables
        if "seed" in variable.path
    ]
    _end_rank(
        {
            "rank": rank,
            "branch_ran": branch_ran,
            "zero_gradients": zero_gradients,
            "weights": weights,
            "seed_states": seed_states,
        }
    )


def _jax_distribution(kind: str):
    """`keras.distribution.DataParallel`, or `ModelParallel` sharding every branch kernel's output axis, on all devices."""
    import jax
    import keras

    devices = jax.devices()
    if kind == "data_parallel":
        return keras.distribution.DataParallel(devices=devices)
    mesh = keras.distribution.DeviceMesh((1, len(devices)), ("batch", "model"), devices)
    layout_map = keras.distribution.LayoutMap(mesh)
    layout_map[".*branch.*kernel"] = (None, "model")  # a Dense branch's [in, out] kernel, split by columns
    return keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch")


def jax_gates() -> dict:
    """The gates of every mode over one global batch sharded on two devices, for `GATE_STEPS` jitted steps.

    The step is Keras' own stateless call under `jax.jit`, as `fit` runs
    it, with the seed states carried from step to step and the input laid
    out by the distribution (rows 0-7 on one device, 8-15 on the other).
    """
    import jax
    import keras

    distribution = _jax_distribution("data_parallel")
    keras.distribution.set_distribution(distribution)
    model = gate_model()
    zeros = np.zeros((2 * PER_RANK_BATCH, 1), "float32")
    zeros = keras.distribution.distribute_tensor(zeros, distribution.get_data_layout(zeros.shape))

    @jax.jit
    def step(trainable, non_trainable, inputs):
        return model.stateless_call(trainable, non_trainable, inputs, training=True)

    trainable = [variable.value for variable in model.trainable_variables]
    non_trainable = [variable.value for variable in model.non_trainable_variables]
    gates = {mode: [] for mode in ("batch", "sample", "subset")}
    for _ in range(GATE_STEPS):
        outputs, non_trainable = step(trainable, non_trainable, zeros)
        for mode in gates:
            gates[mode].append(np.asarray(outputs[mode])[:, 0].tolist())
    shards = len(outputs["sample"].sharding.device_set)
    return {"devices": len(jax.devices()), "output_shards": shards, "gates": gates}


def jax_model(kind: str, mode: str):
    """One layer of the package between a Dense stem and head: its branch is a Dense named `branch...`."""
    import keras

    import stochastic_depth_tf as sdt

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    x = keras.layers.Dense(8, name="stem")(inputs)
    if kind == "block":
        branch = keras.Sequential(
            [keras.layers.Dense(8, name="branch_dense"), keras.layers.BatchNormalization(name="bn")], name="branch"
        )
        x = sdt.StochasticDepthBlock(branch, survival_probability=SURVIVAL_PROBABILITY, mode=mode, seed=1, name="sd")(x)
    else:
        layer = sdt.StochasticDepth if kind == "merge" else sdt.ShakeDrop
        residual = keras.layers.Dense(8, name="branch")(x)
        x = layer(SURVIVAL_PROBABILITY, mode=mode, seed=1, name="sd")([x, residual])
    model = keras.Model(inputs, keras.layers.Dense(1, name="head")(x))
    model.compile(keras.optimizers.SGD(0.01), "mse")
    return model


JAX_MODELS = [
    ("merge", "batch"),
    ("merge", "sample"),
    ("merge", "subset"),
    ("block", "batch"),
    ("block", "sample"),
    ("block", "subset"),
    ("shake", "batch"),
    ("shake", "sample"),
]


def _jax_data() -> tuple:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 8)).astype("float32")
    return x, x.sum(axis=1, keepdims=True)


def jax_fit(distribution_kind: str, directory: str) -> dict:
    """fit, evaluate and save every layer and mode under a distribution; the predictions beside each file."""
    import jax
    import keras

    distribution = _jax_distribution(distribution_kind)
    keras.distribution.set_distribution(distribution)
    x, y = _jax_data()
    findings = {"devices": len(jax.devices())}
    for kind, mode in JAX_MODELS:
        name = f"{kind}-{mode}"
        model = jax_model(kind, mode)
        kernel = (
            model.get_layer("sd").branch.get_layer("branch_dense").kernel
            if kind == "block"
            else model.get_layer("branch").kernel
        )
        history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
        loss = model.evaluate(x, y, batch_size=16, verbose=0)
        model.save(os.path.join(directory, f"{distribution_kind}-{name}.keras"))
        np.save(os.path.join(directory, f"{distribution_kind}-{name}.npy"), model.predict(x, batch_size=16, verbose=0))
        findings[name] = {
            "losses": history.history["loss"] + [loss],
            "kernel_shards": len(kernel.value.sharding.device_set),
            "kernel_sharded": not kernel.value.sharding.is_fully_replicated,
        }
    return findings


def jax_reload(directory: str, *distribution_kinds: str) -> dict:
    """In a fresh process on one device: every saved file's predictions against those saved beside it."""
    import jax
    import keras

    import stochastic_depth_tf  # noqa: F401  (registers the layers, as a user's import does)

    x, _ = _jax_data()
    differences = {}
    for distribution_kind in distribution_kinds:
        for kind, mode in JAX_MODELS:
            name = f"{distribution_kind}-{kind}-{mode}"
            model = keras.models.load_model(os.path.join(directory, f"{name}.keras"))
            expected = np.load(os.path.join(directory, f"{name}.npy"))
            differences[name] = float(np.max(np.abs(model.predict(x, batch_size=16, verbose=0) - expected)))
    return {"devices": len(jax.devices()), "differences": differences}


SCENARIOS = {
    "ddp_gates": ddp_gates,
    "ddp_train": ddp_train,
    "jax_gates": jax_gates,
    "jax_fit": jax_fit,
    "jax_reload": jax_reload,
}

if __name__ == "__main__":
    from scenario_runner import run  # from the script's folder, tests/, on sys.path

    run(SCENARIOS)
