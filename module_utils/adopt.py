# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""Take over an opa-docker-authz plugin set up by hand. Standard library only (runs on hosts).

The how-to installs the plugin under its full reference with no alias
(``docker plugin install openpolicyagent/opa-docker-authz-v2:0.4 opa-args=...``) and hooks it
into ``authorization-plugins`` by that reference. The role cannot install its own plugin beside
it: opa-docker-authz answers the JSON-array body of every plugin pull/set request with an error,
and once the role's policy is in the file both plugins read, the old one enforces it too.

:func:`plan` recognises such a plugin by what it is (its socket ``opa-docker-authz.sock``, an
entrypoint or ``opa-args`` of opa-docker-authz, an authorization plugin), never by its name,
read from dockerd's plugin store on disk (so it works while a plugin locks the API).
Authorization plugins of any other kind stay where they are.

:func:`adopt` swaps it for the role's plugin in ONE module call on the host, so that the window
without this enforcement is as short as the engine allows:

1. back up the old policy (``<policy>.<timestamp>.before-adoption~``) and daemon.json;
2. unhook the old plugin(s) from daemon.json and reload dockerd  -- enforcement off --
3. write the role's compiled policy (file mode; atomic), install the role's plugin under its
   alias, set its args, enable it;
4. remove the old plugin(s) (nothing in the chain to refuse it);
5. hook the role's plugin at the old one's place and reload dockerd -- enforcement on --
   measured until a privileged create of a missing image is denied by the role's plugin.

A failure before step 4 puts everything back (daemon.json, policy, reload, the new plugin
removed) and names the cause; the host is then as before, enforced by the old plugin.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from .daemon_config import (
    DaemonConfigError,
    atomic_write,
    backup_file,
    file_lock,
    parse_document,
    render,
    run_systemctl,
)
from .diagnose import dockerd_pid, same_plugin
from .docker_api import DockerAPIError, DockerClient, DockerError
from .opa_args import parse as parse_opa_args
from .plugin import PluginError, ensure

OPA_SOCKET = "opa-docker-authz.sock"
OPA_ARGS_NAME = "opa-args"
DEFAULT_DATA_ROOT = "/var/lib/docker"
PROBE_IMAGE = "hardening-docker-authz.invalid/adopt-probe:absent"
UNHOOK_RETRY_SECONDS = 20.0


class AdoptError(Exception):
    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


@dataclass
class Found:
    """An installed plugin of the opa-docker-authz kind that is not the role's own."""

    name: str
    plugin_id: str
    reference: str
    enabled: bool
    args: list[str]
    why: str
    position: int | None  # index in authorization-plugins, None when not hooked


@dataclass
class Plan:
    alias: str
    chain_before: list[str]
    chain_unhooked: list[str] = field(default_factory=list)
    chain_after: list[str] = field(default_factory=list)
    adopt: list[Found] = field(default_factory=list)  # hooked: swapped for ours
    stale: list[Found] = field(default_factory=list)  # installed, not hooked: removed in the window
    others: list[str] = field(default_factory=list)  # other authorization plugins: they stay

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------ recognition
def _types(iface: dict[str, Any]) -> list[str]:
    out = []
    for t in iface.get("Types") or iface.get("types") or []:
        if isinstance(t, dict):
            out.append(f"{t.get('Prefix', '')}.{t.get('Capability', '')}/{t.get('Version', '')}")
        else:
            out.append(str(t))
    return out


def recognise(plugin: dict[str, Any]) -> str | None:
    """Why ``plugin`` (an object of ``GET /plugins`` or of the plugin store) is opa-docker-authz,
    or None. Judged by what it is - an authorization plugin whose socket, entrypoint or settable
    args are opa-docker-authz's - never by its name or reference."""
    cfg = plugin.get("Config") or {}
    iface = cfg.get("Interface") or {}
    if not any(t.split("/", 1)[0].endswith("authz") for t in _types(iface)):
        return None
    socket = str(iface.get("Socket") or "")
    entry = [str(e) for e in cfg.get("Entrypoint") or []]
    args_name = str((cfg.get("Args") or {}).get("Name") or "")
    if socket == OPA_SOCKET:
        return f"authorization plugin serving {OPA_SOCKET}"
    if any("opa-docker-authz" in os.path.basename(e) or "opa-docker-authz" in e for e in entry):
        return f"authorization plugin with entrypoint {' '.join(entry)}"
    if args_name == OPA_ARGS_NAME:
        return f"authorization plugin configured by {OPA_ARGS_NAME}"
    return None


