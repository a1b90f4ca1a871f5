"""module_utils/hostlock.py: one run of the role per host (a real lock file in a temp dir)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from module_utils.hostlock import LockError, acquire, release


def test_second_run_is_refused_naming_the_holder_and_the_fix(tmp_path: Path) -> None:
    path = str(tmp_path / "lock")
    assert acquire(path, "run-a", playbook="Harden", controller="ops@ctl", now=1000.0)["acquired"]
    with pytest.raises(LockError) as err:
        acquire(path, "run-b", now=1030.0)
    msg = str(err.value)
    assert "run run-a (Harden, from ops@ctl) since 1970-01-01 00:16:40 UTC (30 s ago)" in msg, msg
    assert f"remove {path}" in msg and msg.endswith("Nothing was changed.")
    assert json.loads(Path(path).read_text())["run_id"] == "run-a"


def test_reentrant_release_only_own_lock(tmp_path: Path) -> None:
    path = str(tmp_path / "lock")
    acquire(path, "a")
    assert acquire(path, "a")["acquired"]
    assert release(path, "b")["released"] is False and Path(path).exists()
    assert release(path, "a")["released"] is True and not Path(path).exists()
    assert release(path, "a")["released"] is False


def test_stale_lock_is_taken_over_with_a_warning(tmp_path: Path) -> None:
    path = str(tmp_path / "lock")
    acquire(path, "killed", now=10.0)
    res = acquire(path, "new", stale_seconds=60, now=100.0)
    assert res["acquired"] and "took over the stale lock" in res["warnings"][0]
    assert json.loads(Path(path).read_text())["run_id"] == "new"


def test_check_mode_checks_but_writes_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "lock")
    assert acquire(path, "a", check_mode=True)["acquired"] is False and not Path(path).exists()
    acquire(path, "a")
    with pytest.raises(LockError):
        acquire(path, "b", check_mode=True)
