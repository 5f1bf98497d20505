"""Runs a scenario script in a fresh interpreter and returns the JSON line it prints last.

The subprocess tests (`tests/test_distribution.py`, `tests/test_resume.py`,
`tests/test_backends.py`, `tests/test_engines.py`, `tests/test_faults.py`)
need a process of their own: logical devices and op determinism are
process-wide, and Keras fixes its backend at import. Several processes that
train together (PyTorch DDP ranks, `MultiWorkerMirroredStrategy` workers)
start together on loopback (`run_processes`). A time limit makes a hang
fail the test instead of stalling CI.

Every scenario script (`tests/*_scenarios.py`) ends the same way, with its
table of scenarios handed to `run`:

    if __name__ == "__main__":
        from scenario_runner import run  # from the script's folder, tests/, on sys.path

        run(SCENARIOS)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(scenarios: Dict[str, Callable[..., Any]]) -> None:
    """`python SCRIPT NAME [ARGS...]`: runs `scenarios[NAME](*ARGS)` and prints its findings as one JSON line.

    The arguments stay strings; a scenario converts those it counts with.
    """
    name, *args = sys.argv[1:]
    print(json.dumps(scenarios[name](*args)))


def run_scenario(
    script: str,
    *args: str,
    timeout: float,
    environment: Optional[Dict[str, str]] = None,
    python_flags: Sequence[str] = (),
) -> dict:
    """`python [python_flags] script args...` from the repository root; its last stdout line, parsed."""
    completed = subprocess.run(
        [sys.executable, *python_flags, script, *args],
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(environment or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert completed.returncode == 0, f"{os.path.basename(script)} {' '.join(args)} failed:\n{completed.stderr[-4000:]}"
    return json.loads(completed.stdout.strip().splitlines()[-1])


def free_ports(count: int) -> List[int]:
    """`count` TCP ports on loopback that were free a moment ago (bound together, so distinct)."""
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def run_processes(
    script: str,
    *args: str,
    count: int,
    timeout: float,
    environment: Callable[[int, List[int]], Dict[str, str]],
    cwd: str = ROOT,
    parse: bool = True,
) -> List[Any]:
    """`count` copies of `python script args...` started together; each one's last stdout line, parsed.

    With `parse=False`, each one's whole stdout instead.

    `environment(index, ports)` gives process `index` its variables (a rank,
    a cluster of `count` free loopback `ports`). Every process is killed
    when one fails or the time limit passes, so none is left waiting for
    its peers; one still running then first gets SIGABRT, so that
    faulthandler writes its stack into the error.
    """
    ports = free_ports(count)
    # Output goes to files: a pipe left unread while another process is
    # waited for could fill and block its writer, and so every peer.
    logs = [(tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")) for _ in range(count)]
    processes = [
        subprocess.Popen(
            # faulthandler: a process stopped at the limit prints every thread's stack first
            [sys.executable, "-X", "faulthandler", script, *args],
            cwd=cwd,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **environment(index, ports)},
            stdout=stdout,
            stderr=stderr,
            text=True,
        )
        for index, (stdout, stderr) in enumerate(logs)
    ]
    deadline = time.monotonic() + timeout
    try:
        while any(process.poll() is None for process in processes) and time.monotonic() < deadline:
            if any(process.poll() not in (None, 0) for process in processes):
                break  # a peer failed: the others would wait for it until the limit
            time.sleep(0.2)
    finally:
        stopped = {index for index, process in enumerate(processes) if process.poll() is None}
        for index in sorted(stopped):
            # SIGABRT: faulthandler writes where the process was waiting (a hang, or a
            # peer's lost connection) to its stderr, which the error below shows.
            processes[index].send_signal(signal.SIGABRT)
        for index in sorted(stopped):
            try:
                processes[index].wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for process in processes:
            process.kill()
            process.wait()
    results = []
    # The failed process first: its error, not a peer's lost connection.
    order = sorted(range(count), key=lambda index: processes[index].returncode == 0 or index in stopped)
    for index in order:
        process, (stdout, stderr) = processes[index], logs[index]
        stdout.seek(0), stderr.seek(0)
        assert process.returncode == 0, (
            f"{os.path.basename(script)} {' '.join(args)} (process {index}) failed or passed the {timeout} s "
            f"limit (exit status {process.returncode}):\n{stderr.read()[-4000:]}"
        )
        output = stdout.read()
        results.append((index, json.loads(output.strip().splitlines()[-1]) if parse else output))
    return [result for _, result in sorted(results)]
