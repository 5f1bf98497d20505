"""Tests of the usage example behind `python -m stochastic_depth_tf`."""

import re

from stochastic_depth_tf.__main__ import main


def test_usage_example_trains_and_shows_both_phases(capsys):
    assert main(["--blocks", "2", "--survival-probability", "0.5", "--seed", "1"]) == 0
    output = capsys.readouterr().out
    training = float(re.search(r"5 training calls:\s+([0-9.]+)", output).group(1))
    inference = float(re.search(r"5 inference calls:\s+([0-9.]+)", output).group(1))
    assert training > 0.0
    assert inference == 0.0
