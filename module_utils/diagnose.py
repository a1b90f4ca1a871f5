# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""Why does the Docker Engine not answer? Standard library only (runs on managed hosts).

An authorization plugin sits in front of every Docker API call, so "the API does not answer"
has several causes that need different fixes, and a running dockerd must never be called "not
running". :func:`diagnose` tells them apart from what the host shows without the API:

- ``dockerd_down``: no dockerd process (pid file and ``/proc``), the socket missing or refused;
- ``dockerd_unreachable``: dockerd runs but its socket is missing, refuses or is not ours to use;
- ``plugin_error``: an authorization plugin answers errors (HTTP 500 ``plugin X failed with
  error: ...``; the error is quoted): a policy that does not parse or compile, for example;
- ``plugin_denies``: the policy denies the role's own calls (HTTP 403 ``authorization denied by
  plugin X``);
- ``plugin_timeout``: a plugin that does not answer in time (the request times out, or dockerd
  reports its own time-out for the plugin);
- ``plugin_down``: a hooked plugin whose process does not serve (dockerd cannot connect to it);
- ``plugin_missing`` / ``plugin_disabled``: a plugin hooked in ``daemon.json`` that is not
  installed, or installed and disabled (read from dockerd's plugin store on disk);
- ``api_error``: any other error status; ``ok``: the API answers.

Each result carries a message naming the cause and the fix, and whether the role's own plugin
(its alias) is the one that locks the API (``ours``), which decides whether the role may repair
the host without the API (tasks/repair.yml).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .docker_api import DockerAPIError, DockerClient, DockerUnavailable

DEFAULT_PIDFILE = "/var/run/docker.pid"
DEFAULT_DATA_ROOT = "/var/lib/docker"
LEGACY_DIRS = ("/run/docker/plugins", "/etc/docker/plugins", "/usr/lib/docker/plugins")

# dockerd's answers when an authorization plugin errs instead of answering, and when it denies
# (dockerd_reload reads them too)
PLUGIN_FAILED = re.compile(r"plugin (?P<name>\S+?) failed with error: (?P<error>.*)", re.S)
PLUGIN_DENIED = re.compile(r"authorization denied by plugin (?P<name>\S+?): (?P<error>.*)", re.S)
_TIMEOUT_WORDS = ("timeout", "timed out", "deadline exceeded")
_DOWN_WORDS = ("connection refused", "no such file or directory", "connection reset", " eof")
_GONE_WORDS = ("not found", "disabled", "no such plugin", "plugin does not implement")


@dataclass
class PluginOnDisk:
    """A managed plugin as dockerd's plugin store keeps it (``<data-root>/plugins/<id>/config.json``,
    the plugin object under ``"plugin"``)."""

    name: str
    reference: str
    enabled: bool
    plugin_id: str


@dataclass
class Diagnosis:
    cause: str
    message: str
    api_answers: bool
    dockerd_pid: int | None
    hooked: list[str] = field(default_factory=list)
    plugin: str | None = None
    ours: bool = False
    error: str = ""
    status: int | None = None
    plugin_state: str = "unknown"  # enabled / disabled / missing / unknown, from the store on disk

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------- host reading
def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def is_dockerd(pid: str, proc: str = "/proc") -> bool:
    """Whether process ``pid`` is dockerd (its comm, or its argv[0]'s base name)."""
    comm = (_read(os.path.join(proc, pid, "comm")) or "").strip()
    if comm == "dockerd":
        return True
    cmdline = _read(os.path.join(proc, pid, "cmdline")) or ""
    argv0 = cmdline.split("\0", 1)[0]
    return os.path.basename(argv0) == "dockerd"


def dockerd_pid(pidfile: str = DEFAULT_PIDFILE, proc: str = "/proc") -> int | None:
    """dockerd's pid: the pid file's when that process is a live dockerd, else the first
    dockerd found in /proc (a pid file can be stale or elsewhere), else None."""
    text = (_read(pidfile) or "").strip()
    if text.isdigit() and is_dockerd(text, proc):
        return int(text)
    try:
        pids = sorted((p for p in os.listdir(proc) if p.isdigit()), key=int)
    except OSError:
        return None
    for pid in pids:
        if is_dockerd(pid, proc):
            return int(pid)
    return None


def daemon_json(path: str) -> dict[str, Any]:
    """daemon.json as a dict; {} when missing or unreadable (the diagnosis must not fail on it)."""
    text = _read(path)
    if not text or not text.strip():
        return {}
    try:
        doc = json.loads(text)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def hooked_plugins(doc: dict[str, Any]) -> list[str]:
    names = doc.get("authorization-plugins") or []
    return [str(n) for n in names] if isinstance(names, list) else []


def plugins_on_disk(data_root: str = DEFAULT_DATA_ROOT) -> list[PluginOnDisk]:
    """The managed plugins dockerd has installed, read from its store (no API needed)."""
    base = os.path.join(data_root, "plugins")
    out: list[PluginOnDisk] = []
    try:
        entries = sorted(os.listdir(base))
    except OSError:
        return out
    for entry in entries:
        text = _read(os.path.join(base, entry, "config.json"))
        if not text:
            continue
        try:
            doc = json.loads(text)
        except ValueError:
            continue
        if isinstance(doc, dict) and isinstance(doc.get("plugin"), dict):
            doc = doc["plugin"]  # dockerd 20.10+ keeps {"plugin": {...}, "Rootfs": ..., ...}
        if not isinstance(doc, dict) or "Name" not in doc:
            continue
        out.append(
            PluginOnDisk(
                name=str(doc.get("Name", "")),
                reference=str(doc.get("PluginReference", "")),
                enabled=bool(doc.get("Enabled", False)),
                plugin_id=str(doc.get("Id", entry)),
            )
        )
    return out


def legacy_plugins(dirs: tuple[str, ...] = LEGACY_DIRS) -> frozenset[str]:
    """Names of legacy (unmanaged) plugins: sockets and spec files dockerd discovers by name."""
    names: set[str] = set()
    for d in dirs:
        try:
            entries = os.listdir(d)
        except OSError:
            continue
        for e in entries:
            stem, dot, ext = e.rpartition(".")
            if dot and ext in ("sock", "spec", "json"):
                names.add(stem)
    return frozenset(names)


def same_plugin(a: str, b: str) -> bool:
    """Plugin names as daemon.json and dockerd write them: ``x`` is ``x:latest``."""

    def norm(n: str) -> str:
        last = n.rsplit("/", 1)[-1]
        return n if ":" in last or "@" in last else n + ":latest"

    return norm(a) == norm(b)


def find_plugin(name: str, plugins: list[PluginOnDisk]) -> PluginOnDisk | None:
    for p in plugins:
        if same_plugin(p.name, name):
            return p
    return None


# ---------------------------------------------------------------------------- classifying
def classify(
    *,
    status: int | None,
    message: str,
    unavailable: str | None,
    timed_out: bool,
    pid: int | None,
    hooked: list[str],
    plugins: list[PluginOnDisk],
    alias: str,
    socket_path: str,
    timeout: float,
    legacy: frozenset[str] = frozenset(),
    installed: bool = True,
) -> Diagnosis:
    """Name the cause from what the probe saw (pure: unit-tested without a host).

    ``installed`` is False when no dockerd binary is found (Docker is not installed)."""
    running = f"dockerd is running (pid {pid})" if pid else ""

    def is_ours(name: str | None) -> bool:
        return bool(name) and same_plugin(str(name), alias)

    def state_of(name: str | None) -> str:
        if not name:
            return "unknown"
        if name.split(":", 1)[0] in legacy:
            return "unknown"
        p = find_plugin(name, plugins)
        if p is None:
            return "missing"
        return "enabled" if p.enabled else "disabled"

    def hooked_problem() -> tuple[str, str] | None:
        """The first hooked plugin that is missing or disabled in the store."""
        for name in hooked:
            if name.split(":", 1)[0] in legacy:
                continue  # a legacy plugin (socket or spec file): not in the managed store
            st = state_of(name)
            if st in ("missing", "disabled"):
                return name, st
        return None

    def gone(name: str, st: str, err: str) -> Diagnosis:
        what = "is not installed" if st == "missing" else "is installed but disabled"
        fix = (
            f"run playbooks/harden.yml (it unhooks {name}, reloads dockerd without the API, then "
            "installs, enables and hooks it again)"
            if is_ours(name)
            else f"enable it (docker plugin enable {name}) - it blocks every call, so first remove it "
            "from authorization-plugins in daemon.json and reload dockerd (systemctl reload docker, or "
            "kill -HUP the pid in /var/run/docker.pid)"
        )
        return Diagnosis(
            cause=f"plugin_{st}",
            message=(
                f"{running}, but the authorization plugin {name} named in daemon.json "
                f"(authorization-plugins) {what}, so dockerd refuses every API call"
                f"{': ' + err if err else ''}. Fix: {fix}."
            ),
            api_answers=False,
            dockerd_pid=pid,
            hooked=hooked,
            plugin=name,
            ours=is_ours(name),
            error=err,
            status=status,
            plugin_state=st,
        )

    if status is not None and 200 <= status < 300:
        ok = f"the Docker Engine on {socket_path} answers"
        return Diagnosis("ok", ok, True, pid, hooked, status=status)

    if unavailable is not None and not timed_out:
        if pid is None:
            problem = hooked_problem()
            if problem is not None:
                why = (
                    f"; daemon.json hooks {problem[0]}, which is "
                    f"{'not installed' if problem[1] == 'missing' else 'disabled'}, and dockerd does not "
                    f'start then ("failed to validate authorization plugin"): remove {problem[0]} from '
                    "authorization-plugins first (docs/role.md, 'Break glass')"
                )
            elif hooked:
                why = (
                    f"; daemon.json hooks {', '.join(hooked)}, and dockerd does not start while a hooked "
                    "plugin is missing or disabled: see docs/role.md, 'Break glass'"
                )
            else:
                why = ""
            if not installed:
                text = (
                    f"Docker is not installed (no dockerd binary on this host; {unavailable}). Fix: install "
                    "Docker (the docker.io or docker-ce package) and start it, or take the host out of the "
                    "inventory group"
                )
            else:
                text = (
                    f"dockerd is not running (no dockerd process; {unavailable}). Fix: start it "
                    "(systemctl start docker, or service docker start) and read its log if it exits"
                )
            return Diagnosis(
                "dockerd_down",
                f"{text}{why}.",
                False,
                None,
                hooked,
                error=unavailable,
            )
        return Diagnosis(
            "dockerd_unreachable",
            f"{running}, but its API on {socket_path} cannot be reached ({unavailable}). Fix: it may "
            "still be starting (wait and retry), listen on another socket (set docker_authz_docker_socket "
            "to it), or need root (become: true); read its log.",
            False,
            pid,
            hooked,
            error=unavailable,
        )

    if timed_out:
        suspects = ", ".join(hooked) if hooked else "none hooked"
        blamed = hooked[-1] if len(hooked) == 1 else None
        if hooked:
            fix = (
                "run playbooks/harden.yml (it writes the policy, or unhooks the plugin and reloads dockerd "
                "without the API, then converges)"
                if any(is_ours(h) for h in hooked)
                else "restart the plugin (docker plugin disable -f / enable) or remove it from "
                "authorization-plugins and reload dockerd (docs/role.md, 'Break glass')"
            )
            msg = (
                f"{running or 'dockerd'}, but GET /version did not answer within {timeout:.0f}s: an "
                "authorization plugin does not answer in time (authorization-plugins: "
                f"{suspects}). Fix: {fix}."
            )
        else:
            msg = (
                f"{running or 'dockerd'}, but GET /version did not answer within {timeout:.0f}s and no "
                "authorization plugin is hooked: dockerd itself is stuck. Fix: read its log, restart it."
            )
        return Diagnosis(
            "plugin_timeout" if hooked else "dockerd_stuck",
            msg,
            False,
            pid,
            hooked,
            plugin=blamed,
            ours=any(is_ours(h) for h in hooked),
            error=unavailable or "time-out",
        )

    m_failed = PLUGIN_FAILED.search(message)
    m_denied = PLUGIN_DENIED.search(message)
    if status == 403 and m_denied:
        name = m_denied.group("name")
        fix = (
            "run playbooks/harden.yml: it writes the role's policy (the plugin reads it on every "
            "request, so the API comes back at once), then converges"
            if is_ours(name)
            else f"allow these calls in the policy of {name}, or remove it from authorization-plugins "
            "and reload dockerd"
        )
        return Diagnosis(
            "plugin_denies",
            f"{running}, but the authorization plugin {name} denies the role's own calls "
            f"(HTTP 403 on GET /version: {message.strip()}): its policy denies everything, the role's "
            f"requests included. Fix: {fix}.",
            False,
            pid,
            hooked,
            plugin=name,
            ours=is_ours(name),
            error=m_denied.group("error").strip(),
            status=status,
            plugin_state=state_of(name),
        )
    if m_failed:
        name = m_failed.group("name")
        err = m_failed.group("error").strip()
        low = err.lower()
        st = state_of(name)
        if st in ("missing", "disabled"):
            return gone(name, st, err)
        if any(w in low for w in _TIMEOUT_WORDS):
            cause, what = "plugin_timeout", "does not answer in time (dockerd's own time-out for it)"
        elif any(w in low for w in _DOWN_WORDS) and "rego" not in low:
            cause, what = "plugin_down", "does not serve: dockerd cannot connect to its process"
        elif any(w in low for w in _GONE_WORDS) and "rego" not in low:
            cause, what = "plugin_missing", "cannot be found or is disabled"
        else:
            cause, what = "plugin_error", "answers every request with an error"
        if is_ours(name):
            fix = (
                "run playbooks/harden.yml: it writes the role's compiled policy first (in policy-file mode "
                "the plugin reads it on every request, so the API comes back at once), or unhooks the "
                "plugin and reloads dockerd without the API, then converges; playbooks/remove.yml removes it"
            )
        else:
            fix = (
                f"repair {name} (its policy or its process), or remove it from authorization-plugins in "
                "daemon.json and reload dockerd (docs/role.md, 'Break glass')"
            )
        return Diagnosis(
            cause,
            f"{running}, but the authorization plugin {name} {what} (HTTP {status} on GET /version: "
            f'"{err}"). Fix: {fix}.',
            False,
            pid,
            hooked,
            plugin=name,
            ours=is_ours(name),
            error=err,
            status=status,
            plugin_state=st,
        )
    problem = hooked_problem()
    if problem is not None:
        return gone(problem[0], problem[1], message.strip())
    return Diagnosis(
        "api_error",
        f"{running or 'dockerd'} answers GET /version with HTTP {status}: {message.strip()}. Fix: read "
        "dockerd's log.",
        False,
        pid,
        hooked,
        error=message.strip(),
        status=status,
    )


DOCKERD_PATHS = ("/usr/bin/dockerd", "/usr/local/bin/dockerd", "/usr/sbin/dockerd", "/bin/dockerd")


def dockerd_installed(paths: tuple[str, ...] = DOCKERD_PATHS) -> bool:
    """Whether a dockerd binary is on this host (its PATH or the usual places)."""
    if shutil.which("dockerd"):
        return True
    return any(os.path.isfile(p) and os.access(p, os.X_OK) for p in paths)


def diagnose(
    socket_path: str,
    alias: str,
    daemon_json_path: str = "/etc/docker/daemon.json",
    pidfile: str = DEFAULT_PIDFILE,
    timeout: float = 15.0,
    data_root: str | None = None,
    proc: str = "/proc",
) -> Diagnosis:
    """Probe GET /version once and name why it fails (or ``ok``)."""
    doc = daemon_json(daemon_json_path)
    hooked = hooked_plugins(doc)
    root = data_root or str(doc.get("data-root") or doc.get("graph") or DEFAULT_DATA_ROOT)
    client = DockerClient(socket_path, timeout=timeout)
    if socket_path.startswith("unix://"):
        socket_path = socket_path[len("unix://") :]
    status: int | None = None
    message = ""
    unavailable: str | None = None
    timed_out = False
    try:
        resp = client.raw_request("GET", "/version", versioned=False, timeout=timeout)
        status, message = resp.status, resp.message
    except DockerUnavailable as exc:
        unavailable = str(exc)
        timed_out = "did not answer" in unavailable
    except DockerAPIError as exc:  # pragma: no cover - raw_request does not raise it
        status, message = exc.status, exc.message
    return classify(
        status=status,
        message=message,
        unavailable=unavailable,
        timed_out=timed_out,
        pid=dockerd_pid(pidfile, proc),
        hooked=hooked,
        plugins=plugins_on_disk(root),
        alias=alias,
        socket_path=socket_path,
        timeout=timeout,
        legacy=legacy_plugins(),
        installed=dockerd_installed(),
    )


# ---------------------------------------------------------------------------- repairing a hang
def revive_plugin(
    name: str,
    socket_path: str,
    daemon_json_path: str,
    *,
    check_mode: bool = False,
    timeout: float = 45.0,
    proc: str = "/proc",
) -> dict[str, Any]:
    """A hooked, enabled plugin whose process does not answer (stopped, wedged): SIGKILL its
    process, found without the API (its containerd shim in dockerd's plugin namespace), so that
    dockerd starts it again with the same args - it stays in the chain, nothing goes through
    unchecked - and wait until ``GET /version`` answers. Returns the module result."""
    from .plugin_restart import find_plugin_pids

    doc = daemon_json(daemon_json_path)
    data_root = str(doc.get("data-root") or DEFAULT_DATA_ROOT)
    found = find_plugin(name, plugins_on_disk(data_root))
    if found is None or not found.enabled:
        state = "not installed" if found is None else "disabled"
        return {
            "changed": False,
            "revived": False,
            "pids": [],
            "seconds": None,
            "message": f"{name} is {state}: there is no process to restart",
        }
    pids = find_plugin_pids(found.plugin_id, proc)
    if not pids:
        return {
            "changed": False,
            "revived": False,
            "pids": [],
            "seconds": None,
            "message": f"no process of {found.name} ({found.plugin_id[:12]}) found: dockerd is starting it",
        }
    if check_mode:
        return {
            "changed": True,
            "revived": False,
            "pids": pids,
            "seconds": None,
            "message": f"would kill {found.name}'s process {pids} so that dockerd starts it again",
        }
    start = time.monotonic()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    client = DockerClient(socket_path, timeout=5)
    while True:
        try:
            resp = client.raw_request("GET", "/version", versioned=False, timeout=5)
            if resp.status == 200:
                seconds = round(time.monotonic() - start, 2)
                return {
                    "changed": True,
                    "revived": True,
                    "pids": pids,
                    "seconds": seconds,
                    "message": f"killed {found.name}'s process {pids}; dockerd started it again and the "
                    f"API answers through it after {seconds} s (enforcement stayed on)",
                }
        except (DockerUnavailable, DockerAPIError):
            pass
        if time.monotonic() - start >= timeout:
            return {
                "changed": True,
                "revived": False,
                "pids": pids,
                "seconds": None,
                "message": f"killed {found.name}'s process {pids}, but the API did not answer within "
                f"{timeout:.0f} s",
            }
        time.sleep(0.5)
