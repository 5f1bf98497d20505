"""The other backends' distributed engines: PyTorch DDP and JAX's `keras.distribution`.

The replica rules (docs/guides/semantics.md), on each engine: batch gates are one
per global step on every rank or device shard (so every rank takes the same
branch of a skipping block); per-example and subset gates are independent
across the whole global batch. Every scenario runs in subprocesses of
`tests/engine_scenarios.py` with a time limit: two gloo processes on
loopback for DDP, two host devices (`XLA_FLAGS`) for JAX. These tests start
the backends themselves, so they run once, in the TensorFlow pass of
`tests/all_backends.py`.
"""

from __future__ import annotations

import os
import pathlib

import keras
import numpy as np
import pytest

from tests import scenario_runner
from tests.markdown_snippets import fenced

SCENARIOS = os.path.join(scenario_runner.ROOT, "tests", "engine_scenarios.py")
DISTRIBUTED_GUIDE = pathlib.Path(scenario_runner.ROOT) / "docs" / "guides" / "distributed.md"
TIME_LIMIT = 240  # seconds; a scenario takes 20 to 60 s on 2 shared cores

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="starts its backends in subprocesses itself: run once, in the TensorFlow pass",
)


def ddp_environment(index: int, ports: list) -> dict:
    """What `torchrun --nproc-per-node 2` sets for rank `index`, on loopback."""
    return {
        "KERAS_BACKEND": "torch",
        "RANK": str(index),
        "LOCAL_RANK": str(index),
        "WORLD_SIZE": "2",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(ports[0]),
        # torchrun's default with several processes per node: one thread each, so two
        # ranks do not oversubscribe 2 cores (a CI run once had both ranks pass the limit)
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [scenario_runner.ROOT, os.environ.get("PYTHONPATH")])),
    }


def run_ddp(name: str) -> list:
    ranks = scenario_runner.run_processes(SCENARIOS, name, count=2, timeout=TIME_LIMIT, environment=ddp_environment)
    assert [found["rank"] for found in ranks] == [0, 1]
    return ranks


@pytest.fixture(scope="module")
def ddp_gates() -> dict:
    ranks = run_ddp("ddp_gates")
    return {
        mode: np.asarray([found["gates"][mode] for found in ranks]) for mode in ranks[0]["gates"]
    }  # [rank, step, row]


def test_ddp_batch_gate_is_one_per_step_on_every_rank(ddp_gates):
    gates = ddp_gates["batch"]
    _, steps, _ = gates.shape
    assert np.array_equal(gates[0], gates[1])  # every rank, every step
    assert np.all(gates == gates[:, :, :1])  # one gate for the whole batch
    # Keep rate: p = 0.5 within 4 binomial standard deviations over the steps.
    assert abs(gates[0, :, 0].mean() - 0.5) < 4 * np.sqrt(0.25 / steps)


def test_ddp_sample_gates_are_independent_across_ranks(ddp_gates):
    gates = ddp_gates["sample"]
    _, steps, batch = gates.shape
    pairs = steps * batch
    # Row i of rank 0 and row i of rank 1 agree with probability
    # p^2 + (1 - p)^2 = 0.5 when independent; always when copies (the bug:
    # DDP broadcast rank 0's seed state, and 50 of 50 steps were identical).
    agreement = (gates[0] == gates[1]).mean()
    assert abs(agreement - 0.5) < 4 * np.sqrt(0.25 / pairs), agreement
    # Whole steps identical: steps / 2^8 expected (0.5 for 120 steps); P(more than 5) < 1e-4.
    identical_steps = int(np.sum(np.all(gates[0] == gates[1], axis=1)))
    assert identical_steps <= 5, identical_steps
    for rank in range(2):
        assert abs(gates[rank].mean() - 0.5) < 4 * np.sqrt(0.25 / pairs), rank


def test_ddp_subset_gates_keep_k_per_rank_independently(ddp_gates):
    gates = ddp_gates["subset"]
    _, steps, batch = gates.shape
    # Exactly k = round(p * B) = 4 of 8 rows kept on every rank at every step.
    assert np.all(gates.sum(axis=2) == 4)
    # Two independent 4-of-8 subsets agree on a row with probability 0.5;
    # the rows of one step are dependent (hypergeometric overlap), so the
    # bound uses that variance: 2X agreements, Var(X) = 4/7 per step.
    agreement = (gates[0] == gates[1]).mean()
    assert abs(agreement - 0.5) < 4 * np.sqrt(4 * (4 / 7) / steps) / batch, agreement
    # Identical subsets: 1 / C(8, 4) = 1/70 per step, 1.7 expected; P(more than 9) < 1e-4.
    identical_steps = int(np.sum(np.all(gates[0] == gates[1], axis=1)))
    assert identical_steps <= 9, identical_steps


@pytest.fixture(scope="module")
def ddp_training() -> list:
    return run_ddp("ddp_train")


def test_ddp_skipping_block_takes_the_same_branch_on_every_rank(ddp_training):
    first, second = (found["branch_ran"] for found in ddp_training)
    assert first == second
    assert 0 < sum(first) < len(first), first  # some steps skipped, some ran


def test_ddp_skipped_branch_gets_zero_gradients_on_every_rank(ddp_training):
    for found in ddp_training:
        assert found["zero_gradients"] and all(found["zero_gradients"])


def test_ddp_ranks_end_with_equal_weights_and_seed_states(ddp_training):
    first, second = ddp_training
    assert len(first["weights"]) == len(second["weights"]) > 0
    for a, b in zip(first["weights"], second["weights"]):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # Unseeded layers: every rank advanced rank 0's broadcast state alike.
    assert first["seed_states"] == second["seed_states"] and first["seed_states"]