def read_store(data_root: str = DEFAULT_DATA_ROOT) -> list[dict[str, Any]]:
    """The managed plugins in dockerd's store (``<data-root>/plugins/<id>/config.json``)."""
    base = os.path.join(data_root, "plugins")
    out: list[dict[str, Any]] = []
    try:
        entries = sorted(os.listdir(base))
    except OSError:
        return out
    for entry in entries:
        try:
            with open(os.path.join(base, entry, "config.json"), encoding="utf-8") as fh:
                doc = json.load(fh)
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and isinstance(doc.get("plugin"), dict):
            doc = doc["plugin"]
        if isinstance(doc, dict) and doc.get("Name"):
            doc.setdefault("Id", entry)
            out.append(doc)
    return out


def _is_ours(name: str, alias: str) -> bool:
    return same_plugin(name, alias)


def plan(hooked: list[str], plugins: list[dict[str, Any]], alias: str) -> Plan:
    """What adoption does on a host whose daemon.json hooks ``hooked`` and whose store holds
    ``plugins``. Empty ``adopt`` and ``stale``: nothing to do."""
    p = Plan(alias=alias, chain_before=list(hooked))
    found: list[Found] = []
    for obj in plugins:
        name = str(obj.get("Name") or "")
        if not name or _is_ours(name, alias):
            continue
        why = recognise(obj)
        if why is None:
            continue
        pos = next((i for i, h in enumerate(hooked) if same_plugin(h, name)), None)
        settings = obj.get("Settings") or {}
        found.append(
            Found(
                name=name,
                plugin_id=str(obj.get("Id") or ""),
                reference=str(obj.get("PluginReference") or name),
                enabled=bool(obj.get("Enabled")),
                args=[str(a) for a in settings.get("Args") or []],
                why=why,
                position=pos,
            )
        )
    p.adopt = sorted((f for f in found if f.position is not None), key=lambda f: f.position or 0)
    p.stale = [f for f in found if f.position is None]
    old = {f.name for f in found}
    p.others = [h for h in hooked if not _is_ours(h, alias) and not any(same_plugin(h, n) for n in old)]
    p.chain_unhooked = [h for h in hooked if not any(same_plugin(h, f.name) for f in p.adopt)]
    after: list[str] = []
    ours_hooked = any(_is_ours(h, alias) for h in hooked)
    placed = ours_hooked
    for h in hooked:
        if any(same_plugin(h, f.name) for f in p.adopt):
            if not placed:
                after.append(alias)
                placed = True
            continue
        after.append(h)
    p.chain_after = after
    return p


