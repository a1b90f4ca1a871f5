"""Shared pytest set-up.

- Puts the checkout root on sys.path so `ansible_collections.hardening.docker_authz...`
  imports resolve through the committed symlink ansible_collections/hardening/docker_authz.
- Refuses to count skipped tests as passing: a run with any skip fails (set
  HARDENING_ALLOW_SKIPS=1 to look at a partial run locally).
- Prints the end-to-end timings (tests/lib/timings.py) that every process, pytest-xdist's
  workers included, recorded.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

VENV_BIN = ROOT / ".venv" / "bin"

pytest_plugins = ["tests.lib.fixtures"]

from tests.lib import timings  # noqa: E402


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    # Made before pytest-xdist starts its workers, which inherit the environment.
    if not _is_worker(config):
        os.environ[timings.ENV] = tempfile.mkdtemp(prefix="hardening-timings-")


def pytest_unconfigure(config: pytest.Config) -> None:
    if not _is_worker(config):
        shutil.rmtree(os.environ.pop(timings.ENV, ""), ignore_errors=True)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    directory = os.environ.get(timings.ENV)
    recorded = timings.collected(directory) if directory else {}
    if recorded:
        terminalreporter.section("end-to-end timings (wall clock, ansible-playbook over SSH)")
        for name, seconds in recorded.items():
            terminalreporter.write_line(f"{name:45s} {seconds:6.1f}s")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    # pytest-xdist's controller sees every worker's reports; a worker only its own.
    if _is_worker(session.config) or reporter is None or os.environ.get("HARDENING_ALLOW_SKIPS") == "1":
        return
    skipped = reporter.stats.get("skipped", [])
    if skipped and session.exitstatus == 0:
        reporter.write_line(
            f"ERROR: {len(skipped)} test(s) skipped; a skipped test does not count as passing. "
            "Fix the environment (make env) or the test.",
            red=True,
        )
        session.exitstatus = 1
