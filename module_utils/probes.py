# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""Prove that a Docker Engine enforces the authorization policy, through the Engine API.

Standard library only (runs on managed hosts). The probes are real requests on the engine's
unix socket:

- requests the policy must DENY: one per enabled rule (each is the compliant request with
  exactly one thing changed, so a denial points at that one thing), plus one per bypass class
  a policy can stop (key case, path spelling, invisible body, value and host-path spelling,
  the other endpoints: exec, update, services, volumes, build, plugins);
- requests the policy must ALLOW: a container create that satisfies every enabled rule, and a
  container list.

Authorization runs before the daemon looks anything up, so every create names an image that
does not exist (``hardening-verify/nonexistent:probe``), every exec/update a container that
does not exist, every plugin request a plugin that does not exist: an authorized request gets
404 and nothing is created or pulled. Whatever a probe does create anyway (say an image of that
name exists, or a volume create is authorized) is removed at once.

Answers are classified from the daemon's own texts (moby ``pkg/authorization``):

- ``denied``: HTTP 403 ``authorization denied by plugin NAME: MSG`` (``plugin`` says which);
- ``plugin-error``: ``plugin NAME failed with error: ...`` (the policy errored, e.g. a v0
  policy under opa-docker-authz v0.10: the whole API is down);
- ``authorized``: any other HTTP answer (201, 404 No such image, 400, 500, 503 ...);
- ``error``: no HTTP answer (socket gone, timeout).

A deny answer carries no reason (opa-docker-authz always says ``request rejected by
administrative policy``), so a probe proves that a request was denied, not which rule denied
it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import ipaddress
import json
import os
import posixpath
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.hardening.docker_authz.plugins.module_utils.docker_api import (
    DockerAPIError,
    DockerClient,
    DockerError,
    DockerUnavailable,
)
from ansible_collections.hardening.docker_authz.plugins.module_utils.opa_args import engine_args
from ansible_collections.hardening.docker_authz.plugins.module_utils.opa_args import parse as parse_opa_args

PREFIX = "docker_authz_"
DEFAULT_ALIAS = "opa-docker-authz"
PROBE_IMAGE = "hardening-verify/nonexistent:probe"
PROBE_CONTAINER = "hardening-verify-nonexistent"
PROBE_PLUGIN = "hardening-verify-nonexistent"
# A registry nobody runs: an authorized pull of it fails at once on the loopback interface.
UNTRUSTED_REGISTRY = "127.0.0.1:1"
UNTRUSTED_REGISTRY_FALLBACK = "untrusted.invalid"
COMPLIANT_USER = "1000:1000"
ALWAYS_ON = "always_on"
DENY = "deny"
ALLOW = "allow"

# (on in baseline, on in restricted), from rule-catalog.md.
RULE_DEFAULTS: dict[str, tuple[bool, bool]] = {
    "deny_privileged": (True, True),
    "deny_seccomp_unconfined": (True, True),
    "require_no_new_privileges": (False, True),
    "require_resource_limits": (False, True),
    "restrict_ports": (False, True),
    "deny_root_user": (False, True),
    "deny_sensitive_env": (False, True),
    "deny_host_namespaces": (True, True),
    "deny_added_capabilities": (True, True),
    "deny_apparmor_unconfined": (True, True),
    "deny_selinux_disabled": (True, True),
    "deny_unmasked_paths": (True, True),
    "deny_sensitive_mounts": (True, True),
    "deny_devices": (True, True),
    "deny_plugin_changes": (True, True),
    "deny_swarm_changes": (True, True),
    "restrict_runtimes": (True, True),
    "restrict_log_drivers": (False, True),
    "deny_remote_fetch": (False, True),
    "require_readonly_rootfs": (False, False),
}
PROFILES = ("baseline", "restricted")
DOCKER_DEFAULT_CAPS = [
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
]  # fmt: skip
LIMIT_NAMES = ("memory", "cpu", "pids")
LIST_PARAMS: dict[str, list[str] | None] = {
    "required_limits": list(LIMIT_NAMES),
    "allowed_host_ports": ["1024-65535"],
    "allowed_host_ips": [],
    "sensitive_env_keywords": [
        "password", "passwd", "pwd", "secret", "token", "api_key", "apikey", "access_key",
        "private_key", "credential",
    ],
    "sensitive_env_allowed": ["*_FILE"],
    "allowed_capabilities": None,  # depends on the profile
    "sensitive_host_paths": [
        "/", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/sys", "/usr", "/root",
        "/var/lib/docker", "/var/run/docker.sock", "/run/docker.sock", "/run/containerd",
        "/var/lib/containerd", "/run/docker", "/var/run/docker", "/run/dbus", "/var/run/dbus",
        "/run/systemd", "/var/run/systemd", "/var/spool/cron",
    ],
    "allowed_bind_sources": [],
    "allowed_runtimes": ["runc", "io.containerd.runc.v2"],
    "allowed_log_drivers": ["json-file", "local", "journald", "none"],
    "trusted_registries": [],
    "exempt_users": [],
    "audit_rules": [],
}  # fmt: skip
INT_PARAMS: dict[str, int] = {"max_memory_bytes": 0, "max_nano_cpus": 0}
STR_PARAMS: dict[str, tuple[str, ...]] = {"enforcement": ("enforce", "audit")}
# The policy's rule id (the prefix of its reasons, docker_authz_audit_rules) of each probe rule.
RULE_IDS: dict[str, str] = {
    "deny_privileged": "privileged",
    "deny_seccomp_unconfined": "seccomp_unconfined",
    "require_no_new_privileges": "no_new_privileges",
    "require_resource_limits": "resource_limits",
    "restrict_ports": "ports",
    "deny_root_user": "root_user",
    "deny_sensitive_env": "sensitive_env",
    "deny_host_namespaces": "host_namespaces",
    "deny_added_capabilities": "capabilities",
    "deny_apparmor_unconfined": "apparmor_unconfined",
    "deny_selinux_disabled": "selinux_disabled",
    "deny_unmasked_paths": "unmasked_paths",
    "deny_sensitive_mounts": "sensitive_mounts",
    "deny_devices": "devices",
    "deny_plugin_changes": "plugin_changes",
    "deny_swarm_changes": "swarm_changes",
    "restrict_runtimes": "runtimes",
    "restrict_log_drivers": "log_drivers",
    "deny_remote_fetch": "remote_fetch",
    "require_readonly_rootfs": "readonly_rootfs",
    "trusted_registries": "trusted_registries",
}

# CVE id -> (what it does, first fixed release of each branch that got a fix).
CVES: dict[str, tuple[str, tuple[tuple[int, int, int], ...]]] = {
    "CVE-2024-41110": (
        "a request with an empty Content-Length or a chunked body reaches authorization plugins "
        "without its body, so the policy cannot see what it allows",
        ((23, 0, 15), (25, 0, 6), (26, 1, 5), (27, 1, 1)),
    ),
    "CVE-2026-34040": (
        "request bodies over 1 MiB are not forwarded to authorization plugins, so the policy "
        "cannot see what it allows",
        ((25, 0, 16), (29, 3, 1)),
    ),
}

_DENY_RE = re.compile(r"authorization denied by plugin (.+?): (.*)\Z", re.S)
# Engines with the CVE-2026-34040 fix (moby 25.0.16, 29.3.1, and distribution backports such as
# Debian 13's 26.1.5+dfsg1-9+deb13u1) refuse a body over their plugin limit (4 MiB) themselves.
_BODY_TOO_LARGE_RE = re.compile(r"request body too large for authorization plugin", re.I)
# The body-over-1mib probe's padding: over that 4 MiB limit as well as the 1 MiB of unfixed
# engines, so no engine hands it to the plugin (fixed ones refuse it, unfixed ones drop the
# body). A body between 1 and 4 MiB does reach the plugin on a fixed engine, and
# opa-docker-authz logs a denied request's input on ONE line: dockerd's reader of plugin output
# (logrus Writer, bufio.Scanner, 64 KiB lines) stops at such a line ("bufio.Scanner: token too
# long") and the plugin then blocks on its next log write, so every later logged decision hangs
# (seen on Debian 13's engine, tests/e2e/test_engine_matrix.py; docs/engines.md).
BODY_PROBE_PADDING = (4 << 20) + (64 << 10)
_ERROR_RE = re.compile(r"plugin (\S+?) failed with error: (.*)\Z", re.S)


def _strip(text: str, affix: str, prefix: bool = False) -> str:
    """``str.removeprefix``/``removesuffix`` for Python < 3.9 on managed hosts."""
    if prefix:
        return text[len(affix) :] if text.startswith(affix) else text
    return text[: -len(affix)] if affix and text.endswith(affix) else text


class VerifyInputError(ValueError):
    """The rules or options given to the verifier are wrong (the message says how to fix it)."""


# --------------------------------------------------------------------------------------------
# rules and their parameters
# --------------------------------------------------------------------------------------------
@dataclass
class Settings:
    """The enabled rules and their parameters, normalised."""

    profile: str = "baseline"
    rules: dict[str, bool] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    def on(self, rule: str) -> bool:
        return bool(self.rules.get(rule))

    def audited(self, rule: str) -> bool:
        """Whether a probe rule is in audit (it denies nothing; its reasons are logged)."""
        if self.params.get("enforcement") == "audit":
            return rule != ALWAYS_ON
        return RULE_IDS.get(rule) in self.params.get("audit_rules", [])

    @property
    def enabled(self) -> list[str]:
        names = [r for r in RULE_DEFAULTS if self.rules.get(r)]
        if self.params.get("trusted_registries"):
            names.append("trusted_registries")
        return names