def describe(p: Plan, reference: str, policy_path: str | None, check_mode: bool) -> str:
    """Exactly what :func:`adopt` does (or did), in words."""
    if not p.adopt and not p.stale:
        return f"No opa-docker-authz plugin other than {p.alias} is installed: nothing to adopt."
    parts = []
    for f in p.adopt:
        parts.append(
            f"{f.name} ({f.why}; reference {f.reference}; args {' '.join(f.args) or 'none'}; "
            f"{'enabled' if f.enabled else 'disabled'}) hooked at position {(f.position or 0) + 1} of "
            f"authorization-plugins {json.dumps(p.chain_before)}"
        )
    head = "Check mode: the run would adopt " if check_mode else "Adopting "
    steps = []
    old = ", ".join(f.name for f in p.adopt)
    gone = p.adopt + p.stale
    plural = "s" if len(gone) > 1 else ""
    if p.adopt:
        if policy_path:
            steps.append(
                f"back up {policy_path} (the old policy) beside it as {policy_path}.<time>.before-adoption~"
            )
        steps.append(
            f"install {reference} as {p.alias}, set its args and enable it while {old} still enforces (the "
            "plugin requests' bodies are sent as application/json; charset=utf-8, which opa-docker-authz "
            "does not parse, so the old policy judges them without their body); if the old policy refuses "
            f"them, {old} is unhooked first ({json.dumps(p.chain_unhooked)}, reload) and this enforcement "
            f"is off until {p.alias} is hooked"
        )
        steps.append(
            f"put {p.alias} in place of {old} in authorization-plugins ({json.dumps(p.chain_after)}) and "
            "reload dockerd: one reload, no window"
        )
        steps.append(
            f"remove the old plugin{plural} {', '.join(f.name for f in gone)}; if the policy in force "
            f"denies that, unhook {p.alias}, remove, hook it again (a window of about a second, measured)"
        )
        if policy_path:
            steps.append(
                f"write the role's compiled policy to {policy_path} ({p.alias} reads it on the next request; "
                "first, before the swap, when the old plugin reads another file; right after the swap, "
                f"before (4), when {p.alias} cannot parse the old policy - a v0 policy of an old tag - "
                "and requests fail closed until then)"
            )
    else:
        steps.append(f"remove the old plugin{plural} {', '.join(f.name for f in gone)} (not hooked)")
    msg = head + ("; ".join(parts) if parts else "nothing hooked")
    if p.stale:
        msg += ". Installed but not hooked: " + ", ".join(f"{f.name} ({f.why})" for f in p.stale)
    if p.others:
        msg += f". Other authorization plugins stay where they are: {', '.join(p.others)}"
    return msg + ". Steps: " + "; ".join(f"({i}) {s}" for i, s in enumerate(steps, 1)) + "."


# ------------------------------------------------------------------------------ host actions
Reloader = Callable[[], None]


def make_reloader(method: str, pidfile: str) -> Reloader:
    """SIGHUP to dockerd (``signal``) or ``systemctl reload docker`` (``systemd``); ``auto``
    picks systemd when it runs as PID 1 (``/run/systemd/system``)."""
    if method == "auto":
        method = "systemd" if os.path.isdir("/run/systemd/system") else "signal"

    def reload() -> None:
        if method == "systemd":
            rc, out = run_systemctl(["reload", "docker"])
            if rc != 0:
                raise AdoptError(f"systemctl reload docker failed (exit {rc}): {out.strip()}")
            return
        pid = dockerd_pid(pidfile)
        if pid is None:
            raise AdoptError(f"no dockerd process to reload (pid file {pidfile}, /proc)")
        os.kill(pid, signal.SIGHUP)

    return reload


def _write_chain(path: str, doc: dict[str, Any], chain: list[str]) -> bytes:
    new = dict(doc)
    if chain:
        new["authorization-plugins"] = chain
    else:
        new.pop("authorization-plugins", None)
    data = render(new).encode("utf-8")
    atomic_write(path, data)
    return data


def _probe_enforced(client: DockerClient, alias: str) -> str:
    """``denied`` when the role's plugin denies a privileged create of a missing image,
    ``open`` when the engine let it through to the image lookup, else the error text."""
    try:
        resp = client.raw_request(
            "POST",
            "/containers/create",
            body={"Image": PROBE_IMAGE, "HostConfig": {"Privileged": True}},
            timeout=10,
        )
    except DockerError as exc:
        return str(exc)
    msg = resp.message if resp.status >= 400 else ""
    if resp.status == 403 and _names(msg, alias):
        return "denied"
    if resp.status == 404:
        return "open"
    return f"HTTP {resp.status} {msg}"


def _wait_enforced(client: DockerClient, alias: str, timeout: float) -> tuple[bool, str]:
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        last = _probe_enforced(client, alias)
        if last == "denied":
            return True, last
        if time.monotonic() >= deadline:
            return False, last
        time.sleep(0.02)


