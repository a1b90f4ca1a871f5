# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""Merge settings into Docker's daemon.json without ever losing data (standard library only).

The module ``hardening.docker_authz.daemon_json`` is a thin wrapper around :func:`apply`.

What this file does, in order:

1. find the dockerd command-line flags that apply to the target file (systemd unit and
   drop-ins, ``systemctl show``, ``/etc/default/docker``, ``/etc/sysconfig/docker``, the
   running dockerd's ``/proc/<pid>/cmdline``) and refuse settings that repeat one of them:
   dockerd refuses to start (and to reload) when a directive is both a flag and a file key;
2. under an exclusive lock (``.<name>.lock`` next to the file), read the file strictly
   (UTF-8, one JSON object, no duplicate keys, no NaN/Infinity), apply ``remove`` then
   deep-merge ``settings`` (lists: union keeping the existing order, or replace), refusing a
   type clash instead of guessing;
3. compare old and new documents semantically: formatting-only differences are no change;
4. optionally confirm every authorization plugin the result names is installed and enabled;
5. write atomically (temporary file in the same folder, fsync, rename, fsync of the folder)
   keeping owner, mode and SELinux context, after an optional backup.

Every refusal raises :class:`DaemonConfigError` before anything is written.

Filesystem root, ``/proc`` and the ``systemctl`` runner are injectable (:class:`HostEnv`) so
the detection logic is unit-tested against temporary trees instead of the real machine.
"""

from __future__ import annotations

import copy
import errno
import fcntl
import grp
import json
import math
import os
import pwd
import re
import shlex
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.hardening.docker_authz.plugins.module_utils.docker_api import DockerClient

DEFAULT_PATH = "/etc/docker/daemon.json"
DEFAULT_DOCKER_SOCKET = "/var/run/docker.sock"
DEFAULT_LOCK_TIMEOUT = 60.0
FILE_MODE = 0o644
DIR_MODE = 0o755
AUTHZ_INTERFACE = "docker.authz/1.0"

# --------------------------------------------------------------------------------------
# Reload behaviour: "Configuration reload behavior" in the dockerd reference
# (docs.docker.com/reference/cli/dockerd/). Options not listed there need a restart.
# cluster-store, cluster-store-opts and cluster-advertise are listed up to Docker 20.10
# (removed in 23.0); keeping them costs nothing on newer engines.
# --------------------------------------------------------------------------------------
RELOADABLE_KEYS: frozenset[str] = frozenset(
    {
        "debug",
        "labels",
        "live-restore",
        "max-concurrent-downloads",
        "max-concurrent-uploads",
        "max-download-attempts",
        "default-runtime",
        "runtimes",
        "authorization-plugins",
        "allow-nondistributable-artifacts",
        "insecure-registries",
        "registry-mirrors",
        "shutdown-timeout",
        "features",
        "cluster-store",
        "cluster-store-opts",
        "cluster-advertise",
    }
)

# --------------------------------------------------------------------------------------
# dockerd flags -> daemon.json keys.
# The daemon.json key is the flag name, except for flags that may be given several times:
# their value type is a "named option" whose name is the plural key (--label -> labels).
# --------------------------------------------------------------------------------------
SHORT_FLAGS: dict[str, str] = {
    "-H": "host",
    "-D": "debug",
    "-l": "log-level",
    "-p": "pidfile",
    "-s": "storage-driver",
    "-b": "bridge",
    "-G": "group",
    "-g": "graph",  # deprecated alias of --data-root (key "graph" up to 20.10)
    "-e": "exec-driver",  # removed long ago; kept so old unit files parse
    "-v": "version",
    "-h": "help",
}

# long flag name -> daemon.json key, where they differ
NAMED_FLAG_KEYS: dict[str, str] = {
    "add-runtime": "runtimes",
    "authorization-plugin": "authorization-plugins",
    "cdi-spec-dir": "cdi-spec-dirs",
    "cluster-store-opt": "cluster-store-opts",
    "default-address-pool": "default-address-pools",
    "default-network-opt": "default-network-opts",
    "default-ulimit": "default-ulimits",
    "dns-opt": "dns-opts",
    "exec-opt": "exec-opts",
    "feature": "features",
    "host": "hosts",
    "insecure-registry": "insecure-registries",
    "label": "labels",
    "log-opt": "log-opts",
    "node-generic-resource": "node-generic-resources",
    "registry-mirror": "registry-mirrors",
    "storage-opt": "storage-opts",
}

# flags with no daemon.json counterpart (never a conflict)
NON_CONFIG_FLAGS: frozenset[str] = frozenset({"config-file", "help", "version", "validate"})

# keys dockerd merges from flags and file instead of refusing (moby: skipDuplicates)
SKIP_DUPLICATE_KEYS: frozenset[str] = frozenset({"runtimes"})

# object-valued keys dockerd does NOT flatten when it looks for conflicts (moby: flatOptions);
# members of any other object-valued key are compared with flag names too
# (e.g. "proxies": {"http-proxy": ...} conflicts with --http-proxy).
FLAT_OBJECT_KEYS: frozenset[str] = frozenset(
    {
        "cluster-store-opts",
        "log-opts",
        "runtimes",
        "default-ulimits",
        "features",
        "builder",
        "default-network-opts",
    }
)

# boolean flags never take the next argument as their value
BOOL_FLAGS: frozenset[str] = frozenset(
    {
        "debug",
        "experimental",
        "icc",
        "init",
        "ip-forward",
        "ip-forward-no-drop",
        "ip-masq",
        "ip6tables",
        "iptables",
        "ipv6",
        "live-restore",
        "no-new-privileges",
        "raw-logs",
        "rootless",
        "selinux-enabled",
        "tls",
        "tlsverify",
        "userland-proxy",
        "validate",
        "help",
        "version",
        "cri-containerd",
        "disable-legacy-registry",
        "allow-direct-routing",
    }
)

# flags that always take a value (the next word when not given as --flag=value)
VALUE_FLAGS: frozenset[str] = frozenset(
    {
        "api-cors-header",
        "bip",
        "bip6",
        "bridge",
        "cgroup-parent",
        "config-file",
        "containerd",
        "containerd-namespace",
        "containerd-plugins-namespace",
        "cpu-rt-period",
        "cpu-rt-runtime",
        "data-root",
        "default-cgroupns-mode",
        "default-gateway",
        "default-gateway-v6",
        "default-ipc-mode",
        "default-runtime",
        "default-shm-size",
        "dns",
        "dns-search",
        "exec-root",
        "fixed-cidr",
        "fixed-cidr-v6",
        "graph",
        "group",
        "host-gateway-ip",
        "http-proxy",
        "https-proxy",
        "init-path",
        "ip",
        "log-driver",
        "log-format",
        "log-level",
        "max-concurrent-downloads",
        "max-concurrent-uploads",
        "max-download-attempts",
        "metrics-addr",
        "mtu",
        "network-control-plane-mtu",
        "no-proxy",
        "oom-score-adjust",
        "pidfile",
        "seccomp-profile",
        "shutdown-timeout",
        "storage-driver",
        "swarm-default-advertise-addr",
        "tlscacert",
        "tlscert",
        "tlskey",
        "userland-proxy-path",
        "userns-remap",
        "allow-nondistributable-artifacts",
        "cluster-store",
        "cluster-advertise",
        "exec-driver",
    }
)

UNIT_DIRS: tuple[str, ...] = (
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
)
UNIT_NAME = "docker.service"

# files sourced by init scripts (sysvinit/upstart/openrc) and by the distributions' units,
# with the variable holding dockerd's flags
ENV_FILES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("/etc/default/docker", ("DOCKER_OPTS",)),
    ("/etc/sysconfig/docker", ("OPTIONS", "DOCKER_OPTS")),
    ("/etc/sysconfig/docker-storage", ("DOCKER_STORAGE_OPTIONS",)),
    ("/etc/sysconfig/docker-network", ("DOCKER_NETWORK_OPTIONS",)),
)

LEGACY_PLUGIN_SOCKET_DIRS: tuple[str, ...] = ("/run/docker/plugins",)
LEGACY_PLUGIN_SPEC_DIRS: tuple[str, ...] = ("/etc/docker/plugins", "/usr/lib/docker/plugins")


class DaemonConfigError(Exception):
    """A refusal: nothing was written. The message names the problem and the fix."""


_SYMBOLIC_MODE_PART = re.compile(r"^[ugoa]*(?:[-+=][rwxXstugo]*)+$")


def check_file_attributes(owner: str | None, group: str | None, mode: Any) -> None:
    """Refuse owner, group and mode values that cannot be applied, BEFORE anything is written.

    Ansible applies the file attributes after the write; an unknown user there would fail the
    task with the new daemon.json already in place. So they are resolved first.
    """
    for value, label, kind, lookup, number in (
        (owner, "owner", "user", pwd.getpwnam, "uid"),
        (group, "group", "group", grp.getgrnam, "gid"),
    ):
        name = "" if value is None else str(value)
        if not name or name.isdigit():
            continue
        try:
            lookup(name)
        except KeyError:
            raise DaemonConfigError(
                f"{label} {name!r} is not a {kind} on this host: "
                f"give an existing {kind} name or a numeric {number}"
            ) from None
    if mode in (None, "", "preserve"):
        return
    if isinstance(mode, int):
        if 0 <= mode <= 0o7777:
            return
    elif re.fullmatch(r"(?:0o?)?[0-7]{3,4}", str(mode)) or all(
        _SYMBOLIC_MODE_PART.match(part) for part in str(mode).split(",")
    ):
        return
    raise DaemonConfigError(
        f"mode {mode!r} is not a file mode: give it as a quoted octal string such as '0644' "
        "or in symbolic form such as 'u=rw,go=r'"
    )


# ======================================================================================
# Host access (injectable for tests)
# ======================================================================================
SystemctlRunner = Callable[[Sequence[str]], tuple[int, str]]


def run_systemctl(args: Sequence[str]) -> tuple[int, str]:
    """Run the real ``systemctl`` and return (returncode, stdout)."""
    try:
        proc = subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=15, check=False)
    except (OSError, subprocess.SubprocessError):
        return 127, ""
    return proc.returncode, proc.stdout


DockerdValidator = Callable[[str], tuple[int, str]]


def run_dockerd_validate(text: str) -> tuple[int, str]:
    """``dockerd --validate`` (Docker 23.0 and later) of a daemon.json given as text, read from
    standard input (nothing is written): (returncode, output). 127 when dockerd is not found;
    engines before 23.0 answer "unknown flag: --validate"."""
    dockerd = shutil.which("dockerd") or next(
        (c for c in ("/usr/bin/dockerd", "/usr/local/bin/dockerd") if os.access(c, os.X_OK)), None
    )
    if dockerd is None:
        return 127, "dockerd: command not found"
    try:
        proc = subprocess.run(
            [dockerd, "--validate", "--config-file", "/dev/stdin"],
            input=text,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return 127, str(exc)
    return proc.returncode, (proc.stderr + proc.stdout).strip()


def _validate_unsupported(rc: int, output: str) -> bool:
    return rc == 127 or "unknown flag: --validate" in output


def _validate_message(output: str, path: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    text = lines[-1] if lines else "(no output)"
    return text.replace("/dev/stdin", path)[:500]


@dataclass
class HostEnv:
    """Where this host's files live. Tests point ``root`` and ``proc`` at temporary trees."""

    root: str = "/"
    proc: str = "/proc"
    systemctl: SystemctlRunner | None = run_systemctl
    dockerd_validate: DockerdValidator | None = None  # None: run_dockerd_validate

    def path(self, abs_path: str) -> str:
        """An absolute host path seen through ``root``."""
        if self.root in ("", "/"):
            return abs_path
        return os.path.join(self.root, abs_path.lstrip("/"))

    def systemd_running(self) -> bool:
        # sd_booted(): the directory exists only when systemd is PID 1
        return os.path.isdir(self.path("/run/systemd/system"))


# ======================================================================================
# JSON: strict reading, canonical writing, typed equality
# ======================================================================================
def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _canon(value: Any) -> Any:
    """A hashable form in which equal JSON values are equal (1 != true != 1.0; key order ignored)."""
    if value is None:
        return ("z",)
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int):
        return ("i", value)
    if isinstance(value, float):
        return ("f", value)
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, (list, tuple)):
        return ("a", tuple(_canon(v) for v in value))
    if isinstance(value, Mapping):
        return ("o", tuple(sorted((str(k), _canon(v)) for k, v in value.items())))
    raise DaemonConfigError(f"value {value!r} of type {type(value).__name__} cannot be written as JSON")


