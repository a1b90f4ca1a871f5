# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""One read of everything the role's preflight needs from a Docker host (module
``hardening.docker_authz.authz_host_state``), instead of one module run per file and request.

Reads, and never changes: whether the socket exists, ``GET /version`` and
``GET /plugins/<alias>/json`` (unversioned, exactly as ``ansible.builtin.uri`` asked them),
daemon.json (content, owner, group, mode), the policy file, whether the policy folder exists,
the bundle folder's files and the OPA config. Every part is described, never an error: a
missing file is ``exists: false``, an engine that does not answer is ``status: -1`` with the
reason in ``msg``. Stdlib only.
"""

from __future__ import annotations

import base64
import grp
import json
import os
import pwd
import stat
from typing import Any

from ansible_collections.hardening.docker_authz.plugins.module_utils.bundle import (
    BundleFilesError,
    sync_files,
)
from ansible_collections.hardening.docker_authz.plugins.module_utils.docker_api import (
    DockerClient,
    DockerError,
)


def _file(path: str, with_stat: bool = False) -> dict[str, Any]:
    """``{exists, content (base64)}`` and with ``with_stat`` owner, group and mode."""
    out: dict[str, Any] = {"path": path, "exists": False}
    try:
        st = os.stat(path)
    except OSError:
        return out
    out["exists"] = stat.S_ISREG(st.st_mode)
    if with_stat:
        try:
            out["owner"] = pwd.getpwuid(st.st_uid).pw_name
        except KeyError:
            out["owner"] = str(st.st_uid)
        try:
            out["group"] = grp.getgrgid(st.st_gid).gr_name
        except KeyError:
            out["group"] = str(st.st_gid)
        out["mode"] = f"{stat.S_IMODE(st.st_mode):04o}"
    if out["exists"]:
        try:
            with open(path, "rb") as handle:
                out["content"] = base64.b64encode(handle.read()).decode("ascii")
        except OSError as exc:
            out.update(exists=False, msg=f"cannot read {path}: {exc}")
    return out


def _get(client: DockerClient, path: str) -> dict[str, Any]:
    """``{status, json, msg}`` of an unversioned GET; status -1 when nothing answered."""
    try:
        resp = client.raw_request("GET", path, versioned=False)
    except DockerError as exc:
        return {"status": -1, "msg": str(exc)}
    out: dict[str, Any] = {"status": resp.status}
    try:
        out["json"] = json.loads(resp.body.decode("utf-8")) if resp.body else None
    except ValueError:
        out["msg"] = f"HTTP {resp.status}: {resp.body[:200].decode('utf-8', 'replace')}"
    if resp.status != 200 and "msg" not in out:
        out["msg"] = f"HTTP {resp.status}: {resp.message}"
    return out


def host_state(
    *,
    socket: str,
    plugin: str,
    daemon_json_path: str,
    policy_path: str,
    bundle_dir: str,
    opa_config_path: str,
    timeout: float = 15.0,
) -> dict[str, Any]:
    """The module's result (``changed`` false)."""
    socket = socket[len("unix://") :] if socket.startswith("unix://") else socket
    try:
        st = os.stat(socket)
        sock = {"path": socket, "exists": True, "issock": stat.S_ISSOCK(st.st_mode)}
    except OSError:
        sock = {"path": socket, "exists": False, "issock": False}
    result: dict[str, Any] = {"changed": False, "socket": sock}
    if sock["issock"]:
        client = DockerClient(socket, timeout=timeout)
        result["version"] = _get(client, "/version")
        result["plugin"] = (
            _get(client, f"/plugins/{plugin}/json")
            if result["version"]["status"] == 200
            else {"status": -1, "msg": "the engine did not answer GET /version"}
        )
    else:
        why = f"{socket} is not a unix socket" if sock["exists"] else f"{socket} does not exist"
        result["version"] = {"status": -1, "msg": why}
        result["plugin"] = {"status": -1, "msg": why}
    result["daemon_json"] = _file(daemon_json_path, with_stat=True)
    result["policy"] = _file(policy_path)
    policy_dir = os.path.dirname(policy_path)
    result["policy_dir"] = {"path": policy_dir, "exists": os.path.isdir(policy_dir)}
    try:
        bundle = sync_files(bundle_dir, None, read=True, check_mode=True)
        result["bundle"] = {"path": bundle_dir, "exists": bundle["exists"], "files": bundle.get("files", {})}
    except BundleFilesError as exc:
        result["bundle"] = {"path": bundle_dir, "exists": False, "files": {}, "msg": str(exc)}
    result["opa_config"] = _file(opa_config_path)
    return result
