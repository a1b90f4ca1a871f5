# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""Write files into a folder, both owned by root with fixed modes, in one module call.

What ``ansible.builtin.file`` (the folder) and ``ansible.builtin.copy`` (each file) do for the
policy folder, its policy file and its OPA config: ``copy`` alone runs two modules and a file
transfer per file, and the folder is one more call; on a fleet each call is an SSH round trip
and a Python start per host. Each file is written atomically (daemon_config.atomic_write: a
temporary file in the same folder, fsynced, then ``rename``; an SELinux context kept), so the
plugin never reads half a policy. A symbolic link at a file's
path is replaced by the file, as ``copy`` does. Check mode predicts; diff mode shows each
changed file's before and after.

Standard library only (runs on the managed host).
"""

from __future__ import annotations

import os
import stat
from typing import Any

from ansible_collections.hardening.docker_authz.plugins.module_utils.bundle import (
    BundleFilesError,
    sync_files,
)
from ansible_collections.hardening.docker_authz.plugins.module_utils.daemon_config import atomic_write


class PolicyFilesError(Exception):
    """The folder or a file cannot be written as asked."""


def _mode(value: str | int, what: str) -> int:
    if isinstance(value, int):
        return value
    try:
        mode = int(str(value), 8)
    except ValueError:
        raise PolicyFilesError(f"{what} must be an octal mode such as 0640, got {value!r}") from None
    if not 0 <= mode <= 0o7777:
        raise PolicyFilesError(f"{what} must be an octal mode such as 0640, got {value!r}")
    return mode


def _attrs_differ(st: os.stat_result, mode: int) -> bool:
    return st.st_uid != 0 or st.st_gid != 0 or stat.S_IMODE(st.st_mode) != mode


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def write_files(
    directory: str,
    files: dict[str, str],
    *,
    mode: str | int = "0640",
    directory_mode: str | int = "0750",
    check_mode: bool = False,
    bundle: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Make ``directory`` (root, ``directory_mode``) hold each of ``files`` ({path: text}, each
    path inside ``directory``) with that content, owned by root with ``mode``.

    ``bundle`` ({path, files}): then also make the folder ``path`` inside ``directory`` hold
    exactly the bundle ``files`` ({relative path: text}; bundle.sync_files, which refuses a
    non-empty folder without a ``.manifest``) - the OPA config and its bundle in one call."""
    file_mode = _mode(mode, "mode")
    dir_mode = _mode(directory_mode, "directory_mode")
    directory = os.path.normpath(directory)
    if not os.path.isabs(directory):
        raise PolicyFilesError(f"path must be absolute, got {directory!r}")
    bundle_dir = ""
    if bundle is not None:
        bundle_dir = os.path.normpath(str(bundle.get("path") or ""))
        if os.path.dirname(bundle_dir) != directory:
            raise PolicyFilesError(
                f"bundle.path {bundle.get('path')!r} is not a folder directly in {directory}: give a path "
                "inside the folder (nothing was changed)"
            )
        if not isinstance(bundle.get("files"), dict):
            raise PolicyFilesError("bundle.files must map relative paths to text (nothing was changed)")
        # the bundle's refusals (a folder that holds no bundle, a path outside it) before any write
        _with_bundle({"changed": False, "diff": []}, bundle_dir, bundle, 0o640, 0o750, check_mode=True)
    wanted: dict[str, bytes] = {}
    for raw, text in files.items():
        path = os.path.normpath(str(raw))
        if not os.path.isabs(path) or os.path.dirname(path) != directory:
            raise PolicyFilesError(
                f"{raw} is not a file directly in {directory}: give paths inside the folder"
            )
        wanted[path] = str(text).encode("utf-8")

    result: dict[str, Any] = {
        "changed": False,
        "path": directory,
        "directory_changed": False,
        "written": [],
        "warnings": [],
    }
    diff: list[dict[str, str]] = []
    try:
        dst = os.lstat(directory)
    except FileNotFoundError:
        dst = None
    if dst is not None and not stat.S_ISDIR(dst.st_mode):
        raise PolicyFilesError(f"{directory} exists and is not a folder (nothing was changed)")
    if dst is None or _attrs_differ(dst, dir_mode):
        result["directory_changed"] = True
        before = (
            "(absent)\n"
            if dst is None
            else f"root-owned: {dst.st_uid == 0 and dst.st_gid == 0}, mode {stat.S_IMODE(dst.st_mode):04o}\n"
        )
        diff.append({"before_header": directory, "after_header": directory, "before": before,
                     "after": f"root-owned: True, mode {dir_mode:04o}\n"})  # fmt: skip

    plan: list[str] = []
    for path, content in wanted.items():
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise PolicyFilesError(f"{path} is a folder, not a file (nothing was changed)")
        current = _read(path) if st is not None and stat.S_ISREG(st.st_mode) else None
        if current == content and st is not None and not _attrs_differ(st, file_mode):
            continue
        plan.append(path)
        if current != content:
            diff.append({"before_header": path, "after_header": path,
                         "before": (current or b"").decode("utf-8", "replace"),
                         "after": content.decode("utf-8", "replace")})  # fmt: skip
    result.update(changed=bool(result["directory_changed"] or plan), written=plan, diff=diff)
    if check_mode:
        return _with_bundle(result, bundle_dir, bundle, file_mode, dir_mode, check_mode=True)

    if dst is None:
        os.makedirs(directory, mode=0o755, exist_ok=True)
    if result["directory_changed"]:
        os.chown(directory, 0, 0)
        os.chmod(directory, dir_mode)
    for path in plan:
        result["warnings"].extend(atomic_write(path, wanted[path], mode=file_mode))
    return _with_bundle(result, bundle_dir, bundle, file_mode, dir_mode, check_mode=False)


def _with_bundle(
    result: dict[str, Any],
    bundle_dir: str,
    bundle: dict[str, Any] | None,
    file_mode: int,
    dir_mode: int,
    *,
    check_mode: bool,
) -> dict[str, Any]:
    if bundle is None:
        return result
    try:
        synced = sync_files(
            bundle_dir,
            {str(k): str(v) for k, v in bundle["files"].items()},
            mode=file_mode,
            directory_mode=dir_mode,
            check_mode=check_mode,
            only_bundles=True,
        )
    except BundleFilesError as exc:
        raise PolicyFilesError(str(exc)) from None
    result["diff"].extend(synced.pop("diff", []))
    result["bundle"] = synced
    result["changed"] = bool(result["changed"] or synced["changed"])
    return result
