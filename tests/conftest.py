"""Shared pytest set-up.

- Puts the checkout root on sys.path so `ansible_collections.hardening.docker_authz...`
  imports resolve through the committed symlink ansible_collections/hardening/docker_authz.
- Refuses to count skipped tests as passing: a run with any skip fails (set
  HARDENING_ALLOW_SKIPS=1 to look at a partial run locally).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

VENV_BIN = ROOT / ".venv" / "bin"

pytest_plugins = ["tests.lib.fixtures"]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or os.environ.get("HARDENING_ALLOW_SKIPS") == "1":
        return
    skipped = reporter.stats.get("skipped", [])
    if skipped and session.exitstatus == 0:
        reporter.write_line(
            f"ERROR: {len(skipped)} test(s) skipped; a skipped test does not count as passing. "
            "Fix the environment (make env) or the test.",
            red=True,
        )
        session.exitstatus = 1
