"""Fault scenarios run by `tests/test_faults.py` as subprocesses, one JSON line of findings each.

    python tests/fault_scenarios.py train BACKUP_DIR SAVE_FREQ KILL_STEP
    python tests/fault_scenarios.py load_errors DIRECTORY

`train` is one training command, run twice by the test with the same
arguments: the first run SIGKILLs itself after global step `KILL_STEP`
(the marker file `BACKUP_DIR.killed` tells the second run that the kill
already happened), the second resumes from the backup through
`keras.callbacks.BackupAndRestore` and then trains the same model without
interruption in the same process, for reference. Op determinism is
process-wide, hence the subprocesses.
"""

from __future__ import annotations

import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tests.distributed_scenarios import resume_model, toy_data  # noqa: E402

EPOCHS = 4
BATCH_SIZE = 8
SAMPLES = 48  # 6 steps an epoch, 24 in all


def fit_and_record(model, callbacks: list) -> dict:
    """Trains `model`, then records its state and what it draws next.

    Returns every model variable (weights, BatchNormalization statistics,
    survival probabilities, seed states), the optimizer's variables (its
    step counter and momenta), and three training-mode outputs after the
    run, which depend on the gates drawn after it.
    """
    import stochastic_depth_tf as sdt

    x, y = toy_data(n=SAMPLES)
    scheduler = sdt.callbacks.SurvivalProbabilityScheduler(duration=3)
    model.fit(
        x,
        y,
        epochs=EPOCHS,
        batch_size=BATCH_SIZE,
        shuffle=False,
        verbose=0,
        callbacks=[*callbacks[:1], scheduler, *callbacks[1:]],
    )
    gated = [np.asarray(model(x[:8], training=True)).tolist() for _ in range(3)]
    return {
        "variables": [np.asarray(v).tolist() for v in model.variables],
        "optimizer": [np.asarray(v).tolist() for v in model.optimizer.variables],
        "iterations": int(model.optimizer.iterations.numpy()),
        "gated_outputs": gated,
    }


def train(backup_dir: str, save_freq: str, kill_step: str) -> dict:
    """Trains with `BackupAndRestore(backup_dir, save_freq)`; the first run SIGKILLs itself after step `kill_step`."""
    import keras

    kill_after = int(kill_step)

    tf.config.experimental.enable_op_determinism()
    marker = backup_dir.rstrip(os.sep) + ".killed"

    class KillOnce(keras.callbacks.Callback):
        """After `kill_step` steps (the backup callback, listed first, has run for that step), a real SIGKILL."""

        def __init__(self):
            super().__init__()
            self.steps = 0

        def on_train_batch_end(self, batch, logs=None):
            self.steps += 1
            print(f"step {self.steps}", flush=True)
            if self.steps == kill_after and not os.path.exists(marker):
                open(marker, "w").close()
                os.kill(os.getpid(), signal.SIGKILL)

    backup = keras.callbacks.BackupAndRestore(
        backup_dir, save_freq="epoch" if save_freq == "epoch" else int(save_freq), double_checkpoint=True
    )
    resumed = fit_and_record(resume_model(), [backup, KillOnce()])
    reference = fit_and_record(resume_model(), [])
    return {"resumed": resumed, "reference": reference}


def load_errors(directory: str) -> dict:
    """What Keras raises, and what `stochastic_depth_tf.saving` raises, for damaged or mismatched files.

    Writes a `.keras` file and a weights file of a model with our layers,
    then a truncated copy of each, a copy of each with 200 bytes inverted
    in its middle, and the weights of the same model with a 3-wide head.
    Loads each with Keras' loader (`keras.saving.load_model`,
    `model.load_weights`) and with ours (`sdt.saving.load_model`,
    `sdt.saving.load_weights`); returns, per case and loader, the error's
    type, its first line, whether the message names the file, and the type
    of the error it chains (None when the file loads).
    """
    import keras

    import stochastic_depth_tf as sdt

    model = resume_model()
    model.save(os.path.join(directory, "model.keras"))
    model.save_weights(os.path.join(directory, "model.weights.h5"))
    resume_model(width=3).save_weights(os.path.join(directory, "wider_head.weights.h5"))

    def damaged(name: str, new_name: str, corrupt: bool) -> str:
        with open(os.path.join(directory, name), "rb") as source:
            data = bytearray(source.read())
        if corrupt:
            middle = len(data) // 2
            data[middle : middle + 200] = bytes(byte ^ 0xFF for byte in data[middle : middle + 200])
        else:
            data = data[: len(data) // 2]  # what a write cut short leaves
        path = os.path.join(directory, new_name)
        with open(path, "wb") as target:
            target.write(bytes(data))
        return path

    def keras_weights(path):
        return resume_model().load_weights(path)

    def our_weights(path):
        return sdt.saving.load_weights(resume_model(), path)

    cases = {
        "truncated_keras": ("model", damaged("model.keras", "truncated.keras", False)),
        "corrupted_keras": ("model", damaged("model.keras", "corrupted.keras", True)),
        "truncated_weights": ("weights", damaged("model.weights.h5", "truncated.weights.h5", False)),
        "corrupted_weights": ("weights", damaged("model.weights.h5", "corrupted.weights.h5", True)),
        "other_architecture_weights": ("weights", os.path.join(directory, "wider_head.weights.h5")),
    }
    loaders = {
        "model": {"keras": keras.saving.load_model, "ours": sdt.saving.load_model},
        "weights": {"keras": keras_weights, "ours": our_weights},
    }
    findings = {}
    for case, (kind, path) in cases.items():
        findings[case] = {}
        for loader, load in loaders[kind].items():
            try:
                load(path)
                findings[case][loader] = {"error": None}
            except Exception as error:  # what is raised is the finding
                message = str(error)
                findings[case][loader] = {
                    "error": type(error).__name__,
                    "message": message.splitlines()[0] if message else "",
                    "names_file": path in message,
                    "cause": type(error.__cause__).__name__ if error.__cause__ is not None else None,
                }
    return findings


SCENARIOS = {"train": train, "load_errors": load_errors}

if __name__ == "__main__":
    from scenario_runner import run  # from the script's folder, tests/, on sys.path

    run(SCENARIOS)
