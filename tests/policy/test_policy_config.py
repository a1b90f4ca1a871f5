"""module_utils/policy.py and the filter plugin: profiles, overrides, validation, dialect."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.hardening.docker_authz.plugins.filter.policy import FilterModule
from module_utils.policy import (
    PARAMETER_DEFAULTS,
    RULES,
    PolicyConfigError,
    build_policy_config,
    go_clean,
    rego_dialect,
)

FILTERS = FilterModule().filters()


@pytest.mark.parametrize("profile", ["baseline", "restricted"])
def test_profile_defaults(profile):
    config = build_policy_config({"docker_authz_profile": profile})
    column = 1 if profile == "baseline" else 2
    expected = {rid: row[column] for rid, row in RULES.items()}
    assert config["rules"] == {**expected, "trusted_registries": False}
    caps = set(config["allowed_capabilities"])
    assert ("NET_RAW" in caps) == (profile == "baseline") and "NET_BIND_SERVICE" in caps


def test_user_values_win_and_accept_ansible_booleans():
    config = build_policy_config(
        {
            "docker_authz_profile": "restricted",
            "docker_authz_deny_privileged": False,
            "docker_authz_require_readonly_rootfs": "yes",
            "docker_authz_deny_root_user": "false",
            "docker_authz_trusted_registries": ["Index.Docker.io/", "registry.example.com:5000/team"],
        }
    )
    assert config["rules"]["privileged"] is False
    assert config["rules"]["readonly_rootfs"] is True
    assert config["rules"]["root_user"] is False
    assert config["rules"]["no_new_privileges"] is True
    assert config["rules"]["trusted_registries"] is True
    assert config["trusted_registries"] == ["docker.io", "registry.example.com:5000/team"]


def test_parameters_are_normalised():
    config = build_policy_config(
        {
            "docker_authz_allowed_capabilities": ["cap_net_admin", "Sys_Ptrace"],
            "docker_authz_sensitive_host_paths": ["/etc/", "//var/lib/docker/../docker", "/etc"],
            "docker_authz_allowed_host_ports": ["80", 443, "1024-65535"],
            "docker_authz_allowed_host_ips": ["127.0.0.1", "::1"],
            "docker_authz_sensitive_env_allowed": ["*_FILE", "APP_*", "EXACT"],
            "docker_authz_required_limits": ["MEMORY"],
            "docker_authz_max_memory_bytes": "1073741824",
        }
    )
    assert config["allowed_capabilities"] == {"NET_ADMIN": True, "SYS_PTRACE": True}
    assert config["sensitive_host_paths"] == ["/etc", "/var/lib/docker"]
    assert config["allowed_host_ports"] == [[80, 80], [443, 443], [1024, 65535]]
    assert config["allowed_host_ports_text"] == "80, 443, 1024-65535"
    assert config["allowed_host_ips"] == {"127.0.0.1": True, "::1": True}
    assert config["sensitive_env_allowed"] == [
        {"prefix": "", "suffix": "_file", "exact": False},
        {"prefix": "app_", "suffix": "", "exact": False},
        {"prefix": "exact", "suffix": "", "exact": True},
    ]
    assert config["required_limits"] == {"memory": True}
    assert config["max_memory_bytes"] == 1073741824


BAD = [
    ("docker_authz_profile", "strict", "baseline or restricted"),
    ("docker_authz_deny_privileged", "maybe", "true or false"),
    ("docker_authz_required_limits", ["disk"], "subset of memory, cpu, pids"),
    ("docker_authz_required_limits", "memory", "YAML list"),
    ("docker_authz_allowed_host_ports", ["70000"], "between 1 and 65535"),
    ("docker_authz_allowed_host_ports", ["90-80"], "low-high"),
    ("docker_authz_allowed_host_ports", ["http"], "1024-65535"),
    ("docker_authz_allowed_host_ips", ["localhost"], "literal addresses"),
    ("docker_authz_sensitive_env_keywords", [""], "non-empty words"),
    ("docker_authz_sensitive_env_allowed", ["*A*"], "at most one *"),
    ("docker_authz_allowed_capabilities", ["ALL"], "List the capabilities"),
    ("docker_authz_allowed_capabilities", ["sys admin"], "NET_BIND_SERVICE"),
    ("docker_authz_sensitive_host_paths", ["etc"], "host paths such as"),
    ("docker_authz_trusted_registries", ["https://registry.example.com"], "no scheme"),
    ("docker_authz_exempt_users", [""], "common names"),
    ("docker_authz_max_memory_bytes", -1, "positive"),
    ("docker_authz_max_nano_cpus", "2 cpus", "whole number"),
    ("docker_authz_deny_privilegd", True, "not a policy variable"),
]


@pytest.mark.parametrize(("var", "value", "fix"), BAD, ids=[f"{v}={x!r}" for v, x, _ in BAD])
def test_invalid_values_are_refused_naming_variable_and_fix(var, value, fix):
    with pytest.raises(PolicyConfigError) as err:
        build_policy_config({var: value})
    assert str(err.value).startswith(var) and fix in str(err.value)
    with pytest.raises(AnsibleFilterError, match=var):
        FILTERS["policy_config"]({var: value})


def test_empty_lists_for_enabled_rules_are_refused():
    with pytest.raises(PolicyConfigError, match="docker_authz_required_limits"):
        build_policy_config({"docker_authz_profile": "restricted", "docker_authz_required_limits": []})
    assert build_policy_config({"docker_authz_required_limits": []})["required_limits"] == {}


@pytest.mark.parametrize(
    ("image", "dialect"),
    [
        ("openpolicyagent/opa-docker-authz-v2:0.4", "v0"),
        ("openpolicyagent/opa-docker-authz-v2:0.2", "v0"),
        ("docker.io/openpolicyagent/opa-docker-authz-v2:0.8", "v0"),
        ("mirror:5000/opa-docker-authz-v2:v0.8.1", "v0"),
        ("openpolicyagent/opa-docker-authz-v2:0.9", "v1"),
        ("ghcr.io/open-policy-agent/opa-docker-authz:v0.10", "v1"),
        ("ghcr.io/open-policy-agent/opa-docker-authz:v0.10-linux-{arch}", "v1"),
        ("ghcr.io/open-policy-agent/opa-docker-authz:edge", "v1"),
        ("ghcr.io/open-policy-agent/opa-docker-authz", "v1"),
        ("127.0.0.1:5000/opa-docker-authz@sha256:" + "a" * 64, "v1"),
        ("127.0.0.1:5000/opa-docker-authz-v2:0.4@sha256:" + "a" * 64, "v0"),
        ("127.0.0.1:5000/opa-docker-authz", "v1"),
        (None, "v1"),
    ],
)
def test_rego_dialect_from_the_image(image, dialect):
    assert rego_dialect(image) == dialect
    assert FILTERS["rego_dialect"](image) == dialect


def test_rego_version_overrides_and_unknown_tags():
    assert rego_dialect("x:0.4", "v1") == "v1"
    assert rego_dialect("x:v0.10", "V0") == "v0"
    with pytest.raises(PolicyConfigError, match="docker_authz_rego_version"):
        rego_dialect("mirror/opa:stable")
    with pytest.raises(PolicyConfigError, match=r"auto.*v0.*v1"):
        rego_dialect("x:0.4", "v2")
    with pytest.raises(AnsibleFilterError, match="docker_authz_rego_version"):
        FILTERS["rego_dialect"]("mirror/opa:stable", "auto")


def test_go_clean():
    assert go_clean("/var/run/../run/docker.sock") == "/var/run/docker.sock"
    assert go_clean("//etc/./") == "/etc"
    assert go_clean("/../..") == "/"


def test_parameter_defaults_match_the_catalog():
    assert PARAMETER_DEFAULTS["docker_authz_allowed_host_ports"] == ["1024-65535"]
    assert "/var/run/docker.sock" in PARAMETER_DEFAULTS["docker_authz_sensitive_host_paths"]
    assert PARAMETER_DEFAULTS["docker_authz_sensitive_env_allowed"] == ["*_FILE"]
