# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""Reload dockerd (SIGHUP: no container downtime) and wait until its API answers again.

One module call does what the role used to do in four (find systemd, read the pid file, send
the signal, poll ``/_ping``): on a fleet every module call is an SSH round trip and a Python
start on each host.

- ``systemd``: ``systemctl reload docker`` (the unit's ExecReload sends SIGHUP), or
  ``systemctl restart docker`` when daemon.json changed a key SIGHUP does not reload;
- ``signal``: SIGHUP to the pid in the pid file, which must be a live dockerd (a stale pid
  file is an error: the pid may belong to another process now); a restart is refused, since
  nothing would start dockerd again;
- ``auto``: ``systemd`` where systemd runs as PID 1 (``/run/systemd/system`` exists), else
  ``signal``.

Then the wait, for at most ``timeout`` seconds, polling at 0.05 s first and twice as long each
time, up to every second:

- after a reload, until dockerd has logged its ``reload`` event (``GET /events`` since the moment
  before the signal). dockerd reloads asynchronously: a SIGHUP, and ``systemctl reload`` (whose
  ExecReload only sends one), return before dockerd has read daemon.json, so an API that answers
  right after them may still run the old configuration and the old authorization chain (on Docker
  20.10 an API call made right after a SIGHUP showed the old configuration 40 times in 40; the
  reload applied 8-19 ms later). dockerd logs the
  event only when the reload succeeded (20.10 sets the new authorization chain before it, 25.0 and
  later right after it); a daemon.json it refuses (a key also given as a flag, an invalid value)
  leaves the old configuration running, no event, and an error in its log: the wait fails once
  the API has answered for REFUSED_SECONDS without the event. Where an
  authorization plugin denies ``GET /events``, the wait falls back to ``/_ping`` alone and says so.
- then until ``GET /_ping`` answers 200. The authorization plugins see ``/_ping`` too, so this
  also proves that the chain answers.

A wait ends early, with the reason, when dockerd (the signalled pid) is gone, or when an
authorization plugin fails every request because its policy does not compile.

Standard library only (runs on the managed host).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ansible_collections.hardening.docker_authz.plugins.module_utils.diagnose import (
    PLUGIN_DENIED,
    PLUGIN_FAILED,
    is_dockerd,
)
from ansible_collections.hardening.docker_authz.plugins.module_utils.docker_api import (
    DockerClient,
    DockerError,
    parse_json_stream,
)

METHODS = ("auto", "systemd", "signal")
PING_TIMEOUT = 5.0


class ReloadError(Exception):
    """dockerd could not be reloaded, or its API did not answer in time."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


def _run(argv: Sequence[str], timeout: float) -> tuple[int, str]:
    try:
        proc = subprocess.run(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        return 127, f"{argv[0]}: command not found"
    except (OSError, subprocess.SubprocessError) as exc:
        return 1, str(exc)
    return proc.returncode, proc.stdout


def _ping(socket_path: str) -> str:
    """'' when the API answered /_ping with 200, else why not."""
    try:
        resp = DockerClient(socket_path, timeout=PING_TIMEOUT).raw_request("GET", "/_ping", versioned=False)
    except DockerError as exc:
        return str(exc)
    return "" if resp.status == 200 else f"HTTP {resp.status}: {resp.message}"


NO_RELOAD_EVENT = "dockerd has logged no reload event yet"


def _reload_event(socket_path: str, since: float) -> str:
    """'' when dockerd logged a ``reload`` event at or after ``since`` (seconds since the epoch on
    this host's clock, which is dockerd's), else why not: NO_RELOAD_EVENT, or why the events could
    not be read."""
    query = {
        "since": f"{since:.9f}",
        "until": f"{max(time.time(), since):.9f}",
        "filters": json.dumps({"type": ["daemon"], "event": ["reload"]}),
    }
    try:
        resp = DockerClient(socket_path, timeout=PING_TIMEOUT).raw_request(
            "GET", "/events", query=query, versioned=False
        )
    except DockerError as exc:
        return str(exc)
    if resp.status != 200:
        return f"HTTP {resp.status}: {resp.message}"
    try:
        events = parse_json_stream(resp.body)
    except ValueError:
        return f"GET /events answered what is not JSON: {resp.body[:200]!r}"
    if any(isinstance(ev, dict) and ev.get("Action") == "reload" for ev in events):
        return ""
    return NO_RELOAD_EVENT


@dataclass
class Host:
    """The host's side effects, replaceable in unit tests."""

    root: str = "/"
    proc: str = "/proc"
    run: Callable[[Sequence[str], float], tuple[int, str]] = _run
    kill: Callable[[int, int], None] = os.kill
    ping: Callable[[str], str] = _ping
    reload_event: Callable[[str, float], str] = _reload_event
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time

    def path(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/"))


def choose_method(method: str, host: Host) -> str:
    if method not in METHODS:
        raise ReloadError(
            f"method must be one of {', '.join(METHODS)}, got {method!r} (docker_authz_reload_method)"
        )
    if method != "auto":
        return method
    return "systemd" if os.path.isdir(host.path("/run/systemd/system")) else "signal"


def pidfile_pid(pidfile: str, host: Host) -> int:
    """The pid in dockerd's pid file, which must name a live dockerd."""
    try:
        with open(host.path(pidfile), encoding="utf-8", errors="replace") as fh:
            text = fh.read().strip()
    except OSError as exc:
        raise ReloadError(
            f"cannot read dockerd's pid file {pidfile} ({exc.strerror or exc}): set "
            "docker_authz_docker_pidfile to the --pidfile dockerd runs with, or "
            "docker_authz_reload_method: systemd where systemd runs dockerd"
        ) from None
    if not text.isdigit() or int(text) <= 1:
        raise ReloadError(
            f"dockerd's pid file {pidfile} holds {text[:40]!r}, not a process id: set "
            "docker_authz_docker_pidfile to the --pidfile dockerd runs with"
        )
    pid = int(text)
    if not is_dockerd(str(pid), host.proc):
        raise ReloadError(
            f"dockerd's pid file {pidfile} names process {pid}, which is not a running dockerd (a stale pid "
            "file): nothing was signalled. Set docker_authz_docker_pidfile to the --pidfile dockerd runs with"
        )
    return pid


# An authorization plugin that answers with a Rego parse or compile error (OPA's error codes,
# quoted by dockerd as "plugin X failed with error: ...") fails every request until its policy
# changes: waiting longer would only keep the API down before the caller's rollback. The wait
# stops when such answers came POLICY_ERROR_ANSWERS times in a row over POLICY_ERROR_SECONDS.
_REGO_ERROR = re.compile(r"\brego_[a-z_]+_error\b")
POLICY_ERROR_ANSWERS = 3
POLICY_ERROR_SECONDS = 2.0
# dockerd applies a reload in milliseconds (8-19 ms on Docker 20.10, measured): an API that has
# answered without the reload event for REFUSED_SECONDS refused the file, and waiting longer for
# the event would not help.
REFUSED_SECONDS = 10.0
FIRST_POLL = 0.05
LAST_POLL = 1.0


@dataclass(frozen=True)
class Wait:
    """How the wait ended: seconds until the API answered, and how the reload was proven."""

    seconds: float
    reload_event: bool | None  # None: no reload to prove (a restart, check mode)
    note: str = ""


def wait_for_api(
    socket_path: str,
    timeout: float,
    host: Host,
    *,
    reloaded_since: float | None = None,
    pid: int | None = None,
) -> Wait:
    """Wait until dockerd has logged its reload event at or after ``reloaded_since`` (when given;
    the wall clock before the signal) and then answers /_ping with 200. ReloadError after
    ``timeout`` seconds, or sooner when ``pid`` (the dockerd signalled) is gone, when the API has
    answered without the reload event for REFUSED_SECONDS, or when an authorization plugin's
    policy does not compile (POLICY_ERROR_ANSWERS answers in a row over POLICY_ERROR_SECONDS)."""
    start = host.clock()
    deadline = start + timeout
    event: bool | None = None if reloaded_since is None else False
    policy_errors = 0
    first_policy_error = start
    no_event_since: float | None = None  # the API answered without the event since then
    delay = FIRST_POLL
    while True:
        why = ""
        if reloaded_since is not None and not event:
            why = host.reload_event(socket_path, reloaded_since)
            event = not why
            # a plugin that denies GET /events (dockerd's 403 "authorization denied by plugin X: ...")
            # leaves the reload to be proven by /_ping alone
            if why.startswith("HTTP 403") and PLUGIN_DENIED.search(why):
                denied, why = why, host.ping(socket_path)
                if not why:
                    note = (
                        "the reload could not be proven by its event (an authorization plugin denies "
                        f"GET /events: {denied[:200]}); the API answered /_ping"
                    )
                    return Wait(round(host.clock() - start, 3), False, note)
        if event is not False:  # the reload is proven, or there is none to prove
            why = host.ping(socket_path)
            if not why:
                return Wait(round(host.clock() - start, 3), event)
        now = host.clock()
        failed = PLUGIN_FAILED.search(why)
        if failed and _REGO_ERROR.search(failed.group("error")):
            if policy_errors == 0:
                first_policy_error = now
            policy_errors += 1
        else:
            policy_errors = 0
        if policy_errors >= POLICY_ERROR_ANSWERS and now - first_policy_error >= POLICY_ERROR_SECONDS:
            raise ReloadError(
                f"the Docker API on unix://{socket_path} answers, but an authorization plugin fails every "
                f"request because its policy does not compile ({policy_errors} answers in a row over "
                f"{now - first_policy_error:.1f} s after the reload; waiting would not help): {why}",
                last_error=why,
            )
        if pid is not None and not is_dockerd(str(pid), host.proc):
            raise ReloadError(
                f"dockerd (pid {pid}) is gone after the reload: it ends itself on a reload when an "
                "authorization plugin named in authorization-plugins is missing or disabled (or it was "
                f"stopped); its log says why (journalctl -u docker, or its log file). Last answer: {why}",
                last_error=why,
            )
        if why == NO_RELOAD_EVENT:
            no_event_since = now if no_event_since is None else no_event_since
            quiet = now - no_event_since
            if now >= deadline or quiet >= REFUSED_SECONDS:
                raise ReloadError(
                    f"dockerd did not reload its configuration: its API answered for {quiet:.1f} s after "
                    "the reload without logging a reload event (a reload takes milliseconds), so it "
                    "still runs the configuration it had. dockerd refuses a daemon.json it cannot apply "
                    "(a key also given as a dockerd flag, an invalid value) and says why in its log "
                    "(journalctl -u docker, or its log file)",
                    last_error=why,
                    refused=True,
                )
        else:
            no_event_since = None
        if now >= deadline:
            raise ReloadError(
                f"the Docker API on unix://{socket_path} did not answer /_ping within {timeout:g} s "
                f"after the reload (last: {why}); see dockerd's log (journalctl -u docker, or its log file)",
                last_error=why,
            )
        host.sleep(delay)
        delay = min(delay * 2, LAST_POLL)


@dataclass(frozen=True)
class Plan:
    """How dockerd will be reloaded, decided (and refused) before anything changes."""

    method: str
    restart: bool
    pid: int | None


def plan(
    method: str,
    *,
    restart: bool = False,
    pidfile: str = "/var/run/docker.pid",
    host: Host | None = None,
) -> Plan:
    """Choose the method and check what it needs (a live dockerd in the pid file; systemd for a
    restart); ReloadError, with nothing sent, when it cannot be done."""
    host = host or Host()
    via = choose_method(method, host)
    if via != "signal":
        return Plan(via, restart, None)
    if restart:
        raise ReloadError(
            "daemon.json changed a key that dockerd cannot reload, and this host has no systemd to "
            "restart it: restart dockerd yourself (service docker restart).",
            method=via,
        )
    return Plan(via, False, pidfile_pid(pidfile, host))


def execute(
    planned: Plan,
    *,
    socket_path: str = "/var/run/docker.sock",
    timeout: float = 60.0,
    check_mode: bool = False,
    host: Host | None = None,
) -> dict[str, Any]:
    """Send the planned reload (or restart) and wait for the API; the module's result."""
    host = host or Host()
    check_timeout(timeout)
    via = planned.method
    result: dict[str, Any] = {"changed": True, "method": via, "restarted": planned.restart}
    result["pid"] = planned.pid
    # dockerd's clock (the host's), just before the signal: its reload event comes after it
    since = None if check_mode or planned.restart else host.wall_clock()
    if via == "signal":
        if planned.pid is None:
            raise ReloadError("a reload by signal needs dockerd's pid (plan() reads it from the pid file)")
        if not check_mode:
            try:
                host.kill(planned.pid, signal.SIGHUP)
            except OSError as exc:
                raise ReloadError(
                    f"sending SIGHUP to dockerd (pid {planned.pid}) failed: {exc}", method=via
                ) from None
    elif not check_mode:
        verb = "restart" if planned.restart else "reload"
        rc, out = host.run(["systemctl", verb, "docker"], 120.0 if planned.restart else 30.0)
        if rc != 0:
            raise ReloadError(
                f"systemctl {verb} docker failed (exit {rc}): {out.strip()[-500:]}; see journalctl -u docker",
                method=via,
            )
    # The API is asked in check mode too (a read): the caller learns that it answers.
    waited = wait_for_api(
        socket_path,
        timeout,
        host,
        reloaded_since=since,
        pid=planned.pid if via == "signal" and not check_mode else None,
    )
    result["seconds"] = waited.seconds
    result["reload_event"] = waited.reload_event
    if waited.note:
        result["warnings"] = [waited.note]
    return result


def check_timeout(timeout: float) -> None:
    if timeout <= 0:
        raise ReloadError(
            f"timeout must be a positive number of seconds, got {timeout:g} (docker_authz_api_timeout)"
        )


def reload(
    method: str,
    *,
    restart: bool = False,
    pidfile: str = "/var/run/docker.pid",
    socket_path: str = "/var/run/docker.sock",
    timeout: float = 60.0,
    check_mode: bool = False,
    host: Host | None = None,
) -> dict[str, Any]:
    """Reload (or restart) dockerd and wait for its API; the module's result."""
    host = host or Host()
    check_timeout(timeout)
    planned = plan(method, restart=restart, pidfile=pidfile, host=host)
    return execute(planned, socket_path=socket_path, timeout=timeout, check_mode=check_mode, host=host)
