# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""Manage a Docker managed plugin (opa-docker-authz) through the Engine API, stdlib only.

The pure parts (reference parsing, architecture rules, privilege checks, the plan of steps
from a current and a desired state) are plain functions a test can call without a daemon.
``ensure()`` ties them to a real engine through ``docker_api.DockerClient``.

Facts this module is built on (Docker 20.10, API 1.41, seen on a real daemon):

- ``GET /plugins/privileges?remote=REF`` answers ``200 []`` when the reference does not
  exist or the registry is unreachable, so the reference is resolved first with
  ``GET /distribution/REF/json`` (404 ``manifest unknown``, 500 ``connection refused``).
- ``POST /plugins/pull`` needs exactly the privileges the plugin asks for (else the stream
  ends with ``incorrect privileges``) and installs the plugin disabled.
- ``POST /plugins/{id}/set`` is refused on an enabled plugin and applies the settings one
  by one (a bad key after a good one leaves the good one applied): keys are checked first.
- Args are split on single spaces (``"a  b"`` gives ``["a", "", "b"]``; ``""`` gives
  ``[""]``): they are sent joined by one space and compared without empty items.
- ``POST /plugins/{id}/upgrade`` needs a disabled plugin and keeps its settings.
- The installed manifest digest is not in the API; the engine keeps it in
  ``<DockerRootDir>/plugins/<id>/config.json`` (``"Manifest"``), read when readable.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.hardening.docker_authz.plugins.module_utils.docker_api import (
    DockerAPIError,
    DockerClient,
    DockerError,
)
from ansible_collections.hardening.docker_authz.plugins.module_utils.opa_args import engine_args
from ansible_collections.hardening.docker_authz.plugins.module_utils.opa_args import parse as parse_opa_args
from ansible_collections.hardening.docker_authz.plugins.module_utils.plugin_restart import plugin_processes

DEFAULT_ALIAS = "opa-docker-authz"
OFFICIAL_REPOSITORY = "ghcr.io/open-policy-agent/opa-docker-authz"
OFFICIAL_VERSION = "v0.10"
OFFICIAL_ARCHES = ("amd64", "arm64")
DEFAULT_ARGS = "-policy-file /opa/policies/authz.rego"
# What opa-docker-authz v0.10 asks for: host networking and a bind mount of /etc/docker.
DEFAULT_ALLOWED_PRIVILEGES = ("network=host", "mount=/etc/docker")
DEFAULT_TIMEOUT = 120
# The module option `registry_auth` (authz_plugin and authz_host_state, which plans the same pull).
REGISTRY_AUTH_OPTION: dict[str, Any] = {
    "type": "dict",
    "options": {
        "username": {"type": "str"},
        "password": {"type": "str", "no_log": True},
        "serveraddress": {"type": "str"},
    },
}
ENABLE_RETRY_SECONDS = 20.0
# how many more times a plugin whose socket did not appear in the engine's window is enabled
ENABLE_SLOW_START_RETRIES = 2
# How long to leave the engine alone after an enable that failed on the socket window, before
# the next attempt or the caller's restore. A plugin that exits at start (bad args) is
# restarted by the engine's own exit handler (moby plugin/manager.go HandleExitEvent, restart
# is on while enabling), and that restart waits out its own 12.5 s socket window after the
# API call has given up. Enabling again inside that window leaves a stale exit event queued:
# it later force-deletes the next, healthy plugin task (plugin/executor/containerd ProcessEvent
# does not check which task exited) and restarts it, which queues the next kill - an endless
# ~1 s kill/restart loop of the authz plugin in which requests that meet a dead socket are
# retried with an emptied body and denied, until dockerd restarts (seen on Debian 13's 26.1.5).
# 12.5 s window + margin.
ENABLE_SETTLE_SECONDS = 14.0
# A plugin that exits at start (an unknown flag, a broken image) is gone within a second of each
# start, while the engine keeps dialling its socket for 12.5 s; a slow one is alive until the
# engine stops it at the end of the window. So an enable that failed on the window, during which
# the plugin's shim was seen but no plugin process for at least this long at its end, exited at
# start: it is not enabled again (each attempt costs the window and the settle, ~27 s).
EXITED_QUIET_SECONDS = 4.0
START_WATCH_INTERVAL = 0.1


class StartWatch:
    """Watches a plugin's processes on this host while an enable is in flight (a thread sampling
    ``scan``, which gives the plugin's (shims, processes))."""

    def __init__(
        self, scan: Callable[[], tuple[list[int], list[int]]], interval: float = START_WATCH_INTERVAL
    ) -> None:
        self.scan = scan
        self.interval = interval
        self.shim_seen = False
        self.processes: set[int] = set()
        self.last_alive = self.ended = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            try:
                shims, processes = self.scan()
            except OSError:
                shims, processes = [], []
            now = time.monotonic()
            self.shim_seen = self.shim_seen or bool(shims)
            if processes:
                self.processes.update(processes)
                self.last_alive = now
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> StartWatch:
        self.last_alive = time.monotonic()  # a plugin never seen counts as gone from the start
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.ended = time.monotonic()

    @property
    def exited(self) -> bool:
        """The plugin ran (its shim or process was seen) and had no process at the end for at
        least EXITED_QUIET_SECONDS: it exited at start rather than starting slowly."""
        ran = self.shim_seen or bool(self.processes)
        return ran and self.ended - self.last_alive >= EXITED_QUIET_SECONDS


def is_socket_timeout(message: str) -> bool:
    """The engine's answer when a plugin did not listen on its socket in time (or exited)."""
    return "dial unix" in message and (
        "no such file or directory" in message or "connection refused" in message
    )

STATES = ("present", "enabled", "disabled", "absent")

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"


class PluginError(Exception):
    """A refusal or a failure; the message names the problem and the fix.

    ``details`` is merged into the module's failure result (for example the state before
    the run and the steps already done, so a caller can restore it).
    """

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


# --------------------------------------------------------------------------------------
# References (the grammar of github.com/distribution/reference)
# --------------------------------------------------------------------------------------
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = re.compile(rf"^{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*$")
_DOMAIN_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(rf"^(?:{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$")
_NAME_TOTAL_LENGTH_MAX = 255