def guide_ddp_example() -> str:
    examples = fenced(DISTRIBUTED_GUIDE, "python torchrun")
    assert len(examples) == 1
    return examples[0]


def test_guide_ddp_example_runs_on_two_ranks(tmp_path):
    script = tmp_path / "ddp_example.py"
    script.write_text(guide_ddp_example(), encoding="utf-8")
    outputs = scenario_runner.run_processes(
        str(script), count=2, timeout=TIME_LIMIT, environment=ddp_environment, cwd=str(tmp_path), parse=False
    )
    for rank, output in enumerate(outputs):
        assert f"rank {rank}: loss" in output
    assert (tmp_path / "ddp_model.keras").exists()  # rank 0 saved the model


JAX_TWO_DEVICES = {"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
JAX_MODELS = [
    "merge-batch",
    "merge-sample",
    "merge-subset",
    "block-batch",
    "block-sample",
    "block-subset",
    "shake-batch",
    "shake-sample",
]
DISTRIBUTIONS = ("data_parallel", "model_parallel")


def run_jax(name: str, *args: str, environment: dict) -> dict:
    return scenario_runner.run_scenario(SCENARIOS, name, *args, timeout=TIME_LIMIT, environment=environment)


@pytest.fixture(scope="module")
def jax_gates() -> dict:
    found = run_jax("jax_gates", environment=JAX_TWO_DEVICES)
    assert found["devices"] == 2 and found["output_shards"] == 2  # the global batch really was split
    # [step, row] over the global batch; rows 0-7 on one device, 8-15 on the other
    return {mode: np.asarray(gates) for mode, gates in found["gates"].items()}


def test_jax_data_parallel_batch_gate_is_one_per_step_across_shards(jax_gates):
    gates = jax_gates["batch"]
    steps = gates.shape[0]
    assert np.all(gates == gates[:, :1])  # one gate for the global batch: both shards alike
    assert abs(gates[:, 0].mean() - 0.5) < 4 * np.sqrt(0.25 / steps)


def test_jax_data_parallel_sample_gates_are_independent_across_shards(jax_gates):
    gates = jax_gates["sample"]
    steps, rows = gates.shape
    first, second = gates[:, : rows // 2], gates[:, rows // 2 :]
    pairs = first.size
    agreement = (first == second).mean()
    assert abs(agreement - 0.5) < 4 * np.sqrt(0.25 / pairs), agreement
    # Identical shard halves: steps / 2^8 expected (0.5); P(more than 5) < 1e-4.
    assert int(np.sum(np.all(first == second, axis=1))) <= 5
    assert abs(gates.mean() - 0.5) < 4 * np.sqrt(0.25 / gates.size)


def test_jax_data_parallel_subset_is_drawn_over_the_global_batch(jax_gates):
    gates = jax_gates["subset"]
    steps, rows = gates.shape
    # One program sees the global batch: k = round(p * 16) = 8 of the 16
    # rows (not 4 per shard, as under tf.distribute's per-replica programs).
    assert np.all(gates.sum(axis=1) == 8)
    first, second = gates[:, : rows // 2], gates[:, rows // 2 :]
    # Row i of each half agrees with probability 2 * (8/16) * (7/15) = 7/15
    # for a uniform 8-of-16 subset; bound by 4 binomial sd of the pairs,
    # times 2 for the dependence within a step.
    agreement = (first == second).mean()
    assert abs(agreement - 7 / 15) < 8 * np.sqrt(0.25 / first.size), agreement
    # Identical halves: C(8,4) / C(16,8) = 1/184 per step, 0.65 expected; P(more than 5) < 1e-4.
    assert int(np.sum(np.all(first == second, axis=1))) <= 5


@pytest.fixture(scope="module")
def jax_trained(tmp_path_factory) -> dict:
    directory = str(tmp_path_factory.mktemp("jax_distributed"))
    fitted = {kind: run_jax("jax_fit", kind, directory, environment=JAX_TWO_DEVICES) for kind in DISTRIBUTIONS}
    reloaded = run_jax("jax_reload", directory, *DISTRIBUTIONS, environment={"KERAS_BACKEND": "jax"})
    return {"fitted": fitted, "reloaded": reloaded}


@pytest.mark.slow
@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
@pytest.mark.parametrize("name", JAX_MODELS)
def test_jax_distribution_fit_evaluate_save_and_reload_on_one_device(jax_trained, distribution, name):
    fitted = jax_trained["fitted"][distribution]
    assert fitted["devices"] == 2
    losses = fitted[name]["losses"]  # two epochs of fit, then evaluate
    assert np.all(np.isfinite(losses)) and losses[1] < losses[0]
    # ModelParallel split the branch kernel over the two devices; DataParallel replicated it.
    assert fitted[name]["kernel_sharded"] == (distribution == "model_parallel")
    reloaded = jax_trained["reloaded"]
    assert reloaded["devices"] == 1
    assert reloaded["differences"][f"{distribution}-{name}"] < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("name", JAX_MODELS)
def test_jax_gates_do_not_depend_on_how_the_step_is_sharded(jax_trained, name):
    # The same seeds under DataParallel and ModelParallel: the same gates,
    # hence the same losses up to float32 rounding of a split matmul.
    data, model = (jax_trained["fitted"][kind][name]["losses"] for kind in DISTRIBUTIONS)
    np.testing.assert_allclose(data, model, rtol=1e-5)
