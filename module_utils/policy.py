# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""Policy inputs for the opa_authz role: rule variables -> validated config, Rego dialect, builtins.

Pure functions, stdlib only. Used by the filter plugins (``hardening.docker_authz.policy_config``
and ``hardening.docker_authz.rego_dialect``) while the role renders ``authz.rego``, and by the
controller-side compile check (module_utils/rego_check.py).

The contract between variables and rules is the project's rule catalog: one boolean variable per
rule, ``None`` (the role default) meaning "the profile decides", and a value set by the user always
winning over the profile.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ansible_collections.hardening.docker_authz.plugins.module_utils.opa_args import release_of, tag_of

PREFIX = "docker_authz_"
PROFILES = ("baseline", "restricted")
REGO_VERSIONS = ("auto", "v0", "v1")
ENFORCEMENT_MODES = ("enforce", "audit")

# rule id (the prefix of every deny reason) -> (variable, on in baseline, on in restricted)
RULES: dict[str, tuple[str, bool, bool]] = {
    "privileged": ("docker_authz_deny_privileged", True, True),
    "seccomp_unconfined": ("docker_authz_deny_seccomp_unconfined", True, True),
    "no_new_privileges": ("docker_authz_require_no_new_privileges", False, True),
    "resource_limits": ("docker_authz_require_resource_limits", False, True),
    "ports": ("docker_authz_restrict_ports", False, True),
    "root_user": ("docker_authz_deny_root_user", False, True),
    "sensitive_env": ("docker_authz_deny_sensitive_env", False, True),
    "host_namespaces": ("docker_authz_deny_host_namespaces", True, True),
    "capabilities": ("docker_authz_deny_added_capabilities", True, True),
    "apparmor_unconfined": ("docker_authz_deny_apparmor_unconfined", True, True),
    "selinux_disabled": ("docker_authz_deny_selinux_disabled", True, True),
    "unmasked_paths": ("docker_authz_deny_unmasked_paths", True, True),
    "sensitive_mounts": ("docker_authz_deny_sensitive_mounts", True, True),
    "devices": ("docker_authz_deny_devices", True, True),
    "plugin_changes": ("docker_authz_deny_plugin_changes", True, True),
    "swarm_changes": ("docker_authz_deny_swarm_changes", True, True),
    "runtimes": ("docker_authz_restrict_runtimes", True, True),
    "log_drivers": ("docker_authz_restrict_log_drivers", False, True),
    "remote_fetch": ("docker_authz_deny_remote_fetch", False, True),
    "readonly_rootfs": ("docker_authz_require_readonly_rootfs", False, False),
}
# docker_authz_trusted_registries is a list: the rule "trusted_registries" is on when it is not empty.

DOCKER_DEFAULT_CAPABILITIES = [
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
]
PROFILE_CAPABILITIES = {"baseline": DOCKER_DEFAULT_CAPABILITIES, "restricted": ["NET_BIND_SERVICE"]}

# Parameters with a fixed default (the role's defaults/main.yml carries the same values; a test
# compares them).
PARAMETER_DEFAULTS: dict[str, Any] = {
    "docker_authz_required_limits": ["memory", "cpu", "pids"],
    "docker_authz_max_memory_bytes": 0,
    "docker_authz_max_nano_cpus": 0,
    "docker_authz_allowed_host_ports": ["1024-65535"],
    "docker_authz_allowed_host_ips": [],
    "docker_authz_sensitive_env_keywords": [
        "password", "passwd", "pwd", "secret", "token", "api_key", "apikey", "access_key",
        "private_key", "credential",
    ],
    "docker_authz_sensitive_env_allowed": ["*_FILE"],
    "docker_authz_allowed_capabilities": None,
    "docker_authz_sensitive_host_paths": [
        "/", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/sys", "/usr", "/root",
        "/var/lib/docker", "/var/run/docker.sock", "/run/docker.sock", "/run/containerd",
        "/var/lib/containerd", "/run/docker", "/var/run/docker", "/run/dbus", "/var/run/dbus",
        "/run/systemd", "/var/run/systemd", "/var/spool/cron",
    ],
    "docker_authz_allowed_bind_sources": [],
    "docker_authz_allowed_runtimes": ["runc", "io.containerd.runc.v2"],
    "docker_authz_allowed_log_drivers": ["json-file", "local", "journald", "none"],
    "docker_authz_trusted_registries": [],
    "docker_authz_exempt_users": [],
    "docker_authz_enforcement": "enforce",
    "docker_authz_audit_rules": [],
}
LIMIT_NAMES = ("memory", "cpu", "pids")

# Every variable the policy is rendered from, in documentation order.
POLICY_VARIABLES: tuple[str, ...] = (
    "docker_authz_profile",
    *(var for var, _b, _r in RULES.values()),
    *PARAMETER_DEFAULTS,
)

