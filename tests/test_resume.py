"""Exact resume: an interrupted run, resumed with `BackupAndRestore`, ends bit-identical.

Runs in a subprocess (`tests/distributed_scenarios.py resume`) because op
determinism (`tf.config.experimental.enable_op_determinism`) is process-wide.
The model has two skipping `StochasticDepthBlock`s with BatchNormalization,
a per-example `StochasticDepth` and a `SurvivalProbabilityScheduler`; every
variable (weights, BatchNormalization statistics, survival probabilities,
seed-generator states) must match the uninterrupted run exactly.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from tests.scenario_runner import ROOT, run_scenario

# Bit-identical runs need TensorFlow's op determinism, and the scenario runs
# with tests/distributed_scenarios.py, which is TensorFlow's.
pytestmark = pytest.mark.tensorflow_only

SCENARIOS = os.path.join(ROOT, "tests", "distributed_scenarios.py")
TIME_LIMIT = 240  # seconds; a resume scenario takes about 12 s on 2 cores


@pytest.mark.parametrize("interrupt_after", [0, 2])
def test_resumed_run_is_bit_identical_to_uninterrupted_run(interrupt_after):
    findings = run_scenario(SCENARIOS, "resume", str(interrupt_after), timeout=TIME_LIMIT)
    assert findings["interrupted"]
    reference, resumed = findings["reference"], findings["resumed"]
    assert len(reference) == len(resumed)
    for index, (expected, actual) in enumerate(zip(reference, resumed)):
        assert np.array_equal(np.asarray(expected), np.asarray(actual)), f"variable {index} differs"