@dataclass(frozen=True)
class Reference:
    """A normalised image reference: ``domain/path[:tag][@digest]``."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        return f"{self.domain}/{self.path}"

    @property
    def canonical(self) -> str:
        """The fully qualified form the engine stores (``docker.io/library/x:latest``)."""
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    @property
    def familiar(self) -> str:
        """The short form the CLI shows (``x:latest`` for ``docker.io/library/x:latest``)."""
        name = self.name
        if self.domain == DEFAULT_DOMAIN:
            name = self.path
            if name.startswith(OFFICIAL_REPO_PREFIX) and "/" not in name[len(OFFICIAL_REPO_PREFIX) :]:
                name = name[len(OFFICIAL_REPO_PREFIX) :]
        if self.tag:
            name += f":{self.tag}"
        if self.digest:
            name += f"@{self.digest}"
        return name

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.domain, self.path, tag, None)

    def __str__(self) -> str:
        return self.canonical


def _split_domain(name: str) -> tuple[str, str]:
    i = name.find("/")
    first = name[:i] if i != -1 else ""
    if i == -1 or (not any(c in first for c in ".:") and first != "localhost" and first.lower() == first):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, name[i + 1 :]
    if domain == LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def parse_reference(text: str, *, default_tag: str | None = "latest", what: str = "reference") -> Reference:
    """Parse and normalise ``[registry/]path[:tag][@digest]`` the way the Docker engine does.

    A name without tag or digest gets ``default_tag``; Docker Hub names get ``docker.io`` and,
    for one-component names, ``library/``. Raises ``PluginError`` on a malformed reference.
    """
    if not isinstance(text, str) or not text.strip():
        raise PluginError(f"{what} is empty: give an image reference such as {OFFICIAL_REPOSITORY}:v0.10")
    raw = text.strip()
    if any(c.isspace() for c in raw):
        raise PluginError(f"invalid {what} {raw!r}: it contains whitespace")
    rest, digest = raw, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST.match(digest):
            raise PluginError(
                f"invalid {what} {raw!r}: digest {digest!r} is not algorithm:hex (sha256:<64 hex digits>)"
            )
        algo, hexpart = digest.split(":", 1)
        if algo == "sha256" and len(hexpart) != 64:
            raise PluginError(f"invalid {what} {raw!r}: a sha256 digest has 64 hex digits")
    tag = None
    last_slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > last_slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.match(tag):
            raise PluginError(
                f"invalid {what} {raw!r}: tag {tag!r} must be letters, digits, '_', '.' or '-' "
                "(at most 128, not starting with '.' or '-')"
            )
    if not rest:
        raise PluginError(f"invalid {what} {raw!r}: no repository name")
    domain, path = _split_domain(rest)
    if not _DOMAIN.match(domain):
        raise PluginError(f"invalid {what} {raw!r}: {domain!r} is not a valid registry host[:port]")
    for comp in path.split("/"):
        if comp.lower() == comp and _PATH_COMPONENT.match(comp):
            continue
        if comp.lower() != comp and _PATH_COMPONENT.match(comp.lower()):
            raise PluginError(f"invalid {what} {raw!r}: repository name must be lowercase")
        raise PluginError(
            f"invalid {what} {raw!r}: path component {comp!r} must be lowercase letters and digits "
            "separated by '.', '_', '__' or '-'"
        )
    if len(f"{domain}/{path}") > _NAME_TOTAL_LENGTH_MAX:
        raise PluginError(f"invalid {what} {raw!r}: repository name longer than {_NAME_TOTAL_LENGTH_MAX}")
    if tag is None and digest is None and default_tag:
        tag = default_tag
    return Reference(domain, path, tag, digest)


def normalize_alias(alias: str) -> str:
    """The name the engine gives a plugin installed with ``alias`` (``x`` -> ``x:latest``)."""
    ref = parse_reference(alias, what="plugin name")
    if ref.digest:
        raise PluginError(
            f"plugin name {alias!r} cannot contain a digest: use a name such as {DEFAULT_ALIAS}"
        )
    return ref.familiar


# --------------------------------------------------------------------------------------
# Architectures
# --------------------------------------------------------------------------------------
_ARCH_ALIASES = {
    "amd64": "amd64",
    "x86_64": "amd64",
    "x86-64": "amd64",
    "arm64": "arm64",
    "aarch64": "arm64",
    "arm64v8": "arm64",
    "arm": "arm",
    "armhf": "arm",
    "armv7": "arm",
    "armv7l": "arm",
    "armv6": "arm",
    "armv6l": "arm",
    "arm32v7": "arm",
    "386": "386",
    "i386": "386",
    "i686": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "mips64le": "mips64le",
}
# Bare tokens that name an architecture on their own inside a tag; "arm" and "386" count only
# after "linux-" (too easy to collide with a version otherwise).
_BARE_ARCH_TOKENS = sorted((a for a in _ARCH_ALIASES if a not in ("arm", "386")), key=len, reverse=True)
_TAG_ARCH = re.compile(
    r"(?<![A-Za-z0-9])(?:linux[-_](?P<plat>"
    + "|".join(re.escape(a) for a in sorted(_ARCH_ALIASES, key=len, reverse=True))
    + r")|(?P<bare>"
    + "|".join(re.escape(a) for a in _BARE_ARCH_TOKENS)
    + r"))(?![A-Za-z0-9])"
)


def normalize_arch(arch: str) -> str:
    """Go architecture name for ``arch`` (``x86_64`` -> ``amd64``, ``aarch64`` -> ``arm64``)."""
    key = str(arch).strip().lower()
    return _ARCH_ALIASES.get(key, key)


def reference_arch(ref: Reference) -> str | None:
    """The architecture a reference's tag names (``v0.10-linux-arm64`` -> ``arm64``), if any."""
    if not ref.tag:
        return None
    found = None
    for m in _TAG_ARCH.finditer(ref.tag):
        found = normalize_arch(m.group("plat") or m.group("bare"))
    return found


