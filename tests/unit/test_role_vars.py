"""module_utils/role_vars.py: the role's plugin, mode, bundle, daemon and dictionary variable checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from module_utils.role_vars import plugin_path, variable_problems

DEFAULTS_FILE = Path(__file__).resolve().parents[2] / "roles" / "opa_authz" / "defaults" / "main.yml"
CONFIG_IN_PLUGIN = "/opa/policies/opa-config.yaml"
CONFIG_DEST = "/etc/docker/policies/opa-config.yaml"

# The role's defaults, with the two templated ones resolved as the role resolves them.
GOOD: dict[str, Any] = {
    "docker_authz_plugin_alias": "opa-docker-authz",
    "docker_authz_plugin_image": "ghcr.io/open-policy-agent/opa-docker-authz:v0.10-linux-{arch}",
    "docker_authz_plugin_args": "-policy-file /opa/policies/authz.rego",
    "docker_authz_plugin_bundle_args": "-config-file /opa/policies/opa-config.yaml",
    "docker_authz_policy_mode": "file",
    "docker_authz_policy_dest": "/etc/docker/policies/authz.rego",
    "docker_authz_bundle_activation_timeout": 30,
    "docker_authz_opa_config_extra": {},
    "docker_authz_bundle_service_url": "",
    "docker_authz_bundle_resource": "bundles/authz.tar.gz",
    "docker_authz_bundle_polling_min_seconds": 10,
    "docker_authz_bundle_polling_max_seconds": 30,
    "docker_authz_bundle_signing_key": "",
    "docker_authz_docker_socket": "/var/run/docker.sock",
    "docker_authz_daemon_json_path": "/etc/docker/daemon.json",
    "docker_authz_docker_pidfile": "/var/run/docker.pid",
    "docker_authz_reload_method": "auto",
    "docker_authz_api_timeout": 60,
    "docker_authz_verify_rules": {},
    "docker_authz_registry_auth": {},
}
BUNDLE = {**GOOD, "docker_authz_policy_mode": "bundle"}


def problems(values: dict[str, Any]) -> list[str]:
    return variable_problems(values, opa_config_in_plugin=CONFIG_IN_PLUGIN, opa_config_dest=CONFIG_DEST)


def test_the_role_defaults_pass_in_both_modes() -> None:
    defaults = yaml.safe_load(DEFAULTS_FILE.read_text())
    for name, value in GOOD.items():
        if name in defaults and not (isinstance(defaults[name], str) and "{{" in defaults[name]):
            assert defaults[name] == value, f"{name}: the test's copy of the default is stale"
    assert problems(GOOD) == []
    assert problems(BUNDLE) == []
    # names without the prefix are accepted too
    assert problems({k.removeprefix("docker_authz_"): v for k, v in GOOD.items()}) == []


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("plugin_alias", "Opa", "docker_authz_plugin_alias must be a plugin name"),
        ("plugin_alias", "opa\n", "docker_authz_plugin_alias must be a plugin name"),
        ("plugin_alias", 5, "docker_authz_plugin_alias must be a plugin name"),
        ("plugin_image", "", "docker_authz_plugin_image must be a plugin reference"),
        ("plugin_image", "reg/opa docker:1", "docker_authz_plugin_image must be a plugin reference"),
        ("plugin_args", ["-policy-file"], "docker_authz_plugin_args must be a string"),
        ("policy_mode", "bundles", "docker_authz_policy_mode must be file"),
        ("bundle_activation_timeout", 14, "at least 15"),
        ("bundle_activation_timeout", "30s", "at least 15"),
        ("bundle_activation_timeout", True, "at least 15"),
        ("opa_config_extra", "labels: {}", "docker_authz_opa_config_extra must be a dictionary"),
        ("docker_socket", "docker.sock", "docker_authz_docker_socket must be the absolute path"),
        ("daemon_json_path", "daemon.json", "docker_authz_daemon_json_path must be an absolute path"),
        ("docker_pidfile", None, "docker_authz_docker_pidfile must be an absolute path"),
        ("reload_method", "restart", "docker_authz_reload_method must be one of auto, systemd, signal"),
        ("api_timeout", 0, "docker_authz_api_timeout must be a positive whole number"),
        ("api_timeout", "1.5", "docker_authz_api_timeout must be a positive whole number"),
        ("verify_rules", ["deny_privileged"], "docker_authz_verify_rules must be a dictionary"),
        ("registry_auth", "user:pass", "docker_authz_registry_auth must be a dictionary"),
    ],
)
def test_each_bad_value_is_one_problem_naming_the_variable(name: str, value: Any, text: str) -> None:
    found = problems({**GOOD, f"docker_authz_{name}": value})
    assert len(found) == 1 and text in found[0], found
    assert f"docker_authz_{name}" in found[0]


def test_secrets_are_not_echoed() -> None:
    found = problems({**GOOD, "docker_authz_registry_auth": "robot:TopSecret42"})
    assert found and "TopSecret42" not in " ".join(found)


def test_every_problem_is_reported_in_one_run() -> None:
    found = problems(
        {
            **GOOD,
            "docker_authz_plugin_alias": "Bad",
            "docker_authz_reload_method": "x",
            "docker_authz_api_timeout": -1,
        }
    )
    assert len(found) == 3, found


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("bundle_service_url", "ftp://bundles"),
        ("bundle_service_url", "https://bundles.example.com/a b"),
        ("bundle_resource", "/bundles/authz.tar.gz"),
        ("bundle_resource", ""),
        ("bundle_polling_min_seconds", 0),
        ("bundle_polling_max_seconds", 5),
        ("bundle_polling_max_seconds", "1m"),
        ("bundle_signing_key", "keys/authz.pem"),
    ],
)
def test_bundle_variables_are_checked_in_bundle_mode_only(name: str, value: Any) -> None:
    found = problems({**BUNDLE, f"docker_authz_{name}": value})
    assert len(found) == 1 and f"docker_authz_{name}" in found[0], found
    assert problems({**GOOD, f"docker_authz_{name}": value}) == []


def test_good_bundle_service_variables_pass() -> None:
    assert (
        problems(
            {
                **BUNDLE,
                "docker_authz_bundle_service_url": "https://bundles.example.com:8443/v1",
                "docker_authz_bundle_polling_min_seconds": "1",
                "docker_authz_bundle_polling_max_seconds": 1,
                "docker_authz_bundle_signing_key": "/etc/ansible/keys/authz.pem",
            }
        )
        == []
    )


@pytest.mark.parametrize(
    "args",
    [
        "",
        "-policy-file /opa/policies/other.rego",
        "-policy-file /opa/policies/authz.rego -config-file /opa/policies/opa-config.yaml",
        "-policy-file",
        "-policy-file /etc/docker/policies/authz.rego",
    ],
)
def test_file_mode_args_must_read_the_policy_the_role_writes(args: str) -> None:
    found = problems({**GOOD, "docker_authz_plugin_args": args})
    assert "fails open" in found[-1] and "'-policy-file /opa/policies/authz.rego'" in found[-1], found
    # a flag without its value is named too (the plugin would exit at start)
    assert len(found) == (2 if args == "-policy-file" else 1), found


def test_file_mode_follows_the_policy_dest() -> None:
    moved = {**GOOD, "docker_authz_policy_dest": "/etc/docker/authz/site.rego"}
    found = problems(moved)
    assert len(found) == 1 and "'-policy-file /opa/authz/site.rego'" in found[0], found
    assert problems({**moved, "docker_authz_plugin_args": "-policy-file /opa/authz/site.rego --quiet"}) == []
    outside = problems({**GOOD, "docker_authz_policy_dest": "/srv/authz.rego"})
    assert len(outside) == 1 and "under /etc/docker" in outside[0], outside


@pytest.mark.parametrize(
    "args",
    [
        "-config-file /opa/other.yaml",
        "-config-file /opa/policies/opa-config.yaml -policy-file /opa/policies/authz.rego",
        "-policy-file /opa/policies/authz.rego",
        "-config-file",
        ["-config-file", "/opa/policies/opa-config.yaml"],
    ],
)
def test_bundle_mode_args_must_read_the_opa_config_the_role_writes(args: Any) -> None:
    found = problems({**BUNDLE, "docker_authz_plugin_bundle_args": args})
    assert len(found) == (2 if args == "-config-file" else 1), found
    assert "must contain '-config-file /opa/policies/opa-config.yaml'" in found[-1], found
    # in file mode the bundle args are not read
    assert problems({**GOOD, "docker_authz_plugin_bundle_args": args}) == []


def test_bundle_mode_needs_the_policy_under_etc_docker() -> None:
    found = problems({**BUNDLE, "docker_authz_policy_dest": "/srv/policies/authz.rego"})
    assert len(found) == 1 and "docker_authz_policy_dir must be under /etc/docker" in found[0], found


def test_plugin_path() -> None:
    assert plugin_path("/etc/docker/policies/authz.rego") == "/opa/policies/authz.rego"
    assert plugin_path("/etc/docker/x.rego") == "/opa/x.rego"


# ------------------------------------------------------------------ opa-args as Go reads them
V10 = "ghcr.io/open-policy-agent/opa-docker-authz:v0.10-linux-{arch}"
V04 = "openpolicyagent/opa-docker-authz-v2:0.4"


@pytest.mark.parametrize(
    ("args", "image", "text"),
    [
        # Go's flag package stops at 'false': the policy file is never set, the plugin allows
        # every request (a search for the words finds '-policy-file X' and used to pass this)
        ("-skip-ping false -policy-file /opa/policies/authz.rego", V10, "write -skip-ping=false"),
        # the last value wins: the plugin reads another file than the role writes
        ("-policy-file /opa/policies/authz.rego -policy-file /opa/other.rego", V10, "fails open"),
        ("-policy-file /opa/policies/authz.rego extra -quiet", V10, "ignores 'extra -quiet'"),
        ("-policy-file /opa/policies/authz.rego -no-such-flag", V10, "has no flag -no-such-flag"),
        (
            "-policy-file /opa/policies/authz.rego -quiet",
            "openpolicyagent/opa-docker-authz-v2:0.4",
            "came in 0.7",
        ),
        ("-policy-file /opa/policies/authz.rego -plugin-name authz", V10, "never starts"),
        ("-policy-file /opa/policies/authz.rego -allowPath data.docker.authz.deny", V10, "remove -allowPath"),
        ("-policy-file /opa/policies/authz.rego -check", V10, "exit instead of serving"),
        ("-policy-file /opa/policies/authz.rego -quiet=yes", V10, "is not a boolean"),
        ("-help -policy-file /opa/policies/authz.rego", V10, "print its usage"),
    ],
)
def test_args_the_plugin_reads_otherwise_or_exits_on_are_refused(args: str, image: str, text: str) -> None:
    found = problems({**GOOD, "docker_authz_plugin_args": args, "docker_authz_plugin_image": image})
    assert found and any(text in p for p in found), found
    assert all(p.startswith("docker_authz_plugin_args=") or "fails open" in p for p in found), found


@pytest.mark.parametrize(
    ("args", "image"),
    [
        ("--policy-file=/opa/policies/authz.rego", V10),
        ("-policy-file /opa/other.rego -policy-file=/opa/policies/authz.rego -quiet=false", V10),
        ("-skip-ping=false -allowPath /docker/authz/allow -policy-file /opa/policies/authz.rego --", V10),
        # the role sets -log-only-denied itself (v1 only), whatever the variable says
        ("-policy-file /opa/policies/authz.rego -log-only-denied", "openpolicyagent/opa-docker-authz-v2:0.8"),
        # a tag that names no release: flags the role does not know are the image's business
        ("-policy-file /opa/policies/authz.rego -no-such-flag", "registry.example/opa-docker-authz:edge"),
        ("-policy-file /opa/policies/authz.rego -new-flag=1", "registry.example/opa-docker-authz:v0.11"),
    ],
)
def test_args_go_reads_as_the_role_writes_pass(args: str, image: str) -> None:
    assert problems({**GOOD, "docker_authz_plugin_args": args, "docker_authz_plugin_image": image}) == []


def test_bundle_args_are_read_as_go_reads_them() -> None:
    found = problems(
        {**BUNDLE, "docker_authz_plugin_bundle_args": "-config-file /opa/policies/opa-config.yaml -x"}
    )
    assert (
        len(found) == 1
        and found[0].startswith("docker_authz_plugin_bundle_args=")
        and "no flag -x" in found[0]
    )
    bundle = "-quiet -config-file=/opa/policies/opa-config.yaml"
    assert problems({**BUNDLE, "docker_authz_plugin_bundle_args": bundle}) == []


def test_bundle_args_on_a_release_without_bundle_mode_leave_the_release_to_its_own_check() -> None:
    # 0.4 has no -config-file: render.yml's check names the release and the fix (plugin 0.9+)
    assert problems({**BUNDLE, "docker_authz_plugin_image": V04}) == []
    found = problems({**BUNDLE, "docker_authz_plugin_image": V04, "docker_authz_plugin_bundle_args": "-x"})
    assert len(found) == 1 and "must contain '-config-file" in found[0], found