_TRUE = {"true", "yes", "on", "1", "y", "t"}
_FALSE = {"false", "no", "off", "0", "n", "f"}


_REGISTRY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*(/[a-z0-9._/-]+)?/?")


class PolicyConfigError(ValueError):
    """A rule variable has a value the policy cannot be rendered from."""


# --------------------------------------------------------------------------- small helpers


def _fail(var: str, problem: str, fix: str) -> PolicyConfigError:
    return PolicyConfigError(f"{var}: {problem}. {fix}")


def _as_bool(var: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _fail(
        var,
        f"{value!r} is not a boolean",
        "Set it to true or false, or leave it unset (null) to let docker_authz_profile decide",
    )


def _as_list(var: str, value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable) or isinstance(value, Mapping):
        raise _fail(var, f"{value!r} is not a list", f"Give a YAML list of {what}")
    return list(value)


def _as_int(var: str, value: Any) -> int:
    if isinstance(value, bool):
        raise _fail(var, f"{value!r} is not a number", "Give a whole number, 0 for no ceiling")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    else:
        raise _fail(var, f"{value!r} is not a whole number", "Give a whole number, 0 for no ceiling")
    if number < 0:
        raise _fail(var, f"{number} is negative", "Give 0 (no ceiling) or a positive number")
    return number


def _exact_names(var: str, value: Any, what: str) -> dict[str, bool]:
    """A list of names compared exactly, as the daemon looks them up (runtimes, log drivers)."""
    names: dict[str, bool] = {}
    for item in _as_list(var, value, what):
        if not isinstance(item, str) or not item.strip() or item != item.strip():
            raise _fail(var, f"{item!r} is not a name", f"Give {what}, without spaces around them")
        names[item] = True
    return names


def go_clean(path: str) -> str:
    """Go ``path.Clean`` for an absolute path: the spelling the policy compares against."""
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)


def normalize_capability(name: str) -> str:
    """``cap_sys_admin``, ``CAP_SYS_ADMIN`` and ``sys_admin`` are all ``SYS_ADMIN``."""
    upper = name.strip().upper()
    return upper[4:] if upper.startswith("CAP_") else upper


def normalize_registry(entry: str) -> str:
    """A registry host or ``host/path`` prefix as the policy compares it (lower case, Hub = docker.io)."""
    value = entry.strip().lower().rstrip("/")
    host, sep, rest = value.partition("/")
    if host in ("index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"):
        host = "docker.io"
    return host + sep + rest


def parse_port_range(var: str, item: Any) -> list[int]:
    text = str(item).strip() if isinstance(item, (str, int)) and not isinstance(item, bool) else None
    match = re.fullmatch(r"(\d{1,5})(?:-(\d{1,5}))?", text or "")
    if not match:
        raise _fail(var, f"{item!r} is not a port or a port range",
                    'Give ports as "8080" or ranges as "1024-65535"')
    low = int(match.group(1))
    high = int(match.group(2) or low)
    if not 1 <= low <= high <= 65535:
        raise _fail(var, f"{item!r} is outside 1-65535 or its start is above its end",
                    'Give ports between 1 and 65535, ranges as "low-high"')
    return [low, high]


def env_pattern(var: str, pattern: Any) -> dict[str, Any]:
    """``*_FILE`` -> {"prefix": "", "suffix": "_file", "exact": False} (compared lower-cased)."""
    if not isinstance(pattern, str) or not pattern.strip():
        raise _fail(var, f"{pattern!r} is not a name pattern", 'Give patterns such as "*_FILE" or "MY_*"')
    text = pattern.strip().lower()
    if text.count("*") > 1:
        raise _fail(var, f"{pattern!r} has more than one *",
                    'Use at most one * per pattern ("*_FILE", "APP_*", "A*B")')
    prefix, star, suffix = text.partition("*")
    return {"prefix": prefix, "suffix": suffix, "exact": not star}


# --------------------------------------------------------------------------- the config object


def resolve_rules(profile: str, variables: Mapping[str, Any]) -> dict[str, bool]:
    """Rule id -> enabled: the user's value when set, else the profile's default."""
    column = PROFILES.index(profile)
    enabled = {}
    for rule_id, (var, baseline, restricted) in RULES.items():
        value = variables.get(var)
        enabled[rule_id] = (baseline, restricted)[column] if value is None else _as_bool(var, value)
    return enabled