def default_reference(
    engine_arch: str, repository: str = OFFICIAL_REPOSITORY, version: str = OFFICIAL_VERSION
) -> str:
    """The official single-arch reference for a host (``...:v0.10-linux-amd64``)."""
    arch = normalize_arch(engine_arch)
    if repository == OFFICIAL_REPOSITORY and arch not in OFFICIAL_ARCHES:
        raise PluginError(
            f"opa-docker-authz publishes plugins for linux/{' and linux/'.join(OFFICIAL_ARCHES)} only; "
            f"this Docker engine is linux/{arch}. Build the plugin for {arch}, push it to your "
            "registry and set reference to it."
        )
    return f"{repository}:{version}-linux-{arch}"


def expand_reference(text: str | None, engine_arch: str) -> str:
    """``None`` -> the default for the host; ``{arch}`` in ``text`` -> the host's architecture."""
    if text is None or not str(text).strip():
        return default_reference(engine_arch)
    return str(text).replace("{arch}", normalize_arch(engine_arch))


def check_arch(ref: Reference, engine_arch: str) -> str | None:
    """Refuse a reference whose tag names another architecture than the engine's.

    Returns a warning when the tag names no architecture at all (plugins are single-arch,
    so the image may still be wrong for the host), ``None`` when it matches.
    """
    host = normalize_arch(engine_arch)
    named = reference_arch(ref)
    if named is None:
        if ref.digest and not ref.tag:
            return None
        return (
            f"the tag of {ref.familiar} names no architecture; Docker plugins are single-architecture, "
            f"so make sure it was built for linux/{host} (the official tags end in -linux-{host})"
        )
    if named != host:
        suggestion = ""
        if ref.tag:
            m = list(_TAG_ARCH.finditer(ref.tag))[-1]
            fixed_tag = ref.tag[: m.start()] + f"linux-{host}" + ref.tag[m.end() :]
            suggestion = f" Use {ref.with_tag(fixed_tag).familiar}, or leave reference unset"
            suggestion += " to get the default for this host."
        raise PluginError(
            f"reference {ref.familiar} is built for linux/{named} but the Docker engine on this host is "
            f"linux/{host}: Docker plugins are single-architecture and a plugin for another "
            f"architecture cannot start.{suggestion}",
            engine_arch=host,
            reference_arch=named,
        )
    return None


# --------------------------------------------------------------------------------------
# Privileges
# --------------------------------------------------------------------------------------
def parse_allowed_privileges(items: Iterable[Any] | None) -> dict[str, set[str]]:
    """``["network=host", "mount=/etc/docker"]`` or ``[{"name": .., "value": [..]}]`` -> sets."""
    allowed: dict[str, set[str]] = {}
    for item in items or []:
        if isinstance(item, dict):
            name = str(item.get("name", item.get("Name", ""))).strip()
            values = item.get("value", item.get("Value", []))
            if isinstance(values, str):
                values = [values]
            if not name or not isinstance(values, list) or not values:
                raise PluginError(
                    f"allowed_privileges item {item!r}: give name and value, e.g. {{name: mount, value: "
                    "[/etc/docker]}} or the string mount=/etc/docker"
                )
            allowed.setdefault(name, set()).update(str(v) for v in values)
        elif isinstance(item, str) and "=" in item and item.split("=", 1)[0].strip():
            name, value = item.split("=", 1)
            allowed.setdefault(name.strip(), set()).add(value.strip())
        else:
            raise PluginError(
                f"allowed_privileges item {item!r} is not NAME=VALUE (for example network=host, "
                "mount=/etc/docker, capabilities=CAP_SYS_ADMIN)"
            )
    return allowed


def format_privileges(privileges: Sequence[dict[str, Any]]) -> list[str]:
    return [f"{p.get('Name')}={v}" for p in privileges for v in (p.get("Value") or [""])]


def check_privileges(
    reference: str, requested: Sequence[dict[str, Any]], allowed: dict[str, set[str]]
) -> None:
    """Refuse when the plugin asks for anything outside ``allowed``; list what it asked."""
    outside = [
        f"{p.get('Name')}={v}"
        for p in requested
        for v in (p.get("Value") or [""])
        if v not in allowed.get(str(p.get("Name")), set())
    ]
    if outside:
        asked = ", ".join(format_privileges(requested))
        granted = ", ".join(f"{k}={v}" for k in sorted(allowed) for v in sorted(allowed[k])) or "nothing"
        raise PluginError(
            f"plugin {reference} asks for privileges outside the expected set: {', '.join(outside)}. "
            f"It asks for: {asked}; allowed_privileges grants: {granted}. Nothing was installed or "
            "changed. Check that the reference is the plugin you meant; if you trust it, add the "
            "privileges to allowed_privileges.",
            privileges=list(requested),
            refused=outside,
        )


# --------------------------------------------------------------------------------------
# Args and settings
# --------------------------------------------------------------------------------------
def normalize_args(args: Any) -> list[str]:
    """A string or a list of strings -> the list of whitespace-separated tokens."""
    if args is None:
        return []
    if isinstance(args, str):
        return args.split()
    if isinstance(args, (list, tuple)):
        out: list[str] = []
        for item in args:
            if not isinstance(item, (str, int, float)) or isinstance(item, bool):
                raise PluginError(
                    f"args item {item!r} is not a string: give args as a string or a list of strings"
                )
            out.extend(str(item).split())
        return out
    raise PluginError(f"args must be a string or a list of strings, not {type(args).__name__}")


def parse_settings(items: Iterable[Any] | None) -> list[tuple[str, str]]:
    """``["DEBUG=1", "policy.source=/etc/docker"]`` -> ``[(key, value), ...]`` (later keys win)."""
    out: dict[str, str] = {}
    for item in items or []:
        if not isinstance(item, str) or "=" not in item or not item.split("=", 1)[0].strip():
            raise PluginError(
                f"settings item {item!r} is not KEY=VALUE (an env variable NAME=value, a mount "
                "NAME.source=/path or a device NAME.path=/dev/x)"
            )
        key, value = item.split("=", 1)
        out[key.strip()] = value
    return list(out.items())


