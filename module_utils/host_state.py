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

The policy file and its folder come with owner, group and mode, so the role can tell that the
file it would write is already there byte for byte (and skip the write). With ``adoption`` it
also answers the adoption check (``authz_adopt`` in check mode: an opa-docker-authz plugin
installed under another name, found in dockerd's plugin store on disk), from the daemon.json
just read, so a host with nothing to adopt costs no second module run. With ``plan`` it also
plans the plugin (``authz_plugin`` in check mode: the steps from the installed plugin to the
reference and args wanted, the registry asked for the tag's digest), so a run that changes
nothing needs no separate plan; a plan that fails is reported (``failed``, ``msg``), never raised:
the role then runs ``authz_plugin`` itself, which fails with the same message at its own step.
With ``daemon_check`` it checks daemon.json as ``daemon_json`` in check mode would with the
plugin merged into ``authorization-plugins`` (readable, valid, no conflict with dockerd's flags,
and on Docker 23.0 and later accepted by ``dockerd --validate`` when it would change), reported
the same way.
"""

from __future__ import annotations

import base64
import grp
import json
import os
import pwd
import stat
from typing import Any

from ansible_collections.hardening.docker_authz.plugins.module_utils.adopt import (
    DEFAULT_DATA_ROOT,
    plan,
    read_store,
)
from ansible_collections.hardening.docker_authz.plugins.module_utils.bundle import (
    BundleFilesError,
    sync_files,
)
from ansible_collections.hardening.docker_authz.plugins.module_utils.daemon_config import (
    Content,
    DaemonConfigError,
    apply,
    parse_document,
)
from ansible_collections.hardening.docker_authz.plugins.module_utils.docker_api import (
    DockerClient,
    DockerError,
    Response,
)
from ansible_collections.hardening.docker_authz.plugins.module_utils.plugin import (
    PluginError,
    ensure,
)


def _owner(st: os.stat_result) -> dict[str, str]:
    """``{owner, group, mode}`` as ``ansible.builtin.stat`` names them (``0640``)."""
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return {"owner": owner, "group": group, "mode": f"{stat.S_IMODE(st.st_mode):04o}"}


def _file(path: str, with_stat: bool = False) -> dict[str, Any]:
    """``{exists, content (base64)}`` and with ``with_stat`` owner, group, mode and islink."""
    return _read_file(path, with_stat)[0]


def _read_file(path: str, with_stat: bool = False) -> tuple[dict[str, Any], Content | None]:
    """:func:`_file`'s answer, and the file as read for ``daemon_config.apply``: its bytes,
    ``Content(None)`` when it does not exist, ``None`` when this read cannot tell (not a regular
    file, unreadable: apply then reads the file itself and names the problem as it always does)."""
    out: dict[str, Any] = {"path": path, "exists": False}
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return out, Content(None)
    except OSError:
        return out, None
    out["exists"] = stat.S_ISREG(st.st_mode)
    if with_stat:
        out.update(_owner(st), islink=os.path.islink(path))
    if not out["exists"]:
        return out, None
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        out.update(exists=False, msg=f"cannot read {path}: {exc}")
        return out, None
    out["content"] = base64.b64encode(raw).decode("ascii")
    return out, Content(raw)


class _ReadClient(DockerClient):
    """One read's client: ``GET /version`` and ``GET /_ping`` are asked once (the plan asks them
    again, and every request passes the authorization plugin: tens of ms each)."""

    _ONCE = ("/_ping", "/version")

    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__(socket_path, timeout=timeout)
        self._answers: dict[str, Response] = {}

    def raw_request(self, method: str, path: str, **kw: Any) -> Response:
        if method != "GET" or path not in self._ONCE or any(kw.get(k) for k in ("query", "body", "headers")):
            return super().raw_request(method, path, **kw)
        if path not in self._answers:
            self._answers[path] = super().raw_request(method, path, **kw)
        return self._answers[path]


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
    adoption: bool = False,
    plan_params: dict[str, Any] | None = None,
    daemon_check: bool = False,
) -> dict[str, Any]:
    """The module's result (``changed`` false)."""
    socket = socket[len("unix://") :] if socket.startswith("unix://") else socket
    try:
        st = os.stat(socket)
        sock = {"path": socket, "exists": True, "issock": stat.S_ISSOCK(st.st_mode)}
    except OSError:
        sock = {"path": socket, "exists": False, "issock": False}
    result: dict[str, Any] = {"changed": False, "socket": sock}
    client: _ReadClient | None = None
    if sock["issock"]:
        client = _ReadClient(socket, timeout=timeout)
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
    result["daemon_json"], daemon_json_read = _read_file(daemon_json_path, with_stat=True)
    result["policy"] = _file(policy_path, with_stat=True)
    policy_dir = os.path.dirname(policy_path)
    result["policy_dir"] = {"path": policy_dir, "exists": os.path.isdir(policy_dir)}
    if result["policy_dir"]["exists"]:
        result["policy_dir"].update(_owner(os.stat(policy_dir)), islink=os.path.islink(policy_dir))
    if adoption:
        result["adopt"] = _adoption(result["daemon_json"], plugin)
    if plan_params is not None:
        result["plugin_plan"] = _plugin_plan(client, plugin, plan_params, result["version"])
    if daemon_check:
        result["daemon_check"] = _daemon_check(daemon_json_path, plugin, socket, daemon_json_read)
    try:
        bundle = sync_files(bundle_dir, None, read=True, check_mode=True)
        files = bundle.get("files", {})
        result["bundle"] = {
            "path": bundle_dir,
            "exists": bundle["exists"],
            "files": files,
            "modes": _modes(bundle_dir, files),
        }
    except BundleFilesError as exc:
        result["bundle"] = {"path": bundle_dir, "exists": False, "files": {}, "modes": {}, "msg": str(exc)}
    result["opa_config"] = _file(opa_config_path, with_stat=True)
    return result


def _modes(directory: str, files: dict[str, Any]) -> dict[str, str]:
    """``{path: "0640"}`` of the files read below ``directory`` ("link" for a symlink, "?" when
    gone since): the role skips a bundle write only when contents and modes already match."""
    modes: dict[str, str] = {}
    for rel in files:
        full = os.path.join(directory, rel)
        try:
            st = os.lstat(full)
        except OSError:
            modes[rel] = "?"
            continue
        modes[rel] = "link" if stat.S_ISLNK(st.st_mode) else f"{stat.S_IMODE(st.st_mode):04o}"
    return modes


def _daemon_check(path: str, plugin: str, socket: str, content: Content | None = None) -> dict[str, Any]:
    """``daemon_json`` in check mode with ``authorization-plugins: [plugin]`` merged (union):
    ``{config, changed_keys, reload_required, restart_required, warnings}``, or ``{failed, msg}``.
    ``content``: daemon.json as the host read read it (not read again); ``None``: apply reads it."""
    try:
        res = apply(
            path,
            {"authorization-plugins": [plugin]},
            check_mode=True,
            check_with_dockerd=True,
            docker_socket=socket,
            content=content,
        )
    except DaemonConfigError as exc:
        return {"failed": True, "msg": str(exc)}
    except OSError as exc:
        return {"failed": True, "msg": f"cannot update {path}: {exc}"}
    return {
        "path": res.path,
        "config": res.after,
        "changed_keys": res.changed_keys,
        "reload_required": res.reload_required,
        "restart_required": res.restart_required,
        "warnings": list(res.warnings),
    }


def _plugin_plan(
    client: DockerClient | None, plugin: str, params: dict[str, Any], version: dict[str, Any]
) -> dict[str, Any]:
    """``authz_plugin`` in check mode (state enabled) for ``plugin``: its result without the diff,
    or ``{failed: true, msg}``."""
    if client is None or version.get("status") != 200:
        return {"failed": True, "msg": f"the engine did not answer GET /version ({version.get('msg')})"}
    try:
        out = ensure({**params, "name": plugin, "state": "enabled"}, check_mode=True, client=client)
    except (PluginError, DockerError) as exc:
        return {"failed": True, "msg": str(exc)}
    out.pop("diff", None)
    return out


def _adoption(daemon_json: dict[str, Any], alias: str) -> dict[str, Any]:
    """What ``authz_adopt`` in check mode finds: ``{adopted, removed}`` (both empty: nothing
    to adopt), or ``{msg}`` when it cannot tell (the role then runs ``authz_adopt`` itself)."""
    try:
        raw = base64.b64decode(daemon_json["content"]) if daemon_json.get("exists") else b""
        doc = parse_document(raw, daemon_json["path"])
    except (DaemonConfigError, ValueError) as exc:
        return {"msg": str(exc)}
    hooked = [str(h) for h in doc.get("authorization-plugins") or []]
    found = plan(hooked, read_store(str(doc.get("data-root") or DEFAULT_DATA_ROOT)), alias)
    return {"adopted": [f.name for f in found.adopt], "removed": [f.name for f in found.adopt + found.stale]}
