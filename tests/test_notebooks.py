"""The notebooks run top to bottom (at a small size) and are committed executed."""

import importlib.util
import os
import re

import nbformat
import numpy as np
import pytest

# TensorFlow only: the notebooks train on tf.data and export SavedModels.
pytestmark = pytest.mark.tensorflow_only

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = os.path.join(ROOT, "notebooks")


def _load_runner():
    spec = importlib.util.spec_from_file_location("notebook_runner", os.path.join(NOTEBOOKS, "execute.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


runner = _load_runner()
NAMES = sorted(name for name in os.listdir(NOTEBOOKS) if name.endswith(".ipynb"))


def _outputs(notebook, output_type=None):
    return [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output_type is None or output.output_type == output_type
    ]


def _images(notebook):
    return [output for output in _outputs(notebook) if "image/png" in output.get("data", {})]


def _text(notebook):
    pieces = []
    for output in _outputs(notebook):
        pieces.append(output.get("text", ""))
        pieces.append(output.get("data", {}).get("text/markdown", ""))
    return "".join(pieces)


def run_small(name):
    """Runs notebook `name` at its small size: its parameters, the executed notebook and its text, no error."""
    parameters = runner.SMALL_PARAMETERS[name]
    notebook = runner.execute(os.path.join(NOTEBOOKS, name), parameters)
    assert not _outputs(notebook, "error")
    return parameters, notebook, _text(notebook)


def test_the_notebooks_exist_and_each_has_a_small_size():
    assert NAMES == [
        "depth_on_demand.ipynb",
        "layerdrop_text.ipynb",
        "stochastic_depth_mnist1d.ipynb",
        "stochastic_depth_resnet.ipynb",
        "stochastic_depth_semantics.ipynb",
        "stochastic_depth_sweep.ipynb",
    ]
    assert sorted(runner.SMALL_PARAMETERS) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_small_parameters_override_names_the_notebook_defines(name):
    notebook = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
    defined = set(re.findall(r"^([A-Z_]+) = ", runner.parameters_cell(notebook).source, flags=re.MULTILINE))
    assert set(runner.SMALL_PARAMETERS[name]) <= defined


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_holds_a_full_run(name):
    notebook = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count is not None for cell in code_cells)
    assert not _outputs(notebook, "error")
    assert "Injected by" not in runner.parameters_cell(notebook).source
    assert _images(notebook)


def test_parameters_cell_missing_is_a_clear_error():
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    with pytest.raises(ValueError, match="Expected one code cell tagged 'parameters'. Received: 0"):
        runner.parameters_cell(notebook)


def test_semantics_notebook_runs_at_small_size():
    name = "stochastic_depth_semantics.ipynb"
    notebook = runner.execute(os.path.join(NOTEBOOKS, name), runner.SMALL_PARAMETERS[name])
    assert not _outputs(notebook, "error")
    assert len(_images(notebook)) == 4
    # The notebook's own asserts check the gate frequencies and the expectations;
    # these lines only exist once they have passed.
    text = _text(notebook)
    assert f"{runner.SMALL_PARAMETERS[name]['DRAWS']} gates, kept" in text
    assert "expected 40.25 blocks per training step" in text


def test_resnet_notebook_runs_at_small_size():
    parameters, notebook, text = run_small("stochastic_depth_resnet.ipynb")
    for seed in range(parameters["SEEDS"]):
        assert f"seed {seed}  plain" in text and f"seed {seed}  stochastic depth" in text
    assert f"mean ± 95% interval over {parameters['SEEDS']} seeds" in text
    assert f"(95% interval over {parameters['SEEDS']} paired seeds)" in text
    assert re.search(r"time per epoch, stochastic depth / plain: \d+\.\d\d", text)
    # depth 8: 3 blocks at 1 - (l / 3) * 0.5 = 5/6, 4/6, 3/6, so 2 branches expected per step
    assert "expected branches per step: 2.00 of 3" in text
    assert len(_images(notebook)) == 5


def test_sweep_notebook_runs_at_small_size():
    parameters, notebook, text = run_small("stochastic_depth_sweep.ipynb")
    for depth in parameters["DEPTHS"]:
        for p in parameters["FINAL_SURVIVAL_PROBABILITIES"]:
            for seed in range(parameters["SEEDS"]):
                assert re.search(rf"ResNet-{depth} +p_L={p} +batch +seed {seed}: test accuracy", text)
    assert re.search(r"ResNet-8 +p_L=0.5 +sample +seed 1: test accuracy", text)
    assert f"mean ± 95% interval over {parameters['SEEDS']} seeds" in text
    assert "| mode | test accuracy" in text and "| sample |" in text
    assert "ResNet-8: best p_L" in text
    assert len(_images(notebook)) == 2


def test_depth_on_demand_notebook_runs_at_small_size():
    parameters, notebook, text = run_small("depth_on_demand.ipynb")
    # depth 8: 3 blocks; the plain network (p = 1 everywhere) and the linear rule both go deepest first
    for seed in range(parameters["SEEDS"]):
        for network in ("plain", "stochastic depth"):
            assert re.search(rf"seed {seed}  {network} +lowest_survival +order \[2, 1, 0\]", text)
            assert re.search(rf"seed {seed}  {network} +greedy +order \[[0-2], [0-2], [0-2]\]", text)
    assert f"mean ± 95% interval over {parameters['SEEDS']} seeds, ResNet-8 (3 blocks)" in text
    assert "blocks removable within 1 point" in text and "total run time" in text
    assert f"(95% interval over {parameters['SEEDS']} paired seeds)" in text
    assert "With 1 of 3 blocks removed deepest first" in text
    assert len(_images(notebook)) == 1


def test_mnist1d_notebook_runs_at_small_size():
    parameters, notebook, text = run_small("stochastic_depth_mnist1d.ipynb")
    for p in parameters["FINAL_SURVIVAL_PROBABILITIES"]:
        for seed in range(parameters["SEEDS"]):
            assert re.search(rf"ResNet-8 +p_L={p} +seed {seed}: test \d\.\d{{4}}, validation", text)
    assert f"4 runs of {parameters['STEPS']} steps" in text
    assert f"**Test accuracy**, mean ± 95% interval over {parameters['SEEDS']} seeds" in text
    assert "ResNet-8: p_L chosen on validation:" in text
    assert "p_L = 0.5 − plain:" in text
    assert re.search(r"\| 8 \| \d+\.\d\d \(1\.00\) \| \d+\.\d\d \(\d\.\d\d\) \|", text)
    assert len(_images(notebook)) == 2


def _layerdrop_sweep():
    import sys

    sys.path.insert(0, NOTEBOOKS)
    try:
        import layerdrop_sweep
    finally:
        sys.path.remove(NOTEBOOKS)
    return layerdrop_sweep


def test_layerdrop_sweep_splits_the_python_docs_in_order_and_windows_them():
    sweep = _layerdrop_sweep()
    text, source, size = sweep.load_text()
    assert source.endswith(os.path.join("pydoc_data", "topics.py")) and size > len(text) > 100_000
    ids = sweep.token_ids(text)
    parts = sweep.split(ids, sweep.Settings())
    assert [len(part) for part in parts.values()] == pytest.approx(
        [0.88 * len(ids), 0.02 * len(ids), 0.1 * len(ids)], abs=2
    )
    assert np.array_equal(np.concatenate(list(parts.values())), ids)
    windows = sweep.windows(parts["validation"], 128)
    assert windows.shape == ((len(parts["validation"]) - 1) // 128, 129)
    assert np.array_equal(windows[1, :-1], parts["validation"][128:256])  # each window's last byte begins the next


def test_layerdrop_sweep_workers_each_get_every_arm():
    sweep = _layerdrop_sweep()
    grid = sweep.grid(["plain", "layerdrop"], [0, 1, 2])
    assert grid == [("plain", 0), ("layerdrop", 0), ("layerdrop", 1), ("plain", 1), ("plain", 2), ("layerdrop", 2)]
    assert {arm for arm, _ in grid[0::2]} == {arm for arm, _ in grid[1::2]} == {"plain", "layerdrop"}


def test_layerdrop_sweep_pld_schedule_starts_plain_and_decays_to_its_targets():
    sweep = _layerdrop_sweep()
    survival = sweep.pld_survival(sweep.Settings(pld_theta_bar=0.5, pld_gamma=0.01))
    targets = [1 - (layer / 8) * 0.5 for layer in range(1, 9)]  # linear decay to theta_bar
    assert [survival(0, target) for target in targets] == pytest.approx([1.0] * 8)
    assert [survival(10_000, target) for target in targets] == pytest.approx(targets)
    # theta(100) = 0.5 * exp(-1) + 0.5; the last layer's survival is theta itself
    assert survival(100, 0.5) == pytest.approx(0.5 * np.exp(-1.0) + 0.5)


def test_layerdrop_notebook_runs_at_small_size():
    parameters, notebook, text = run_small("layerdrop_text.ipynb")
    assert "bytes of Python source holding" in text
    # the committed grid trained half as long, read beside it: has validation loss flattened?
    assert re.search(r"plain: 1000 steps end at \d+\.\d+ \(mean of 2 seeds\), 2000 steps at", text)
    for arm in ("plain", "layerdrop", "pld"):
        assert re.search(rf"{arm}: validation perplexity \d+\.\d+ ± \d+\.\d+", text)
        for rule in ("every_k", "lowest_survival", "greedy"):
            assert re.search(rf"{rule}, 4 of 8 layers, +{arm}: perplexity", text)
    assert f"mean ± 95% interval over {parameters['SEEDS']} seeds" in text
    assert len(_images(notebook)) == 2


@pytest.mark.slow
def test_layerdrop_sweep_runs_a_tiny_grid_that_the_notebook_reads(tmp_path, monkeypatch):
    pytest.importorskip("keras_hub")
    sweep = _layerdrop_sweep()
    # One rule (the one with code of its own in the sweep; the others are one
    # `prune_blocks` call each) and 2 KB a split: the grid's cost is tracing.
    monkeypatch.setattr(sweep, "RULES", ("greedy",))
    settings = sweep.Settings(
        layers=4, hidden=16, heads=2, intermediate=32, sequence=16, batch=4, steps=4, warmup_steps=1, evaluations=2
    )
    sweep.sweep(["plain", "layerdrop"], [0, 1], settings, directory=str(tmp_path), max_bytes=2_048)
    runs = sweep.read_runs(str(tmp_path))
    assert sorted((run["arm"], run["seed"]) for run in runs) == [
        ("layerdrop", 0),
        ("layerdrop", 1),
        ("plain", 0),
        ("plain", 1),
    ]
    for run in runs:
        assert [point["step"] for point in run["curve"]] == [2, 4]
        assert {
            rule: {fraction: entry["layers"] for fraction, entry in kept.items()}
            for rule, kept in run["pruned"].items()
        } == {"greedy": {"0.75": 3, "0.5": 2}}
    notebook = runner.execute(
        os.path.join(NOTEBOOKS, "layerdrop_text.ipynb"),
        {"RESULTS_DIR": str(tmp_path), "ARMS": ["plain", "layerdrop"], "EARLIER_DIR": None, "FIGURES_DIR": None},
    )
    assert not _outputs(notebook, "error")
    assert "2 of 4 layers" in _text(notebook)