# --------------------------------------------------------------------------------------
# State and plan
# --------------------------------------------------------------------------------------
@dataclass
class PluginState:
    """What the engine reports about one installed plugin (plus the on-disk digest)."""

    id: str
    name: str
    reference: str
    enabled: bool
    args: list[str] = field(default_factory=list)
    args_name: str = ""
    args_settable: bool = False
    env: dict[str, str] = field(default_factory=dict)
    env_settable: dict[str, bool] = field(default_factory=dict)
    mounts: dict[str, str] = field(default_factory=dict)
    mounts_settable: dict[str, bool] = field(default_factory=dict)
    devices: dict[str, str] = field(default_factory=dict)
    devices_settable: dict[str, bool] = field(default_factory=dict)
    digest: str | None = None

    @classmethod
    def from_api(cls, obj: dict[str, Any], digest: str | None = None) -> PluginState:
        config = obj.get("Config") or {}
        settings = obj.get("Settings") or {}
        args_cfg = config.get("Args") or {}
        env: dict[str, str] = {}
        for entry in settings.get("Env") or []:
            k, _, v = str(entry).partition("=")
            env[k] = v
        env_settable = {
            str(e.get("Name")): "value" in (e.get("Settable") or []) for e in config.get("Env") or []
        }
        for k in env_settable:
            env.setdefault(k, "")
        mounts = {
            str(m.get("Name")): str(m.get("Source") or "")
            for m in settings.get("Mounts") or []
            if m.get("Name")
        }
        mounts_settable = {
            str(m.get("Name")): "source" in (m.get("Settable") or [])
            for m in config.get("Mounts") or []
            if m.get("Name")
        }
        devices = {
            str(d.get("Name")): str(d.get("Path") or "")
            for d in settings.get("Devices") or []
            if d.get("Name")
        }
        devices_settable = {
            str(d.get("Name")): "path" in (d.get("Settable") or [])
            for d in (config.get("Linux") or {}).get("Devices") or []
            if d.get("Name")
        }
        return cls(
            id=str(obj.get("Id") or obj.get("ID") or ""),
            name=str(obj.get("Name") or ""),
            reference=str(obj.get("PluginReference") or ""),
            enabled=bool(obj.get("Enabled")),
            args=engine_args(settings.get("Args")),  # an empty word inside is kept: the plugin stops at it
            args_name=str(args_cfg.get("Name") or ""),
            args_settable="value" in (args_cfg.get("Settable") or []),
            env=env,
            env_settable=env_settable,
            mounts=mounts,
            mounts_settable=mounts_settable,
            devices=devices,
            devices_settable=devices_settable,
            digest=digest,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "reference": self.reference,
            "enabled": self.enabled,
            "args": list(self.args),
            "digest": self.digest,
            "env": dict(self.env),
            "mounts": dict(self.mounts),
        }


@dataclass
class Desired:
    name: str
    state: str
    reference: Reference | None = None
    args: list[str] | None = None
    settings: list[tuple[str, str]] = field(default_factory=list)
    force_upgrade: bool = False
    allowed: dict[str, set[str]] = field(default_factory=dict)


def same_reference(installed: str, desired: Reference) -> bool:
    if not installed:
        return False
    try:
        return parse_reference(installed).canonical == desired.canonical
    except PluginError:
        return False


def precheck_settings(desired: Desired) -> None:
    """Refuse mount sources and device paths outside ``allowed_privileges`` before any step.

    ``settings_changes`` knows the plugin's settable keys only once it is installed; these
    values are checked without it, so a refused privilege never pulls or changes a plugin
    (and check mode predicts the refusal).
    """
    kinds = {
        "source": ("mount", "mounts a host path", "read it"),
        "path": ("device", "exposes a device", "use it"),
    }
    for key, value in desired.settings:
        obj, dot, attr = key.partition(".")
        if not dot or not obj or attr not in kinds:
            continue
        privilege, what, verb = kinds[attr]
        if value not in desired.allowed.get(privilege, set()):
            raise PluginError(
                f"setting {key}={value} {what} that allowed_privileges does not grant "
                f"({privilege}={value}): add it to allowed_privileges if the plugin may {verb}. "
                "Nothing was installed or changed.",
                refused=[f"{privilege}={value}"],
            )


def settings_changes(current: PluginState, desired: Desired) -> list[str]:
    """The ``KEY=VALUE`` list ``POST /plugins/{id}/set`` needs; checks every key first.

    Raises ``PluginError`` for a key the plugin does not have or does not let you set, and
    for a mount or device source outside ``allowed_privileges`` (a settable mount source is
    a way around the privileges granted at install).
    """
    out: list[str] = []
    if desired.args is not None and desired.args != current.args:
        if not current.args_name:
            raise PluginError(
                f"plugin {current.name} takes no args (its config has no settable args): set args: [] "
                "or use the plugin it was meant for"
            )
        if not current.args_settable:
            raise PluginError(f"plugin {current.name} does not let its args ({current.args_name}) be set")
        out.append(f"{current.args_name}={' '.join(desired.args)}")
    for key, value in desired.settings:
        if key == current.args_name and key:
            raise PluginError(f"set {key} with the args option, not in settings")
        if "." in key:
            obj, _, attr = key.partition(".")
            if attr == "source" and obj in current.mounts_settable:
                if not current.mounts_settable[obj]:
                    raise PluginError(f"plugin {current.name} does not let the source of mount {obj} be set")
                if value not in desired.allowed.get("mount", set()):
                    raise PluginError(
                        f"setting {key}={value} mounts a host path that allowed_privileges does not grant "
                        f"(mount={value}): add it to allowed_privileges if the plugin may read it",
                        refused=[f"mount={value}"],
                    )
                if current.mounts.get(obj) != value:
                    out.append(f"{key}={value}")
                continue
            if attr == "path" and obj in current.devices_settable:
                if not current.devices_settable[obj]:
                    raise PluginError(f"plugin {current.name} does not let the path of device {obj} be set")
                if value not in desired.allowed.get("device", set()):
                    raise PluginError(
                        f"setting {key}={value} exposes a device that allowed_privileges does not grant "
                        f"(device={value}): add it to allowed_privileges if the plugin may use it",
                        refused=[f"device={value}"],
                    )
                if current.devices.get(obj) != value:
                    out.append(f"{key}={value}")
                continue
        elif key in current.env_settable:
            if not current.env_settable[key]:
                raise PluginError(f"plugin {current.name} does not let env {key} be set")
            if current.env.get(key) != value:
                out.append(f"{key}={value}")
            continue
        settable = sorted(
            [k for k, s in current.env_settable.items() if s]
            + [f"{k}.source" for k, s in current.mounts_settable.items() if s]
            + [f"{k}.path" for k, s in current.devices_settable.items() if s]
        )
        raise PluginError(
            f"plugin {current.name} has no setting {key!r}; settable: {', '.join(settable) or 'none'}"
            + (f" (args go in the args option: {current.args_name})" if current.args_name else "")
        )
    return out


