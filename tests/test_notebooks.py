"""The notebooks run top to bottom (at a small size) and are committed executed."""

import importlib.util
import os
import re

import nbformat
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