def build_policy_config(variables: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the rule variables and return the ``config`` object rendered into authz.rego.

    ``variables`` maps variable names (``docker_authz_...``) to values; a missing or ``None`` rule
    variable means "the profile decides", a missing parameter takes its documented default.
    Raises :class:`PolicyConfigError` naming the variable and the fix.
    """
    unknown = sorted(k for k in variables if k.startswith(PREFIX) and k not in POLICY_VARIABLES)
    if unknown:
        raise PolicyConfigError(
            f"{', '.join(unknown)}: not a policy variable of hardening.docker_authz. Check the spelling "
            f"against roles/opa_authz/README.md (rule variables: {', '.join(POLICY_VARIABLES)})"
        )
    profile = variables.get("docker_authz_profile") or "baseline"
    if profile not in PROFILES:
        raise _fail("docker_authz_profile", f"{profile!r} is not a profile", "Use baseline or restricted")

    def param(name: str) -> Any:
        value = variables.get(name, PARAMETER_DEFAULTS[name])
        if value is None and name != "docker_authz_allowed_capabilities":
            return PARAMETER_DEFAULTS[name]
        return value

    rules = resolve_rules(profile, variables)

    var = "docker_authz_required_limits"
    limits = [str(x).strip().lower() for x in _as_list(var, param(var), "limit names")]
    bad = [x for x in limits if x not in LIMIT_NAMES]
    if bad:
        raise _fail(var, f"unknown limit(s) {', '.join(bad)}", f"Use a subset of {', '.join(LIMIT_NAMES)}")
    if rules["resource_limits"] and not limits:
        raise _fail(var, "the list is empty while docker_authz_require_resource_limits is on",
                    "List at least one of memory, cpu, pids, or turn "
                    "docker_authz_require_resource_limits off")

    var = "docker_authz_allowed_host_ports"
    ports = [parse_port_range(var, x) for x in _as_list(var, param(var), 'ports or ranges ("1024-65535")')]

    var = "docker_authz_allowed_host_ips"
    ips: dict[str, bool] = {}
    for item in _as_list(var, param(var), "IP addresses"):
        try:
            ips[str(ipaddress.ip_address(str(item).strip()))] = True
        except ValueError:
            raise _fail(
                var,
                f"{item!r} is not an IP address",
                        'Give literal addresses such as "127.0.0.1" or "0.0.0.0" (all IPv4 interfaces)',
            ) from None

    var = "docker_authz_sensitive_env_keywords"
    keywords = []
    for item in _as_list(var, param(var), "keywords"):
        if not isinstance(item, str) or not item.strip():
            raise _fail(var, f"{item!r} is not a keyword", 'Give non-empty words such as "password"')
        keywords.append(item.strip().lower())
    if rules["sensitive_env"] and not keywords:
        raise _fail(var, "the list is empty while docker_authz_deny_sensitive_env is on",
                    "List keywords, or turn docker_authz_deny_sensitive_env off")

    var = "docker_authz_sensitive_env_allowed"
    allowed_env = [env_pattern(var, x) for x in _as_list(var, param(var), 'name patterns ("*_FILE")')]

    var = "docker_authz_allowed_capabilities"
    caps_value = param(var)
    if caps_value is None:
        caps_list = PROFILE_CAPABILITIES[profile]
    else:
        caps_list = _as_list(var, caps_value, "capability names")
    caps: dict[str, bool] = {}
    for item in caps_list:
        cap = normalize_capability(item) if isinstance(item, str) else ""
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*", cap):
            raise _fail(var, f"{item!r} is not a capability name", 'Give names such as "NET_BIND_SERVICE"')
        if cap == "ALL":
            raise _fail(
                var,
                "ALL cannot be allowed (it is every capability, i.e. --privileged minus devices)",
                "List the capabilities containers need, or turn docker_authz_deny_added_capabilities off",
            )
        caps[cap] = True

    var = "docker_authz_sensitive_host_paths"
    paths = []
    for item in _as_list(var, param(var), "absolute host paths"):
        if not isinstance(item, str) or not item.startswith("/"):
            raise _fail(var, f"{item!r} is not an absolute path", 'Give host paths such as "/etc"')
        cleaned = go_clean(item)
        if cleaned not in paths:
            paths.append(cleaned)

    var = "docker_authz_allowed_bind_sources"
    bind_sources = []
    for item in _as_list(var, param(var), "absolute host paths"):
        if not isinstance(item, str) or not item.startswith("/"):
            raise _fail(var, f"{item!r} is not an absolute path", 'Give host directories such as "/srv/data"')
        cleaned = go_clean(item)
        if cleaned == "/":
            raise _fail(var, "/ would allow every host path", "List the directories containers may bind, "
                        "or leave the list empty (off)")
        if cleaned not in bind_sources:
            bind_sources.append(cleaned)

    runtimes = _exact_names("docker_authz_allowed_runtimes", param("docker_authz_allowed_runtimes"),
                      'runtime names such as "runc" or "io.containerd.runsc.v1"')
    log_drivers = _exact_names("docker_authz_allowed_log_drivers", param("docker_authz_allowed_log_drivers"),
                         'log driver names such as "json-file" or "journald"')

    var = "docker_authz_trusted_registries"
    registries = []
    for item in _as_list(var, param(var), 'registry hosts or "host/path" prefixes'):
        if not isinstance(item, str) or "//" in item or not _REGISTRY.fullmatch(item.strip()):
            raise _fail(var, f"{item!r} is not a registry host or host/path prefix",
                        'Give entries such as "docker.io", "registry.example.com:5000" or "ghcr.io/my-org" '
                        "(no scheme, no tag)")
        registries.append(normalize_registry(item))
    rules["trusted_registries"] = bool(registries)

    var = "docker_authz_exempt_users"
    exempt: dict[str, bool] = {}
    for item in _as_list(var, param(var), "TLS client certificate common names"):
        if not isinstance(item, str) or not item.strip():
            raise _fail(var, f"{item!r} is not a user name",
                        "Give the common names (CN) of TLS client certificates; an empty name would exempt "
                        "every client of the unix socket")
        exempt[item.strip()] = True

    enforcement, audit_rules = audit_settings(
        variables.get("docker_authz_enforcement"), variables.get("docker_authz_audit_rules")
    )

    return {
        "rules": rules,
        "required_limits": {name: True for name in limits},
        "max_memory_bytes": _as_int("docker_authz_max_memory_bytes", param("docker_authz_max_memory_bytes")),
        "max_nano_cpus": _as_int("docker_authz_max_nano_cpus", param("docker_authz_max_nano_cpus")),
        "allowed_host_ports": ports,
        "allowed_host_ports_text": ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in ports) or "none",
        "allowed_host_ips": ips,
        "sensitive_env_keywords": keywords,
        "sensitive_env_allowed": allowed_env,
        "allowed_capabilities": caps,
        "sensitive_host_paths": paths,
        "allowed_bind_sources": bind_sources,
        "allowed_runtimes": runtimes,
        "allowed_log_drivers": log_drivers,
        "trusted_registries": registries,
        "exempt_users": exempt,
        "enforcement": enforcement,
        "audit_rules": {rule_id: True for rule_id in audit_rules},
    }


def audit_settings(enforcement: Any, audit_rules: Any) -> tuple[str, list[str]]:
    """(enforcement, the rule ids in audit) from docker_authz_enforcement and
    docker_authz_audit_rules: in ``audit`` every rule is in audit; in ``enforce`` the rules listed.
    Rules in audit deny nothing: their reasons go to the set ``audit`` instead of ``deny``."""
    var = "docker_authz_enforcement"
    mode = "enforce" if enforcement is None else enforcement
    if not isinstance(mode, str) or mode.strip().lower() not in ENFORCEMENT_MODES:
        raise _fail(var, f"{enforcement!r} is not an enforcement mode",
                    "Use enforce (rules deny) or audit (no rule denies; every would-be denial is logged)")
    mode = mode.strip().lower()
    var = "docker_authz_audit_rules"
    listed: list[str] = []
    for item in _as_list(var, audit_rules, "rule ids"):
        rule_id = item.strip().lower() if isinstance(item, str) else item
        if rule_id not in RULE_IDS:
            raise _fail(var, f"{item!r} is not a rule id",
                        f"Use rule ids of the policy: {', '.join(RULE_IDS)}")
        if rule_id not in listed:
            listed.append(rule_id)
    if mode == "audit":
        return mode, list(RULE_IDS)
    return mode, [rule_id for rule_id in RULE_IDS if rule_id in listed]


# --------------------------------------------------------------------------- the Rego dialect

DEFAULT_PLUGIN_IMAGE = "ghcr.io/open-policy-agent/opa-docker-authz:v0.10-linux-{arch}"


def rego_dialect(image: str | None, rego_version: str | None = "auto") -> str:
    """``v0`` or ``v1`` for the plugin image (tags 0.2-0.8 embed OPA 0.9.1-0.30: v0; later: v1)."""
    version = (rego_version or "auto").strip().lower()
    if version not in REGO_VERSIONS:
        raise _fail("docker_authz_rego_version", f"{rego_version!r} is not a Rego version",
                    "Use auto (chosen from docker_authz_plugin_image), v0 (plugin 0.2-0.8) "
                    "or v1 (plugin 0.9+)")
    if version != "auto":
        return version
    image = image or DEFAULT_PLUGIN_IMAGE
    tag = tag_of(image)
    if tag in ("", "latest", "edge"):
        return "v1"
    release = release_of(image)
    if release is None:
        raise _fail("docker_authz_rego_version",
                    f"the Rego dialect cannot be told from the plugin image tag {tag!r} "
                    f"(docker_authz_plugin_image={image!r})",
                    "Set docker_authz_rego_version to v1 (opa-docker-authz 0.9 and later) or v0 "
                    "(0.2 to 0.8); a policy in the wrong dialect makes every Docker API call fail")
    return "v0" if release <= (0, 8) else "v1"


# --------------------------------------------------------------------------- OPA builtins


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# From the project's reference opa-builtins-by-version.md (read from OPA's own sources).

OPA_0_9_1_BUILTINS = _names(
    """
    abs all and any array.concat assign base64.decode base64.encode base64url.decode base64url.encode
    cast_array cast_boolean cast_null cast_object cast_set cast_string concat contains count
    crypto.x509.parse_certificates div endswith eq equal format_int gt gte http.send indexof
    intersection io.jwt.decode io.jwt.verify_es256 io.jwt.verify_hs256 io.jwt.verify_ps256
    io.jwt.verify_rs256 is_array is_boolean is_null is_number is_object is_set is_string json.marshal
    json.unmarshal lower lt lte max min minus mul neq or plus product re_match regex.globs_match
    regex.split rego.parse_module rem replace round set_diff sort split sprintf startswith substring
    sum time.clock time.date time.now_ns time.parse_duration_ns time.parse_ns time.parse_rfc3339_ns
    time.weekday to_number trace trim type_name union upper urlquery.decode urlquery.encode
    urlquery.encode_object walk yaml.marshal yaml.unmarshal
    """
)
OPA_1_3_0_BUILTINS = _names(
    """
    abs all and any array.concat array.reverse array.slice assign base64.decode base64.encode
    base64.is_valid base64url.decode base64url.encode base64url.encode_no_pad bits.and bits.lsh
    bits.negate bits.or bits.rsh bits.xor cast_array cast_boolean cast_null cast_object cast_set
    cast_string ceil concat contains count crypto.hmac.equal crypto.hmac.md5 crypto.hmac.sha1
    crypto.hmac.sha256 crypto.hmac.sha512 crypto.md5 crypto.parse_private_keys crypto.sha1 crypto.sha256
    crypto.x509.parse_and_verify_certificates crypto.x509.parse_and_verify_certificates_with_options
    crypto.x509.parse_certificate_request crypto.x509.parse_certificates crypto.x509.parse_keypair
    crypto.x509.parse_rsa_private_key div endswith eq equal floor format_int glob.match glob.quote_meta
    graph.reachable graph.reachable_paths graphql.is_valid graphql.parse graphql.parse_and_verify
    graphql.parse_query graphql.parse_schema graphql.schema_is_valid gt gte hex.decode hex.encode
    http.send indexof indexof_n internal.member_2 internal.member_3 internal.print internal.test_case
    intersection io.jwt.decode io.jwt.decode_verify io.jwt.encode_sign io.jwt.encode_sign_raw
    io.jwt.verify_es256 io.jwt.verify_es384 io.jwt.verify_es512 io.jwt.verify_hs256 io.jwt.verify_hs384
    io.jwt.verify_hs512 io.jwt.verify_ps256 io.jwt.verify_ps384 io.jwt.verify_ps512 io.jwt.verify_rs256
    io.jwt.verify_rs384 io.jwt.verify_rs512 is_array is_boolean is_null is_number is_object is_set
    is_string json.filter json.is_valid json.marshal json.marshal_with_options json.match_schema
    json.patch json.remove json.unmarshal json.verify_schema lower lt lte max min minus mul neq
    net.cidr_contains net.cidr_contains_matches net.cidr_expand net.cidr_intersects net.cidr_is_valid
    net.cidr_merge net.cidr_overlap net.lookup_ip_addr numbers.range numbers.range_step object.filter
    object.get object.keys object.remove object.subset object.union object.union_n opa.runtime or plus
    print product providers.aws.sign_req rand.intn re_match regex.find_all_string_submatch_n
    regex.find_n regex.globs_match regex.is_valid regex.match regex.replace regex.split
    regex.template_match rego.metadata.chain rego.metadata.rule rego.parse_module rem replace round
    semver.compare semver.is_valid set_diff sort split sprintf startswith strings.any_prefix_match
    strings.any_suffix_match strings.count strings.render_template strings.replace_n strings.reverse
    substring sum time.add_date time.clock time.date time.diff time.format time.now_ns
    time.parse_duration_ns time.parse_ns time.parse_rfc3339_ns time.weekday to_number trace trim
    trim_left trim_prefix trim_right trim_space trim_suffix type_name union units.parse
    units.parse_bytes upper urlquery.decode urlquery.decode_object urlquery.encode
    urlquery.encode_object uuid.parse uuid.rfc4122 walk yaml.is_valid yaml.marshal yaml.unmarshal
    """
)

# Rejected at compile time in v1 mode (OPA 1.x, and 0.60 with `import rego.v1`).
OPA_DEPRECATED_BUILTINS = _names(
    "all any cast_array cast_boolean cast_null cast_object cast_set cast_string net.cidr_overlap re_match "
    "set_diff"
)
# In OPA 1.3.0 but not yet in 0.60.0 (plugin 0.9, the oldest that takes a v1 policy).
OPA_AFTER_0_60_BUILTINS = _names(
    "crypto.x509.parse_and_verify_certificates_with_options internal.test_case json.marshal_with_options "
    "strings.count"
)


def allowed_builtins(dialect: str) -> frozenset[str]:
    """The builtins a policy of this dialect may call: v0 -> OPA 0.9.1 (plugin 0.4); v1 -> OPA 1.3.0
    without the deprecated ones (and without the four 0.60.0 lacks, so plugin 0.9 runs it too)."""
    if dialect == "v0":
        return OPA_0_9_1_BUILTINS
    if dialect == "v1":
        return OPA_1_3_0_BUILTINS - OPA_DEPRECATED_BUILTINS - OPA_AFTER_0_60_BUILTINS
    raise ValueError(f"unknown Rego dialect {dialect!r} (expected v0 or v1)")


# --------------------------------------------------------------------------- policy sources

# The policy's sources (roles/opa_authz/files/policy): a shared library and one file per rule id,
# all Rego v1 in `package docker.authz`. A rule that is off is left out of what is shipped.
POLICY_LIBRARY = "lib.rego"
RULE_IDS: tuple[str, ...] = (*RULES, "trusted_registries")
BUNDLE_ROOT = "docker/authz"
# The bundle's decision-log policy (package system.log: OPA's default drop_decision and
# mask_decision paths), shipped as it is under its own manifest root; not in the single file.
LOG_POLICY = "system/log.rego"
LOG_ROOT = "system/log"
# Every source: comments, the package, the rego.v1 import and (in files that read the config) an
# import of data.docker.authz.config, which in a bundle is the data file and in the single file
# the `config` constant itself (so the single file leaves the import out).
_HEADER = re.compile(
    r"\A(?:#[^\n]*\n|\n)*package docker\.authz\n\nimport rego\.v1\n"
    r"(?:import data\.docker\.authz\.config\n)?\n"
)


def rule_source(rule_id: str) -> str:
    """The source file of a rule id, relative to the policy source folder."""
    return f"rules/{rule_id}.rego"


def policy_source_names(config: Mapping[str, Any]) -> list[str]:
    """The source files a policy with this config is made of: the library, then every rule that
    is on, in catalog order."""
    rules = config.get("rules", {})
    return [POLICY_LIBRARY, *(rule_source(rule_id) for rule_id in RULE_IDS if rules.get(rule_id))]


def _source_body(name: str, text: str) -> str:
    """A source file without its header (leading comments, package line, rego.v1 import)."""
    match = _HEADER.match(text)
    if not match:
        raise ValueError(
            f"policy source {name} must start with 'package docker.authz', a blank line, "
            "'import rego.v1' (and 'import data.docker.authz.config' if it reads the config) and a "
            "blank line"
        )
    return text[match.end():].rstrip("\n") + "\n"


_V0_HEADS = (
    (re.compile(r"^(package \S+)$"), r"\1"),
    (re.compile(r"^default (\S+) := (.*)$"), r"default \1 = \2"),
    (re.compile(r"^(\w+) contains (.*) if \{$"), r"\1[\2] {"),
    (re.compile(r"^(\w+(?:\([^)]*\))?) := (.*) if \{$"), r"\1 = \2 {"),
    (re.compile(r"^(\w+(?:\([^)]*\))?) if \{$"), r"\1 {"),
    (re.compile(r"^(\w+) := (.*)$"), r"\1 = \2"),
)


def rego_v1_to_v0(text: str) -> str:
    """Rule heads in v0 syntax (OPA 0.9.1: ``p = v { }``, ``deny[msg] { }``, no ``if``/``contains``/
    ``:=`` in heads). The sources keep every head on one line at column 0 and bodies indented, so
    only column-0 lines change; a head this function does not know is an error, not a guess."""
    out = []
    for line in text.split("\n"):
        if line and not line[0].isspace() and line[0] not in "#}":
            for pattern, replacement in _V0_HEADS:
                new, count = pattern.subn(replacement, line)
                if count:
                    line = new
                    break
            else:
                raise ValueError(f"rule head not in the sources' style (one line, column 0): {line!r}")
        out.append(line)
    return "\n".join(out)


_DENY_HEAD = re.compile(r"^deny contains ", re.M)


def audit_heads(name: str, text: str) -> str:
    """A rule's source with its reasons going to the set ``audit`` instead of ``deny`` (the rule
    is in audit: it denies nothing, ``allow`` ignores ``audit``). The reasons keep their text
    ("<rule id>: ..."). Done once when the policy is assembled, so audit costs nothing per
    request; the library's always-on checks (input, request, body) are never rewritten."""
    new, count = _DENY_HEAD.subn("audit contains ", text)
    if not count:
        raise ValueError(f"policy source {name} has no 'deny contains' rule head to put in audit")
    return new