def plan_steps(
    current: PluginState | None,
    desired: Desired,
    remote_digest: str | None,
    config_changes: bool | None,
) -> list[str]:
    """The steps, in order, that take ``current`` to ``desired``.

    Steps are ``install``, ``upgrade``, ``configure``, ``enable``, ``disable``, ``remove``.
    ``config_changes`` says whether ``/set`` is needed (``None``: not known yet, i.e. the
    plugin is not installed: then args or settings given mean a configure step).
    """
    if desired.state == "absent":
        if current is None:
            return []
        return (["disable"] if current.enabled else []) + ["remove"]
    steps: list[str] = []
    enabled_now = bool(current and current.enabled)
    if desired.state == "enabled":
        want_enabled = True
    elif desired.state == "disabled":
        want_enabled = False
    else:  # present: keep what is there (a fresh install stays disabled)
        want_enabled = enabled_now
    need_install = current is None
    need_upgrade = False
    if current is not None and desired.reference is not None:
        need_upgrade = (
            desired.force_upgrade
            or not same_reference(current.reference, desired.reference)
            or (remote_digest is not None and current.digest is not None and current.digest != remote_digest)
        )
    need_config = (bool(desired.args) or bool(desired.settings)) if config_changes is None else config_changes
    if need_install:
        steps.append("install")
    if (need_upgrade or need_config) and enabled_now:
        steps.append("disable")
        enabled_now = False
    if need_upgrade:
        steps.append("upgrade")
    if need_config:
        steps.append("configure")
    if want_enabled and not enabled_now:
        steps.append("enable")
    elif not want_enabled and enabled_now:
        steps.append("disable")
    return steps


ACTION_WORDS = {
    "install": "installed",
    "upgrade": "upgraded",
    "configure": "configured",
    "enable": "enabled",
    "disable": "disabled",
    "remove": "removed",
}


def encode_registry_auth(auth: dict[str, Any] | None) -> str | None:
    """The ``X-Registry-Auth`` header: base64url of ``{username, password, serveraddress}``."""
    if not auth:
        return None
    doc = {k: str(auth[k]) for k in ("username", "password", "serveraddress", "identitytoken") if auth.get(k)}
    if not doc:
        return None
    return base64.urlsafe_b64encode(json.dumps(doc).encode("utf-8")).decode("ascii")


# --------------------------------------------------------------------------------------
# Errors from the engine, made readable
# --------------------------------------------------------------------------------------
_UNREACHABLE_HINTS = (
    "connection refused",
    "no such host",
    "i/o timeout",
    "network is unreachable",
    "no route to host",
    "dial tcp",
    "tls handshake",
    "context deadline exceeded",
    "server misbehaving",
    "connection reset",
)
_NOT_FOUND_HINTS = ("manifest unknown", "not found", "does not exist", "name unknown", "no such")


_CHAIN_DENIED = re.compile(r"authorization denied by plugin ([^\s:]+)")
_CHAIN_FAILED = re.compile(r"plugin ([^\s:]+(?::[^\s:]+)?) failed with error: AuthZPlugin\.AuthZReq")


def chain_error(exc: DockerAPIError, what: str) -> PluginError | None:
    """An authorization plugin already hooked into the engine refused ``what``, or None.

    opa-docker-authz (every version) cannot decode the JSON-array bodies of the plugin
    pull/upgrade/set requests and answers them with an error, whatever its policy says; another
    plugin's policy may also deny them. Either way the engine refuses the request.
    """
    m = _CHAIN_DENIED.search(exc.message) or _CHAIN_FAILED.search(exc.message)
    if not m:
        return None
    blocker = m.group(1)
    return PluginError(
        f"the authorization plugin {blocker}, already in this engine's authorization-plugins, refused "
        f"to let the engine {what} ({exc.message}). opa-docker-authz cannot parse the JSON-array body "
        "of plugin install, upgrade and set requests, and another plugin's policy may deny them: take "
        f"{blocker} out of authorization-plugins for the change (the role does this with "
        "docker_authz_unhook_other_plugins: true, and hooks it back right after), or make the change "
        "by hand.",
        reason="authz_chain_refused",
        blocking_plugin=blocker,
    )


def registry_error(ref: Reference, exc: DockerAPIError) -> PluginError:
    chained = chain_error(exc, f"resolve or install {ref.familiar}")
    if chained is not None:
        return chained
    msg = exc.message
    low = msg.lower()
    registry = ref.domain
    if "server gave http response to https client" in low:
        return PluginError(
            f"registry {registry} answers plain HTTP but the engine expects HTTPS for {ref.familiar}: add "
            f'"insecure-registries": ["{registry}"] to the Docker host\'s daemon.json, or serve the '
            f"registry over TLS ({msg})",
            reason="registry_insecure",
        )
    if any(h in low for h in _UNREACHABLE_HINTS):
        return PluginError(
            f"registry {registry} is unreachable from the Docker host, so {ref.familiar} cannot be resolved "
            f"({msg}). Check the registry address, that it is up, and the host's network/proxy settings.",
            reason="registry_unreachable",
        )
    if exc.status in (401, 403) or "unauthorized" in low or "denied" in low:
        return PluginError(
            f"registry {registry} refused access to {ref.familiar} ({msg}): give registry_auth "
            "(username, password, serveraddress) for a private registry, or check the name.",
            reason="registry_unauthorized",
        )
    if exc.status == 404 or any(h in low for h in _NOT_FOUND_HINTS):
        return PluginError(
            f"plugin image {ref.familiar} not found in registry {registry} ({msg}): check the repository "
            f"name and tag (the official plugin is {OFFICIAL_REPOSITORY}:{OFFICIAL_VERSION}-linux-amd64 "
            "or -linux-arm64) and that it was pushed there.",
            reason="image_not_found",
        )
    return PluginError(
        f"cannot resolve {ref.familiar} in registry {registry}: {msg}", reason="registry_error"
    )


