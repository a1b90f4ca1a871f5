"""module_utils/hostlock.py: one run of the role per host (a real lock file in a temp dir)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from module_utils import hostlock
from module_utils.hostlock import LockError, acquire, release, under_lock


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


def test_under_lock_takes_the_lock_before_the_read_and_returns_it(tmp_path: Path) -> None:
    path = str(tmp_path / "lock")
    seen: list[str] = []

    def read() -> dict:
        seen.append(json.loads(Path(path).read_text())["run_id"])
        return {"version": {"status": 200}}

    result = under_lock({"run_id": "a", "path": path, "playbook": "Harden"}, read)
    assert seen == ["a"], "the read runs under the lock"
    assert result["lock"]["acquired"] and result["lock"]["changed"] and result["version"] == {"status": 200}
    again = under_lock({"run_id": "a", "path": path}, lambda: {})
    assert again["lock"]["acquired"] and not again["lock"]["changed"], "re-entrant (re-read after a repair)"
    assert under_lock(None, lambda: {"x": 1}) == {"x": 1}


def test_under_lock_reads_nothing_when_another_run_holds_it(tmp_path: Path) -> None:
    path = str(tmp_path / "lock")
    acquire(path, "other", playbook="Harden", controller="ops@ctl")
    called: list[bool] = []
    with pytest.raises(LockError, match=r"another run of hardening.docker_authz holds the lock .* run other"):
        under_lock({"run_id": "mine", "path": path}, lambda: called.append(True) or {})
    assert called == [] and json.loads(Path(path).read_text())["run_id"] == "other"


def test_under_lock_releases_a_lock_it_took_when_the_read_fails(tmp_path: Path) -> None:
    path = str(tmp_path / "lock")

    def broken() -> dict:
        raise OSError("read failed")

    with pytest.raises(OSError, match="read failed"):
        under_lock({"run_id": "a", "path": path}, broken)
    assert not Path(path).exists(), "a lock nobody knows it holds would block the host for an hour"
    acquire(path, "a")  # held from an earlier call of the same run: that call's holder releases it
    with pytest.raises(OSError):
        under_lock({"run_id": "a", "path": path}, broken)
    assert Path(path).exists()


def test_under_lock_in_check_mode_takes_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "lock")
    result = under_lock({"run_id": "a", "path": path, "check": True}, lambda: {})
    assert result["lock"]["acquired"] is False and not Path(path).exists()
    with pytest.raises(LockError, match=r"lock\.run_id must not be empty"):
        under_lock({"run_id": " ", "path": path}, lambda: {})


def test_release_after_verification_releases_only_this_runs_lock(tmp_path: Path) -> None:
    """authz_verify's release_lock, after a passing verification."""
    path = str(tmp_path / "lock")
    hostlock.acquire(path, "run-a")
    lock = {"run_id": "run-a", "path": path}
    kept = hostlock.release_after_verification(lock, enforced_expected=False)
    assert kept["released"] is False and "report-only" in kept["message"] and os.path.exists(path)
    other = hostlock.release_after_verification({"run_id": "run-b", "path": path}, enforced_expected=True)
    assert other["released"] is False and os.path.exists(path)
    checked = hostlock.release_after_verification(lock, enforced_expected=True, check_mode=True)
    assert checked["released"] is True and os.path.exists(path), "check mode removed the lock"
    done = hostlock.release_after_verification(lock, enforced_expected=True)
    assert done == {"released": True, "run_id": "run-a", "message": f"lock {path} released"}
    assert not os.path.exists(path)
    with pytest.raises(hostlock.LockError, match="run_id must not be empty"):
        hostlock.release_after_verification({"run_id": " ", "path": path}, enforced_expected=True)


def test_module_warns_through_ansible_without_deprecated_result_keys(tmp_path: Path) -> None:
    """authz_lock under ansible-playbook (the lock file in tmp_path): taking over a stale lock
    is a warning of the task (module.warn), not a `warnings` result key (deprecated in 2.19)."""
    from tests.lib.ansible_run import run_playbook

    path = tmp_path / "lock"
    acquire(str(path), "old-run", now=1000.0)  # long stale
    play = f"""
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Take
      hardening.docker_authz.authz_lock:
        path: {path}
        run_id: new-run
    - name: Release
      hardening.docker_authz.authz_lock:
        path: {path}
        run_id: new-run
        state: released
"""
    run = run_playbook(play, tmp_path)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    assert any("took over the stale lock" in w for w in run.task("Take")["result"]["warnings"]), out[-3000:]
    assert run.task("Release")["result"]["released"] is True and not path.exists()
    assert "Passing `warnings`" not in out and "DEPRECATION" not in out, out[-3000:]