def _audited(name: str, text: str, config: Mapping[str, Any]) -> str:
    audit = config.get("audit_rules") or {}
    for rule_id in RULE_IDS:
        if name == rule_source(rule_id) and audit.get(rule_id):
            return audit_heads(name, text)
    return text


def config_rego(config: Mapping[str, Any]) -> str:
    """The config object as the Rego constant of the single-file policy."""
    return "config := " + json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def assemble_policy(
    sources: Mapping[str, str], config: Mapping[str, Any], dialect: str, *, compact: bool = True
) -> str:
    """The single-file policy (policy-file mode) from the sources: package, config constant, the
    library, the rules that are on. ``sources`` maps source names to their text. ``compact``
    (what the role ships) specialises it to the config (:func:`specialise_policy`); without it the
    sources are kept whole, comments included (the reference the compact file is tested against)."""
    if dialect not in ("v0", "v1"):
        raise ValueError(f"unknown Rego dialect {dialect!r} (expected v0 or v1)")
    parts = ["package docker.authz\n\n" + ("import rego.v1\n\n" if dialect == "v1" else "")]
    parts.append(
        "# " + "-" * 90 + "\n"
        "# Rules switched on and their parameters, rendered from the role variables (in a bundle\n"
        "# this is the data document data.docker.authz.config).\n"
        "# " + "-" * 90 + "\n"
    )
    parts.append(config_rego(config))
    for name in policy_source_names(config):
        parts.append(f"\n# {'=' * 90}\n# {name}\n# {'=' * 90}\n")
        parts.append(_source_body(name, _audited(name, sources[name], config)))
    text = "".join(parts)
    if compact:
        text = specialise_policy(text, config)
        if dialect == "v1":
            text = tables_as_json(text)
    if dialect == "v0":
        text = rego_v1_to_v0(text)
    return text


