"""Runs the test suite under each Keras backend: all of it on TensorFlow, the backend-neutral part on JAX and PyTorch.

    python tests/all_backends.py                   # tensorflow, jax, torch
    python tests/all_backends.py --backends jax    # one backend
    python tests/all_backends.py -- -k block       # extra pytest arguments after --
    python tests/all_backends.py --workers 0       # in one process (no pytest-xdist)

Keras fixes its backend at import, so each backend runs in a pytest process
of its own, with `KERAS_BACKEND` set. Under JAX and PyTorch the tests marked
`tensorflow_only` are skipped (see `tests/conftest.py`), and so are the
`slow` ones (their sizes exercise TensorFlow's compiled paths, and the
neutral behaviour they check is covered at small sizes) and the
`one_backend` ones: what they check does not depend on the backend (the
graph a surgery or a pruning builds, parameter counts, block orders,
argument checks), so one pass checks it, and the other backends spend
their time on the numerics, gates, training and files. Every backend runs
even if an earlier one failed; the exit code is non-zero if any failed.

Each backend's tests run on `--workers` pytest-xdist processes (default 2,
the CI machine's cores) with `--dist loadfile`: each test file goes to one
worker as a whole, so a module-scoped fixture (a subprocess scenario of a
minute, say) is computed once (`tests/test_all_backends.py` runs that
scheduling on a small suite). Much of the suite waits on subprocesses or
single-threaded tracing, so two workers took the TensorFlow run from
2,341 s to 1,458 s on a loaded 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from typing import List, Optional, Sequence

BACKENDS = ("tensorflow", "jax", "torch")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_command(backend: str, extra: Sequence[str], workers: int = 0) -> List[str]:
    """The pytest invocation for `backend`: everything on TensorFlow, the neutral fast part elsewhere."""
    command = [sys.executable, "-m", "pytest"]
    if workers > 0:
        command += ["-n", str(workers), "--dist", "loadfile"]
    if backend != "tensorflow":
        command += ["-m", "not tensorflow_only and not slow and not one_backend"]
    return command + list(extra)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: List[str] = []
    if "--" in argv:
        extra = argv[argv.index("--") + 1 :]
        argv = argv[: argv.index("--")]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backends",
        nargs="+",
        default=list(BACKENDS),
        choices=BACKENDS,
        help="Keras backends to test (default: all three)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="pytest-xdist worker processes per backend (default 2; 0 runs in one process)",
    )
    args = parser.parse_args(argv)
    if args.workers < 0:
        parser.error(f"argument --workers: expected a non-negative int, received {args.workers}")
    outcomes = []
    for backend in args.backends:
        print(f"\n===== KERAS_BACKEND={backend} =====", flush=True)
        start = time.perf_counter()
        code = subprocess.call(
            pytest_command(backend, extra, args.workers), cwd=ROOT, env={**os.environ, "KERAS_BACKEND": backend}
        )
        outcomes.append((backend, code, time.perf_counter() - start))
    print("\n===== backends =====")
    for backend, code, seconds in outcomes:
        print(f"{backend:<11} {'passed' if code == 0 else f'FAILED (pytest exit code {code})':<32} {seconds:7.0f} s")
    return 0 if all(code == 0 for _, code, _ in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
