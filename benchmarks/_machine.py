"""The date, the machine and its load: the header lines every table and the one-command report share.

Dependency-free on purpose: `benchmarks/__main__.py` imports it and must
import neither Keras nor a backend (either would take a GPU's memory from
the tables' processes), while `harness.py` imports it for every table.
"""

from __future__ import annotations

import datetime
import os
import platform


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: above the core count, other jobs shared the cores."""
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def date_and_machine() -> str:
    """`date: <UTC now>; machine: <architecture>, nproc <cores>`, the start of a report's first line."""
    return (
        f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
        f"machine: {platform.machine()}, nproc {os.cpu_count()}"
    )