def policy_bundle_files(sources: Mapping[str, str], config: Mapping[str, Any]) -> dict[str, str]:
    """The files of an OPA bundle (bundle mode, Rego v1) as {path inside the bundle: content}:
    the sources as they are under docker/authz/, the config as docker/authz/data.json, and a
    .manifest with roots ["docker/authz"] and a revision that is the hash of everything else; with
    ``system/log.rego`` in ``sources``, that decision-log policy too under the root system/log."""
    names = policy_source_names(config)
    for name in names:
        _source_body(name, sources[name])  # the same header check as the single file
    files = {f"{BUNDLE_ROOT}/{name}": _audited(name, sources[name], config) for name in names}
    files[f"{BUNDLE_ROOT}/data.json"] = json.dumps({"config": config}, indent=2, sort_keys=True) + "\n"
    roots = [BUNDLE_ROOT]
    if LOG_POLICY in sources:
        files[LOG_POLICY] = sources[LOG_POLICY]
        roots.append(LOG_ROOT)
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(f"{path}\0{len(files[path].encode())}\0".encode())
        digest.update(files[path].encode())
    manifest = {"revision": digest.hexdigest(), "roots": roots}
    files[".manifest"] = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    return dict(sorted(files.items()))


# --------------------------------------------------------------------------- the compact single file
#
# In policy-file mode the plugin parses and compiles the whole file on EVERY Docker API call, and
# OPA's compile cost grows with every rule, reference and comprehension in it. So the single file
# is the sources specialised to this config: rule bodies that a guard on the config makes false
# are left out (e.g. `count(config.allowed_bind_sources) > 0` while that list is empty), then every
# rule that allow/deny/audit can no longer reach, and comments. Both steps remove only what can
# never produce a value for this config; tests prove the result decides every request of the
# corpus exactly as the full assembly does (same allow, same reasons).