def _install(params: dict[str, Any], client: DockerClient, blockers: list[str]) -> dict[str, Any]:
    """The role's plugin installed, configured and enabled; retried while dockerd has not yet
    applied the unhook (an old plugin still refuses the pull's body)."""
    deadline = time.monotonic() + UNHOOK_RETRY_SECONDS
    while True:
        try:
            return ensure(
                {
                    "name": params["alias"],
                    "reference": params["reference"],
                    "args": params["args"],
                    "registry_auth": params.get("registry_auth") or None,
                    "socket": params["socket"],
                    "digest_check": params.get("digest_check", True),
                    "timeout": params.get("timeout") or 120,
                    "state": "enabled",
                },
                check_mode=False,
                client=client,
            )
        except PluginError as exc:
            blocker = str(exc.details.get("blocking_plugin") or "")
            if blocker and any(same_plugin(blocker, b) for b in blockers) and time.monotonic() < deadline:
                time.sleep(0.1)
                continue
            raise


def adopt(
    params: dict[str, Any],
    check_mode: bool = False,
    client: DockerClient | None = None,
    reloader: Reloader | None = None,
) -> dict[str, Any]:
    """Plan (check mode) or carry out the adoption; return the module result."""
    alias = str(params["alias"])
    dj_path = str(params["daemon_json_path"])
    policy_path = params.get("policy_path") or None
    policy_text = params.get("policy_text")
    raw = b""
    if os.path.exists(dj_path):
        with open(dj_path, "rb") as fh:
            raw = fh.read()
    doc = parse_document(raw, dj_path)
    hooked = [str(h) for h in doc.get("authorization-plugins") or []]
    data_root = str(doc.get("data-root") or params.get("data_root") or DEFAULT_DATA_ROOT)
    p = plan(hooked, read_store(data_root), alias)
    result: dict[str, Any] = {
        "changed": bool(p.adopt or p.stale),
        "plan": p.as_dict(),
        "adopted": [f.name for f in p.adopt],
        "removed": [f.name for f in p.adopt + p.stale],
        "policy_backup": None,
        "daemon_json_backup": None,
        "unenforced_seconds": None,
        "enforcement_confirmed": None,
        "message": describe(p, str(params["reference"]), policy_path if p.adopt else None, check_mode),
    }
    if not result["changed"]:
        return result
    old_policy: bytes | None = None
    if policy_path and os.path.exists(policy_path):
        with open(policy_path, "rb") as fh:
            old_policy = fh.read()
    result["diff"] = [
        {
            "before_header": dj_path,
            "after_header": dj_path,
            "before": render(doc) if raw else "",
            "after": render({**doc, "authorization-plugins": p.chain_after} if p.chain_after else doc),
        }
    ]
    if p.adopt and policy_path and policy_text is not None:
        result["diff"].append(
            {
                "before_header": policy_path,
                "after_header": policy_path,
                "before": (old_policy or b"").decode("utf-8", "replace"),
                "after": policy_text,
            }
        )
    if check_mode:
        return result

    client = client or DockerClient(str(params["socket"]), timeout=float(params.get("timeout") or 120))
    reload = reloader or make_reloader(str(params.get("reload_method") or "auto"), str(params["pidfile"]))
    if not p.adopt:
        # installed, not hooked: nothing enforces through them, but the role's own plugin (if
        # hooked) would deny their removal; it is removed while nothing of ours is hooked only.
        _remove_old(client, p.stale, result)
        return result

    with file_lock(dj_path):
        if policy_path and old_policy is not None:
            result["policy_backup"] = _backup(policy_path)
        if raw:
            result["daemon_json_backup"] = backup_file(dj_path)
        blockers = [f.name for f in p.adopt]
        gone = p.adopt + p.stale
        confirm = float(params.get("confirm_timeout") or 15)
        installed: dict[str, Any] | None = None
        try:
            # the old plugin still enforces: it judges the install by path (it cannot parse the
            # body either way), its policy decides
            installed = ensure(_install_params(params), check_mode=False, client=_hidden_body_client(client))
        except PluginError as exc:
            if exc.details.get("reason") != "authz_chain_refused":
                raise AdoptError(
                    f"cannot install {params['reference']} as {alias}: {exc}. Nothing was changed: "
                    f"{', '.join(blockers)} still enforces. Fix the cause and run again.",
                    **exc.details,
                ) from None
            result["preinstall_refused"] = str(exc)
        if installed is not None:
            result["mode"] = "handover"
            _handover(
                dj_path,
                doc,
                p,
                policy_path,
                policy_text,
                reload,
                client,
                gone,
                result,
                confirm,
                str(params["args"]).split(),
            )
        else:
            result["mode"] = "window"
            t_off = time.monotonic()
            _write_chain(dj_path, doc, p.chain_unhooked)
            reload()
            try:
                if policy_path and policy_text is not None:
                    atomic_write(policy_path, policy_text.encode("utf-8"))
                installed = _install(params, client, blockers)
            except (PluginError, DockerError, OSError, AdoptError) as exc:
                restored = _put_back(dj_path, raw, policy_path, old_policy, reload, client, alias)
                raise AdoptError(
                    f"adoption of {', '.join(blockers)} failed while the role's plugin was being installed: "
                    f"{exc}. Restored: {restored}. The host is as before, enforced by the old plugin. "
                    "Fix the cause and run again.",
                    restored=restored,
                ) from None
            _remove_old(client, gone, result)
            _write_chain(dj_path, doc, p.chain_after)
            t_hook = time.monotonic()
            reload()
            _wait_head(client, alias, confirm)
            t_on = time.monotonic()
            confirmed, last = _wait_enforced(client, alias, confirm)
            result["unenforced_seconds"] = round(t_on - t_off, 2)
            result["reload_to_enforced_seconds"] = round(t_on - t_hook, 3)
            result["enforcement_confirmed"] = confirmed
            result["last_probe"] = last
    not_removed = result.pop("_not_removed", [])
    result["removed"] = [n for n in result["removed"] if n not in not_removed]
    result["plugin"] = installed.get("plugin")
    with open(dj_path, "rb") as fh:
        result["daemon_json_b64"] = base64.b64encode(fh.read()).decode("ascii")
    result["message"] = _done_message(p, params, result)
    return result


