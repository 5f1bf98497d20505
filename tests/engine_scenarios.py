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
    branch = keras.Sequential([keras.layers.Dense(8, name="dense"), keras.layers.BatchNormalization(name="bn")], name="branch")
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


def ddp_gates() -> dict:
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
    torch.distributed.destroy_process_group()
    return {"rank": rank, "gates": gates}


def ddp_train() -> dict:
    """One rank: `TRAIN_STEPS` optimizer steps of DDP on its shard; when the block's branch ran, and the weights."""
    import keras
    import torch

    rank = _ddp_start()
    world = torch.distributed.get_world_size()
    model = train_model()
    block_branch = model.get_layer("block").branch
    moving_mean = block_branch.get_layer("bn").moving_mean
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.05)
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
            zero_gradients.append(all(
                variable.value.grad is not None and not torch.any(variable.value.grad != 0).item()
                for variable in block_branch.trainable_variables
            ))
    weights = [keras.ops.convert_to_numpy(variable).tolist() for variable in model.trainable_variables]
    seed_states = [
        keras.ops.convert_to_numpy(variable).tolist() for variable in model.non_trainable_variables if "seed" in variable.path
    ]
    torch.distributed.destroy_process_group()
    return {"rank": rank, "branch_ran": branch_ran, "zero_gradients": zero_gradients, "weights": weights,
            "seed_states": seed_states}


def main(argv: list) -> None:
    name, *args = argv
    print(json.dumps(globals()[name](*args)))


if __name__ == "__main__":
    main(sys.argv[1:])