ROOT_RULES = ("allow", "deny", "audit", "config")
_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"|`[^`]*`')
_NAME = re.compile(r"(?<![.\w])[A-Za-z_]\w*")
_SECTION = re.compile(r"^# (?:lib\.rego|rules/\w+\.rego|config)$")
_NOT = re.compile(r"^\s*not\s+(\w+)")
_HEAD_NAME = re.compile(r"^(?:default )?([A-Za-z_]\w*)")
# Guards on the config that are false for some configs: their rule body can then never succeed.
_GUARDS = (
    (re.compile(r"^count\(config\.(\w+)\) > 0$"), lambda value: bool(value)),
    (re.compile(r"^config\.(\w+) > 0$"), lambda value: value > 0),
    (re.compile(r"^config\.(\w+)\[[^\]]+\]$"), lambda value: bool(value)),
)


def _chunks(text: str) -> list[list[str]]:
    """The top-level statements of a Rego text in the sources' style: a head at column 0, its
    body indented, the closing brace at column 0. Comment-only lines are chunks of their own."""
    chunks: list[list[str]] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        chunk = [line]
        i += 1
        if line.endswith("{") and not line.startswith("#"):
            while i < len(lines) and lines[i] != "}":
                chunk.append(lines[i])
                i += 1
            if i == len(lines):
                raise ValueError(f"policy statement without its closing brace at column 0: {line!r}")
            chunk.append(lines[i])
            i += 1
        chunks.append(chunk)
    return chunks