def _policy_file(args: list[str]) -> str | None:
    """The file ``-policy-file`` names in opa-args as the plugin reads them (Go's flag package:
    ``--policy-file=X`` too, the last one given, none after a word that is not a flag)."""
    return parse_opa_args(args).string("policy-file")


def _install_params(params: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": params["alias"],
        "reference": params["reference"],
        "args": params["args"],
        "registry_auth": params.get("registry_auth") or None,
        "socket": params["socket"],
        "digest_check": params.get("digest_check", True),
        "timeout": params.get("timeout") or 120,
        "state": "enabled",
    }


class _HiddenBodyClient(DockerClient):
    """Sends JSON-array bodies (plugin pull/set privileges and settings) as
    ``application/json; charset=utf-8``: dockerd parses them, opa-docker-authz compares the header
    exactly and judges the request without its body instead of failing on the array."""

    def raw_request(self, method: str, path: str, **kw: Any) -> Any:
        if isinstance(kw.get("body"), list):
            kw["headers"] = {**(kw.get("headers") or {}), "Content-Type": "application/json; charset=utf-8"}
        return super().raw_request(method, path, **kw)


def _hidden_body_client(client: Any) -> Any:
    if type(client) is DockerClient:
        return _HiddenBodyClient(client.socket_path, timeout=client.timeout)
    return client  # a test double


def _chain_head(client: Any, alias: str) -> str:
    """Which opa-docker-authz answers first: a plugin set with a JSON-array body for a plugin that
    does not exist fails in the first opa-docker-authz of the chain, whatever its policy, and
    dockerd's error names it (``plugin X failed with error``). Returns ``ours``, ``other`` or the
    answer's text."""
    try:
        resp = client.raw_request(
            "POST", "/plugins/hardening-adopt-probe-absent:latest/set", body=["x=1"], timeout=10
        )
    except DockerError as exc:
        # the client's /_ping failed: when ours cannot use the policy in the file (a v0 policy for
        # the role's v1 plugin) every request fails in it, and dockerd's error names it - ours
        # answers first (without this, the swap waited out confirm_timeout with the API locked)
        return "ours" if _names(str(exc), alias) else str(exc)
    msg = resp.message
    if _names(msg, alias):
        return "ours"
    if "failed with error" in msg or "authorization denied" in msg:
        return "other"
    return f"HTTP {resp.status} {msg}"


