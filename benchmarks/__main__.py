"""Every benchmark table in one command, with one report.

    python -m benchmarks --quick   # every table at its smoke size: 9 minutes on 2 quiet CPU cores
    python -m benchmarks           # every table at its committed size: about 3 hours on 2 CPU cores
    python -m benchmarks --tables step_time xla_conditional   # some of them

Each table is measured by its script (`benchmarks/<script>.py`, see
benchmarks/README.md) in a fresh interpreter of its own, one after the
other, so that its contenders share one process with nothing else in it;
the scripts time their contenders in interleaved rounds and report ratios
to the same compilation's baseline and to the fastest plain configuration
of the run. The tables are written under `benchmarks/results/` (a quick run
under `benchmarks/results/quick/`, so that it never replaces a committed
full-size table), and `report.md` there holds them all after one header:
the date, the machine and its load, and every backend and device the
tables ran on.

Nothing is pinned to a device, and this process imports neither TensorFlow
nor JAX (either would take a GPU's memory from the tables' processes): on
a machine with a GPU, TensorFlow, JAX and PyTorch place the work on it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from typing import Dict, List, NamedTuple, Optional

from benchmarks._machine import date_and_machine, load_average

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")


class Table(NamedTuple):
    """One table: its script (a module of `benchmarks`) and its arguments at full and quick size.

    `quick` is None where the quick run measures the table inside another
    (the every-backend table is the quick `step_time` table).
    """

    script: str
    full: List[str]
    quick: Optional[List[str]]


EVERY_BACKEND = ["--backend", "tensorflow", "jax", "torch"]
TABLES: Dict[str, Table] = {
    "step_time": Table("step_time", [], ["--quick", *EVERY_BACKEND]),
    "step_time_backends": Table(
        "step_time", [*EVERY_BACKEND, "--depths", "56", "--no-serving", "--rounds", "6", "--steps", "5"], None
    ),
    "step_time_digits": Table(
        "step_time",
        ["--data", "digits", "--depths", "32", "--rounds", "10", "--steps", "10"],
        ["--data", "digits", "--quick", "--no-serving", "--compilations", "graph"],
    ),
    "efficientnet_step_time": Table("efficientnet_step_time", [], ["--quick"]),
    "shake_drop_step_time": Table("shake_drop_step_time", ["--rounds", "8"], ["--quick", "--compilations", "graph"]),
    "per_example": Table("per_example", [], ["--quick", "--networks", "vit"]),
    "hub_per_example": Table("hub_per_example", [], ["--quick"]),
    "layerdrop_step_time": Table("layerdrop_step_time", [], ["--quick"]),
    "cifar10_epoch_time": Table("cifar10_epoch_time", [], ["--quick"]),
    "xla_conditional": Table("xla_conditional", [], ["--quick"]),
    "prune_latency": Table("prune_latency", [], ["--quick"]),
}


def planned(names: List[str], quick: bool, output_dir: str) -> List[tuple]:
    """`(name, command, output file)` of every table to run, in order."""
    plan = []
    for name in names:
        table = TABLES[name]
        arguments = table.quick if quick else table.full
        if arguments is None:
            continue
        output = os.path.join(output_dir, f"{name}.md")
        plan.append(
            (name, [sys.executable, "-m", f"benchmarks.{table.script}", *arguments, "--output", output], output)
        )
    return plan


def run_table(command: List[str]) -> int:
    """Runs one table's script in a fresh interpreter: its own process, TensorFlow as the Keras backend.

    The scripts but `step_time` and `layerdrop_step_time` are TensorFlow's
    (graph mode, XLA, SavedModels); `step_time --backend ...` and
    `layerdrop_step_time` start a process per backend.
    """
    return subprocess.call(command, cwd=ROOT, env={**os.environ, "KERAS_BACKEND": "tensorflow"})


def report(tables: List[tuple], command: str, started: float, load_at_start: str) -> str:
    """One Markdown report: a header with the run, the backends and devices, then every table, demoted a level."""
    sections, environments = [], []
    for name, code, output, seconds in tables:
        if code != 0 or not os.path.exists(output):
            sections.append(f"## {name}\n\nFAILED (exit code {code}); see the run's output.\n")
            continue
        with open(output, encoding="utf-8") as handle:
            text = handle.read()
        environments += [line for line in text.splitlines() if line.startswith("- backend ")]
        sections.append(f"#{text.rstrip()}\n\n(`{os.path.relpath(output, ROOT)}`, {seconds / 60:.1f} min)\n")
    header = [
        "# Every benchmark table",
        "",
        f"- {date_and_machine()}; {(time.perf_counter() - started) / 60:.0f} min in all",
        f"- load average (1, 5, 15 min): {load_at_start} at the start, {load_average()} at the end "
        f"(above {os.cpu_count()}, other jobs shared the cores: expect noise)",
        f"- command: `{command}`",
        *dict.fromkeys(environments),
        "- every table gives each contender's ratio to its baseline of the same compilation, and its ratio to the "
        "fastest plain configuration (no stochastic depth) measured in that table",
        "",
    ]
    return "\n".join(header) + "\n" + "\n".join(sections)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="every table at its smoke size (about 9 minutes on 2 CPU cores)"
    )
    parser.add_argument(
        "--tables", nargs="+", choices=list(TABLES), default=list(TABLES), help="the tables to run (default: all)"
    )
    parser.add_argument(
        "--output-dir",
        default=None,
        help="where the tables and report.md go (default: benchmarks/results, quick: its quick/)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the commands without running them")
    args = parser.parse_args(argv)
    output_dir = args.output_dir or (os.path.join(RESULTS, "quick") if args.quick else RESULTS)
    plan = planned(args.tables, args.quick, output_dir)
    if args.dry_run:
        for _, command, _ in plan:
            print(" ".join(command))
        return 0

    command = " ".join(["python -m benchmarks", *(sys.argv[1:] if argv is None else argv)])
    started, load_at_start = time.perf_counter(), load_average()
    done = []
    for name, table_command, output in plan:
        print(f"===== {name}: {' '.join(table_command[1:])} =====", flush=True)
        table_started = time.perf_counter()
        if os.path.exists(output):
            os.remove(output)  # a failed run must not report the previous run's table
        done.append((name, run_table(table_command), output, time.perf_counter() - table_started))
    text = report(done, command, started, load_at_start)
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "report.md"), "w", encoding="utf-8") as handle:
        handle.write(text)
    print(text, flush=True)
    return 0 if all(code == 0 for _, code, _, _ in done) else 1


if __name__ == "__main__":
    raise SystemExit(main())