def _chunk_name(chunk: list[str]) -> str | None:
    head = chunk[0]
    if not head or head[0].isspace() or head.startswith(("#", "package ", "import ")):
        return None
    match = _HEAD_NAME.match(head)
    return match.group(1) if match else None


def _names_used(chunk: list[str], own: str | None) -> set[str]:
    used: set[str] = set()
    for number, line in enumerate(chunk):
        if line.lstrip().startswith("#"):
            continue
        code = _STRING.sub('""', line)
        if number == 0 and own:
            code = code[len(own):] if code.startswith(own) else code.replace(own, "", 1)
        used.update(_NAME.findall(code))
    return used


def _never_true(chunk: list[str], config: Mapping[str, Any]) -> bool:
    """A body literal is a config guard that is false for this config."""
    for line in chunk[1:]:
        for pattern, holds in _GUARDS:
            match = pattern.match(line.strip())
            if match and match.group(1) in config and not holds(config[match.group(1)]):
                return True
    return False


def specialise_policy(text: str, config: Mapping[str, Any], roots: Iterable[str] = ROOT_RULES) -> str:
    """The assembled single file (Rego v1) for this config without comments, without the rule
    bodies a false config guard disables, and without the rules the roots no longer reach."""
    chunks = [c for c in _chunks(text) if _SECTION.match(c[0]) or (c[0].strip() and not c[0].startswith("#"))]
    names = [_chunk_name(c) for c in chunks]
    dead = {i for i, c in enumerate(chunks) if names[i] and _never_true(c, config)}
    while True:  # a rule left without any body: the bodies that need it are dead too
        defined = {names[i] for i in range(len(chunks)) if names[i] and i not in dead}
        gone = {names[i] for i in dead} - defined
        more = set()
        for i, chunk in enumerate(chunks):
            if i in dead or not names[i]:
                continue
            missing = _names_used(chunk, names[i]) & gone
            for line in chunk[1:]:
                negated = _NOT.match(line)
                if negated and negated.group(1) in missing:
                    raise ValueError(
                        f"rule {names[i]} negates {line.strip()!r}, which the config leaves undefined"
                    )
            if missing:
                more.add(i)
        if not more:
            break
        dead |= more
    uses: dict[str, set[str]] = {}
    for i, chunk in enumerate(chunks):
        if names[i] and i not in dead:
            uses.setdefault(names[i], set()).update(_names_used(chunk, names[i]))
    reached: set[str] = set()
    todo = [name for name in roots if name in uses]
    while todo:
        name = todo.pop()
        if name in reached:
            continue
        reached.add(name)
        todo.extend(n for n in uses.get(name, ()) if n in uses and n not in reached)
    out = []
    for i, chunk in enumerate(chunks):
        if _SECTION.match(chunk[0]):
            out.append(chunk[0])
        elif names[i] is None or (i not in dead and names[i] in reached):
            out.append("\n".join(ln for ln in chunk if ln.strip() and not ln.lstrip().startswith("#")))
    return "\n".join(out) + "\n"


