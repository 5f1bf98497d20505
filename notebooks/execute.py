"""Runs the notebooks top to bottom with nbclient, optionally with other parameters.

Each notebook has one code cell tagged `parameters` (the papermill
convention). `execute` appends assignments to that cell, so a test can run a
notebook at a small size while the committed copy holds a full run:

    python notebooks/execute.py notebooks/*.ipynb            # full size, saved in place
    python notebooks/execute.py --small notebooks/*.ipynb    # small size, not saved
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Mapping, Optional, Sequence

import nbformat
from nbclient import NotebookClient

# Sizes at which every notebook still runs each of its cells, in seconds.
SMALL_PARAMETERS = {
    "depth_on_demand.ipynb": {"DEPTH": 8, "EPOCHS": 1, "SEEDS": 2, "BATCH_SIZE": 128},
    # Reads the committed sweep (it trains nothing): the first two seeds.
    "layerdrop_text.ipynb": {"SEEDS": 2, "FIGURES_DIR": None},
    "stochastic_depth_mnist1d.ipynb": {
        "DEPTHS": [8],
        "FINAL_SURVIVAL_PROBABILITIES": [1.0, 0.5],
        "SEEDS": 2,
        "STEPS": 20,
        "BATCH_SIZE": 32,
        "NUM_SAMPLES": 200,
        "TRAIN_SAMPLES": None,
        "RESULTS_FILE": None,
        "TRAIN_MISSING": True,
    },
    "stochastic_depth_resnet.ipynb": {"DEPTH": 8, "EPOCHS": 1, "SEEDS": 2, "BATCH_SIZE": 128},
    "stochastic_depth_semantics.ipynb": {"STEPS": 40, "BATCH_SIZE": 8, "DRAWS": 2000},
    "stochastic_depth_sweep.ipynb": {
        "DEPTHS": [8],
        "FINAL_SURVIVAL_PROBABILITIES": [1.0, 0.5],
        "SEEDS": 2,
        "EPOCHS": 1,
        "MODE_POINT": (8, 0.5),
        "RESULTS_FILE": None,
    },
}


def parameters_cell(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The code cell tagged `parameters`; a notebook must have exactly one."""
    cells = [
        cell
        for cell in notebook.cells
        if cell.cell_type == "code" and "parameters" in cell.get("metadata", {}).get("tags", [])
    ]
    if len(cells) != 1:
        raise ValueError(f"Expected one code cell tagged 'parameters'. Received: {len(cells)} such cells.")
    return cells[0]


def execute(path: str, parameters: Optional[Mapping[str, object]] = None, timeout: int = 7200) -> nbformat.NotebookNode:
    """Executes the notebook at `path` in its directory and returns it with outputs.

    Raises `nbclient.exceptions.CellExecutionError` when a cell raises.
    """
    notebook = nbformat.read(path, as_version=4)
    if parameters:
        cell = parameters_cell(notebook)
        overrides = "\n".join(f"{name} = {value!r}" for name, value in parameters.items())
        cell.source = f"{cell.source.rstrip()}\n# Injected by notebooks/execute.py\n{overrides}"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the kernel inherits it
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        # TensorFlow's C++ start-up logs go to the terminal, not into the notebook.
        extra_arguments=["--IPKernelApp.capture_fd_output=False"],
        resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}},
    )
    client.execute()
    return notebook


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", help="paths of .ipynb files")
    parser.add_argument("--small", action="store_true", help="run at the small test size and do not save")
    args = parser.parse_args(argv)
    for path in args.notebooks:
        started = time.perf_counter()
        parameters = SMALL_PARAMETERS.get(os.path.basename(path)) if args.small else None
        notebook = execute(path, parameters)
        if not args.small:
            nbformat.write(notebook, path)
        print(f"{path}: executed in {time.perf_counter() - started:.0f} s{'' if args.small else ', saved'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
