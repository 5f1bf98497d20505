"""Tests of the demo behind `python -m stochastic_depth_tf`, at a small size."""

import csv
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import stochastic_depth_tf as sdt
from stochastic_depth_tf import __main__ as demo
from stochastic_depth_tf import recipes
from stochastic_depth_tf.__main__ import main
from stochastic_depth_tf.experiments import training

# TensorFlow only: the demo's SavedModel check and tf.data pipeline.
pytestmark = pytest.mark.tensorflow_only


def test_demo_trains_both_models_compares_and_checks_export(capsys, tmp_path):
    output = tmp_path / "out"
    # No --verbose: captured output is not a terminal, so Keras writes one line per epoch.
    assert main(["--depth", "8", "--epochs", "2", "--seeds", "2", "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "\r" not in printed and "\x1b" not in printed and "\b" not in printed  # no progress bar redrawn
    # 2 epochs x 2 models x 2 seeds, each one line of 20 steps (1,257 images in batches of 64).
    assert len(re.findall(r"^20/20 - .* - loss: ", printed, flags=re.MULTILINE)) == 8
    assert "| plain |" in printed and "| stochastic depth |" in printed
    assert "recipe digits: 2 epochs of batch 64" in printed
    assert "(95% interval over 2 paired seeds)" in printed
    assert "Time per epoch: stochastic depth took" in printed
    assert "predictions match" in printed
    with open(output / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["model"] for row in rows] == ["plain", "stochastic depth"]
    assert float(rows[0]["time_ratio"]) == 1.0
    for row in rows:
        assert 0.0 <= float(row["test_accuracy_mean"]) <= 1.0
    assert os.path.getsize(output / "curves.png") > 1000
    assert (output / "results.md").read_text().startswith("| model |")


def _refused(argv, capsys):
    """Runs the demo with bad arguments: it must exit 2 before training anything."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert "==" not in captured.out  # no model was trained
    return captured.err


def test_demo_refuses_a_bad_depth(capsys):
    assert "argument `depth`" in _refused(["--depth", "21"], capsys)


def test_demo_refuses_a_bad_survival_probability(capsys):
    assert "final_survival_probability" in _refused(["--final-survival-probability", "1.5"], capsys)


@pytest.mark.parametrize("argument", ["--epochs", "--seeds", "--batch-size"])
def test_demo_refuses_a_count_below_one(argument, capsys):
    error = _refused([argument, "0"], capsys)
    assert f"argument {argument}: expected a positive int, received 0" in error


def test_demo_refuses_an_output_it_cannot_create_before_training(capsys, tmp_path):
    regular_file = tmp_path / "a_file"
    regular_file.write_text("not a directory")
    last_line = _refused(["--output", str(regular_file / "results")], capsys).strip().splitlines()[-1]
    # argparse's usage, then one line that names the argument, the expectation and the value.
    assert last_line.startswith(
        "python -m stochastic_depth_tf: error: argument --output: expected a directory that can be created and written"
    )
    assert str(regular_file / "results") in last_line and "Not a directory" in last_line


class _FakeTrainer:
    """Stands in for `Trainer`: an untrained model and fixed numbers, no training."""

    def __init__(self, data, recipe, depth, plain, mode, jit_compile):
        self.model = sdt.models.cifar_resnet(
            depth=depth, final_survival_probability=1.0 if plain else 0.5, input_shape=data["train"][0].shape[1:]
        )

    def run(self, final_survival_probability, seed, verbose):
        stochastic = final_survival_probability < 1.0
        curve = [0.5, 0.6]
        return {
            "test_accuracy": 0.90 + 0.01 * seed - (0.05 if stochastic else 0.0),
            "seconds_per_epoch": 0.75 if stochastic else 1.0,
            "history": {"val_accuracy": curve, "val_loss": curve},
        }


def test_a_failure_to_write_outputs_after_training_still_prints_the_table(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(training, "Trainer", _FakeTrainer)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(demo, "write_outputs", full_disk)
    assert main(["--depth", "8", "--seeds", "2", "--output", str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    assert "| plain | 0.9050 ± 0.0071 | 1.00 | 1.00 |" in captured.out
    assert "| stochastic depth | 0.8550 ± 0.0071 | 0.75 | 0.75 |" in captured.out
    assert "Could not write the outputs" in captured.err and "No space left on device" in captured.err


def test_conclusion_within_the_spread_of_the_seeds():
    text = demo.conclusion([0.97, 0.98, 0.99], [0.98, 0.97, 0.99], 0.80, 0.73)
    assert "stochastic depth − plain: +0.0000 ± " in text
    assert "3 seeds cannot tell a 0.0000 difference from seed-to-seed noise" in text
    assert "took 0.80 of the plain network's (less by 20%)" in text
    assert "expected share of residual branches computed is 0.73" in text


def test_conclusion_lower_by_more_than_the_spread():
    text = demo.conclusion([0.99, 0.98, 0.97], [0.95, 0.94, 0.93], 1.05, 0.73)
    assert "-0.0400 ± 0.0000" in text
    assert "stochastic depth lower by more than the spread of the seeds" in text
    assert "(more by 5%)" in text


def test_conclusion_of_one_seed_draws_no_verdict():
    text = demo.conclusion([0.97], [0.98], 0.9, 0.73)
    assert "+0.0100 on one seed; one seed cannot tell" in text


def test_conclusion_needs_one_value_per_seed_in_each():
    with pytest.raises(ValueError, match="Expected one value per seed in each. Received: 2 and 1 values"):
        demo.conclusion([0.9, 0.9], [0.9], 1.0, 0.5)


def test_cifar10_path_trains_with_the_paper_recipe_offline(capsys, monkeypatch):
    import keras

    rng = np.random.default_rng(0)

    def small_cifar10():  # only the download is replaced: 80 / 40 random 32x32x3 images
        def split(n):
            images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
            labels = rng.integers(0, 10, size=(n, 1), dtype=np.uint8)
            return images, labels

        return split(80), split(40)

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", small_cifar10)
    assert (
        main(
            [
                "--dataset",
                "cifar10",
                "--depth",
                "8",
                "--epochs",
                "1",
                "--seeds",
                "1",
                "--batch-size",
                "16",
                "--verbose",
                "0",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "cifar10, 72 training images of shape (32, 32, 3)" in printed
    assert "recipe paper: 1 epochs of batch 16" in printed
    assert "| stochastic depth |" in printed and "predictions match" in printed


def test_cifar10_offline_gives_a_clear_error(monkeypatch):
    import keras

    def offline():
        raise OSError("no network")

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", offline)
    with pytest.raises(SystemExit, match=r"cifar10 dataset could not be loaded.*offline.*--dataset digits"):
        main(["--dataset", "cifar10", "--epochs", "1"])


@pytest.mark.one_backend
@pytest.mark.parametrize("terminal, verbose", [(True, 1), (False, 2)])
def test_progress_is_a_bar_on_a_terminal_and_one_line_per_epoch_otherwise(terminal, verbose, monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: terminal)
    assert demo.parse_args([]).verbose == verbose
    assert demo.parse_args(["--verbose", "0"]).verbose == 0


@pytest.mark.one_backend
@pytest.mark.parametrize("set_by_user, level", [(None, "2"), ("0", "0")])
def test_tensorflow_log_level_is_set_unless_the_user_set_one(set_by_user, level, monkeypatch):
    if set_by_user is None:
        monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    else:
        monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", set_by_user)
    demo.parse_args([])
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == level


@pytest.mark.one_backend
def test_help_gives_every_choice_a_sentence():
    text = " ".join(demo.build_parser().format_help().split())
    assert set(demo.RECIPE_HELP) == set(recipes.RECIPES)
    for name, recipe in recipes.RECIPES.items():
        sentence = demo.RECIPE_HELP[name]
        assert f"{recipe.epochs} epochs of batch {recipe.batch_size}" in sentence
        assert f"{name}: {sentence}" in text
    for choices in (demo.DATASETS, demo.MODES, demo.VERBOSITY):
        for choice, sentence in choices.items():
            assert f"{choice}: {sentence}" in text


# Every module `python -X importtime` reports, from its lines "import time: self | cumulative | name".
IMPORTED = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", flags=re.MULTILINE)


@pytest.mark.one_backend
def test_help_imports_no_backend_and_logs_nothing():
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "stochastic_depth_tf", "--help"],
        capture_output=True,
        text=True,
        env={key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m stochastic_depth_tf")
    imported = {name.split(".")[0] for name in IMPORTED.findall(result.stderr)}
    assert "stochastic_depth_tf" in imported  # what -X importtime writes was read
    assert not imported & {"tensorflow", "keras", "jax", "torch"}
    # Nothing else on stderr: no TensorFlow log line (it logs on import whatever TF_CPP_MIN_LOG_LEVEL says).
    assert [line for line in result.stderr.splitlines() if not line.startswith("import time:")] == []


@pytest.mark.one_backend
def test_the_package_waits_only_when_python_runs_it_as_the_demo():
    import stochastic_depth_tf

    running = stochastic_depth_tf._running_the_demo
    assert running(["-m"], ["python", "-m", "stochastic_depth_tf", "--help"])
    # Another module run with -m, the console script, a plain import: eager (the layers registered).
    assert not running(["-m"], ["python", "-m", "my_package"])
    assert not running(["/usr/bin/stochastic-depth-tf"], ["python", "/usr/bin/stochastic-depth-tf"])
    assert not running(["script.py"], ["python", "script.py"])
