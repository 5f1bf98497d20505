"""The one harness of every benchmark: timing, the environment, tables.

Every script of `benchmarks/` follows the project's protocol (the team's
BENCHMARKS.md) through this module, so that it is written once:

- timing: every contender is built in one process and warmed up
  (`train_steppers`, `serving_steppers`), then timed in interleaved rounds
  (`interleaved_times`); `timed_rows` reports each contender's minimum and
  median seconds and its ratios to the baseline: of the minima, of the
  medians, and the median of the per-round paired ratios (round i of a
  contender over round i of the baseline, timed next to each other, which a
  load spike cannot fake);
- the fastest plain configuration: `add_fastest_plain` divides each row's
  median by the fastest median of the plain network (no stochastic depth)
  measured in the run, whatever its compilation or backend, because a ratio
  to a slow baseline flatters (XLA's `Add` step on a CPU is slower than
  graph mode's, which is what a user would pick);
- the environment: the backend, its library's version, the device it
  placed the work on (nothing here pins a device: on a GPU machine the GPU
  is measured, as a user's `fit` would use it) and the compilation's name;
- tables: one Markdown layout (`markdown`), printed and written under
  `benchmarks/results/` (`publish`); the timing columns of `timed_rows`
  (`TIMING_COLUMNS`, `timing_columns`) with one header each, and the
  settings line that says what their ratios divide (`ratio_note`);
- data: the seeded random batch every timed step runs on (`random_batch`);
- the date, machine and load lines, shared with the one-command report
  through the dependency-free `benchmarks/_machine.py`.

The wall-clock timer of `fit` calls is the package's own
(`stochastic_depth_tf.experiments.timing.Timer`, which the trainer times
epochs with): benchmarks sit above the experiments, so they use it, never
the reverse.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, Hashable, Iterable, List, Optional, Sequence, Tuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import stochastic_depth_tf as sdt  # noqa: E402
from benchmarks._machine import date_and_machine, load_average  # noqa: E402
from stochastic_depth_tf.experiments.timing import Timer  # noqa: E402

BACKEND = keras.backend.backend()
# What `jit_compile=False` and `jit_compile=True` mean under each backend.
COMPILATION_NAMES = {
    "tensorflow": {"graph": "graph", "xla": "XLA"},
    "jax": {"graph": "not jitted", "xla": "jit (XLA)"},
    "torch": {"graph": "eager", "xla": "torch.compile"},
}
FASTEST_PLAIN = "ratio_fastest_plain"
CIFAR_SHAPE = (32, 32, 3)
Builders = Dict[str, Callable[[], Optional[keras.Model]]]
Column = Tuple[str, str, str]  # header, row key, format spec
FASTEST_PLAIN_COLUMN: Column = ("ratio to fastest plain (median)", FASTEST_PLAIN, ".2f")
# The header of each statistic `timed_rows` reports: seconds, then ratios to the baseline.
_TIMING_HEADERS = {
    "min": "min s",
    "median": "median s",
    "mean": "mean s",
    "ratio_min": "ratio (min)",
    "ratio_median": "ratio (median)",
    "ratio_paired": "ratio (paired)",
}
# What each ratio column divides (`ratio_note`).
_RATIO_MEANINGS = {
    "ratio_min": "of the minima",
    "ratio_median": "of the medians",
    "ratio_paired": "the median over rounds of round i of the contender / round i of `{baseline}`, timed next to "
    "each other (a load spike slows both)",
}
TIMING_KEYS = ("min", "median", "ratio_min", "ratio_median", "ratio_paired")
FASTEST_PLAIN_SETTING = (
    "ratio to fastest plain: the contender's median over the median of the fastest plain network "
    "(no stochastic depth) measured in this run, whatever its compilation: the figure a user choosing "
    "how to train needs"
)


def timing_columns(keys: Sequence[str] = TIMING_KEYS, per: str = "", spec: str = ".4f") -> List[Column]:
    """The table columns of `timed_rows`' statistics `keys`: seconds (`spec`, the unit `per` step), then ratios."""
    return [
        (_TIMING_HEADERS[key], key, ".2f") if key in _RATIO_MEANINGS else (f"{_TIMING_HEADERS[key]}{per}", key, spec)
        for key in keys
    ]