def json_equal(a: Any, b: Any) -> bool:
    """Semantic equality of two JSON documents (object key order and formatting ignored)."""
    return _canon(a) == _canon(b)


def render(doc: Mapping[str, Any]) -> str:
    """Canonical text: 2-space indented JSON, key order kept, UTF-8 as is, trailing newline."""
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def _line_col(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return line, col


def parse_document(data: bytes, path: str) -> dict[str, Any]:
    """Parse daemon.json bytes strictly. Empty (or whitespace-only) content is ``{}``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _line_col(data[: exc.start].decode("utf-8", "replace"), exc.start)
        raise DaemonConfigError(
            f"{path} is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}, "
            f"line {line} column {col}); dockerd reads daemon.json as UTF-8: convert the file "
            "(for example with iconv -t UTF-8) and run again. Nothing was changed."
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        return {}

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise DaemonConfigError(
                    f"{path} has the key {k!r} twice in one object; dockerd would silently use the "
                    "last one. Remove the duplicate by hand and run again. Nothing was changed."
                )
            out[k] = v
        return out

    def bad_constant(name: str) -> Any:
        raise DaemonConfigError(
            f"{path} contains {name}, which is not JSON (dockerd rejects it); fix the file and run "
            "again. Nothing was changed."
        )

    def parse_float(s: str) -> float:
        f = float(s)
        if not math.isfinite(f):
            bad_constant(f"the out-of-range number {s}")
        return f

    try:
        doc = json.loads(
            text, object_pairs_hook=pairs_hook, parse_constant=bad_constant, parse_float=parse_float
        )
    except json.JSONDecodeError as exc:
        raise DaemonConfigError(
            f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}; "
            "fix the file (dockerd cannot read it either) and run again. Nothing was changed."
        ) from None
    if not isinstance(doc, dict):
        raise DaemonConfigError(
            f"{path} holds a JSON {json_type(doc)} at the top level; daemon.json must be one JSON "
            "object ({...}). Fix the file and run again. Nothing was changed."
        )
    return doc


# ======================================================================================
# Merge and remove
# ======================================================================================
LIST_MERGE_MODES = ("union", "replace")


def _clash(where: str, existing: Any, wanted: Any, path: str) -> DaemonConfigError:
    shown = json.dumps(existing, ensure_ascii=False)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    top = where.split(".", 1)[0]
    return DaemonConfigError(
        f"type clash at {where!r} in {path}: the file has a {json_type(existing)} ({shown}) but "
        f"a {json_type(wanted)} was requested. Correct the value in the file, or list {top!r} "
        "under remove to replace it whole. Nothing was changed."
    )


def _merge_value(existing: Any, wanted: Any, where: str, list_merge: str, path: str) -> Any:
    if existing is None:
        return copy.deepcopy(wanted)
    et, wt = json_type(existing), json_type(wanted)
    if wt == "null":
        return None
    if et != wt:
        raise _clash(where, existing, wanted, path)
    if et == "object":
        out = dict(existing)
        for k, v in wanted.items():
            out[k] = (
                _merge_value(existing.get(k), v, f"{where}.{k}", list_merge, path)
                if k in existing
                else copy.deepcopy(v)
            )
        return out
    if et == "array":
        if list_merge == "replace":
            return copy.deepcopy(list(wanted))
        out_list = list(existing)
        seen = {_canon(v) for v in out_list}
        for item in wanted:
            c = _canon(item)
            if c not in seen:
                seen.add(c)
                out_list.append(copy.deepcopy(item))
        return out_list
    return copy.deepcopy(wanted)


@dataclass
class Removal:
    keys: list[str] = field(default_factory=list)  # whole top-level keys
    values: dict[str, list[Any]] = field(default_factory=dict)  # key -> values/members to drop


def parse_remove(remove: Sequence[Any] | None) -> Removal:
    """``remove`` items: a key name, or a mapping ``{key: [values]}`` (a single value is allowed)."""
    out = Removal()
    for i, item in enumerate(remove or []):
        if isinstance(item, str):
            if not item:
                raise DaemonConfigError(f"remove item {i + 1} is an empty string; give a key name")
            if item not in out.keys:
                out.keys.append(item)
        elif isinstance(item, Mapping) and item:
            for k, v in item.items():
                vals = list(v) if isinstance(v, (list, tuple)) else [v]
                if not vals:
                    raise DaemonConfigError(
                        f"remove item {i + 1} ({k!r}) has an empty list; give the values to drop, "
                        f"or the key name alone ({k!r}) to drop the whole key"
                    )
                out.values.setdefault(str(k), []).extend(vals)
        else:
            raise DaemonConfigError(
                f'remove item {i + 1} ({item!r}) must be a key name ("labels") or a mapping of a '
                'key to the values to drop ({"authorization-plugins": ["old-plugin"]})'
            )
    return out


def _remove_values(existing: Any, values: list[Any], key: str, path: str) -> Any:
    if isinstance(existing, list):
        drop = {_canon(v) for v in values}
        return [v for v in existing if _canon(v) not in drop]
    if isinstance(existing, dict):
        bad = [v for v in values if not isinstance(v, str)]
        if bad:
            raise DaemonConfigError(
                f"{key!r} in {path} is an object: remove drops its members by name, and {bad[0]!r} "
                "is not a name"
            )
        return {k: v for k, v in existing.items() if k not in values}
    raise DaemonConfigError(
        f"cannot remove values from {key!r} in {path}: it is a {json_type(existing)}, not an array "
        f"or object. To drop the whole key, list {key!r} alone under remove. Nothing was changed."
    )


def merge(
    doc: Mapping[str, Any],
    settings: Mapping[str, Any] | None = None,
    remove: Sequence[Any] | Removal | None = None,
    list_merge: str = "union",
    path: str = DEFAULT_PATH,
) -> dict[str, Any]:
    """Return a new document: ``remove`` applied, then ``settings`` deep-merged.

    A key both removed whole and given in ``settings`` is replaced in place (no merge, no
    clash). Dropping a value that ``settings`` adds to the same key is contradictory: refused.
    """
    if list_merge not in LIST_MERGE_MODES:
        raise DaemonConfigError(
            f"list_merge must be one of {', '.join(LIST_MERGE_MODES)}, not {list_merge!r}"
        )
    settings = dict(settings or {})
    rem = remove if isinstance(remove, Removal) else parse_remove(remove)
    for key, vals in rem.values.items():
        if key in settings and isinstance(settings[key], (list, tuple, Mapping)):
            wanted = settings[key]
            names = list(wanted.keys()) if isinstance(wanted, Mapping) else list(wanted)
            both = [v for v in vals if _canon(v) in {_canon(n) for n in names}]
            if both:
                raise DaemonConfigError(
                    f"{both[0]!r} is both added to and removed from {key!r}; keep it in one of "
                    "settings or remove"
                )
    for key in settings:
        _canon(settings[key])  # refuses values that are not JSON

    out: dict[str, Any] = {}
    replaced: set[str] = set()
    for k, v in doc.items():
        if k in rem.keys:
            if k in settings:
                out[k] = copy.deepcopy(settings[k])
                replaced.add(k)
            continue
        if k in rem.values:
            v = _remove_values(v, rem.values[k], k, path)
        out[k] = v
    for k, v in settings.items():
        if k in replaced:
            continue
        out[k] = _merge_value(out[k], v, k, list_merge, path) if k in out else copy.deepcopy(v)
    return out


def changed_keys(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Top-level keys added, removed or changed (order: after's order, then removed ones)."""
    keys = [k for k in after if k not in before or not json_equal(before[k], after[k])]
    keys += [k for k in before if k not in after]
    return keys


def classify(keys: Sequence[str]) -> tuple[bool, bool]:
    """(reload_required, restart_required) for a set of changed top-level keys."""
    if not keys:
        return False, False
    restart = any(k not in RELOADABLE_KEYS for k in keys)
    return not restart, restart


# ======================================================================================
# dockerd flags: parse argument lists, find them on the host, map them to keys
# ======================================================================================
@dataclass(frozen=True)
class FlagUse:
    flag: str  # as written: "--authorization-plugin", "-H"
    name: str  # long name: "authorization-plugin", "host"
    key: str | None  # daemon.json key, None for flags without one
    value: str | None
    source: str


def flag_key(name: str) -> str | None:
    """The daemon.json key of a long flag name (``label`` -> ``labels``)."""
    if name in NON_CONFIG_FLAGS:
        return None
    return NAMED_FLAG_KEYS.get(name, name)


def parse_dockerd_args(argv: Sequence[str], source: str = "") -> list[FlagUse]:
    """Flags in a dockerd argument list (without argv[0]). Unknown flags are kept as is."""
    out: list[FlagUse] = []
    i = 0
    args = list(argv)
    while i < len(args):
        tok = args[i]
        i += 1
        if tok == "--":
            break
        if tok.startswith("--") and len(tok) > 2:
            body = tok[2:]
            name, eq, val = body.partition("=")
            value: str | None = val if eq else None
            # known value flags always take the next word; unknown ones when it is no flag
            if (
                not eq
                and name not in BOOL_FLAGS
                and i < len(args)
                and (name in VALUE_FLAGS or name in NAMED_FLAG_KEYS or not args[i].startswith("-"))
            ):
                value = args[i]
                i += 1
            out.append(FlagUse(tok.split("=", 1)[0], name, flag_key(name), value, source))
        elif tok.startswith("-") and len(tok) > 1 and not tok[1].isdigit():
            # short flags, possibly combined (-D) or with an attached value (-Hfd://)
            j = 1
            while j < len(tok):
                short = "-" + tok[j]
                name = SHORT_FLAGS.get(short, tok[j])
                j += 1
                if name in BOOL_FLAGS or short == "-D":
                    out.append(FlagUse(short, name, flag_key(name), None, source))
                    continue
                attached = tok[j:].lstrip("=")
                if attached:
                    value = attached
                elif i < len(args):
                    value = args[i]
                    i += 1
                else:
                    value = None
                out.append(FlagUse(short, name, flag_key(name), value, source))
                break
        # positional words (there are none for dockerd) are ignored
    return out


def config_file_of(flags: Sequence[FlagUse]) -> str:
    for f in reversed(flags):
        if f.name == "config-file" and f.value:
            return f.value
    return DEFAULT_PATH


def _expand_env(tokens: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """systemd-style expansion: a lone $VAR splits into words, ${VAR} is substituted in place."""
    out: list[str] = []
    for tok in tokens:
        m = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", tok)
        if m:
            out.extend(shlex.split(env.get(m.group(1), ""), comments=False))
            continue
        out.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda mm: env.get(mm.group(1), ""), tok))
    return out