_TRUE = ("true", "yes", "on", "1", "y", "t")
_FALSE = ("false", "no", "off", "0", "n", "f")


def _to_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise VerifyInputError(f"rules.{key} must be a boolean (true/false), got {value!r}")


def _to_list(key: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [v for v in re.split(r"[,\s]+", value) if v]
    if not isinstance(value, (list, tuple)):
        raise VerifyInputError(f"rules.{key} must be a list, got {type(value).__name__} {value!r}")
    out = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            raise VerifyInputError(f"rules.{key} must be a list of strings, got the item {item!r}")
        out.append(str(item).strip())
    return out


def _to_int(key: str, value: Any) -> int:
    if isinstance(value, bool):
        raise VerifyInputError(f"rules.{key} must be a whole number >= 0, got {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise VerifyInputError(f"rules.{key} must be a whole number >= 0, got {value!r}") from None
    if number < 0:
        raise VerifyInputError(f"rules.{key} must be a whole number >= 0 (0 = no ceiling), got {number}")
    return number


def parse_port_ranges(items: list[str]) -> list[tuple[int, int]]:
    """``["80", "1024-65535"]`` -> ``[(80, 80), (1024, 65535)]``; raises on bad spellings."""
    out = []
    for item in items:
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", item)
        lo = int(m.group(1)) if m else -1
        hi = int(m.group(2) or m.group(1)) if m else -1
        if not m or not 1 <= lo <= hi <= 65535:
            raise VerifyInputError(
                f"rules.allowed_host_ports: {item!r} is not a port or range; "
                "write N or N-M with 1 <= N <= M <= 65535"
            )
        out.append((lo, hi))
    return out


def normalize_rules(rules: dict[str, Any] | None, profile: str = "baseline") -> Settings:
    """Merge the given rules over the profile's defaults, validating names and types.

    Keys may carry the role's ``docker_authz_`` prefix or not; a ``None`` value means "not set"
    (the profile decides). ``profile`` may also be given inside ``rules``.
    """
    rules = dict(rules or {})
    given: dict[str, Any] = {}
    for key, value in rules.items():
        if value is None:
            continue  # the role's "unset": the profile decides
        name = key[len(PREFIX) :] if isinstance(key, str) and key.startswith(PREFIX) else key
        if name in given:
            raise VerifyInputError(f"rules: {name} is given twice (with and without the {PREFIX} prefix)")
        given[name] = value
    if "profile" in given:
        profile = str(given.pop("profile"))
    if profile not in PROFILES:
        raise VerifyInputError(f"profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    known = set(RULE_DEFAULTS) | set(LIST_PARAMS) | set(INT_PARAMS) | set(STR_PARAMS)
    unknown = sorted(str(k) for k in given if k not in known)
    if unknown:
        raise VerifyInputError(
            f"rules: unknown name(s) {', '.join(unknown)}; known rules: {', '.join(RULE_DEFAULTS)}; "
            f"parameters: {', '.join(list(LIST_PARAMS) + list(INT_PARAMS) + list(STR_PARAMS))} "
            f"(the role's variable names without the {PREFIX} prefix)"
        )
    idx = PROFILES.index(profile)
    settings = Settings(profile=profile)
    for rule, defaults in RULE_DEFAULTS.items():
        settings.rules[rule] = _to_bool(rule, given[rule]) if rule in given else defaults[idx]
    for name, default in LIST_PARAMS.items():
        if name in given:
            settings.params[name] = _to_list(name, given[name])
        elif name == "allowed_capabilities":
            settings.params[name] = (
                list(DOCKER_DEFAULT_CAPS) if profile == "baseline" else ["NET_BIND_SERVICE"]
            )
        else:
            settings.params[name] = list(default or [])
    for name, default in INT_PARAMS.items():
        settings.params[name] = _to_int(name, given[name]) if name in given else default
    for name, choices in STR_PARAMS.items():
        value = str(given.get(name, choices[0])).strip().lower()
        if value not in choices:
            raise VerifyInputError(f"rules.{name} must be one of {', '.join(choices)}, got {given[name]!r}")
        settings.params[name] = value
    audit_ids = [x.lower() for x in settings.params["audit_rules"]]
    bad_ids = [x for x in audit_ids if x not in RULE_IDS.values()]
    if bad_ids:
        raise VerifyInputError(
            f"rules.audit_rules: unknown rule id(s) {', '.join(bad_ids)}; "
            f"use some of {', '.join(RULE_IDS.values())}"
        )
    settings.params["audit_rules"] = audit_ids
    bad_limits = [x for x in settings.params["required_limits"] if x not in LIMIT_NAMES]
    if bad_limits:
        raise VerifyInputError(
            f"rules.required_limits: unknown limit(s) {', '.join(bad_limits)}; "
            f"use some of {', '.join(LIMIT_NAMES)}"
        )
    settings.params["allowed_host_port_ranges"] = parse_port_ranges(settings.params["allowed_host_ports"])
    return settings


# --------------------------------------------------------------------------------------------
# the probe table
# --------------------------------------------------------------------------------------------
@dataclass
class Probe:
    """One request and the answer the policy must give."""

    name: str
    rule: str
    expect: str  # DENY | ALLOW
    method: str
    path: str  # API path after the version prefix, e.g. /containers/create
    summary: str  # what makes this request special, for people
    body: Any = None  # JSON value, or bytes sent as they are
    content_type: str | None = "application/json"
    query: str = ""  # raw query string (without "?")
    target: str | None = None  # exact request target; "{v}" becomes "/vX.Y"
    bypass: str | None = None  # the bypass class this probe stands for
    chunked: bool = False  # send the body with Transfer-Encoding: chunked, no Content-Length

    def request_target(self, api_version: str) -> str:
        if self.target is not None:
            return self.target.replace("{v}", f"/v{api_version}")
        return f"/v{api_version}{self.path}" + (f"?{self.query}" if self.query else "")

    def body_bytes(self) -> bytes | None:
        if self.body is None:
            return None
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body, separators=(",", ":")).encode("utf-8")


def clean_path(path: str) -> str:
    """``/var/run/../run/docker.sock`` -> ``/var/run/docker.sock``, ``//etc/`` -> ``/etc``."""
    cleaned = posixpath.normpath("/" + path.lstrip("/"))
    return "/" if cleaned in ("", "//") else cleaned


def compliant_image(settings: Settings) -> str:
    """An image name that no host has and that passes ``trusted_registries``."""
    trusted = settings.params["trusted_registries"]
    if not trusted:
        return PROBE_IMAGE
    first = trusted[0].rstrip("/")
    if first == "docker.io":
        return f"docker.io/{PROBE_IMAGE}"
    return f"{first}/{PROBE_IMAGE}"


def image_registry(image: str) -> str:
    """The registry host of an image reference (Docker Hub is ``docker.io``)."""
    head, sep, _ = image.partition("/")
    if not sep or ("." not in head and ":" not in head and head != "localhost"):
        return "docker.io"
    return head


def _trusted(image: str, trusted: list[str]) -> bool:
    registry = image_registry(image)
    full = image if registry != "docker.io" or image.startswith("docker.io/") else f"docker.io/{image}"
    for entry in trusted:
        entry = entry.rstrip("/")
        if registry == entry or full == entry or full.startswith(entry + "/"):
            return True
    return False


def untrusted_image(settings: Settings) -> str:
    for registry in (UNTRUSTED_REGISTRY, UNTRUSTED_REGISTRY_FALLBACK):
        image = f"{registry}/{PROBE_IMAGE}"
        if not _trusted(image, settings.params["trusted_registries"]):
            return image
    raise VerifyInputError(
        f"rules.trusted_registries trusts both {UNTRUSTED_REGISTRY} and {UNTRUSTED_REGISTRY_FALLBACK}: "
        "no untrusted registry is left to probe with"
    )


def compliant_limits(settings: Settings) -> dict[str, int]:
    """HostConfig limits for the compliant create (inside any ceiling)."""
    if not settings.on("require_resource_limits"):
        return {}
    out: dict[str, int] = {}
    required = settings.params["required_limits"]
    if "memory" in required:
        ceiling = settings.params["max_memory_bytes"]
        out["Memory"] = min(256 * 1024 * 1024, ceiling) if ceiling else 256 * 1024 * 1024
    if "cpu" in required:
        ceiling = settings.params["max_nano_cpus"]
        out["NanoCpus"] = min(500_000_000, ceiling) if ceiling else 500_000_000
    if "pids" in required:
        out["PidsLimit"] = 256
    return out


def compliant_body(settings: Settings) -> dict[str, Any]:
    """A container create that satisfies every enabled rule."""
    host: dict[str, Any] = dict(compliant_limits(settings))
    if settings.on("require_no_new_privileges"):
        host["SecurityOpt"] = ["no-new-privileges"]
    if settings.on("require_readonly_rootfs"):
        host["ReadonlyRootfs"] = True
    body: dict[str, Any] = {"Image": compliant_image(settings), "Cmd": ["true"]}
    if settings.on("deny_root_user"):
        body["User"] = COMPLIANT_USER
    body["HostConfig"] = host
    return body


_SERVICE_LIMITS = {"Memory": "MemoryBytes", "NanoCpus": "NanoCPUs", "PidsLimit": "Pids"}


def _compliant_service(settings: Settings, **container_spec: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"Image": compliant_image(settings)}
    if settings.on("deny_root_user"):
        spec["User"] = COMPLIANT_USER
    if settings.on("require_readonly_rootfs"):
        spec["ReadOnly"] = True
    if settings.on("require_no_new_privileges"):
        spec["Privileges"] = {"NoNewPrivileges": True}
    privileges = container_spec.pop("Privileges", None)
    if privileges is not None:
        spec["Privileges"] = {**spec.get("Privileges", {}), **privileges}
    spec.update(container_spec)
    task: dict[str, Any] = {"ContainerSpec": spec}
    limits = {_SERVICE_LIMITS[k]: v for k, v in compliant_limits(settings).items()}
    if limits:
        task["Resources"] = {"Limits": limits}
    # No replicas: even a swarm manager that authorized it would schedule nothing.
    return {
        "Name": "hardening-verify-probe",
        "TaskTemplate": task,
        "Mode": {"Replicated": {"Replicas": 0}},
    }


def _pick_capability(settings: Settings) -> str:
    allowed = {_strip(c.upper(), "CAP_", prefix=True) for c in settings.params["allowed_capabilities"]}
    for cap in ("SYS_ADMIN", "SYS_PTRACE", "SYS_MODULE", "NET_ADMIN", "SYS_RAWIO", "DAC_READ_SEARCH", "BPF"):
        if cap not in allowed:
            return cap
    return "ALL"


def _pick_env_name(settings: Settings) -> str | None:
    allowed = [p.upper() for p in settings.params["sensitive_env_allowed"]]
    for keyword in settings.params["sensitive_env_keywords"]:
        name = f"HARDENING_PROBE_{keyword.upper()}"
        if not any(fnmatch.fnmatchcase(name, pat) for pat in allowed):
            return name
    return None


def _pick_sensitive_path(settings: Settings) -> str | None:
    paths = [clean_path(p) for p in settings.params["sensitive_host_paths"] if p]
    if "/etc" in paths:
        return "/etc"
    dirs = [p for p in paths if p != "/" and not p.endswith(".sock")]
    if dirs:
        return dirs[0]
    return paths[0] if paths else None


def _port_outside(ranges: list[tuple[int, int]]) -> int | None:
    def allowed(port: int) -> bool:
        return any(lo <= port <= hi for lo, hi in ranges)

    for port in (80, 443, 22, 1, 2375):
        if not allowed(port):
            return port
    return next((p for p in range(1, 65536) if not allowed(p)), None)


def _allowed_ip(ips: list[str]) -> str:
    if not ips:
        return "127.0.0.1"
    first = ips[0]
    try:
        net = ipaddress.ip_network(first, strict=False)
    except ValueError:
        return first
    return str(net.network_address if net.num_addresses == 1 else next(net.hosts(), net.network_address))


def _disallowed_ip(ips: list[str]) -> str | None:
    if not ips:
        return None
    allowed = set(ips)
    everywhere = {"", "0.0.0.0", "::", "0.0.0.0/0", "::/0"}
    if not allowed & everywhere:
        return ""  # empty HostIp: every interface
    for candidate in ("192.0.2.1", "198.51.100.1"):
        addr = ipaddress.ip_address(candidate)
        inside = False
        for entry in ips:
            try:
                inside = inside or addr in ipaddress.ip_network(entry, strict=False)
            except ValueError:
                continue
        if not inside:
            return candidate
    return None


class _Table:
    """Collects the probes of one run; helpers build the compliant-plus-one-change bodies."""

    def __init__(self, settings: Settings, probe_bypasses: bool) -> None:
        self.settings = settings
        self.bypasses = probe_bypasses
        self.base = compliant_body(settings)
        self.probes: list[Probe] = []

    def add(self, probe: Probe) -> None:
        if probe.bypass and not self.bypasses:
            return
        if any(p.name == probe.name for p in self.probes):
            raise AssertionError(f"duplicate probe name {probe.name}")
        self.probes.append(probe)

    def body(
        self, host: dict[str, Any] | None = None, drop: tuple[str, ...] = (), **top: Any
    ) -> dict[str, Any]:
        """The compliant body, HostConfig keys in ``drop`` removed, then ``host``/``top`` merged."""
        body = json.loads(json.dumps(self.base))
        for key in drop:
            body["HostConfig"].pop(key, None)
        body["HostConfig"].update(host or {})
        for key, value in top.items():
            if value is None:
                body.pop(key, None)
            else:
                body[key] = value
        return body

    def security_opts(self, *extra: str) -> list[str]:
        return list(self.base["HostConfig"].get("SecurityOpt", [])) + list(extra)

    def create(
        self, name: str, rule: str, summary: str, body: dict[str, Any], bypass: str | None = None
    ) -> None:
        self.add(Probe(name, rule, DENY, "POST", "/containers/create", summary, body, bypass=bypass))

    def post(
        self,
        name: str,
        rule: str,
        path: str,
        summary: str,
        body: Any = None,
        *,
        query: str = "",
        content_type: str | None = "application/json",
        bypass: str | None = "other endpoints",
        method: str = "POST",
    ) -> None:
        if body is None and content_type == "application/json":
            content_type = None
        self.add(Probe(name, rule, DENY, method, path, summary, body, content_type, query, bypass=bypass))

    def key_case(self, name: str, rule: str, hostkey: str, value: Any) -> None:
        """The violating HostConfig key spelled in lower case (the daemon still honours it)."""
        body = self.body(drop=(hostkey,))
        body["HostConfig"][hostkey.lower()] = value
        self.create(name, rule, f"HostConfig.{hostkey.lower()}={json.dumps(value)}", body, "key case")


EXEC = f"/containers/{PROBE_CONTAINER}/exec"
UPDATE = f"/containers/{PROBE_CONTAINER}/update"


def _rule_privileged(t: _Table, r: str) -> None:
    t.create("privileged", r, "HostConfig.Privileged=true", t.body({"Privileged": True}))
    t.key_case("privileged-key-lower", r, "Privileged", True)
    upper = t.body()
    upper["HostConfig"]["PRIVILEGED"] = True
    t.create("privileged-key-upper", r, "HostConfig.PRIVILEGED=true", upper, "key case")
    lower = t.body()
    host = lower.pop("HostConfig")
    host["Privileged"] = True
    lower["hostconfig"] = {k.lower(): v for k, v in host.items()}
    t.create(
        "privileged-key-hostconfig", r, "hostconfig.privileged=true (every key lower case)", lower, "key case"
    )
    t.post("privileged-exec", r, EXEC, "exec Privileged=true", {"Cmd": ["true"], "Privileged": True})


def _rule_seccomp(t: _Table, r: str) -> None:
    t.create(
        "seccomp-unconfined",
        r,
        "SecurityOpt seccomp=unconfined",
        t.body({"SecurityOpt": t.security_opts("seccomp=unconfined")}),
    )
    t.create(
        "seccomp-unconfined-colon",
        r,
        "SecurityOpt seccomp:unconfined",
        t.body({"SecurityOpt": t.security_opts("seccomp:unconfined")}),
        "value spelling",
    )
    t.create(
        "seccomp-empty-profile",
        r,
        "SecurityOpt seccomp={} (a profile without a default action switches seccomp off)",
        t.body({"SecurityOpt": t.security_opts("seccomp={}")}),
        "value spelling",
    )
    t.key_case("seccomp-key-lower", r, "SecurityOpt", t.security_opts("seccomp=unconfined"))
    spec = _compliant_service(t.settings, Privileges={"Seccomp": {"Mode": "unconfined"}})
    t.post("seccomp-service", r, "/services/create", "service Privileges.Seccomp.Mode=unconfined", spec)


def _rule_no_new_privileges(t: _Table, r: str) -> None:
    others = [o for o in t.security_opts() if not o.startswith("no-new-privileges")]
    t.create(
        "no-new-privileges-missing",
        r,
        "SecurityOpt without no-new-privileges",
        t.body({"SecurityOpt": others} if others else None, drop=("SecurityOpt",)),
    )
    t.create(
        "no-new-privileges-false",
        r,
        "SecurityOpt no-new-privileges=false",
        t.body({"SecurityOpt": [*others, "no-new-privileges=false"]}),
        "value spelling",
    )
    t.create(
        "no-new-privileges-false-colon",
        r,
        "SecurityOpt no-new-privileges:false",
        t.body({"SecurityOpt": [*others, "no-new-privileges:false"]}),
        "value spelling",
    )
    spec = _compliant_service(t.settings)
    spec["TaskTemplate"]["ContainerSpec"]["Privileges"] = {"NoNewPrivileges": False}
    t.post(
        "no-new-privileges-service", r, "/services/create", "service Privileges.NoNewPrivileges=false", spec
    )
    # NoNewPrivileges true, sent to /v1.43: the daemon would clear it (below API 1.44).
    old_api = _compliant_service(t.settings, Privileges={"NoNewPrivileges": True})
    t.add(
        Probe(
            "no-new-privileges-service-old-api",
            r,
            DENY,
            "POST",
            "/services/create",
            "service NoNewPrivileges=true on /v1.43 (the daemon clears it below API 1.44)",
            old_api,
            target="/v1.43/services/create",
            bypass="other endpoints",
        )
    )


def _rule_limits(t: _Table, r: str) -> None:
    limits = compliant_limits(t.settings)
    for limit, key in (("memory", "Memory"), ("cpu", "NanoCpus"), ("pids", "PidsLimit")):
        if key in limits:
            t.create(f"limits-no-{limit}", r, f"HostConfig without {key}", t.body(drop=(key,)))
    if "Memory" in limits:
        t.post(
            "limits-update-memory",
            r,
            UPDATE,
            "update Memory=-1 MemorySwap=-1",
            {"Memory": -1, "MemorySwap": -1},
        )
    if "PidsLimit" in limits:
        t.post("limits-update-pids", r, UPDATE, "update PidsLimit=-1", {"PidsLimit": -1})
        t.post(
            "limits-update-pids-zero",
            r,
            UPDATE,
            "update PidsLimit=0",
            {"PidsLimit": 0},
            bypass="value spelling",
        )
    max_memory = t.settings.params["max_memory_bytes"]
    if "Memory" in limits and max_memory:
        t.create(
            "limits-memory-over-ceiling",
            r,
            f"HostConfig.Memory={max_memory + 1} (ceiling {max_memory})",
            t.body({"Memory": max_memory + 1}),
        )
    max_cpus = t.settings.params["max_nano_cpus"]
    if "NanoCpus" in limits and max_cpus:
        t.create(
            "limits-cpu-over-ceiling",
            r,
            f"HostConfig.NanoCpus={max_cpus + 1} (ceiling {max_cpus})",
            t.body({"NanoCpus": max_cpus + 1}),
        )
    if limits:
        spec = _compliant_service(t.settings)
        spec["TaskTemplate"].pop("Resources", None)
        t.post("limits-service", r, "/services/create", "service without Resources.Limits", spec)
    if "Memory" in limits:
        t.create("limits-memory-swap-unlimited", r, "HostConfig.MemorySwap=-1", t.body({"MemorySwap": -1}))
    t.create("limits-oom-score-adj", r, "HostConfig.OomScoreAdj=-1000", t.body({"OomScoreAdj": -1000}))
    t.create("limits-cgroup-parent", r, "HostConfig.CgroupParent=/ (CIS 5.25)", t.body({"CgroupParent": "/"}))


def _rule_ports(t: _Table, r: str) -> None:
    params = t.settings.params
    ip = _allowed_ip(params["allowed_host_ips"])
    port = _port_outside(params["allowed_host_port_ranges"])
    if port is not None:
        t.create(
            "ports-outside-range",
            r,
            f"PortBindings {ip}:{port}",
            t.body({"PortBindings": {"80/tcp": [{"HostIp": ip, "HostPort": str(port)}]}}),
        )
    bad_ip = _disallowed_ip(params["allowed_host_ips"])
    if bad_ip is not None:
        lo = params["allowed_host_port_ranges"][0][0] if params["allowed_host_port_ranges"] else 8080
        t.create(
            "ports-host-ip",
            r,
            f"PortBindings {bad_ip or '(all interfaces)'}:{lo}",
            t.body({"PortBindings": {"80/tcp": [{"HostIp": bad_ip, "HostPort": str(lo)}]}}),
        )
    t.create("ports-publish-all", r, "HostConfig.PublishAllPorts=true", t.body({"PublishAllPorts": True}))


def _rule_root_user(t: _Table, r: str) -> None:
    t.create("root-user-default", r, "no User (the image default, usually root)", t.body(User=None))
    t.create("root-user-root", r, "User=root", t.body(User="root"))
    for spelling in ("0", "0:0", "root:root"):
        t.create(
            f"root-user-{spelling.replace(':', '-')}",
            r,
            f"User={spelling}",
            t.body(User=spelling),
            "value spelling",
        )
    lower = t.body(User=None)
    lower["user"] = "root"
    t.create("root-user-key-lower", r, "user=root", lower, "key case")
    t.post("root-user-exec", r, EXEC, "exec User=root", {"Cmd": ["true"], "User": "root"})
    t.post("root-user-exec-0", r, EXEC, "exec User=0", {"Cmd": ["true"], "User": "0"})
    root_service = _compliant_service(t.settings, User="0")
    t.post("root-user-service", r, "/services/create", "service User=0", root_service)


def _rule_env(t: _Table, r: str) -> None:
    name = _pick_env_name(t.settings)
    if name is None:
        return
    env = [f"{name}=probe"]
    t.create("sensitive-env", r, f"Env {name}", t.body(Env=env))
    t.create(
        "sensitive-env-lower",
        r,
        f"Env {name.lower()}",
        t.body(Env=[f"{name.lower()}=probe"]),
        "value spelling",
    )
    t.post("sensitive-env-exec", r, EXEC, f"exec Env {name}", {"Cmd": ["true"], "Env": env})
    t.post(
        "sensitive-env-service",
        r,
        "/services/create",
        f"service Env {name}",
        _compliant_service(t.settings, Env=env),
    )


def _rule_namespaces(t: _Table, r: str) -> None:
    for key in ("NetworkMode", "PidMode", "IpcMode", "UTSMode", "UsernsMode", "CgroupnsMode"):
        t.create(f"host-{_strip(key.lower(), 'mode')}", r, f"HostConfig.{key}=host", t.body({key: "host"}))
    t.key_case("host-network-key-lower", r, "NetworkMode", "host")
    t.post(
        "host-network-build",
        r,
        "/build",
        "build networkmode=host",
        b"",
        query="networkmode=host",
        content_type="application/x-tar",
    )
    spec = _compliant_service(t.settings)
    spec["TaskTemplate"]["Networks"] = [{"Target": "host"}]
    t.post("host-network-service", r, "/services/create", "service network host", spec)


def _rule_capabilities(t: _Table, r: str) -> None:
    cap = _pick_capability(t.settings)
    t.create("cap-add", r, f"CapAdd {cap}", t.body({"CapAdd": [cap]}))
    if cap != "ALL":
        t.create(
            "cap-add-prefixed", r, f"CapAdd CAP_{cap}", t.body({"CapAdd": [f"CAP_{cap}"]}), "value spelling"
        )
        t.create(
            "cap-add-lower", r, f"CapAdd {cap.lower()}", t.body({"CapAdd": [cap.lower()]}), "value spelling"
        )
        t.create("cap-add-all", r, "CapAdd ALL", t.body({"CapAdd": ["ALL"]}))
    t.key_case("cap-add-key-lower", r, "CapAdd", [cap])
    t.post(
        "cap-add-service",
        r,
        "/services/create",
        f"service CapabilityAdd CAP_{cap}",
        _compliant_service(t.settings, CapabilityAdd=[f"CAP_{cap}" if cap != "ALL" else "ALL"]),
    )


def _rule_apparmor(t: _Table, r: str) -> None:
    t.create(
        "apparmor-unconfined",
        r,
        "SecurityOpt apparmor=unconfined",
        t.body({"SecurityOpt": t.security_opts("apparmor=unconfined")}),
    )
    t.create(
        "apparmor-unconfined-colon",
        r,
        "SecurityOpt apparmor:unconfined",
        t.body({"SecurityOpt": t.security_opts("apparmor:unconfined")}),
        "value spelling",
    )
    t.post(
        "apparmor-service",
        r,
        "/services/create",
        "service Privileges.AppArmor.Mode=disabled",
        _compliant_service(t.settings, Privileges={"AppArmor": {"Mode": "disabled"}}),
    )


def _rule_selinux(t: _Table, r: str) -> None:
    t.create(
        "selinux-disable",
        r,
        "SecurityOpt label=disable",
        t.body({"SecurityOpt": t.security_opts("label=disable")}),
    )
    t.create(
        "selinux-disable-colon",
        r,
        "SecurityOpt label:disable",
        t.body({"SecurityOpt": t.security_opts("label:disable")}),
        "value spelling",
    )
    t.post(
        "selinux-service",
        r,
        "/services/create",
        "service Privileges.SELinuxContext.Disable=true",
        _compliant_service(t.settings, Privileges={"SELinuxContext": {"Disable": True}}),
    )


def _rule_unmasked(t: _Table, r: str) -> None:
    t.create(
        "unmasked-paths",
        r,
        "systempaths=unconfined (empty MaskedPaths and ReadonlyPaths)",
        t.body({"MaskedPaths": [], "ReadonlyPaths": []}),
    )
    t.create(
        "writable-cgroups",
        r,
        "--security-opt writable-cgroups (a writable /sys/fs/cgroup, Docker 28)",
        t.body({"SecurityOpt": t.security_opts("writable-cgroups")}),
    )


def _rule_mounts(t: _Table, r: str) -> None:
    # The local driver mounts type=proc in the host's namespaces: the host's /proc. Creating the
    # volume mounts nothing yet (an authorized one is removed at once).
    t.post(
        "mount-volume-proc",
        r,
        "/volumes/create",
        "volume local type=proc device=proc (the host's /proc when used)",
        {
            "Name": f"hardening-verify-probe-{secrets.token_hex(4)}",
            "Driver": "local",
            "DriverOpts": {"type": "proc", "device": "proc"},
        },
    )
    allowed = [clean_path(p) for p in t.settings.params["allowed_bind_sources"] if p]
    outside = "/srv/hardening-verify-probe-outside"
    if allowed and not any((outside + "/").startswith(a.rstrip("/") + "/") for a in allowed):
        t.create(
            "mount-bind-outside-allowed",
            r,
            f"Binds {outside} (not under docker_authz_allowed_bind_sources)",
            t.body({"Binds": [f"{outside}:/probe"]}),
        )
    # Shared propagation (CIS 5.20) on a path that is not sensitive: only the mode is wrong.
    plain = "/srv/hardening-verify-probe"
    t.create("mount-propagation-shared", r, f"Binds {plain}:/probe:rshared",
             t.body({"Binds": [f"{plain}:/probe:rshared"]}))
    t.create(
        "mount-propagation-mounts",
        r,
        f"Mounts bind {plain} BindOptions.Propagation=shared",
        t.body({"Mounts": [{"Type": "bind", "Source": plain, "Target": "/probe",
                            "BindOptions": {"Propagation": "shared"}}]}),
    )
    path = _pick_sensitive_path(t.settings)
    if path is None:
        return
    t.create("mount-bind", r, f"Binds {path}:/probe", t.body({"Binds": [f"{path}:/probe"]}))
    t.create(
        "mount-type-bind",
        r,
        f"Mounts bind {path}",
        t.body({"Mounts": [{"Type": "bind", "Source": path, "Target": "/probe"}]}),
    )
    # --mount type=volume,volume-opt=type=none,volume-opt=o=bind,volume-opt=device=PATH: the
    # local driver creates a named volume that is the host path.
    volume_opts = {"DriverConfig": {"Options": {"type": "none", "o": "bind", "device": path}}}
    t.create(
        "mount-volume-opts",
        r,
        f"Mounts volume with local driver options o=bind device={path}",
        t.body(
            {
                "Mounts": [
                    {
                        "Type": "volume",
                        "Source": f"hardening-verify-probe-{secrets.token_hex(4)}",
                        "Target": "/probe",
                        "VolumeOptions": volume_opts,
                    }
                ]
            }
        ),
    )
    spellings = (
        [f"/{path}/"]
        if path == "/"
        else [f"{path}/", f"/{path}", f"{path}/.", f"{path}/../{posixpath.basename(path)}"]
    )
    if path != "/":
        spellings.append(f"{path}/hardening-probe")
    for i, spelling in enumerate(spellings):
        t.create(
            f"mount-bind-spelling-{i + 1}",
            r,
            f"Binds {spelling}:/probe",
            t.body({"Binds": [f"{spelling}:/probe"]}),
            "host path spelling",
        )
    sensitive = {clean_path(p) for p in t.settings.params["sensitive_host_paths"] if p}
    if "/var/run/docker.sock" in sensitive:
        sock = "/var/run/../run/docker.sock"
        t.create(
            "mount-docker-sock-spelling",
            r,
            f"Binds {sock}",
            t.body({"Binds": [f"{sock}:/var/run/docker.sock"]}),
            "host path spelling",
        )
        t.create(
            "mount-docker-sock-type-bind",
            r,
            f"Mounts bind {sock}",
            t.body({"Mounts": [{"Type": "bind", "Source": sock, "Target": "/var/run/docker.sock"}]}),
            "host path spelling",
        )
    t.key_case("mount-bind-key-lower", r, "Binds", [f"{path}:/probe"])
    if "/run/dbus" in sensitive:
        # systemd's D-Bus API starts units for a uid 0 client: a way out for the container's root
        bus = "/run/dbus/system_bus_socket"
        t.create("mount-bind-dbus", r, f"Binds {bus}", t.body({"Binds": [f"{bus}:{bus}"]}))
    t.post(
        "mount-volume-bind",
        r,
        "/volumes/create",
        f"volume local type=none o=bind device={path}",
        {
            "Name": f"hardening-verify-probe-{secrets.token_hex(4)}",
            "Driver": "local",
            "DriverOpts": {"type": "none", "o": "bind", "device": path},
        },
    )
    t.post(
        "mount-service-bind",
        r,
        "/services/create",
        f"service Mounts bind {path}",
        _compliant_service(t.settings, Mounts=[{"Type": "bind", "Source": path, "Target": "/probe"}]),
    )


def _rule_devices(t: _Table, r: str) -> None:
    t.create(
        "devices",
        r,
        "Devices /dev/mem",
        t.body(
            {
                "Devices": [
                    {"PathOnHost": "/dev/mem", "PathInContainer": "/dev/mem", "CgroupPermissions": "rwm"}
                ]
            }
        ),
    )
    t.create(
        "device-cgroup-rules", r, "DeviceCgroupRules c 1:1 rwm", t.body({"DeviceCgroupRules": ["c 1:1 rwm"]})
    )
    t.key_case("devices-key-lower", r, "DeviceCgroupRules", ["c 1:1 rwm"])
    t.create(
        "device-requests-cdi",
        r,
        "DeviceRequests CDI vendor.com/gpu=all (--device vendor.com/gpu=all, --gpus)",
        t.body({"DeviceRequests": [{"Driver": "cdi", "DeviceIDs": ["vendor.com/gpu=all"]}]}),
    )


def _rule_plugins(t: _Table, r: str) -> None:
    # A plugin of that name does not exist: even an authorized request changes nothing.
    base = f"/plugins/{PROBE_PLUGIN}"
    ref = f"{UNTRUSTED_REGISTRY}/hardening-verify/nonexistent:probe"
    t.post("plugin-disable", r, f"{base}/disable", "disable a plugin", bypass=None)
    t.post("plugin-enable", r, f"{base}/enable", "enable a plugin", query="timeout=0")
    t.post("plugin-remove", r, base, "remove a plugin", method="DELETE")
    t.post("plugin-set", r, f"{base}/set", "set a plugin's args", content_type=None)
    t.post("plugin-pull", r, "/plugins/pull", "install a plugin", query=f"remote={ref}&name={PROBE_PLUGIN}")
    t.post("plugin-upgrade", r, f"{base}/upgrade", "upgrade a plugin", query=f"remote={ref}")


def _rule_swarm(t: _Table, r: str) -> None:
    # Each is refused by the daemon even when authorized, and changes nothing: a join without
    # managers or token, a swarm update at version 0 (out of sequence), a node that does not
    # exist. No swarm init or leave: those could not be made harmless.
    t.post(
        "swarm-join",
        r,
        "/swarm/join",
        "join a swarm (no managers given: nothing is contacted)",
        {"ListenAddr": "127.0.0.1:2377", "RemoteAddrs": [], "JoinToken": ""},
        bypass=None,
    )
    t.post("swarm-update", r, "/swarm/update", "reconfigure the swarm", {}, query="version=0")
    t.post(
        "node-update", r, f"/nodes/{PROBE_CONTAINER}/update", "change a node's role", {"Role": "manager"},
        query="version=0",
    )


def _rule_runtimes(t: _Table, r: str) -> None:
    # A shim name nobody installs: an authorized create fails on the image or the runtime.
    runtime = "io.containerd.hardening-verify.v1"
    if runtime not in t.settings.params["allowed_runtimes"]:
        t.create("runtime-not-allowed", r, f"HostConfig.Runtime={runtime}", t.body({"Runtime": runtime}))
    t.create(
        "runtime-annotation-systemd",
        r,
        "HostConfig.Annotations org.systemd.property.* (runc: a property of the container's unit)",
        t.body({"Annotations": {"org.systemd.property.TimeoutStopUSec": "uint64 1000000"}}),
    )


def _rule_log_drivers(t: _Table, r: str) -> None:
    allowed = t.settings.params["allowed_log_drivers"]
    driver = next((d for d in ("gelf", "syslog", "fluentd", "splunk", "awslogs") if d not in allowed), None)
    if driver is None:
        return
    # The address is a closed port on the loopback interface: nothing would be sent anywhere.
    options = {"gelf-address": "udp://127.0.0.1:1"} if driver == "gelf" else {}
    t.create(
        "log-driver-not-allowed",
        r,
        f"HostConfig.LogConfig.Type={driver}",
        t.body({"LogConfig": {"Type": driver, "Config": options}}),
    )
    spec = _compliant_service(t.settings)
    spec["TaskTemplate"]["LogDriver"] = {"Name": driver, "Options": options}
    t.post("log-driver-service", r, "/services/create", f"service LogDriver {driver}", spec)


def _rule_remote_fetch(t: _Table, r: str) -> None:
    # A closed port on the loopback interface: an authorized request downloads nothing.
    repo = PROBE_IMAGE.split(":", 1)[0]
    t.post(
        "remote-fetch-import",
        r,
        "/images/create",
        "import fromSrc=http://127.0.0.1:1/ (the daemon downloads it)",
        query=f"fromSrc=http%3A%2F%2F{UNTRUSTED_REGISTRY}%2Fprobe.tar&repo={repo}&tag=probe",
        bypass=None,
    )
    t.post(
        "remote-fetch-import-no-scheme",
        r,
        "/images/create",
        "import fromSrc=127.0.0.1:1/probe.tar (read as http://)",
        query=f"fromSrc={UNTRUSTED_REGISTRY}%2Fprobe.tar&repo={repo}&tag=probe",
        bypass="value spelling",
    )
    t.post(
        "remote-fetch-build",
        r,
        "/build",
        "build remote=http://127.0.0.1:1/ (the daemon downloads the context)",
        b"",
        query=f"remote=http%3A%2F%2F{UNTRUSTED_REGISTRY}%2FDockerfile&t={repo}%3Aprobe",
        content_type="application/x-tar",
    )


def _rule_readonly(t: _Table, r: str) -> None:
    t.create(
        "readonly-rootfs-missing", r, "HostConfig without ReadonlyRootfs", t.body(drop=("ReadonlyRootfs",))
    )
    t.create("readonly-rootfs-false", r, "HostConfig.ReadonlyRootfs=false", t.body({"ReadonlyRootfs": False}))
    spec = _compliant_service(t.settings)
    spec["TaskTemplate"]["ContainerSpec"].pop("ReadOnly", None)
    t.post("readonly-rootfs-service", r, "/services/create", "service without ReadOnly", spec)


def _rule_registries(t: _Table, r: str) -> None:
    image = untrusted_image(t.settings)
    t.create("untrusted-image", r, f"Image {image}", t.body(Image=image))
    t.post(
        "untrusted-image-service",
        r,
        "/services/create",
        f"service Image {image}",
        _compliant_service(t.settings, Image=image),
    )
    if image.startswith(UNTRUSTED_REGISTRY + "/"):
        name, _, tag = image.rpartition(":")
        t.post(
            "untrusted-image-pull",
            r,
            "/images/create",
            f"pull {image}",
            query=f"fromImage={name}&tag={tag}",
            bypass=None,
        )


RULE_PROBES: dict[str, Callable[[_Table, str], None]] = {
    "deny_privileged": _rule_privileged,
    "deny_seccomp_unconfined": _rule_seccomp,
    "require_no_new_privileges": _rule_no_new_privileges,
    "require_resource_limits": _rule_limits,
    "restrict_ports": _rule_ports,
    "deny_root_user": _rule_root_user,
    "deny_sensitive_env": _rule_env,
    "deny_host_namespaces": _rule_namespaces,
    "deny_added_capabilities": _rule_capabilities,
    "deny_apparmor_unconfined": _rule_apparmor,
    "deny_selinux_disabled": _rule_selinux,
    "deny_unmasked_paths": _rule_unmasked,
    "deny_sensitive_mounts": _rule_mounts,
    "deny_devices": _rule_devices,
    "deny_plugin_changes": _rule_plugins,
    "deny_swarm_changes": _rule_swarm,
    "restrict_runtimes": _rule_runtimes,
    "restrict_log_drivers": _rule_log_drivers,
    "deny_remote_fetch": _rule_remote_fetch,
    "require_readonly_rootfs": _rule_readonly,
    "trusted_registries": _rule_registries,
}


def _audit(t: _Table) -> None:
    """Rules in audit deny nothing: their plain container-create probes must be ALLOWED (the
    verification removes the container; the decision log holds the would-be denial). Their
    other probes are left out: allowed, they would act on the host (a swarm init, a plugin
    install), and a bypass probe may be denied by an always-on check instead."""
    kept = []
    for probe in t.probes:
        if probe.rule == ALWAYS_ON or not t.settings.audited(probe.rule):
            kept.append(probe)
        elif probe.expect == DENY and probe.path == "/containers/create" and probe.bypass is None:
            probe.expect = ALLOW
            probe.summary += " (rule in audit: allowed, logged as a would-be denial)"
            kept.append(probe)
    t.probes[:] = kept


def build_probes(settings: Settings, probe_bypasses: bool = True) -> list[Probe]:
    """The table of probes for these rules: the compliant ones first, then the denials."""
    t = _Table(settings, probe_bypasses)
    t.add(
        Probe(
            "compliant-create",
            ALWAYS_ON,
            ALLOW,
            "POST",
            "/containers/create",
            "a create that satisfies every enabled rule",
            t.base,
        )
    )
    t.add(
        Probe(
            "compliant-list",
            ALWAYS_ON,
            ALLOW,
            "GET",
            "/containers/json",
            "list containers (docker ps)",
            content_type=None,
        )
    )
    for rule in settings.enabled:
        RULE_PROBES[rule](t, rule)
    # Always-on parts of the policy: the body must be visible and the path matched decoded.
    t.add(
        Probe(
            "body-invisible-charset",
            ALWAYS_ON,
            DENY,
            "POST",
            "/containers/create",
            "compliant create sent as application/json; charset=utf-8 (plugin sees Body null)",
            t.base,
            "application/json; charset=utf-8",
            bypass="invisible body",
        )
    )
    t.add(
        Probe(
            "body-invisible-case",
            ALWAYS_ON,
            DENY,
            "POST",
            "/containers/create",
            "compliant create sent as Application/JSON (plugin sees Body null)",
            t.base,
            "Application/JSON",
            bypass="invisible body",
        )
    )
    _audit(t)
    violating = next(
        (
            p
            for p in t.probes
            if p.expect == DENY and p.path == "/containers/create" and p.bypass is None
            and p.rule != ALWAYS_ON
        ),
        None,
    )
    if violating is not None:
        body = violating.body
        what = violating.summary
        t.add(
            Probe(
                "path-unversioned",
                violating.rule,
                DENY,
                "POST",
                "/containers/create",
                f"POST /containers/create without /vX.Y: {what}",
                body,
                target="/containers/create",
                bypass="path spelling",
            )
        )
        t.add(
            Probe(
                "path-percent-encoded",
                violating.rule,
                DENY,
                "POST",
                "/containers/create",
                f"POST /vX.Y/containers%2Fcreate: {what}",
                body,
                target="{v}/containers%2Fcreate",
                bypass="path spelling",
            )
        )
        t.add(
            Probe(
                "path-query-string",
                violating.rule,
                DENY,
                "POST",
                "/containers/create",
                f"POST /vX.Y/containers/create?name=...: {what}",
                body,
                query="name=hardening-verify-probe",
                bypass="path spelling",
            )
        )
        # Engine bugs: an engine without the CVE fixes hands the plugin no body for these, a
        # fixed one hands it the violating body. Denied either way, or the policy lets an
        # invisible body through.
        t.add(
            Probe(
                "body-chunked",
                violating.rule,
                DENY,
                "POST",
                "/containers/create",
                f"chunked body, no Content-Length (CVE-2024-41110): {what}",
                body,
                chunked=True,
                bypass="engine bugs",
            )
        )
        if isinstance(body, dict):
            padded = dict(body)
            pad = {"hardening.verify.padding": "x" * BODY_PROBE_PADDING}
            padded["Labels"] = {**(body.get("Labels") or {}), **pad}
            t.add(
                Probe(
                    "body-over-1mib",
                    violating.rule,
                    DENY,
                    "POST",
                    "/containers/create",
                    f"body over 4 MiB (CVE-2026-34040): {what}",
                    padded,
                    bypass="engine bugs",
                )
            )
    return t.probes


DEPTH_FULL = "full"
DEPTH_QUICK = "quick"
DEPTHS = (DEPTH_FULL, DEPTH_QUICK)


def select_probes(probes: list[Probe], depth: str = DEPTH_FULL) -> list[Probe]:
    """The probes to send at ``depth``. ``full``: the whole table. ``quick``: the compliant
    create (must be allowed) and one plain create the policy must deny - ``privileged`` when
    that rule denies, else the first rule's plain create probe - chosen from the full table,
    so audit mode's expectations hold for them too."""
    if depth == DEPTH_FULL:
        return probes
    if depth != DEPTH_QUICK:
        raise VerifyInputError(f"depth must be one of {', '.join(DEPTHS)}, got {depth!r}")
    compliant = [p for p in probes if p.name == "compliant-create"]
    plain_denials = [
        p
        for p in probes
        if p.expect == DENY and p.path == "/containers/create" and p.bypass is None and p.rule != ALWAYS_ON
    ]
    privileged = [p for p in plain_denials if p.name == "privileged"]
    denial = next(iter(privileged or plain_denials), None)
    return compliant + ([denial] if denial is not None else [])


def state_problems(
    plugin: dict[str, Any],
    *,
    alias: str,
    policy_sha256: str | None = None,
    args: str | None = None,
    daemon_json_path: str | None = None,
) -> tuple[list[str], dict[str, Any]]:
    """Compare what the host runs with what the role would write: the policy file's sha256, the
    plugin's opa-args (enabled), and ``alias`` in daemon.json's authorization-plugins. Only the
    expectations given are checked; returns (problems, what was found)."""
    found: dict[str, Any] = {}
    problems: list[str] = []
    if policy_sha256 is not None:
        path = plugin.get("policy_file")
        digest = None
        if path:
            try:
                with open(path, "rb") as handle:
                    digest = hashlib.sha256(handle.read()).hexdigest()
            except OSError:
                digest = None
        found["policy_sha256"] = digest
        if digest != policy_sha256.lower():
            problems.append(
                f"the policy {path or '(no path)'} is not the one the role writes "
                f"(sha256 {digest or 'missing'}, expected {policy_sha256.lower()})"
            )
    if args is not None:
        found["args"] = plugin.get("args")
        if not plugin.get("installed") or not plugin.get("enabled"):
            problems.append(f"plugin {alias} is not installed and enabled")
        elif str(plugin.get("args") or "") != " ".join(args.split()):
            # exact on the plugin's side: a double or leading space there is an empty word
            problems.append(f"plugin {alias} runs with opa-args '{plugin.get('args')}', expected '{args}'")
    if daemon_json_path is not None:
        names: list[str] = []
        try:
            with open(daemon_json_path, encoding="utf-8") as handle:
                doc = json.load(handle)
            if isinstance(doc, dict):
                names = [str(n) for n in (doc.get("authorization-plugins") or [])]
        except (OSError, ValueError):
            names = []
        hooked = any(_same_plugin(n, alias) for n in names)
        found["hooked"] = hooked
        if not hooked:
            problems.append(f"{daemon_json_path} does not name {alias} in authorization-plugins")
    return problems, found


# --------------------------------------------------------------------------------------------
# classification
# --------------------------------------------------------------------------------------------
OUTCOME_DENIED = "denied"
OUTCOME_AUTHORIZED = "authorized"
OUTCOME_PLUGIN_ERROR = "plugin-error"
OUTCOME_ERROR = "error"
# The engine itself refused the request before any plugin saw it (a body over the plugin limit).
OUTCOME_ENGINE_REFUSED = "engine-refused"


@dataclass
class Outcome:
    outcome: str
    plugin: str | None
    message: str


def _same_plugin(a: str | None, b: str) -> bool:
    def norm(name: str) -> str:
        return _strip(name.strip(), ":latest")

    return a is not None and norm(a) == norm(b)


def classify(status: int | None, message: str) -> Outcome:
    """Tell a plugin's denial from a plugin error from an authorized request."""
    message = (message or "").strip()
    if status is None:
        return Outcome(OUTCOME_ERROR, None, message)
    m = _DENY_RE.search(message)
    if status == 403 and m:
        return Outcome(OUTCOME_DENIED, m.group(1), m.group(2))
    m = _ERROR_RE.search(message)
    if m and status >= 400:
        return Outcome(OUTCOME_PLUGIN_ERROR, m.group(1), m.group(2))
    if status >= 400 and _BODY_TOO_LARGE_RE.search(message):
        return Outcome(OUTCOME_ENGINE_REFUSED, None, message)
    return Outcome(OUTCOME_AUTHORIZED, None, message)


# --------------------------------------------------------------------------------------------
# engine version
# --------------------------------------------------------------------------------------------
def parse_engine_version(version: str) -> tuple[int, int, int] | None:
    """``20.10.24+dfsg1`` -> (20, 10, 24); ``17.03.2-ce`` -> (17, 3, 2); None when unreadable."""
    m = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", (version or "").strip())
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


_PRERELEASE_RE = re.compile(r"^v?\d+\.\d+(?:\.\d+)?-(?:rc|beta|alpha|tp|dev)", re.I)


def is_prerelease(version: str) -> bool:
    """``29.3.1-rc.1`` comes before ``29.3.1`` (``20.10.24+dfsg1`` and ``17.03.2-ce`` are releases)."""
    return bool(_PRERELEASE_RE.match((version or "").strip()))


def _at_or_after(version: tuple[int, int, int], fix: tuple[int, int, int], prerelease: bool) -> bool:
    return version > fix or (version == fix and not prerelease)


def _branch_fix(
    version: tuple[int, int, int], fixed: tuple[tuple[int, int, int], ...]
) -> tuple[int, int, int] | None:
    """The fix released on the version's own branch (major.minor), if that branch got one."""
    return next((fix for fix in fixed if fix[:2] == version[:2]), None)


def is_vulnerable(
    version: tuple[int, int, int], fixed: tuple[tuple[int, int, int], ...], prerelease: bool = False
) -> bool:
    """Vulnerable unless the release branch (major.minor) got a fix at or below this release,
    or the version is at or above the newest fix (later branches were released fixed). A
    pre-release of a fixed version is not that version yet."""
    if _at_or_after(version, max(fixed), prerelease):
        return False
    fix = _branch_fix(version, fixed)
    return fix is None or not _at_or_after(version, fix, prerelease)


def upgrade_target(version: tuple[int, int, int], fixed: tuple[tuple[int, int, int], ...]) -> str:
    """The release to upgrade to: the fix of the version's own branch, else the newest fix."""
    return ".".join(map(str, _branch_fix(version, fixed) or max(fixed)))


def cve_findings(version: str, seen_fixed: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """One finding per CVE, judged by the version; ``seen_fixed`` (CVE id -> what the engine did)
    marks a CVE whose fix the engine was seen to have, whatever its version says (a backport)."""
    parsed = parse_engine_version(version)
    out = []
    for cve, (what, fixed) in CVES.items():
        fixed_in = ", ".join(".".join(map(str, f)) for f in fixed)
        if seen_fixed and cve in seen_fixed:
            out.append(
                {
                    "id": cve,
                    "vulnerable": False,
                    "fixed_in": fixed_in,
                    "message": f"Docker Engine {version} has the fix for {cve}: {seen_fixed[cve]}",
                }
            )
            continue
        if parsed is None:
            out.append(
                {
                    "id": cve,
                    "vulnerable": None,
                    "fixed_in": fixed_in,
                    "message": f"engine version {version!r} could not be read: check {cve} by hand "
                    f"(fixed in {fixed_in})",
                }
            )
            continue
        vulnerable = is_vulnerable(parsed, fixed, is_prerelease(version))
        out.append(
            {
                "id": cve,
                "vulnerable": vulnerable,
                "fixed_in": fixed_in,
                "message": (
                    f"Docker Engine {version} is older than the fix for {cve} (fixed in {fixed_in}): "
                    f"{what}. No policy can stop this: upgrade the engine to "
                    f"{upgrade_target(parsed, fixed)} or later (a distribution package may carry a "
                    "backported fix: check its changelog)"
                )
                if vulnerable
                else f"Docker Engine {version} has the fix for {cve}",
            }
        )
    return out


# --------------------------------------------------------------------------------------------
# running the probes
# --------------------------------------------------------------------------------------------
@dataclass
class ProbeResult:
    name: str
    rule: str
    bypass: str | None
    request: str
    summary: str
    expected: str
    status: int | None
    outcome: str
    plugin: str | None
    message: str
    passed: bool
    cleanup: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _cleanup(client: DockerClient, probe: Probe, status: int, body: bytes) -> str | None:
    """Remove whatever an authorized probe created; returns what was done (or why not)."""
    if status not in (200, 201):
        return None
    try:
        doc = json.loads(body.decode("utf-8")) if body else {}
    except ValueError:
        doc = {}
    if not isinstance(doc, dict):
        return None
    try:
        if probe.path == "/containers/create" and doc.get("Id"):
            client.call("DELETE", f"/containers/{doc['Id']}", query={"force": True, "v": True})
            return f"removed container {doc['Id'][:12]}"
        if probe.path == "/volumes/create" and doc.get("Name"):
            client.call("DELETE", f"/volumes/{doc['Name']}", query={"force": True})
            return f"removed volume {doc['Name']}"
        if probe.path == "/services/create" and doc.get("ID"):
            client.call("DELETE", f"/services/{doc['ID']}")
            return f"removed service {doc['ID'][:12]}"
    except DockerError as exc:
        return f"FAILED to remove what the probe created: {exc}"
    return None


def run_probe(
    client: DockerClient, probe: Probe, alias: str, timeout: float, accept_other_plugins: bool = False
) -> ProbeResult:
    """Send one probe. A deny probe passes when ``alias`` denied it: a denial by another plugin
    earlier in the chain means ``alias``'s policy never saw the request, which proves nothing
    about it (``accept_other_plugins`` counts such a denial as a pass)."""
    target = probe.request_target(client.api_version)
    headers = {"Content-Type": probe.content_type} if probe.content_type else {}
    status: int | None = None
    cleanup = None
    try:
        resp = client.raw_request(
            probe.method,
            target,
            body=probe.body_bytes(),
            headers=headers,
            timeout=timeout,
            versioned=False,
            chunked=probe.chunked,
        )
        status = resp.status
        text = resp.message if resp.body else resp.reason
        cleanup = _cleanup(client, probe, resp.status, resp.body)
    except DockerUnavailable as exc:
        text = str(exc)
    outcome = classify(status, text)
    by_other = outcome.outcome == OUTCOME_DENIED and not _same_plugin(outcome.plugin, alias)
    if probe.expect == DENY:
        passed = outcome.outcome == OUTCOME_DENIED and (accept_other_plugins or not by_other)
        # a request the engine refuses before any plugin has no effect either
        passed = passed or outcome.outcome == OUTCOME_ENGINE_REFUSED
    else:
        passed = outcome.outcome == OUTCOME_AUTHORIZED
    message = outcome.message
    if by_other:
        message = f"denied by plugin {outcome.plugin}, before {alias} was asked: {message}"
    return ProbeResult(
        name=probe.name,
        rule=probe.rule,
        bypass=probe.bypass,
        request=f"{probe.method} {target}"
        + (f" [{probe.content_type}]" if probe.content_type not in (None, "application/json") else "")
        + (" [chunked]" if probe.chunked else ""),
        summary=probe.summary,
        expected=probe.expect,
        status=status,
        outcome=outcome.outcome,
        plugin=outcome.plugin,
        message=message[:300],
        passed=passed,
        cleanup=cleanup,
    )


def plugin_facts(client: DockerClient, alias: str, policy_path: str | None) -> dict[str, Any]:
    """What the engine says about the plugin, and where its policy file is on this host."""
    facts: dict[str, Any] = {
        "name": alias,
        "installed": None,
        "enabled": None,
        "args": None,
        "policy_file": policy_path,
        "policy_file_exists": None,
        "error": None,
    }
    try:
        plugins = client.get("/plugins") or []
    except DockerError as exc:
        facts["error"] = f"GET /plugins failed: {exc}"
        plugins = None
    if plugins is not None:
        found = next((p for p in plugins if _same_plugin(str(p.get("Name", "")), alias)), None)
        facts["installed"] = found is not None
        if found is not None:
            facts["enabled"] = bool(found.get("Enabled"))
            facts["reference"] = found.get("PluginReference")
            settings = found.get("Settings") or {}
            # Settings.Args holds the values of the plugin's one args entry (opa-args); an empty
            # word in it shows as a double or leading space here (the plugin stops at it).
            words = engine_args(settings.get("Args"))
            facts["args"] = " ".join(words)
            if policy_path is None:
                facts["policy_file"] = host_policy_path(found, words)
    if facts["policy_file"]:
        facts["policy_file_exists"] = os.path.exists(facts["policy_file"])
    return facts


def host_policy_path(plugin: dict[str, Any], args: str | list[str]) -> str | None:
    """Map ``-policy-file /opa/policies/authz.rego`` (as the plugin reads its args) through the
    plugin's mounts to a host path."""
    path = parse_opa_args(args).string("policy-file")
    if not path:
        return None
    config = plugin.get("Config") or {}
    if not path.startswith("/"):
        path = posixpath.join(config.get("WorkDir") or "/", path)
    mounts = (plugin.get("Settings") or {}).get("Mounts") or config.get("Mounts") or []
    best = None
    for mount in mounts:
        dest = (mount.get("Destination") or "").rstrip("/")
        if (
            dest
            and (path == dest or path.startswith(dest + "/"))
            and (best is None or len(dest) > len(best[0]))
        ):
            best = (dest, mount.get("Source") or "")
    if best is None:
        return None
    return clean_path(best[1] + path[len(best[0]) :])


def connect(client: DockerClient) -> dict[str, str]:
    """Negotiate the API version with ``HEAD /_ping`` (not evaluated by opa-docker-authz's
    default ``-skip-ping``), falling back to ``GET /_ping``."""
    try:
        return client.ping_head()
    except DockerUnavailable:
        return client.ping()


def engine_facts(client: DockerClient, ping_headers: dict[str, str]) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "version": None,
        "api_version": client.api_version,
        "os": None,
        "arch": None,
        "kind": "docker",
        "source": None,
    }
    if any(k.startswith("libpod") for k in ping_headers):
        facts["kind"] = "podman"
    try:
        ver = client.version() or {}
        facts.update(version=ver.get("Version"), os=ver.get("Os"), arch=ver.get("Arch"), source="/version")
        for comp in ver.get("Components") or []:
            if "podman" in str(comp.get("Name", "")).lower():
                facts["kind"] = "podman"
    except DockerAPIError:
        server = ping_headers.get("server", "")
        m = re.search(r"Docker/(\S+)", server)
        if m:
            facts.update(version=m.group(1), source="Server header of /_ping")
    return facts


def verify(
    client: DockerClient,
    settings: Settings,
    *,
    alias: str = DEFAULT_ALIAS,
    probe_bypasses: bool = True,
    expect_enforced: bool = True,
    accept_other_plugins: bool = False,
    policy_path: str | None = None,
    timeout: float = 30.0,
    depth: str = DEPTH_FULL,
    expect_policy_sha256: str | None = None,
    expect_args: str | None = None,
    expect_hooked_in: str | None = None,
) -> dict[str, Any]:
    """Run the probes of ``depth`` (select_probes) and compare the host's state with the
    expectations given (state_problems); return the module's result (``failed`` and ``msg``
    set on failure)."""
    ping = connect(client)
    engine = engine_facts(client, ping)
    if engine["kind"] == "podman":
        raise DockerUnavailable(
            f"unix://{client.socket_path} is Podman's Docker-compatible API: Podman has no authorization "
            "plugins, so there is nothing to verify. Point socket at a Docker Engine."
        )
    table = build_probes(settings, probe_bypasses)
    probes = select_probes(table, depth)
    results = [run_probe(client, p, alias, timeout, accept_other_plugins) for p in probes]
    plugin = plugin_facts(client, alias, policy_path)
    state_issues, state = state_problems(
        plugin,
        alias=alias,
        policy_sha256=expect_policy_sha256,
        args=expect_args,
        daemon_json_path=expect_hooked_in,
    )
    warnings: list[str] = []
    findings: list[dict[str, Any]] = []
    chain_problems: list[str] = []  # another plugin answered for ours (not accept_other_plugins)

    # What the engine did with the probes tells a backported fix from the version string alone.
    seen_fixed: dict[str, str] = {}
    if any(r.name == "body-over-1mib" and r.outcome == OUTCOME_ENGINE_REFUSED for r in results):
        seen_fixed["CVE-2026-34040"] = (
            "it refused the body-over-1mib probe itself (request body too large for authorization "
            "plugin) instead of handing the plugin no body"
        )
    if engine["version"]:
        for cve in cve_findings(engine["version"], seen_fixed):
            if cve["vulnerable"] is not False:
                warnings.append(cve["message"])
                findings.append({"kind": "cve", **cve})
        engine["cves"] = cve_findings(engine["version"], seen_fixed)
    else:
        warnings.append(
            "the engine version could not be read: check CVE-2024-41110 and CVE-2026-34040 by hand"
        )

    denied_by_alias = [r for r in results if r.outcome == OUTCOME_DENIED and _same_plugin(r.plugin, alias)]
    deny_probes = [r for r in results if r.expected == DENY]
    privileged = next((r for r in results if r.name == "privileged"), None)
    if plugin["installed"] is False:
        warnings.append(f"plugin {alias} is not installed on this engine")
    elif plugin["enabled"] is False:
        warnings.append(f"plugin {alias} is installed but disabled: it enforces nothing")
    if plugin["installed"] and plugin["args"] is not None and not plugin["args"].strip():
        msg = f"plugin {alias} has no opa-args: opa-docker-authz then allows every request (fails open)"
        warnings.append(msg)
        findings.append({"kind": "fail-open", "message": msg})
    if plugin["policy_file"] and plugin["policy_file_exists"] is False:
        msg = (
            f"policy file {plugin['policy_file']} is missing: opa-docker-authz allows every request "
            "when its policy file is missing (fails open)"
        )
        warnings.append(msg)
        findings.append({"kind": "fail-open", "message": msg})
    if plugin["enabled"] and privileged is not None and privileged.outcome == OUTCOME_AUTHORIZED:
        msg = (
            f"plugin {alias} is enabled but a privileged create was authorized: the plugin fails open "
            "(policy file missing, or no opa-args), or it is not in the daemon's authorization-plugins, "
            "or the policy allows it"
        )
        warnings.append(msg)
        findings.append({"kind": "fail-open", "message": msg})
    others = sorted(
        {
            r.plugin
            for r in results
            if r.outcome == OUTCOME_DENIED and r.plugin and not _same_plugin(r.plugin, alias)
        }
    )
    if others:
        if accept_other_plugins:
            warnings.append(
                f"some probes were denied by other authorization plugins ({', '.join(others)}) "
                f"before {alias} was asked: {alias}'s policy was not tested on those "
                "(accepted: accept_other_plugins)"
            )
        else:
            chain_problems.append(
                f"some probes were denied by other authorization plugins ({', '.join(others)}) before "
                f"{alias} was asked, so {alias}'s policy was not tested on them: put {alias} before "
                f"{', '.join(others)} in authorization-plugins, or set accept_other_plugins (role: "
                "docker_authz_verify_accept_other_plugins) to count their denials"
            )
    errors = [r for r in results if r.outcome == OUTCOME_PLUGIN_ERROR]
    if errors:
        warnings.append(
            f"{len(errors)} probe(s) got a plugin error instead of an answer (the policy errors: "
            f"a v0 policy under opa-docker-authz v0.10 takes the whole API down): {errors[0].message}"
        )
    for r in results:
        if r.cleanup and r.cleanup.startswith("FAILED"):
            warnings.append(f"probe {r.name}: {r.cleanup}")
    if settings.params["exempt_users"]:
        warnings.append(
            "exempt_users cannot be probed over the unix socket (no TLS client identity): not verified"
        )

    failed = [r for r in results if not r.passed]
    problems: list[str] = []
    if failed:
        problems.append(f"{len(failed)} of {len(results)} probes failed")
    problems.extend(chain_problems)
    problems.extend(state_issues)
    if not denied_by_alias:
        if deny_probes:
            problems.append(
                f"plugin {alias} denied no request: it is not enforcing (not in the daemon's "
                "authorization-plugins, disabled, failing open, or a policy that allows everything)"
            )
        else:
            problems.append("no rule is enabled, so no probe can show that the plugin enforces anything")
    result: dict[str, Any] = {
        "changed": False,
        "enforced": bool(denied_by_alias),
        "engine": engine,
        "plugin": plugin,
        "probes": [r.as_dict() for r in results],
        "counts": {"total": len(results), "passed": len(results) - len(failed), "failed": len(failed)},
        "depth": depth,
        "table_size": len(table),
        "state": state,
        "rules": settings.enabled,
        "profile": settings.profile,
        "warnings": warnings,
        "findings": findings,
        "table": format_table(results),
    }
    if problems and expect_enforced:
        result["msg"] = failure_message(results, problems, engine, alias)
        result["failed_verification"] = True
    else:
        result["msg"] = (
            f"{len(results) - len(failed)} of {len(results)} probes passed "
            + (f"(quick proof; {len(table)} in the full table) " if depth == DEPTH_QUICK else "")
            + f"on Docker Engine {engine['version']} "
            f"(plugin {alias})" + ("" if expect_enforced else f"; report only: {'; '.join(problems) or 'ok'}")
        )
    return result


def _row(cols: list[str], widths: list[int]) -> str:
    return "  ".join(cols[i].ljust(widths[i]) for i in range(len(cols))).rstrip()


def format_table(results: list[ProbeResult]) -> list[str]:
    """One line per probe: result, name, rule, expected, outcome and the daemon's answer."""
    header = ["result", "probe", "rule", "expected", "outcome", "answer"]
    rows = []
    for r in results:
        answer = f"{r.status} {r.message}" if r.status is not None else r.message
        outcome = r.outcome + (f" ({r.plugin})" if r.plugin else "")
        rows.append(["ok" if r.passed else "FAILED", r.name, r.rule, r.expected, outcome, answer[:90]])
    widths = [max(len(x[i]) for x in [header, *rows]) for i in range(5)] + [0]
    return [_row(header, widths)] + [_row(row, widths) for row in rows]


def failure_message(
    results: list[ProbeResult], problems: list[str], engine: dict[str, Any], alias: str
) -> str:
    failed = [r for r in results if not r.passed]
    lines = [
        f"authorization is not enforced as expected on Docker Engine {engine.get('version')} "
        f"(plugin {alias}): {'; '.join(problems)}."
    ]
    if failed:
        lines.append("")
        table = format_table(failed)
        lines.extend(table)
        lines.append("")
        for r in failed:
            lines.append(f"- {r.name}: {r.request} ({r.summary}): expected {r.expected}, got {r.outcome}")
        if any(r.expected == ALLOW for r in failed):
            lines.append(
                "A compliant request was refused: the policy is stricter than the rules given here, "
                "or it errors."
            )
        if any(r.expected == DENY and r.outcome == OUTCOME_AUTHORIZED for r in failed):
            lines.append("A request the rules forbid was authorized: the daemon acted on it (see answer).")
    return "\n".join(lines)
