# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""Restart an enabled managed plugin in place, without the plugin API and without a reload.

opa-docker-authz in config-file mode reads a local bundle once, at start: a new bundle needs a
new plugin process. ``docker plugin disable``/``enable`` cannot be used while the plugin is in
the live authorization chain (the policy refuses plugin changes, and ``disable`` removes it
from the chain until the next reload), and unhook + reload + disable + enable + hook + reload
leaves the host without enforcement for seconds.

moby's plugin manager restarts an enabled plugin whose process exits
(``plugin/manager.go`` ``HandleExitEvent``: ``c.restart`` is true for an enabled plugin, so it
calls ``enable`` again), and an authorization request that cannot reach the plugin is retried
by the daemon's plugin client with back-off (1, 2, 4, 8 s, at most 30 s in all,
``pkg/plugins/client.go``) before it fails. So killing the plugin's process restarts it with
the same args while it stays in the chain: requests stall until the new process serves, none
is authorized without the policy. When the new process never serves (a bundle that does not
load), dockerd gives up after about 12.5 s (``pluginPostStart``: 0.5 s + 4 x 3 s), marks the
plugin disabled, and every request fails: the caller must then roll back (unhook + reload).

The plugin's process is found without the API: the containerd shim whose command line names
the ``plugins.moby`` namespace and the plugin id, and its child (the plugin's init), whose
cgroup ends with the plugin id. It is sent SIGKILL (the plugin is PID 1 of its own PID
namespace and ignores other signals it has no handler for).

Standard library only (runs on the managed host).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from typing import Any

from ansible_collections.hardening.docker_authz.plugins.module_utils.docker_api import (
    DockerAPIError,
    DockerClient,
    DockerError,
)

PLUGIN_NAMESPACE = "plugins.moby"
DEFAULT_RESTART_TIMEOUT = 30


class RestartError(Exception):
    """The plugin could not be restarted, or did not serve again in time."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return None


def _pids(proc: str) -> list[int]:
    try:
        return [int(name) for name in os.listdir(proc) if name.isdigit()]
    except OSError:
        return []


def _ppid(proc: str, pid: int) -> int | None:
    stat = _read(f"{proc}/{pid}/stat")
    if stat is None:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses
    fields = stat.rsplit(b")", 1)[-1].split()
    try:
        return int(fields[1])
    except (IndexError, ValueError):
        return None


def plugin_processes(plugin_id: str, proc: str = "/proc") -> tuple[list[int], list[int]]:
    """(shims, processes) of a managed plugin as this host's /proc shows them: its containerd
    shim(s) (command line naming the plugins.moby namespace and the plugin id) and the shims'
    children, the plugin's own process(es). Both empty when the engine runs elsewhere."""
    ident = plugin_id.encode()
    shims = set()
    pids = _pids(proc)
    for pid in pids:
        cmdline = _read(f"{proc}/{pid}/cmdline")
        if not cmdline:
            continue
        words = cmdline.split(b"\0")
        if PLUGIN_NAMESPACE.encode() in words and any(ident in w for w in words):
            shims.add(pid)
    found = []
    for pid in pids:
        if pid in shims or _ppid(proc, pid) not in shims:
            continue
        cgroup = _read(f"{proc}/{pid}/cgroup") or b""
        # the shim's children are the plugin's processes; the cgroup names the plugin id
        if ident in cgroup or not cgroup:
            found.append(pid)
    return sorted(shims), sorted(found)


def find_plugin_pids(plugin_id: str, proc: str = "/proc") -> list[int]:
    """PIDs of the plugin's init process(es): children of its containerd shim."""
    return plugin_processes(plugin_id, proc)[1]


def _plugin(client: DockerClient, name: str) -> dict[str, Any]:
    try:
        doc = client.get(f"/plugins/{name}/json")
    except DockerAPIError as exc:
        if exc.status == 404:
            raise RestartError(f"plugin {name} is not installed: nothing to restart") from None
        raise
    if not isinstance(doc, dict) or not doc.get("Id"):
        raise RestartError(f"GET /plugins/{name}/json gave no plugin id")
    return doc


def _serving(client_factory: Callable[[float], DockerClient]) -> bool:
    """The Docker API answers through the authorization chain (GET /version, short timeout)."""
    try:
        return client_factory(5.0).raw_request("GET", "/version", versioned=False).status == 200
    except DockerError:
        return False
    except (OSError, ValueError):
        return False


def restart(
    name: str,
    socket_path: str,
    timeout: float = DEFAULT_RESTART_TIMEOUT,
    check_mode: bool = False,
    proc: str = "/proc",
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Kill the enabled plugin ``name``'s process; wait until a new one serves. Module result."""
    client = DockerClient(socket_path, timeout=15.0)
    doc = _plugin(client, name)
    plugin_id = str(doc["Id"])
    if not doc.get("Enabled"):
        raise RestartError(
            f"plugin {name} is disabled: a restart in place needs an enabled plugin (dockerd restarts "
            "only enabled plugins whose process exits); enable it instead"
        )
    old = find_plugin_pids(plugin_id, proc)
    if not old:
        raise RestartError(
            f"found no process of plugin {name} (id {plugin_id[:12]}): no containerd shim in namespace "
            f"{PLUGIN_NAMESPACE} names it in {proc}. Is this module running on the Docker host itself?",
            plugin_id=plugin_id,
        )
    result: dict[str, Any] = {"changed": True, "plugin_id": plugin_id, "old_pids": old, "new_pids": []}
    if check_mode:
        result["seconds"] = 0.0
        return result
    start = time.monotonic()
    for pid in old:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = start + timeout
    new: list[int] = []
    while time.monotonic() < deadline:
        new = [p for p in find_plugin_pids(plugin_id, proc) if p not in old]
        if new and _serving(lambda t: DockerClient(socket_path, timeout=t)):
            result["new_pids"] = new
            result["seconds"] = round(time.monotonic() - start, 2)
            return result
        sleep(0.1)
    raise RestartError(
        f"plugin {name} did not serve again within {timeout:.0f}s after its restart (a bundle that does "
        "not load keeps opa-docker-authz from serving, and every Docker API call then fails)",
        plugin_id=plugin_id,
        old_pids=old,
        new_pids=new,
        seconds=round(time.monotonic() - start, 2),
    )