def _wait_head(client: Any, alias: str, timeout: float) -> bool:
    """Wait until the role's plugin is the first opa-docker-authz dockerd asks (the reload took)."""
    deadline = time.monotonic() + timeout
    while _chain_head(client, alias) != "ours":
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def _names(msg: str, alias: str) -> bool:
    return re.search(rf"plugin {re.escape(alias)}(?::latest)?(?: failed with error|: )", msg) is not None


def _api_locked_by(client: Any, alias: str) -> str | None:
    try:
        resp = client.raw_request("GET", "/version", timeout=10)
    except DockerError as exc:
        return str(exc)
    return resp.message if resp.status >= 400 and _names(resp.message, alias) else None


def _handover(
    dj_path: str,
    doc: dict[str, Any],
    p: Plan,
    policy_path: str | None,
    policy_text: str | None,
    reload: Reloader,
    client: Any,
    gone: list[Found],
    result: dict[str, Any],
    confirm: float,
    shared_args: list[str],
) -> None:
    """The role's plugin is installed and enabled while the old one still enforces: swap them in
    one reload (no window), then remove the old one and write the role's policy."""
    alias = p.alias
    policy_written = False
    if (
        policy_path
        and policy_text is not None
        and not all(_policy_file(f.args) == _policy_file(shared_args) for f in p.adopt)
    ):
        # the old plugin reads another file: the role's policy goes in first (the role's plugin
        # must not find its file missing, it would fail open)
        atomic_write(policy_path, policy_text.encode("utf-8"))
        policy_written = True
    t_swap = time.monotonic()
    _write_chain(dj_path, doc, p.chain_after)
    reload()
    _wait_head(client, alias, confirm)
    result["swap_seconds"] = round(time.monotonic() - t_swap, 3)
    result["unenforced_seconds"] = 0.0
    if not policy_written:
        locked = _api_locked_by(client, alias)
        if locked and policy_path and policy_text is not None:
            # the role's plugin cannot use the old policy (a v0 policy for a v1 plugin): the API
            # fails closed until the role's policy is in place, a few milliseconds
            atomic_write(policy_path, policy_text.encode("utf-8"))
            policy_written = True
            result["old_policy_unusable"] = locked
    # removed at once if the policy in force allows it (the old one allowed the install)
    _remove_old(client, gone, result, quiet=True)
    left = [f for f in gone if f.name in result.pop("_not_removed", [])]
    if not policy_written and policy_path and policy_text is not None:
        atomic_write(policy_path, policy_text.encode("utf-8"))
    if left:
        # the role's policy (or the old one) denies plugin changes: a short unhook for the removal
        t_off = time.monotonic()
        _write_chain(dj_path, doc, p.chain_unhooked)
        reload()
        deadline = time.monotonic() + confirm
        while True:
            result.pop("_not_removed", None)
            _remove_old(client, left, result, quiet=True, kill_after=0.3)
            if not result.get("_not_removed") or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        _write_chain(dj_path, doc, p.chain_after)
        reload()
        _wait_head(client, alias, confirm)
        result["unenforced_seconds"] = round(time.monotonic() - t_off, 3)
        result["removal_window"] = True
        if result.get("_not_removed"):
            _remove_old(client, [f for f in left if f.name in result["_not_removed"]], result)
    confirmed, last = _wait_enforced(client, alias, confirm)
    result["enforcement_confirmed"] = confirmed
    result["last_probe"] = last


