"""Tests of the demo behind `python -m stochastic_depth_tf`, at a small size."""

import csv
import os

import pytest

from stochastic_depth_tf.__main__ import main


def test_demo_trains_both_models_compares_and_checks_export(capsys, tmp_path):
    output = tmp_path / "out"
    assert main(["--depth", "8", "--epochs", "2", "--seeds", "2", "--verbose", "0", "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "| plain |" in printed and "| stochastic depth |" in printed
    assert "predictions match" in printed
    with open(output / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["model"] for row in rows] == ["plain", "stochastic depth"]
    assert float(rows[0]["time_ratio"]) == 1.0
    for row in rows:
        assert 0.0 <= float(row["test_accuracy_mean"]) <= 1.0
    assert os.path.getsize(output / "curves.png") > 1000
    assert (output / "results.md").read_text().startswith("| model |")


def test_demo_refuses_a_bad_depth(capsys):
    with pytest.raises(SystemExit):
        main(["--depth", "21"])
    assert "argument `depth`" in capsys.readouterr().err


def test_demo_refuses_a_bad_survival_probability(capsys):
    with pytest.raises(SystemExit):
        main(["--final-survival-probability", "1.5"])
    assert "final_survival_probability" in capsys.readouterr().err


def test_cifar10_offline_gives_a_clear_error(monkeypatch):
    import keras

    def offline():
        raise OSError("no network")

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", offline)
    with pytest.raises(SystemExit, match=r"cifar10 dataset could not be loaded.*offline.*--dataset digits"):
        main(["--dataset", "cifar10", "--epochs", "1"])
