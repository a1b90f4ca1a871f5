# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""One run of the role per host at a time. Standard library only (runs on managed hosts).

Two runs of harden.yml (or remove.yml) on one host at once interleave daemon.json edits,
reloads, plugin changes and rollbacks (each run's rollback restores the state IT recorded). The
role takes a lock file on the host before its first change and releases it at the end, also
when it fails. The file lives in /run (gone at reboot) and says who holds it: the run's id, the
play, the controller, the start time. A second run fails at once naming the holder and the fix;
a lock older than ``stale_seconds`` (a run killed before it could release it) is taken over
with a warning. Creation is atomic (``O_CREAT | O_EXCL``), so two runs cannot both get it.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from typing import Any

DEFAULT_PATH = "/run/hardening-docker-authz.lock"
DEFAULT_STALE_SECONDS = 3600


class LockError(Exception):
    pass


def _read(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _create(path: str, doc: dict[str, Any]) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(doc, fh)
        fh.write("\n")
    return True


def _holder(doc: dict[str, Any], now: float) -> str:
    started = float(doc.get("started") or 0)
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)) if started else "an unknown time"
    age = f"{now - started:.0f} s ago" if started else "age unknown"
    return (
        f"run {doc.get('run_id', '?')} ({doc.get('playbook') or 'play ?'}, "
        f"from {doc.get('controller') or '?'}) "
        f"since {when} ({age})"
    )


def acquire(
    path: str,
    run_id: str,
    *,
    playbook: str = "",
    controller: str = "",
    stale_seconds: float = DEFAULT_STALE_SECONDS,
    check_mode: bool = False,
    now: float | None = None,
) -> dict[str, Any]:
    """Take the lock for ``run_id`` (re-entrant for the same id); raise LockError naming the
    holder when another run holds it."""
    now = time.time() if now is None else now
    doc = {
        "run_id": run_id,
        "playbook": playbook,
        "controller": controller,
        "started": now,
        "pid": os.getpid(),
    }
    warnings: list[str] = []
    for _ in range(3):
        held = _read(path)
        if held is None:
            if check_mode:
                return {
                    "changed": False,
                    "acquired": False,
                    "warnings": warnings,
                    "message": "the lock is free",
                }
            if _create(path, doc):
                return {
                    "changed": True,
                    "acquired": True,
                    "warnings": warnings,
                    "message": f"lock {path} taken",
                }
            continue  # another run created it meanwhile: read it
        if held.get("run_id") == run_id:
            return {
                "changed": False,
                "acquired": True,
                "warnings": warnings,
                "message": "this run holds the lock",
            }
        started = float(held.get("started") or 0)
        if started and now - started > stale_seconds:
            warnings.append(
                f"took over the stale lock {path} of {_holder(held, now)}: older than {stale_seconds:.0f} s, "
                "that run was killed before it could release it"
            )
            if check_mode:
                return {
                    "changed": False,
                    "acquired": False,
                    "warnings": warnings,
                    "message": "the lock is stale",
                }
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            continue
        raise LockError(
            f"another run of hardening.docker_authz holds the lock {path} on this host: "
            f"{_holder(held, now)}. "
            "Two runs at once would interleave daemon.json edits, reloads, plugin changes and rollbacks. "
            "Wait for it to finish and run again. If no run is going on (one was killed before it could "
            f"release the lock), remove {path} on the host; it is taken over by itself after "
            f"{stale_seconds:.0f} s. Nothing was changed."
        )
    raise LockError(f"could not take the lock {path}: it changed hands three times. Nothing was changed.")


def release(path: str, run_id: str, *, check_mode: bool = False) -> dict[str, Any]:
    """Remove the lock if this run holds it; never another run's."""
    held = _read(path)
    if held is None or held.get("run_id") != run_id:
        return {"changed": False, "released": False, "message": "this run holds no lock"}
    if not check_mode:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    return {"changed": True, "released": True, "message": f"lock {path} released"}


def release_after_verification(
    lock: dict[str, Any], *, enforced_expected: bool, check_mode: bool = False
) -> dict[str, Any]:
    """authz_verify's ``release_lock`` ({run_id, path}), called only after a verification that
    passed: release this run's lock; keep it after a report-only verification (which proves
    nothing). The result: released, run_id, message."""
    run_id = str(lock.get("run_id") or "")
    if not enforced_expected:
        kept = "kept: a report-only verification proves nothing"
        return {"released": False, "run_id": run_id, "message": kept}
    if not run_id.strip():
        raise LockError("release_lock.run_id must not be empty")
    path = str(lock.get("path") or DEFAULT_PATH)
    try:
        done = release(path, run_id, check_mode=check_mode)
    except OSError as exc:
        why = f"the verification passed, but the lock {path} could not be released: {exc}"
        raise LockError(why) from None
    return {"released": done["released"], "run_id": run_id, "message": done["message"]}


def under_lock(lock: dict[str, Any] | None, read: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``read()`` after taking the lock (``lock``: run_id, playbook, controller, path,
    stale_seconds, check - check the lock without taking it, as in check mode), with the
    lock's result as ``lock``; LockError, and ``read`` is not called, when another run holds it.
    A lock this call took is released again when ``read`` raises (the caller never learns it
    holds it). Without ``lock``, just ``read()``."""
    if not lock:
        return read()
    path = str(lock.get("path") or DEFAULT_PATH)
    run_id = str(lock.get("run_id") or "").strip()
    if not run_id:
        raise LockError("lock.run_id must not be empty")
    taken = acquire(
        path,
        run_id,
        playbook=str(lock.get("playbook") or ""),
        controller=str(lock.get("controller") or ""),
        stale_seconds=float(lock.get("stale_seconds") or DEFAULT_STALE_SECONDS),
        check_mode=bool(lock.get("check")),
    )
    try:
        result = read()
    except BaseException:
        if taken.get("changed"):
            release(path, run_id)
        raise
    result["lock"] = taken
    return result