def read_env_file(path: str) -> dict[str, str]:
    """KEY=VALUE lines of a shell-style environment file (comments, quotes, ``export``)."""
    env: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return env
    text = re.sub(r"\\\n", " ", text)
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].strip()
        m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line)
        if not m:
            continue
        try:
            words = shlex.split(m.group(2), comments=True)
        except ValueError:
            words = [m.group(2).strip().strip("\"'")]
        env[m.group(1)] = " ".join(words)
    return env


def _unit_lines(path: str) -> list[tuple[str, str]]:
    """(directive, value) pairs of the [Service] section of a unit file or drop-in."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return []
    text = re.sub(r"\\\n", " ", text)
    out: list[tuple[str, str]] = []
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        if section != "Service" or "=" not in line:
            continue
        k, _, v = line.partition("=")
        out.append((k.strip(), v.strip()))
    return out


def _split_exec(value: str) -> list[str]:
    value = value.lstrip("-@+!:")
    try:
        return shlex.split(value, comments=False)
    except ValueError:
        return value.split()


def _is_dockerd(argv: Sequence[str]) -> bool:
    return bool(argv) and os.path.basename(argv[0]) in ("dockerd", "docker-daemon")


@dataclass
class FlagSource:
    """One place that starts dockerd with flags: its label, its flags, the file it configures."""

    label: str
    flags: list[FlagUse]
    config_file: str
    # how to see config_file from here (a process's root differs from ours in a container)
    view_root: str | None = None


def _unit_sources(env: HostEnv) -> list[FlagSource]:
    main = None
    for d in UNIT_DIRS:
        p = env.path(os.path.join(d, UNIT_NAME))
        if os.path.isfile(p):
            main = (os.path.join(d, UNIT_NAME), p)
            break
    dropins: dict[str, tuple[str, str]] = {}
    for d in UNIT_DIRS:
        ddir = env.path(os.path.join(d, UNIT_NAME + ".d"))
        try:
            names = sorted(os.listdir(ddir))
        except OSError:
            continue
        for n in names:
            if n.endswith(".conf") and n not in dropins:
                dropins[n] = (os.path.join(d, UNIT_NAME + ".d", n), os.path.join(ddir, n))
    files = ([main] if main else []) + [dropins[n] for n in sorted(dropins)]
    execs: list[tuple[str, str]] = []  # (label, value)
    unit_env: dict[str, str] = {}
    for label, real in files:
        for k, v in _unit_lines(real):
            if k == "ExecStart":
                if not v:
                    execs = []
                else:
                    execs.append((label, v))
            elif k == "Environment":
                try:
                    words = shlex.split(v)
                except ValueError:
                    words = v.split()
                for w in words:
                    name, eq, val = w.partition("=")
                    if eq:
                        unit_env[name] = val
            elif k == "EnvironmentFile" and v:
                unit_env.update(read_env_file(env.path(v.lstrip("-"))))
    out = []
    for label, value in execs:
        argv = _expand_env(_split_exec(value), unit_env)
        if not _is_dockerd(argv):
            continue
        flags = parse_dockerd_args(argv[1:], f"systemd unit {label} (ExecStart)")
        out.append(FlagSource(f"systemd unit {label}", flags, config_file_of(flags)))
    return out


def _systemctl_sources(env: HostEnv) -> list[FlagSource]:
    if env.systemctl is None or not env.systemd_running():
        return []
    rc, stdout = env.systemctl(["show", UNIT_NAME, "--property=ExecStart", "--no-pager"])
    if rc != 0:
        return []
    out = []
    for m in re.finditer(r"argv\[\]=(.*?)\s;", stdout):
        argv = _split_exec(m.group(1))
        if not _is_dockerd(argv):
            continue
        label = "systemctl show docker.service (ExecStart)"
        flags = parse_dockerd_args(argv[1:], label)
        out.append(FlagSource(label, flags, config_file_of(flags)))
    return out


def _env_file_sources(env: HostEnv) -> list[FlagSource]:
    out = []
    for path, names in ENV_FILES:
        values = read_env_file(env.path(path))
        for n in names:
            if values.get(n, "").strip():
                label = f"{path} ({n})"
                try:
                    words = shlex.split(values[n])
                except ValueError:
                    words = values[n].split()
                flags = parse_dockerd_args(words, label)
                out.append(FlagSource(label, flags, config_file_of(flags)))
    return out


def _process_sources(env: HostEnv) -> list[FlagSource]:
    out = []
    try:
        pids = [p for p in os.listdir(env.proc) if p.isdigit()]
    except OSError:
        return out
    for pid in sorted(pids, key=int):
        try:
            with open(os.path.join(env.proc, pid, "cmdline"), "rb") as fh:
                raw = fh.read()
        except OSError:
            continue
        argv = [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]
        if not _is_dockerd(argv):
            continue
        label = f"running dockerd (pid {pid})"
        flags = parse_dockerd_args(argv[1:], label)
        cfg = config_file_of(flags)
        proc_root = os.path.join(env.proc, pid, "root")
        if not os.path.isabs(cfg):
            try:
                cwd = os.readlink(os.path.join(env.proc, pid, "cwd"))
            except OSError:
                cwd = "/"
            cfg = os.path.normpath(os.path.join(cwd, cfg))
        view = proc_root if os.path.exists(proc_root) else None
        out.append(FlagSource(label, flags, cfg, view))
    return out


def _same_file(candidate: str, target: str) -> bool:
    """Whether two paths name the same file, or would once it exists (same folder, same name)."""
    try:
        if os.path.exists(candidate) and os.path.exists(target):
            return os.path.samefile(candidate, target)
        if os.path.basename(candidate) != os.path.basename(target):
            return False
        return os.path.samefile(os.path.dirname(candidate) or ".", os.path.dirname(target) or ".")
    except OSError:
        # neither folder exists yet: the same path is the same (future) file
        return os.path.realpath(candidate) == os.path.realpath(target)


def _applies_to(src: FlagSource, target: str, env: HostEnv) -> bool:
    if src.view_root is not None:
        seen = os.path.join(src.view_root, src.config_file.lstrip("/"))
    else:
        seen = env.path(src.config_file)
    return _same_file(seen, target)


def find_flag_sources(env: HostEnv | None = None) -> list[FlagSource]:
    env = env or HostEnv()
    return _systemctl_sources(env) + _unit_sources(env) + _env_file_sources(env) + _process_sources(env)


def flags_for(target: str, env: HostEnv | None = None) -> list[FlagUse]:
    """Every dockerd flag given to a daemon that reads ``target`` as its daemon.json."""
    env = env or HostEnv()
    out: list[FlagUse] = []
    for src in find_flag_sources(env):
        if _applies_to(src, target, env):
            out.extend(f for f in src.flags if f.key is not None)
    return out


def config_names(doc: Mapping[str, Any]) -> dict[str, str]:
    """Names dockerd compares with flag names -> the top-level key they come from.

    Top-level keys, plus the members of object values dockerd flattens (all objects but
    FLAT_OBJECT_KEYS): ``{"proxies": {"http-proxy": ...}}`` yields ``http-proxy``.
    """
    out: dict[str, str] = {}
    for k, v in doc.items():
        out.setdefault(k, k)
        if isinstance(v, Mapping) and k not in FLAT_OBJECT_KEYS:
            for member in v:
                out.setdefault(str(member), k)
    return out


@dataclass(frozen=True)
class FlagConflict:
    key: str  # top-level daemon.json key
    name: str  # the name dockerd compares (the key, or a flattened member)
    uses: tuple[FlagUse, ...]

    def describe(self) -> str:
        where = "; ".join(
            f"{u.flag}{'=' + u.value if u.value is not None else ''} in {u.source}" for u in self.uses
        )
        what = f"{self.key!r}" if self.name == self.key else f"{self.key!r} (member {self.name!r})"
        return f"{what} is also a dockerd flag: {where}"


def find_conflicts(doc: Mapping[str, Any], flags: Sequence[FlagUse]) -> list[FlagConflict]:
    names = config_names(doc)
    by_key: dict[str, list[FlagUse]] = {}
    for f in flags:
        if f.key is None or f.key in SKIP_DUPLICATE_KEYS:
            continue
        if f.key in names:
            by_key.setdefault(f.key, []).append(f)
    out = []
    for name, uses in by_key.items():
        uniq = tuple(dict.fromkeys(uses))
        out.append(FlagConflict(names[name], name, uniq))
    return out


def conflict_error(conflicts: Sequence[FlagConflict], path: str) -> DaemonConfigError:
    lines = "\n".join(f"  - {c.describe()}" for c in conflicts)
    return DaemonConfigError(
        f"refusing to write {path}: dockerd refuses to start (and to reload) when a directive is "
        f"both a command-line flag and a daemon.json key, and these settings repeat flags:\n{lines}\n"
        "Move the option to one place: drop the flag from the unit/drop-in/defaults file (then "
        "systemctl daemon-reload and restart docker), or leave the key out of settings. "
        "Nothing was changed."
    )


# ======================================================================================
# Authorization plugins: installed and enabled before daemon.json names them
# ======================================================================================
def _normalize_ref(name: str) -> str:
    n = name.strip()
    for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/library/", "index.docker.io/"):
        if n.startswith(prefix):
            n = n[len(prefix) :]
            break
    n = n.split("@", 1)[0]
    last = n.rsplit("/", 1)[-1]
    if ":" not in last:
        n += ":latest"
    return n


def _legacy_plugin(name: str, env: HostEnv) -> tuple[bool, str]:
    """(present, how) for a legacy (v1) plugin: a listening socket or a spec file."""
    for d in LEGACY_PLUGIN_SOCKET_DIRS:
        for rel in (f"{name}.sock", f"{name}/{name}.sock"):
            p = env.path(os.path.join(d, rel))
            try:
                st = os.stat(p)
            except OSError:
                continue
            if not stat.S_ISSOCK(st.st_mode):
                return False, f"{os.path.join(d, rel)} exists but is not a unix socket"
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(3)
            try:
                s.connect(p)
            except OSError as exc:
                return False, (
                    f"{os.path.join(d, rel)} exists but nothing accepts connections on it "
                    f"({exc.strerror or exc}): start the plugin"
                )
            finally:
                s.close()
            return True, f"legacy plugin socket {os.path.join(d, rel)}"
    for d in LEGACY_PLUGIN_SPEC_DIRS:
        for ext in ("spec", "json"):
            rel = os.path.join(d, f"{name}.{ext}")
            if os.path.isfile(env.path(rel)):
                return True, f"legacy plugin spec {rel}"
    return False, ""


def check_authz_plugins(
    names: Sequence[str],
    client_factory: Callable[[], Any],
    env: HostEnv | None = None,
) -> list[str]:
    """Refuse unless every plugin is a legacy plugin or an installed, enabled managed authz plugin.

    ``client_factory`` returns an object with ``get(path)`` (a ``DockerClient``); it is called
    only when some plugin is not found as a legacy plugin. Returns a line per plugin saying
    how it was found.
    """
    env = env or HostEnv()
    found: list[str] = []
    problems: list[str] = []
    pending: list[str] = []
    for n in names:
        if not isinstance(n, str) or not n:
            problems.append(f"{n!r} is not a plugin name")
            continue
        present, how = _legacy_plugin(n, env)
        if present:
            found.append(f"{n}: {how}")
        elif how:
            problems.append(f"{n}: {how}")
        else:
            pending.append(n)
    if pending:
        try:
            plugins = client_factory().get("/plugins") or []
        except Exception as exc:  # DockerUnavailable, DockerAPIError, OSError
            raise DaemonConfigError(
                f"check_plugins: cannot list the engine's plugins to confirm {', '.join(pending)} "
                f"before naming them in authorization-plugins: {exc}. Nothing was changed."
            ) from None
        index: dict[str, dict[str, Any]] = {}
        for p in plugins:
            if isinstance(p, dict) and p.get("Name"):
                index.setdefault(_normalize_ref(str(p["Name"])), p)
        for n in pending:
            p = index.get(_normalize_ref(n))
            if p is None:
                installed = ", ".join(sorted(str(x.get("Name")) for x in plugins if isinstance(x, dict)))
                problems.append(
                    f"{n}: not installed (installed plugins: {installed or 'none'}; no legacy socket in "
                    f"/run/docker/plugins or spec in /etc/docker/plugins, /usr/lib/docker/plugins)"
                )
                continue
            types = ((p.get("Config") or {}).get("Interface") or {}).get("Types") or []
            if AUTHZ_INTERFACE not in types:
                problems.append(
                    f"{n}: installed as {p['Name']} but it is not an authorization plugin "
                    f"(implements {', '.join(types) or 'nothing'})"
                )
            elif not p.get("Enabled"):
                problems.append(
                    f"{n}: installed as {p['Name']} but disabled (docker plugin enable {p['Name']})"
                )
            else:
                found.append(f"{n}: managed plugin {p['Name']} (enabled)")
    if problems:
        lines = "\n".join(f"  - {x}" for x in problems)
        raise DaemonConfigError(
            "refusing to name authorization plugins that are not ready: a daemon reloaded or "
            "started with a missing or disabled authorization plugin exits after about 15 seconds.\n"
            f"{lines}\nInstall and enable the plugin first, then run again. Nothing was changed."
        )
    return found


# ======================================================================================
# Files: lock, atomic write, backup
# ======================================================================================
def lock_path_for(path: str) -> str:
    d, n = os.path.split(path)
    return os.path.join(d, f".{n}.lock")


@contextmanager
def file_lock(path: str, timeout: float = DEFAULT_LOCK_TIMEOUT) -> Iterator[None]:
    """Exclusive ``flock`` on ``.<name>.lock`` next to ``path``; waits up to ``timeout`` seconds."""
    lpath = lock_path_for(path)
    fd = os.open(lpath, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    raise DaemonConfigError(
                        f"another run holds the lock {lpath} on {path} (waited {timeout:.0f}s); "
                        "let it finish, or raise lock_timeout. Nothing was changed."
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _tmp_prefix(path: str) -> str:
    return f".{os.path.basename(path)}."


def clean_stale_temps(path: str) -> list[str]:
    """Remove temporary files a crashed earlier run left next to ``path`` (call under the lock)."""
    d = os.path.dirname(path)
    prefix = _tmp_prefix(path)
    removed = []
    try:
        names = os.listdir(d)
    except OSError:
        return removed
    for n in names:
        if n.startswith(prefix) and n.endswith(".tmp"):
            try:
                os.unlink(os.path.join(d, n))
                removed.append(os.path.join(d, n))
            except OSError:
                pass
    return removed


def _copy_selinux(src: str, dst: str) -> str | None:
    """Copy the SELinux label; a warning when the file has one that cannot be copied."""
    try:
        ctx = os.getxattr(src, "security.selinux")
    except OSError:
        return None  # no label (no SELinux), nothing to keep
    try:
        os.setxattr(dst, "security.selinux", ctx)
    except OSError as exc:
        label = ctx.rstrip(b"\0").decode("utf-8", "replace")
        return (
            f"the SELinux context of {src} ({label}) could not be kept: {exc}; "
            f"run restorecon {src} (dockerd may not be allowed to read it)"
        )
    return None


def atomic_write(
    path: str,
    data: bytes,
    *,
    mode: int | None = None,
    before_rename: Callable[[str], None] | None = None,
) -> list[str]:
    """Replace ``path`` with ``data`` atomically, keeping owner, mode and SELinux context.

    Returns warnings (an SELinux context that could not be kept).

    A new file is created 0644 (owned by root when run as root). With ``mode``, the file gets
    that mode and root as owner (when run as root) whether it existed or not, set before the
    rename, and still keeps its SELinux context. ``before_rename`` is a test hook called with
    the fsynced temporary file's path.
    """
    d = os.path.dirname(path) or "."
    warnings: list[str] = []
    try:
        st: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        st = None
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=d)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if st is not None and mode is None:
            os.chmod(tmp, stat.S_IMODE(st.st_mode))
            if os.geteuid() == 0:
                os.chown(tmp, st.st_uid, st.st_gid)
        else:
            os.chmod(tmp, FILE_MODE if mode is None else mode)
            if os.geteuid() == 0:
                os.chown(tmp, 0, 0)
        if st is not None:
            selinux_warning = _copy_selinux(path, tmp)
            if selinux_warning:
                warnings.append(selinux_warning)
        if before_rename is not None:
            before_rename(tmp)
        os.rename(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return warnings


def backup_file(path: str) -> str:
    """Copy ``path`` to ``<path>.<pid>.<YYYY-mm-dd@HH:MM:SS>~`` (Ansible's naming), keeping metadata."""
    ts = time.strftime("%Y-%m-%d@%H:%M:%S", time.localtime())
    dest = f"{path}.{os.getpid()}.{ts}~"
    try:
        shutil.copy2(path, dest)
    except BaseException:
        # a full disk leaves a truncated copy: no half-written backup stays behind
        with suppress(OSError):
            os.unlink(dest)
        raise
    st = os.stat(path)
    if os.geteuid() == 0:
        os.chown(dest, st.st_uid, st.st_gid)
    return dest


def ensure_dir(d: str) -> bool:
    """Create ``d`` (and parents) 0755, owned by root when run as root. True if created."""
    if os.path.isdir(d):
        return False
    missing = []
    cur = d
    while cur and not os.path.exists(cur):
        missing.append(cur)
        cur = os.path.dirname(cur)
    os.makedirs(d, mode=DIR_MODE, exist_ok=True)
    for m in missing:
        try:
            os.chmod(m, DIR_MODE)
            if os.geteuid() == 0:
                os.chown(m, 0, 0)
        except OSError:
            pass
    return True


# ======================================================================================
# The whole operation
# ======================================================================================
@dataclass
class Result:
    path: str
    changed: bool
    existed: bool
    before: dict[str, Any]
    after: dict[str, Any]
    before_text: str
    after_text: str
    changed_keys: list[str]
    reload_required: bool
    restart_required: bool
    backup_file: str | None = None
    # dockerd --validate of the new content: True (it passed), None (not asked, or an engine
    # before 23.0 that cannot say)
    validated: bool | None = None
    created_dir: bool = False
    plugins: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def diff(self) -> dict[str, str]:
        return {
            "before": self.before_text,
            "after": self.after_text,
            "before_header": self.path if self.existed else f"{self.path} (absent)",
            "after_header": self.path,
        }


@dataclass(frozen=True)
class Content:
    """daemon.json as a caller already read it from the path given to :func:`apply`: its bytes,
    or ``None`` when the file does not exist. ``apply(..., check_mode=True, content=...)`` parses
    these instead of reading the file again (the role's host read, module_utils/host_state.py,
    holds them already); results and refusals are the same as when ``apply`` reads the file."""

    raw: bytes | None


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise DaemonConfigError(f"{path} is a directory, not a file; give the path of daemon.json") from None
    except PermissionError:
        raise DaemonConfigError(f"permission denied reading {path}: run as root (become: true)") from None


def _plan(
    path: str,
    raw: bytes | None,
    settings: Mapping[str, Any],
    removal: Removal,
    list_merge: str,
) -> Result:
    before = parse_document(raw, path) if raw is not None else {}
    after = merge(before, settings, removal, list_merge, path)
    keys = changed_keys(before, after)
    changed = not json_equal(before, after)
    reload_req, restart_req = classify(keys)
    before_text = "" if raw is None else raw.decode("utf-8")
    return Result(
        path=path,
        changed=changed,
        existed=raw is not None,
        before=before,
        after=after,
        before_text=before_text,
        after_text=render(after) if changed else before_text,
        changed_keys=keys,
        reload_required=reload_req,
        restart_required=restart_req,
    )


def apply(
    path: str = DEFAULT_PATH,
    settings: Mapping[str, Any] | None = None,
    remove: Sequence[Any] | None = None,
    *,
    list_merge: str = "union",
    backup: bool = False,
    check_mode: bool = False,
    check_flags: bool = True,
    check_plugins: bool = False,
    check_with_dockerd: bool = False,
    docker_socket: str = DEFAULT_DOCKER_SOCKET,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    env: HostEnv | None = None,
    client_factory: Callable[[], Any] | None = None,
    before_rename: Callable[[str], None] | None = None,
    content: Content | None = None,
    approve: Callable[[Result], None] | None = None,
) -> Result:
    """Merge ``settings`` into (and ``remove`` from) the daemon.json at ``path``.

    ``content``, in check mode only: the file as the caller already read it, used instead of a
    second read (a write always reads the file again under its lock).

    ``approve``: called with the planned result of a change (in check mode too), before anything
    is written; whatever it raises refuses the change (the daemon_json module checks there that
    dockerd can be reloaded as asked).

    ``check_with_dockerd``: before a change, ``dockerd --validate`` (Docker 23.0 and later) must
    accept the new content; a file dockerd would refuse on its next reload or start is refused
    here, naming what dockerd said (and whether the file already held it).

    Raises :class:`DaemonConfigError` on every refusal, before anything is written.
    """
    if content is not None and not check_mode:
        raise ValueError("content is for check mode only: a write reads the file under its lock")
    env = env or HostEnv()
    settings = dict(settings or {})
    if not path or not os.path.isabs(path):
        raise DaemonConfigError(f"path must be absolute, got {path!r}")
    if list_merge not in LIST_MERGE_MODES:
        raise DaemonConfigError(
            f"list_merge must be one of {', '.join(LIST_MERGE_MODES)}, not {list_merge!r}"
        )
    removal = parse_remove(remove)
    if os.path.islink(path):
        path = os.path.realpath(path)  # write the file the link points to, keep the link
    flags: list[FlagUse] = []
    if check_flags:
        flags = flags_for(path, env)
        conflicts = find_conflicts(settings, flags)
        if conflicts:
            raise conflict_error(conflicts, path)

    def finish(res: Result, plugins_checked: list[str] | None = None) -> Result:
        res = _finish(res, plugins_checked)
        if res.changed and approve is not None:
            approve(res)
        return res

    def _finish(res: Result, plugins_checked: list[str] | None = None) -> Result:
        if check_flags:
            stale = [c for c in find_conflicts(res.after, flags) if c.key not in settings]
            res.warnings = [
                f"{c.describe()} (already in {path}: dockerd will refuse to start until one is removed)"
                for c in stale
            ]
        if res.changed and check_with_dockerd:
            res.validated = _check_with_dockerd(res, env)
        if res.changed and check_plugins:
            names = res.after.get("authorization-plugins") or []
            if not isinstance(names, list):
                raise DaemonConfigError(
                    f"'authorization-plugins' in {path} is a {json_type(names)}, but dockerd expects an "
                    "array of plugin names; list it under remove and give it in settings to replace it. "
                    "Nothing was changed."
                )
            if plugins_checked is not None:
                res.plugins = plugins_checked
            elif names:
                factory = client_factory or _default_client_factory(docker_socket)
                res.plugins = check_authz_plugins(names, factory, env)
        return res

    parent = os.path.dirname(path)
    parent_exists = os.path.isdir(parent)
    if check_mode:
        raw = content.raw if content is not None else _read(path) if parent_exists else None
        return finish(_plan(path, raw, settings, removal, list_merge))
    created = False
    checked: list[str] | None = None
    if not parent_exists:
        # nothing to lock yet: decide (and refuse) before creating anything
        first = finish(_plan(path, None, settings, removal, list_merge))
        if not first.changed:
            return first
        checked = first.plugins if check_plugins else None
        created = ensure_dir(parent)

    with file_lock(path, lock_timeout):
        clean_stale_temps(path)
        res = _plan(path, _read(path), settings, removal, list_merge)
        res = finish(res, checked if checked is not None and created and not res.existed else None)
        res.created_dir = created
        if not res.changed:
            return res
        if backup and res.existed:
            res.backup_file = backup_file(path)
        res.warnings.extend(atomic_write(path, res.after_text.encode("utf-8"), before_rename=before_rename))
    return res


def _check_with_dockerd(res: Result, env: HostEnv) -> bool | None:
    """True when ``dockerd --validate`` accepts the new content, None when this dockerd cannot
    say (before 23.0, or not found); DaemonConfigError when it refuses it."""
    validate = env.dockerd_validate or run_dockerd_validate
    rc, output = validate(res.after_text)
    if _validate_unsupported(rc, output):
        return None
    if rc == 0:
        return True
    said = _validate_message(output, res.path)
    if res.existed:
        rc_before, before = validate(res.before_text)
        if rc_before != 0 and not _validate_unsupported(rc_before, before):
            raise DaemonConfigError(
                f"{res.path} already holds a configuration dockerd refuses (dockerd --validate: "
                f"{_validate_message(before, res.path)}): dockerd still runs the configuration it started "
                "with, and would refuse this file on its next reload or start. Fix the file by hand, then "
                "run again. Nothing was changed."
            )
    raise DaemonConfigError(
        f"dockerd would refuse {res.path} with this change (dockerd --validate: {said}); changed keys: "
        f"{', '.join(res.changed_keys) or '(none)'}. Nothing was changed."
    )


def _default_client_factory(socket_path: str) -> Callable[[], Any]:
    def make() -> Any:
        return DockerClient(socket_path, timeout=30)

    return make