# min s, median s, ratio (min), ratio (median), ratio (paired): the timing columns of a step-time table.
TIMING_COLUMNS = timing_columns()


def ratio_note(baseline: str, same: str, columns: Sequence[Column] = TIMING_COLUMNS) -> str:
    """The settings line that says what the ratio columns among `columns` divide.

    `same` names what a row shares with its baseline row (say "network and
    compilation").
    """
    meanings = "; ".join(
        f"{header}: {_RATIO_MEANINGS[key].format(baseline=baseline)}"
        for header, key, _ in columns
        if key in _RATIO_MEANINGS
    )
    return f"ratio: contender / `{baseline}` of the same {same} (below 1 is faster); {meanings}"


def random_batch(
    batch: int,
    shape: Sequence[int] = CIFAR_SHAPE,
    classes: int = 10,
    pixel_range: Optional[Tuple[float, float]] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """A training batch of random data: float32 images of `shape` and int labels in `[0, classes)`.

    Pixels are standard normal, or uniform in `pixel_range` (say `(0, 255)`
    for a model that preprocesses its input). Seeded: every run times the
    same batch.
    """
    rng = np.random.default_rng(0)
    size = (batch, *shape)
    x = rng.normal(size=size) if pixel_range is None else rng.uniform(*pixel_range, size=size)
    return x.astype("float32"), rng.integers(0, classes, size=(batch,))


def compilation_name(jit_compile: bool) -> str:
    """The running backend's name of a compilation (`jit_compile=False` or `True`)."""
    return COMPILATION_NAMES[BACKEND]["xla" if jit_compile else "graph"]


def interleaved_times(
    steppers: Dict[Hashable, Callable[[], object]], rounds: int, steps: int
) -> Dict[Hashable, List[float]]:
    """Seconds per step of each stepper, one list entry per round, order alternating by round."""
    times: Dict[Hashable, List[float]] = {name: [] for name in steppers}
    for round_index in range(rounds):
        order = list(steppers) if round_index % 2 == 0 else list(reversed(steppers))
        for name in order:
            started = time.perf_counter()
            for _ in range(steps):
                steppers[name]()
            times[name].append((time.perf_counter() - started) / steps)
    return times


def momentum_sgd(learning_rate: float = 0.01) -> keras.optimizers.Optimizer:
    """The benchmarks' default optimizer: SGD with momentum 0.9 (its state costs what the recipes' does)."""
    return keras.optimizers.SGD(learning_rate, momentum=0.9)


def train_steppers(
    builders: Builders,
    x,
    y,
    jit_compile: bool,
    warmup: int,
    optimizer: Callable[[], keras.optimizers.Optimizer] = momentum_sgd,
    loss: object = "sparse_categorical_crossentropy",
) -> Dict[str, Callable[[], object]]:
    """Builds, compiles and warms up every contender; a training step of each on `(x, y)`.

    A builder that is None or returns None (a peer that is not importable)
    is skipped with a note. `optimizer` makes a fresh optimizer per model.
    """
    steppers = {}
    for name, build in builders.items():
        model = build() if build is not None else None
        if model is None:
            print(f"  {name}: skipped", flush=True)
            continue
        model.compile(optimizer=optimizer(), loss=loss, jit_compile=jit_compile)
        started = time.perf_counter()
        for _ in range(warmup):
            model.train_on_batch(x, y)
        print(f"  {name}: built and warmed up in {time.perf_counter() - started:.1f} s", flush=True)
        steppers[name] = functools.partial(model.train_on_batch, x, y)
    return steppers


def fit_step_seconds(model: keras.Model, dataset: object, steps: int) -> List[float]:
    """Wall-clock seconds of each of `steps` training steps of one `fit` call on `dataset`.

    Through `fit` (callbacks, the data pipeline, the step function) as a user
    trains, timed by the recipes' own `Timer`.
    """
    timer = Timer(per="step")
    # shuffle=False: a dataset shuffles itself, as in recipes.Trainer.run.
    model.fit(dataset, epochs=1, steps_per_epoch=steps, callbacks=[timer], shuffle=False, verbose=0)
    return timer.seconds


def time_serving(builders: Builders, names: Sequence[str], x, rounds: int, steps: int) -> Dict[str, List[float]]:
    """Interleaved latency of the named contenders exported as SavedModels (TensorFlow)."""
    import tensorflow as tf

    steppers = {}
    with tempfile.TemporaryDirectory() as directory:
        for name in names:
            path = os.path.join(directory, name)
            builders[name]().export(path, verbose=False)
            served = tf.saved_model.load(path)
            for _ in range(3):
                served.serve(x)
            steppers[name] = lambda served=served: served.serve(x).numpy()
        return interleaved_times(steppers, rounds, steps)


def timed_rows(times: Dict[str, List[float]], baseline: str, **labels: object) -> List[dict]:
    """Table rows: `labels`, the contender, min and median seconds, ratios to `baseline`.

    `ratio_min` and `ratio_median` divide the contender's statistic by the
    baseline's; `ratio_paired` is the median over rounds of round i of the
    contender over round i of the baseline.
    """
    reference = times[baseline]
    return [
        {
            **labels,
            "contender": name,
            "min": min(values),
            "median": statistics.median(values),
            "ratio_min": min(values) / min(reference),
            "ratio_median": statistics.median(values) / statistics.median(reference),
            "ratio_paired": statistics.median(value / paired for value, paired in zip(values, reference)),
        }
        for name, values in times.items()
    ]


def add_fastest_plain(
    rows: List[dict],
    plain: str,
    group: Sequence[str] = (),
    configuration: Sequence[str] = ("compilation",),
    key: str = "median",
) -> List[str]:
    """Sets `ratio_fastest_plain` of every row: its median over the fastest plain median of its group.

    Rows of one `group` (e.g. the same network and measure) are compared
    across everything else (compilation, backend, setting); the plain
    network is the contender named `plain`. Medians, not paired rounds:
    configurations are timed in different rounds (or processes). Returns one
    note per group naming its fastest plain configuration (`configuration`
    keys of its row). `key` names the statistic compared, the median
    seconds by default.
    """
    fastest: Dict[tuple, dict] = {}
    for row in rows:
        labels = tuple(row[name] for name in group)
        if row["contender"] == plain and (labels not in fastest or row[key] < fastest[labels][key]):
            fastest[labels] = row
    notes = []
    for labels, row in fastest.items():
        where = ", ".join(str(row[name]) for name in configuration)
        notes.append(
            f"fastest plain (`{plain}`){' of ' + ', '.join(map(str, labels)) if labels else ''}: "
            f"{where}, {key} {row[key]:.4f} s"
        )
    for row in rows:
        reference = fastest.get(tuple(row[name] for name in group))
        row[FASTEST_PLAIN] = row[key] / reference[key] if reference else float("nan")
    return notes


def device_description() -> str:
    """The device the steps run on: the first accelerator the backend places work on, else the CPU.

    Nothing is pinned by the benchmarks, so on a GPU machine they measure
    the GPU, as a user's `fit` would.
    """
    if BACKEND == "jax":
        import jax

        devices = jax.devices()
        return f"{devices[0]} ({devices[0].platform}; {len(devices)} visible)"
    if BACKEND == "torch":
        import torch

        return (
            "cuda:0 (PyTorch)"
            if torch.cuda.is_available()
            else f"CPU ({platform.processor() or platform.machine()}; PyTorch, no CUDA)"
        )
    import tensorflow as tf

    for kind in ("TPU", "GPU"):
        logical = tf.config.list_logical_devices(kind)
        if logical:
            physical = tf.config.list_physical_devices(kind)
            details = tf.config.experimental.get_device_details(physical[0]) if physical else {}
            name = details.get("device_name", kind)
            return f"{logical[0].name} ({name}; {len(logical)} {kind} visible)"
    return f"CPU ({platform.processor() or platform.machine()}; no GPU or TPU visible)"


def environment() -> dict:
    """What this process runs on: the backend, its library's version, the device."""
    return {
        "backend": BACKEND,
        "library": f"{BACKEND} {__import__(BACKEND).__version__}",  # each backend's module is its name
        "device": device_description(),
    }


def without_options(argv: Sequence[str], options: Sequence[str]) -> List[str]:
    """`argv` without the given options and their values (to pass the rest on to another backend)."""
    kept, skipping = [], False
    for argument in argv:
        if argument.startswith("--"):
            skipping = argument.split("=")[0] in options
        if not skipping:
            kept.append(argument)
    return kept


def rows_from_backend(module: str, backend: str, argv: Sequence[str]) -> dict:
    """Runs benchmark `module` under `KERAS_BACKEND=backend` in a fresh interpreter; what it wrote to `--rows-json`.

    Keras fixes its backend at import, so each backend's rows are measured in
    a process of their own and come back as JSON (its `rows`, `environment`
    and whatever else the benchmark writes).
    """
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "rows.json")
        command = [sys.executable, "-m", module, *argv, "--backend", backend, "--rows-json", path]
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        code = subprocess.call(command, cwd=root, env={**os.environ, "KERAS_BACKEND": backend})
        if code != 0:
            raise SystemExit(f"the benchmark under KERAS_BACKEND={backend} failed (exit code {code})")
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)


