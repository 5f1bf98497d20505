"""Faults: a run SIGKILLed mid-epoch and restarted, a torn backup write, damaged or mismatched files at load.

Each scenario runs in a subprocess with a time limit
(`tests/fault_scenarios.py`), the killed run with a real SIGKILL sent by
the training process to itself after a step drawn at random (seeded). The
model has two skipping `StochasticDepthBlock`s with BatchNormalization, a
per-example `StochasticDepth(mode="sample")` and a
`SurvivalProbabilityScheduler` ramp; 4 epochs of 6 steps, under
`tf.config.experimental.enable_op_determinism()` and
`keras.utils.set_random_seed`.

What Keras 3.15's `keras.callbacks.BackupAndRestore` gives, and so what is
asserted here:

- With `save_freq="epoch"`, a kill anywhere inside an epoch loses that
  epoch's steps only: the restart replays the epoch from its first batch
  and ends bit-identical to an uninterrupted run (every weight,
  BatchNormalization statistic, survival probability, seed state and
  optimizer variable, and the gates drawn afterwards).
- With `save_freq=<steps>`, mid-epoch resume is NOT exact, by Keras'
  design rather than ours: the backup holds the weights and optimizer
  state after the last saved step, and `training_metadata.json` records
  that step's batch index, but on restart `BackupAndRestore._load_model`
  reads only the epoch from it. So `fit` starts that epoch again from
  batch 0 (the data iterator position is not restored) on weights that
  have already seen its first `batch + 1` batches: the run takes
  `batch + 1` extra steps, and weights, gates and the scheduler's ramp
  (which reads the optimizer's step counter) all end elsewhere. The test
  pins exactly that mechanism.
- A kill during the backup's weights write, simulated (see
  `test_torn_weights_write_falls_back_to_previous_backup`), is survived
  with `double_checkpoint=True` and the run still ends bit-identical.
- A damaged or mismatched file fails at load, never loads silently, with
  one exception: bytes corrupted inside a `.weights.h5` file's values
  (HDF5 keeps no checksum of them). Keras' own errors name the file for
  a truncated `.keras` file only; `stochastic_depth_tf.saving`'s loaders
  name it in every case, say what is wrong and chain Keras' error.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from tests.scenario_runner import ROOT, run_scenario

# Bit-identity needs TensorFlow's op determinism; the scenarios are TensorFlow's.
pytestmark = pytest.mark.tensorflow_only

SCENARIOS = os.path.join(ROOT, "tests", "fault_scenarios.py")
TIME_LIMIT = 180  # seconds per process; one takes about 15 s on 2 cores
STEPS_PER_EPOCH, EPOCHS = 6, 4


def run_killed(*args: str) -> str:
    """Runs `fault_scenarios.py args...`, which must die by SIGKILL; returns its stdout."""
    completed = subprocess.run(
        [sys.executable, SCENARIOS, *args],
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        timeout=TIME_LIMIT,
    )
    assert completed.returncode == -signal.SIGKILL, (
        f"expected death by SIGKILL, got exit status {completed.returncode}:\n{completed.stderr[-4000:]}"
    )
    return completed.stdout


def kill_step(seed: int, accept) -> int:
    """A global step drawn at random (seeded) among those inside an epoch (not its last) that `accept`."""
    steps = [
        step for step in range(STEPS_PER_EPOCH + 1, STEPS_PER_EPOCH * EPOCHS) if step % STEPS_PER_EPOCH and accept(step)
    ]
    return random.Random(seed).choice(steps)


def read_metadata(backup_dir: str) -> dict:
    with open(os.path.join(backup_dir, "training_metadata.json")) as file:
        return json.load(file)


def differing(resumed: dict, reference: dict) -> list:
    """Names of the recorded quantities in which the resumed run differs from the reference, bit for bit."""
    names = []
    for key in ("variables", "optimizer", "gated_outputs"):
        assert len(resumed[key]) == len(reference[key])
        names += [
            f"{key}[{index}]"
            for index, (actual, expected) in enumerate(zip(resumed[key], reference[key]))
            if not np.array_equal(np.asarray(actual), np.asarray(expected))
        ]
    return names


def kill_and_restart(tmp_path, save_freq: str, step: int, between=None) -> dict:
    """The same `train` command twice: killed after `step`, then restarted; `between(backup_dir)` runs in between."""
    backup_dir = str(tmp_path / "backup")
    arguments = ("train", backup_dir, save_freq, str(step))
    stdout = run_killed(*arguments)
    assert stdout.split()[-2:] == ["step", str(step)], "killed elsewhere than at the chosen step"
    metadata = read_metadata(backup_dir)
    if between is not None:
        between(backup_dir)
    findings = run_scenario(SCENARIOS, *arguments, timeout=TIME_LIMIT)
    findings["metadata_at_kill"] = metadata
    return findings


def test_run_killed_mid_epoch_resumes_bit_identical_from_epoch_backup(tmp_path):
    step = kill_step(seed=21, accept=lambda step: True)
    findings = kill_and_restart(tmp_path, "epoch", step)
    assert findings["metadata_at_kill"]["epoch"] == step // STEPS_PER_EPOCH, f"kill after step {step}"
    resumed, reference = findings["resumed"], findings["reference"]
    assert resumed["iterations"] == reference["iterations"] == STEPS_PER_EPOCH * EPOCHS
    assert differing(resumed, reference) == [], f"kill after step {step}"


def test_kill_mid_epoch_with_step_backups_replays_the_epoch_so_resume_is_not_exact(tmp_path):
    """The limitation of `save_freq=<steps>` in Keras 3.15 (see the module docstring): the epoch restarts at batch 0."""
    save_freq = 2
    # A kill whose last backup (after step 2 * (step // 2)) lies inside an epoch.
    step = kill_step(seed=21, accept=lambda step: (step // save_freq * save_freq) % STEPS_PER_EPOCH)
    findings = kill_and_restart(tmp_path, str(save_freq), step)
    metadata = findings["metadata_at_kill"]
    saved = step // save_freq * save_freq
    # The backup knows where it was inside the epoch ...
    assert metadata == {"epoch": saved // STEPS_PER_EPOCH, "batch": saved % STEPS_PER_EPOCH - 1}
    resumed, reference = findings["resumed"], findings["reference"]
    # ... but the restart replays the epoch's first `batch + 1` steps on weights that had seen them.
    assert resumed["iterations"] == reference["iterations"] + metadata["batch"] + 1
    assert differing(resumed, reference) != []


def test_torn_weights_write_falls_back_to_previous_backup(tmp_path):
    """A kill during the backup's weights write, simulated on the files; with `double_checkpoint=True` nothing is lost.

    Simulated, not caused: the run is SIGKILLed mid-epoch after at least
    two epoch backups, then the files are put in the state a SIGKILL
    during the last backup's `save_weights` would have left, as Keras 3.15
    writes them (`BackupAndRestore._save_model`: copy `latest.weights.h5`
    and `training_metadata.json` to `.bkp`, write the weights in place,
    then the metadata): the weights file cut to half its bytes, and the
    metadata as it was before that backup (equal to its `.bkp` copy). On
    restart `load_weights` raises `OSError` on the cut file,
    `BackupAndRestore` restores the `.bkp` pair, and training resumes one
    epoch earlier, ending bit-identical. What Keras does not cover (read
    in its source, not tested): without `double_checkpoint` the `OSError`
    stops the restart; a kill while the metadata JSON is written leaves a
    file whose `json.loads` raises `ValueError`, which the fallback does
    not catch, so that restart fails until the `.bkp` pair is copied back
    by hand.
    """
    step = kill_step(seed=21, accept=lambda step: step > 2 * STEPS_PER_EPOCH)

    def tear_last_weights_write(backup_dir):
        weights = os.path.join(backup_dir, "latest.weights.h5")
        with open(weights, "r+b") as file:
            file.truncate(os.path.getsize(weights) // 2)
        metadata = os.path.join(backup_dir, "training_metadata.json")
        shutil.copyfile(metadata + ".bkp", metadata)

    findings = kill_and_restart(tmp_path, "epoch", step, between=tear_last_weights_write)
    resumed, reference = findings["resumed"], findings["reference"]
    assert resumed["iterations"] == reference["iterations"]
    assert differing(resumed, reference) == [], f"kill after step {step}"


def test_damaged_or_mismatched_files_fail_at_load_naming_the_file(tmp_path):
    """Keras 3.15's own errors name only the truncated `.keras` file; `sdt.saving`'s name every one.

    Each of Keras' errors is pinned too, as docs/guides/distributed.md
    tabulates them, and `sdt.saving`'s must chain it. The weights file with
    corrupted bytes is the exception both share: HDF5 keeps no checksum of
    the values, so it loads, silently, with either loader.
    """
    findings = run_scenario(SCENARIOS, "load_errors", str(tmp_path), timeout=TIME_LIMIT)
    keras_errors = {case: finding["keras"] for case, finding in findings.items()}
    ours = {case: finding["ours"] for case, finding in findings.items()}

    assert keras_errors["truncated_keras"]["error"] == "ValueError"
    assert keras_errors["truncated_keras"]["message"].startswith("File not found: filepath=")
    assert keras_errors["truncated_keras"]["names_file"]
    assert keras_errors["corrupted_keras"]["error"] == "BadZipFile"
    assert keras_errors["corrupted_keras"]["message"].startswith("Bad CRC-32 for file 'model.weights.h5'")
    assert keras_errors["truncated_weights"]["error"] == "OSError"
    assert "truncated file" in keras_errors["truncated_weights"]["message"]
    assert keras_errors["other_architecture_weights"]["error"] == "ValueError"
    assert keras_errors["other_architecture_weights"]["message"].startswith("A total of 1 objects could not be loaded")
    assert not any(keras_errors[case]["names_file"] for case in ("corrupted_keras", "truncated_weights"))
    assert not keras_errors["other_architecture_weights"]["names_file"]

    damaged = ("truncated_keras", "corrupted_keras", "truncated_weights")
    for case in (*damaged, "other_architecture_weights"):
        assert ours[case]["names_file"], case
        assert ours[case]["cause"] == keras_errors[case]["error"], case  # Keras' error, chained
    for case in damaged:
        assert ours[case]["error"] == "DamagedFileError", case
        assert ours[case]["message"].startswith("Damaged file received: "), case
    assert "is not a zip archive" in ours["truncated_keras"]["message"]
    assert "'model.weights.h5' fails the zip archive's CRC-32 check" in ours["corrupted_keras"]["message"]
    assert "truncated file" in ours["truncated_weights"]["message"]
    assert ours["other_architecture_weights"]["error"] == "WeightsMismatchError"
    assert ours["other_architecture_weights"]["message"].startswith(
        "Weights of another architecture received in the file"
    )

    assert keras_errors["corrupted_weights"] == ours["corrupted_weights"] == {"error": None}