# A literal table (``write_endpoints := {...}``) costs OPA's compiler a little for
# every term in it on every compile (types, rewriting, indexing); the same value as a JSON string
# handed to json.unmarshal is one string term, decoded once per evaluation. Measured with OPA
# 1.7.1 (the plugin's): the restricted compact file allocates 10.7 instead of 11.1 MB per
# compile + evaluate. Only tables that are plain JSON (no sets, references or floats) change;
# v1 only (OPA 0.9.1's v0 parser takes no call in a rule head).
_CONSTANT_HEAD = re.compile(r"^([A-Za-z_]\w*) := ([\[{].*)$")
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


def _no_float(text: str) -> Any:
    raise ValueError(f"not an integer: {text}")


def _json_literal(code: str) -> Any:
    """The value of a Rego literal that is plain JSON (trailing commas allowed), else None."""
    pieces = []
    last = 0
    for match in _STRING.finditer(code):
        pieces.append(_TRAILING_COMMA.sub(r"\1", code[last:match.start()]))
        pieces.append(match.group(0))
        last = match.end()
    pieces.append(_TRAILING_COMMA.sub(r"\1", code[last:]))
    try:
        return json.loads("".join(pieces), parse_float=_no_float, parse_constant=_no_float)
    except ValueError:
        return None


def tables_as_json(text: str) -> str:
    """A compact single file (Rego v1) with every literal table rule ``name := {...}`` or
    ``name := [...]`` written as ``name := json.unmarshal("...")``: the same value. The config
    stays a literal (module_utils/report.py reads it from a deployed file)."""
    out = []
    for chunk in _chunks(text):
        match = _CONSTANT_HEAD.match(chunk[0])
        value = _json_literal("\n".join([match.group(2), *chunk[1:]])) if match else None
        if match and match.group(1) != "config" and isinstance(value, (dict, list)):
            encoded = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
            out.append(f"{match.group(1)} := json.unmarshal({json.dumps(encoded, ensure_ascii=False)})")
        else:
            out.extend(chunk)
    return "\n".join(out)