# --------------------------------------------------------------------------------------
# The engine side
# --------------------------------------------------------------------------------------
class PluginManager:
    """Plugin operations on one engine (mutations address the plugin by ID, upgrade by name)."""

    def __init__(
        self,
        client: DockerClient,
        timeout: float = DEFAULT_TIMEOUT,
        watch: Callable[[str], StartWatch | None] | None = None,
    ) -> None:
        self.client = client
        self.timeout = float(timeout)
        self.warnings: list[str] = []
        self._version: dict[str, Any] | None = None
        self._watch = watch or self._local_watch

    def _local_watch(self, plugin_id: str) -> StartWatch | None:
        """A watch of the plugin's processes when the engine is on this host's unix socket (the
        module runs on the Docker host); None for a client that is not (a remote engine, a fake)."""
        if not isinstance(self.client, DockerClient) or not os.path.isdir("/proc"):
            return None
        return StartWatch(lambda: plugin_processes(plugin_id))

    # -- engine facts --------------------------------------------------------------------
    def preflight(self) -> dict[str, Any]:
        """Reach the engine, refuse engines without managed plugins; return ``/version``."""
        self.client.ping()
        if self.client.engine_kind() == "podman":
            raise PluginError(
                f"the socket {self.client.socket_path} is Podman's Docker-compatible API, which has no "
                "managed plugins and no authorization plugins: opa-docker-authz needs "
                "Docker Engine (docker.io or docker-ce). Point socket at a Docker Engine.",
                reason="engine_unsupported",
            )
        version = self.client.version() or {}
        if str(version.get("Os", "linux")).lower() != "linux":
            raise PluginError(
                f"the Docker engine at {self.client.socket_path} runs on {version.get('Os')}: managed "
                "plugins exist only on Linux engines.",
                reason="engine_unsupported",
            )
        self._version = version
        return version

    def engine_arch(self) -> str:
        version = self._version if self._version is not None else self.preflight()
        return normalize_arch(str(version.get("Arch") or "amd64"))

    def list_plugins(self) -> list[dict[str, Any]]:
        try:
            plugins = self.client.get("/plugins")
        except DockerAPIError as exc:
            if exc.status in (404, 405, 501):
                raise PluginError(
                    f"the engine at {self.client.socket_path} has no managed-plugin API (GET /plugins: HTTP "
                    f"{exc.status} {exc.message}): opa-docker-authz needs Docker Engine on Linux.",
                    reason="engine_unsupported",
                ) from None
            raise
        return list(plugins or [])

    def find(self, name: str) -> PluginState | None:
        for obj in self.list_plugins():
            if obj.get("Name") == name:
                return PluginState.from_api(obj, self.installed_digest(str(obj.get("Id") or "")))
        return None

    def installed_digest(self, plugin_id: str) -> str | None:
        """The manifest digest the engine installed the plugin from (from its state on disk)."""
        if not plugin_id:
            return None
        try:
            root = (self.client.info() or {}).get("DockerRootDir") or "/var/lib/docker"
            path = os.path.join(root, "plugins", plugin_id, "config.json")
            with open(path, encoding="utf-8") as fh:
                doc = json.load(fh)
        except (OSError, ValueError, DockerAPIError) as exc:
            self.warnings.append(
                f"cannot read the installed plugin's manifest digest ({exc}); the plugin is upgraded only "
                "when the reference changes or force_upgrade is set"
            )
            return None
        digest = doc.get("Manifest") if isinstance(doc, dict) else None
        return str(digest) if digest else None

    # -- registry ----------------------------------------------------------------------
    def _auth_headers(self, auth: str | None) -> dict[str, str] | None:
        return {"X-Registry-Auth": auth} if auth else None

    def remote_digest(self, ref: Reference, auth: str | None) -> str:
        """Resolve ``ref`` in its registry (through the engine); return the manifest digest."""
        try:
            doc = self.client.get(
                f"/distribution/{ref.canonical}/json", headers=self._auth_headers(auth), timeout=self.timeout
            )
        except DockerAPIError as exc:
            raise registry_error(ref, exc) from None
        digest = ((doc or {}).get("Descriptor") or {}).get("digest")
        if not digest:
            raise PluginError(
                f"registry {ref.domain} returned no digest for {ref.familiar}", reason="registry_error"
            )
        return str(digest)

    def privileges(self, ref: Reference, auth: str | None) -> list[dict[str, Any]]:
        try:
            privs = self.client.get(
                "/plugins/privileges",
                query={"remote": ref.canonical},
                headers=self._auth_headers(auth),
                timeout=self.timeout,
            )
        except DockerAPIError as exc:
            raise registry_error(ref, exc) from None
        return [
            {
                "Name": p.get("Name"),
                "Description": p.get("Description", ""),
                "Value": list(p.get("Value") or []),
            }
            for p in privs or []
        ]

    # -- mutations ---------------------------------------------------------------------
    def install(self, ref: Reference, name: str, privileges: list[dict[str, Any]], auth: str | None) -> None:
        try:
            self.client.call_stream(
                "POST",
                "/plugins/pull",
                query={"remote": ref.canonical, "name": name},
                body=privileges,
                headers=self._auth_headers(auth),
                timeout=self.timeout,
            )
        except DockerAPIError as exc:
            raise self._pull_error(ref, exc, "install") from None

    def upgrade(self, name: str, ref: Reference, privileges: list[dict[str, Any]], auth: str | None) -> None:
        # by name: the engine's upgrade route parses {name} as a reference and refuses an ID
        try:
            self.client.call_stream(
                "POST",
                f"/plugins/{name}/upgrade",
                query={"remote": ref.canonical},
                body=privileges,
                headers=self._auth_headers(auth),
                timeout=self.timeout,
            )
        except DockerAPIError as exc:
            raise self._pull_error(ref, exc, "upgrade to") from None

    def _pull_error(self, ref: Reference, exc: DockerAPIError, verb: str) -> PluginError:
        if "incorrect privileges" in exc.message.lower():
            return PluginError(
                f"the engine refused to {verb} {ref.familiar}: the privileges sent do not match what the "
                f"plugin asks for ({exc.message}); the registry content may have changed during the run: "
                "retry.",
                reason="privileges_mismatch",
            )
        err = registry_error(ref, exc)
        if err.details.get("reason") == "registry_error":
            return PluginError(f"cannot {verb} {ref.familiar}: {exc.message}", reason="install_failed")
        return err

    def set(self, plugin_id: str, changes: list[str]) -> None:
        try:
            self.client.post(f"/plugins/{plugin_id}/set", changes, timeout=self.timeout)
        except DockerAPIError as exc:
            chained = chain_error(exc, "change the plugin's settings")
            if chained is not None:
                raise chained from None
            raise

    def enable(self, plugin_id: str) -> None:
        # Right after a failed start the engine answers 409 "error creating containerd container:
        # id already in use" until containerd has cleaned up the dead shim (seen on 20.10): retry.
        # The engine gives a starting plugin a fixed window to listen on its socket (it dials at
        # 0.5, 3.5, 6.5 and 9.5 s and gives up at 12.5 s, moby daemon/pkg/plugin/manager_linux.go;
        # the enable timeout does not change it) and answers "dial unix ...: no such file or
        # directory" after that: a plugin that starts slowly (a loaded or
        # emulated host, a config-file plugin still fetching its bundle) gets more attempts.
        deadline = time.monotonic() + ENABLE_RETRY_SECONDS
        slow_starts = 0
        while True:
            watch = self._watch(plugin_id)
            try:
                if watch is None:
                    self._enable_once(plugin_id)
                else:
                    with watch:
                        self._enable_once(plugin_id)
                return
            except DockerAPIError as exc:
                if "already enabled" in exc.message:
                    return
                socket_timeout = is_socket_timeout(exc.message)
                exited = socket_timeout and watch is not None and watch.exited
                if socket_timeout:
                    # let the engine's own restart of an exited plugin finish first (above)
                    time.sleep(ENABLE_SETTLE_SECONDS)
                if socket_timeout and not exited and slow_starts < ENABLE_SLOW_START_RETRIES:
                    slow_starts += 1
                    deadline = time.monotonic() + ENABLE_RETRY_SECONDS
                elif "already in use" not in exc.message or time.monotonic() >= deadline:
                    if exited:
                        exc.message += (
                            " (the plugin's process exited at start and never listened on its socket, so "
                            "it was not enabled again: its arguments or its image are wrong; dockerd logs "
                            f"its output, such as an unknown flag, with plugin={plugin_id})"
                        )
                    elif slow_starts:
                        exc.message += (
                            f" (the engine waits about 10 s for a plugin's socket; {slow_starts + 1} "
                            "attempts to enable it failed)"
                        )
                    raise
            time.sleep(0.5)

    def _enable_once(self, plugin_id: str) -> None:
        self.client.post(
            f"/plugins/{plugin_id}/enable",
            query={"timeout": int(self.timeout)},
            timeout=self.timeout + 15,
        )

    @property
    def stop_timeout(self) -> float:
        # the engine gives a plugin 10 s to exit on SIGTERM before it kills it
        return max(self.timeout, 60.0)

    def disable(self, plugin_id: str, force: bool = False) -> None:
        self.client.post(
            f"/plugins/{plugin_id}/disable",
            query={"force": force} if force else None,
            timeout=self.stop_timeout,
        )

    def remove(self, plugin_id: str, force: bool = False) -> None:
        self.client.delete(
            f"/plugins/{plugin_id}", query={"force": force} if force else None, timeout=self.stop_timeout
        )