def _done_message(p: Plan, params: dict[str, Any], result: dict[str, Any]) -> str:
    alias = p.alias
    done = (
        f"Adopted {', '.join(f.name for f in p.adopt)}: {alias} ({params['reference']}) now sits at its "
        f"place in authorization-plugins {json.dumps(p.chain_after)}; "
        f"removed {', '.join(result['removed'])}. "
    )
    if result["mode"] == "handover":
        done += (
            f"{alias} was installed and enabled while the old plugin still enforced, and took its place in "
            f"one reload ({result['swap_seconds']} s until it answered first)"
        )
        if result.get("old_policy_unusable"):
            done += (
                f"; it could not use the old policy ({result['old_policy_unusable'][:200]}), so requests "
                "failed closed until the role's policy was written right after"
            )
        done += f". Without this enforcement for {result['unenforced_seconds']} s"
        if result.get("removal_window"):
            done += (
                " (the old plugin's removal, which the role's policy denies, between an unhook and a hook)"
            )
        done += "."
    else:
        done += (
            "The old plugin refused the install while hooked "
            f"({result.get('preinstall_refused', '')[:300]}), "
            f"so it was unhooked first: without this enforcement for {result['unenforced_seconds']} s "
            f"(from the unhook until {alias} answered first in the chain)."
        )
    if not result.get("enforcement_confirmed"):
        done += (
            f" No privileged create was seen denied by {alias} afterwards "
            f"(last answer: {result.get('last_probe')}; the policy may allow privileged containers): "
            "the verification decides."
        )
    if result["policy_backup"]:
        done += f" The old policy is kept as {result['policy_backup']}."
    return done


def _backup(path: str) -> str:
    dest = f"{path}.{time.strftime('%Y-%m-%d@%H:%M:%S')}.before-adoption~"
    try:
        shutil.copy2(path, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(dest)  # no truncated backup on a full disk
        raise
    return dest


def _remove_old(
    client: Any,
    gone: list[Found],
    result: dict[str, Any],
    quiet: bool = False,
    kill_after: float | None = None,
) -> None:
    for f in gone:
        try:
            if kill_after is None:
                # unhooked: forcing it out cannot switch off enforcement
                client.delete(f"/plugins/{f.plugin_id}", query={"force": True}, timeout=70)
            else:
                _delete_killing(client, f, kill_after)
        except DockerAPIError as exc:
            result.setdefault("_not_removed", []).append(f.name)
            if not quiet:
                result.setdefault("warnings", []).append(
                    f"could not remove the old plugin {f.name} ({exc}); it is no longer hooked and enforces "
                    f"nothing: remove it by hand (docker plugin rm -f {f.name}) while no authorization "
                    "plugin denies it"
                )


def _delete_killing(client: Any, f: Found, kill_after: float) -> None:
    """DELETE ?force=1 of an enabled plugin: dockerd sends its process SIGTERM and waits up to 10 s.
    opa-docker-authz runs as PID 1 of its namespace with no SIGTERM handler, so it ignores it and
    the wait is always the full 10 s. Once dockerd is stopping it (and so will not restart it),
    its process is sent SIGKILL."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            client.delete(f"/plugins/{f.plugin_id}", query={"force": True}, timeout=70)
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(kill_after)
    if worker.is_alive():
        from .plugin_restart import find_plugin_pids

        for pid in find_plugin_pids(f.plugin_id):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    worker.join(75)
    if errors:
        raise errors[0]


def _put_back(
    dj_path: str,
    raw: bytes,
    policy_path: str | None,
    old_policy: bytes | None,
    reload: Reloader,
    client: DockerClient,
    alias: str,
) -> str:
    done = []
    try:
        client.delete(f"/plugins/{alias}", query={"force": True}, timeout=70)
        done.append(f"{alias} removed")
    except DockerError:
        pass
    if policy_path:
        try:
            if old_policy is not None:
                atomic_write(policy_path, old_policy)
                done.append(f"{policy_path} restored")
            elif os.path.exists(policy_path):
                os.unlink(policy_path)
                done.append(f"{policy_path} removed")
        except OSError as exc:
            done.append(f"{policy_path} NOT restored ({exc})")
    try:
        if raw:
            atomic_write(dj_path, raw)
        done.append("daemon.json restored")
        reload()
        done.append("dockerd reloaded")
    except (OSError, AdoptError, DaemonConfigError) as exc:
        done.append(f"daemon.json or the reload FAILED ({exc})")
    return ", ".join(done)