def command_line(prog: str, argv: Optional[Iterable[str]]) -> str:
    """The command that reproduces a run (`argv` None: this process's arguments)."""
    return " ".join([prog, *(sys.argv[1:] if argv is None else argv)]).strip()


def markdown(
    title: str,
    command: str,
    settings: Sequence[str],
    columns: Sequence[Column],
    rows: List[dict],
    environments: Optional[List[dict]] = None,
    plain: Optional[str] = None,
    group: Sequence[str] = (),
    configuration: Sequence[str] = ("compilation",),
) -> str:
    """One benchmark table: the title, date, machine, versions, backends and devices, command, settings, rows.

    `settings` are the bullet lines that say what was measured and how to
    read it; `columns` are `(header, row key, format spec)`. With `plain`
    (the plain network's contender name) the rows get their ratio to the
    fastest plain configuration (`add_fastest_plain` with `group` and
    `configuration`) as a last column, explained in the settings.
    """
    environments = environments or [environment()]
    if plain is not None:
        settings = [*settings, FASTEST_PLAIN_SETTING, *add_fastest_plain(rows, plain, group, configuration)]
        columns = [*columns, FASTEST_PLAIN_COLUMN]
    lines = [
        f"# {title}",
        "",
        f"- {date_and_machine()}, load average {load_average()}; Keras {keras.__version__}, "
        f"stochastic_depth_tf {sdt.__version__}",
        *(f"- backend {env['backend']}: {env['library']}; device: {env['device']}" for env in environments),
        f"- command: `{command}`",
        *(f"- {line}" for line in settings),
        "",
        "| " + " | ".join(header for header, _, _ in columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for row in rows:
        lines.append("| " + " | ".join(format(row[key], spec) for _, key, spec in columns) + " |")
    return "\n".join(lines) + "\n"


def publish(table: str, output: Optional[str]) -> None:
    """Prints a benchmark's table, and writes it to `output` too when given (the committed copy)."""
    print(table, flush=True)
    if output:
        os.makedirs(os.path.dirname(output) or ".", exist_ok=True)
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(table)
