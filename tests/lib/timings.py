"""Wall times of notable playbook runs, printed at the end of the session (numbers, not asserts).

``TIMINGS[name] = seconds`` in any test. The suite runs in pytest-xdist workers (Makefile), and
only the controller prints the summary, so every process also writes its entries to
``$HARDENING_TIMINGS_DIR/<worker>.json`` (the directory tests/conftest.py makes for the session);
``collected()`` reads them back worker by worker, each in the order it recorded them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

ENV = "HARDENING_TIMINGS_DIR"


class Timings(dict[str, float]):
    def __setitem__(self, key: str, value: float) -> None:
        super().__setitem__(key, value)
        directory = os.environ.get(ENV)
        if directory and Path(directory).is_dir():
            worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
            tmp = Path(directory, f".{worker}.json.tmp")
            tmp.write_text(json.dumps(dict(self)))
            tmp.replace(Path(directory, f"{worker}.json"))


TIMINGS = Timings()


def collected(directory: str | os.PathLike[str]) -> dict[str, float]:
    """Every process's entries (worker by worker), or {} when none were recorded."""
    merged: dict[str, float] = {}
    for path in sorted(Path(directory).glob("*.json")):
        merged.update(json.loads(path.read_text()))
    return merged