# --------------------------------------------------------------------------------------
# The module's one entry point
# --------------------------------------------------------------------------------------
def _desired_from_params(params: dict[str, Any]) -> Desired:
    state = params.get("state") or "enabled"
    if state not in STATES:
        raise PluginError(f"state {state!r} is not one of {', '.join(STATES)}")
    name = normalize_alias(params.get("name") or DEFAULT_ALIAS)
    args_param = params.get("args", DEFAULT_ARGS)
    return Desired(
        name=name,
        state=state,
        args=None if args_param is None else normalize_args(args_param),
        settings=parse_settings(params.get("settings")),
        force_upgrade=bool(params.get("force_upgrade")),
        allowed=parse_allowed_privileges(
            DEFAULT_ALLOWED_PRIVILEGES
            if params.get("allowed_privileges") is None
            else params["allowed_privileges"]
        ),
    )


def _predict_after(
    current: PluginState | None, desired: Desired, steps: list[str], remote_digest: str | None
) -> dict[str, Any]:
    if desired.state == "absent":
        return {}
    after = (
        current.as_dict()
        if current
        else {
            "id": None,
            "name": desired.name,
            "reference": None,
            "enabled": False,
            "args": [],
            "digest": None,
            "env": {},
            "mounts": {},
        }
    )
    if "install" in steps or "upgrade" in steps:
        after["reference"] = desired.reference.canonical if desired.reference else None
        after["digest"] = remote_digest
    if "configure" in steps or "install" in steps:
        if desired.args is not None:
            after["args"] = list(desired.args)
        for key, value in desired.settings:
            if "." in key:
                obj, _, attr = key.partition(".")
                if attr == "source":
                    after["mounts"][obj] = value
            else:
                after["env"][key] = value
    if steps:
        after["enabled"] = desired.state == "enabled" or (
            desired.state == "present" and bool(current and current.enabled)
        )
    return after


