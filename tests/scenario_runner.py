"""Runs a scenario script in a fresh interpreter and returns the JSON line it prints last.

The subprocess tests (`tests/test_distribution.py`, `tests/test_resume.py`,
`tests/test_backends.py`) need a process of their own: logical devices and
op determinism are process-wide, and Keras fixes its backend at import. A
time limit makes a hang fail the test instead of stalling CI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Dict, Optional, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