def ensure(
    params: dict[str, Any], check_mode: bool = False, client: DockerClient | None = None
) -> dict[str, Any]:
    """Bring the plugin ``params['name']`` to ``params['state']``; return the module result.

    Raises ``PluginError`` (refusals, engine and registry errors) or ``DockerError``
    (engine unreachable). Nothing is changed before every check has passed.
    """
    desired = _desired_from_params(params)
    timeout = float(params.get("timeout") or DEFAULT_TIMEOUT)
    client = client or DockerClient(params.get("socket") or "/var/run/docker.sock", timeout=timeout)
    mgr = PluginManager(client, timeout)
    auth = encode_registry_auth(params.get("registry_auth"))
    warnings: list[str] = mgr.warnings

    mgr.preflight()
    current = mgr.find(desired.name)
    before = current.as_dict() if current else {}

    remote_digest: str | None = None
    privileges: list[dict[str, Any]] = []
    if desired.state != "absent":
        arch = mgr.engine_arch()
        ref = parse_reference(expand_reference(params.get("reference"), arch))
        warning = check_arch(ref, arch)
        if warning:
            warnings.append(warning)
        desired.reference = ref
        fetch_digest = (
            current is None or params.get("digest_check", True) or not same_reference(current.reference, ref)
        )
        if ref.digest:
            remote_digest = ref.digest
        if fetch_digest:
            resolved = mgr.remote_digest(ref, auth)
            if ref.digest and resolved != ref.digest:
                # a digest reference resolves to itself; anything else is the registry's business
                resolved = ref.digest
            remote_digest = resolved
        read = parse_opa_args(desired.args) if desired.args is not None else None
        if (
            read is not None
            and not ({"policy-file", "config-file"} & read.values.keys())
            and (current is None or current.args_name == "opa-args")
        ):
            warnings.append(
                "args name neither -policy-file nor -config-file as the plugin reads them (Go's flag "
                "package stops at the first word that is not a flag): opa-docker-authz then ALLOWS EVERY "
                "REQUEST (fails open)"
            )

    config_changes: bool | None = None
    if desired.state != "absent":
        precheck_settings(desired)
    if current is not None and desired.state != "absent":
        config_changes = bool(settings_changes(current, desired))
    elif check_mode and desired.state != "absent" and desired.settings:
        warnings.append(
            "check mode: the setting names ("
            + ", ".join(k for k, _ in desired.settings)
            + ") are checked against the plugin's config once it is installed"
        )
    steps = plan_steps(current, desired, remote_digest, config_changes)

    if ("install" in steps or "upgrade" in steps) and desired.reference is not None:
        privileges = mgr.privileges(desired.reference, auth)
        check_privileges(desired.reference.familiar, privileges, desired.allowed)

    force = bool(params.get("force"))
    actions: list[str] = []
    if not check_mode and steps:
        try:
            _apply(mgr, desired, steps, current, privileges, auth, force, actions)
        except (PluginError, DockerError) as exc:
            details = dict(getattr(exc, "details", {}) or {})
            restored = _restore(mgr, desired, current, actions)
            details.update(
                before=before, actions=actions, planned=[ACTION_WORDS[s] for s in steps], restored=restored
            )
            done = f" Done before the failure: {', '.join(actions)}." if actions else ""
            if restored:
                done += f" Restored: {restored}."
            raise PluginError(f"{exc}{done}", **details) from None
        final = mgr.find(desired.name)
        after = final.as_dict() if final else {}
    else:
        actions = [ACTION_WORDS[s] for s in steps]
        after = _predict_after(current, desired, steps, remote_digest) if steps else dict(before)

    result: dict[str, Any] = {
        "changed": bool(steps),
        "actions": actions,
        "plugin": after,
        "privileges": privileges,
        "diff": {"before": before, "after": after},
        "warnings": list(dict.fromkeys(warnings)),
    }
    if desired.reference is not None:
        result["reference"] = desired.reference.canonical
        result["remote_digest"] = remote_digest
    return result


def _apply(
    mgr: PluginManager,
    desired: Desired,
    steps: list[str],
    current: PluginState | None,
    privileges: list[dict[str, Any]],
    auth: str | None,
    force: bool,
    actions: list[str],
) -> None:
    plugin = current
    for step in steps:
        if step == "install":
            assert desired.reference is not None
            mgr.install(desired.reference, desired.name, privileges, auth)
            plugin = mgr.find(desired.name)
            if plugin is None:
                raise PluginError(f"the engine reported {desired.name} installed but does not list it")
        elif step == "upgrade":
            assert plugin is not None and desired.reference is not None
            mgr.upgrade(plugin.name, desired.reference, privileges, auth)
        elif step == "configure":
            assert plugin is not None
            fresh = mgr.find(desired.name) or plugin
            changes = settings_changes(fresh, desired)
            if not changes:
                continue
            mgr.set(fresh.id, changes)
        elif step == "enable":
            assert plugin is not None
            try:
                mgr.enable(plugin.id)
            except DockerAPIError as exc:
                raise PluginError(
                    f"plugin {desired.name} did not start: {exc.message}. Its own log lines are in the "
                    "daemon's log (journalctl -u docker).",
                    reason="enable_failed",
                ) from None
        elif step == "disable":
            assert plugin is not None
            mgr.disable(plugin.id, force=force)
        elif step == "remove":
            assert plugin is not None
            mgr.remove(plugin.id, force=force)
        actions.append(ACTION_WORDS[step])


def _restore(mgr: PluginManager, desired: Desired, before: PluginState | None, actions: list[str]) -> str:
    """Best effort after a failed run: undo what this run did when that can be done exactly.

    A plugin this run installed is removed again; a plugin this run only reconfigured or
    disabled gets its previous args/settings and enabled state back. An upgrade cannot be
    undone here (the previous image is gone): the failure result carries ``before`` so the
    caller can install ``before.reference`` again.
    """
    if not actions or "upgraded" in actions or "removed" in actions:
        return ""
    try:
        now = mgr.find(desired.name)
        if now is None:
            return ""
        if before is None:
            if now.enabled:
                mgr.disable(now.id, force=True)
            mgr.remove(now.id, force=True)
            return "removed the plugin this run installed"
        done = []
        back = Desired(
            name=desired.name,
            state="enabled" if before.enabled else "disabled",
            args=list(before.args),
            settings=[(f"{k}.source", v) for k, v in before.mounts.items() if now.mounts_settable.get(k)]
            + [(k, v) for k, v in before.env.items() if now.env_settable.get(k)],
            allowed={"mount": set(before.mounts.values()), "device": set(before.devices.values())},
        )
        changes = settings_changes(now, back)
        if changes:
            if now.enabled:
                mgr.disable(now.id, force=True)
                now.enabled = False
            mgr.set(now.id, changes)
            done.append("previous settings")
        if before.enabled and not now.enabled:
            mgr.enable(now.id)
            done.append("enabled again")
        elif not before.enabled and now.enabled:
            mgr.disable(now.id, force=True)
            done.append("disabled again")
        return ", ".join(done)
    except (PluginError, DockerError) as exc:
        mgr.warnings.append(f"could not restore the previous plugin state: {exc}")
        return ""
