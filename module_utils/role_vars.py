# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""Checks of the opa_authz role's plugin, policy mode, bundle, daemon and dictionary variables.

The role runs them in one task before anything is read or changed (tasks/validate.yml, filter
``hardening.docker_authz.role_variable_problems``); the rule variables are checked when the
policy is rendered (policy.py). ``variable_problems`` returns one message per problem, each
naming the variable, what it must be, the value it got and, where it helps, the fix. An empty
list means the variables are usable. Pure functions, standard library only.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from typing import Any

from ansible_collections.hardening.docker_authz.plugins.module_utils import opa_args
from ansible_collections.hardening.docker_authz.plugins.module_utils.opa_args import OpaArgs

PREFIX = "docker_authz_"
POLICY_MODES = ("file", "bundle")
RELOAD_METHODS = ("auto", "systemd", "signal")
# dockerd gives a plugin that does not serve 12.5 s before it disables it.
MIN_ACTIVATION_TIMEOUT = 15
ALIAS = re.compile(r"[a-z0-9][a-z0-9._-]*")
WHOLE_NUMBER = re.compile(r"[0-9]+")
SERVICE_URL = re.compile(r"https?://[^/\s]+(/\S*)?")
POLICY_DEST = re.compile(r"/etc/docker/.+\.rego")
# Where the plugin sees /etc/docker (the plugin's mount of the policy folder).
PLUGIN_ROOT = "/opa"


def _seconds(value: Any) -> int | None:
    """A whole number of seconds (an int, or a string of digits; a bool is not one), else None."""
    if isinstance(value, bool) or WHOLE_NUMBER.fullmatch(str(value)) is None:
        return None
    return int(str(value))


def plugin_path(host_path: str) -> str:
    """A path under /etc/docker as the plugin sees it (/etc/docker is /opa in the plugin)."""
    return posixpath.join(PLUGIN_ROOT, posixpath.relpath(host_path, "/etc/docker"))


def _plugin_problems(v: Mapping[str, Any]) -> list[str]:
    problems = []
    alias = v.get("plugin_alias")
    if not isinstance(alias, str) or ALIAS.fullmatch(alias) is None:
        problems.append(
            f"docker_authz_plugin_alias must be a plugin name (lower case letters, digits, '.', '_', '-', "
            f"starting with a letter or digit), got {str(alias)!r}."
        )
    image = v.get("plugin_image")
    if not isinstance(image, str) or not image or re.search(r"\s", image):
        problems.append(
            "docker_authz_plugin_image must be a plugin reference without spaces, such as "
            f"ghcr.io/open-policy-agent/opa-docker-authz:v0.10-linux-amd64, got {str(image)!r}."
        )
    if not isinstance(v.get("plugin_args"), str):
        problems.append(
            f"docker_authz_plugin_args must be a string of opa-args, got {str(v.get('plugin_args'))!r}."
        )
    return problems


def _mode_problems(v: Mapping[str, Any]) -> list[str]:
    problems = []
    mode = v.get("policy_mode")
    if mode not in POLICY_MODES:
        problems.append(
            "docker_authz_policy_mode must be file (the plugin reads one policy file on every request) or "
            f"bundle (an OPA bundle loaded once through -config-file), got {str(mode)!r}."
        )
    timeout = v.get("bundle_activation_timeout")
    if (_seconds(timeout) or 0) < MIN_ACTIVATION_TIMEOUT:
        problems.append(
            f"docker_authz_bundle_activation_timeout must be a number of seconds of at least "
            f"{MIN_ACTIVATION_TIMEOUT} (dockerd gives a plugin that does not serve 12.5 s before it disables "
            f"it), got {str(timeout)!r}."
        )
    if not isinstance(v.get("opa_config_extra"), Mapping):
        problems.append(
            "docker_authz_opa_config_extra must be a dictionary (merged into the OPA config), got "
            f"{str(v.get('opa_config_extra'))!r}."
        )
    return problems


def _bundle_problems(v: Mapping[str, Any]) -> list[str]:
    problems = []
    url = v.get("bundle_service_url")
    if not isinstance(url, str) or (url and SERVICE_URL.fullmatch(url) is None):
        problems.append(
            "docker_authz_bundle_service_url must be empty (a local bundle) or an http(s) URL such as "
            f"https://bundles.example.com, got {str(url)!r}."
        )
    resource = v.get("bundle_resource")
    if (
        not isinstance(resource, str)
        or not resource
        or resource.startswith("/")
        or re.search(r"\s", resource)
    ):
        problems.append(
            "docker_authz_bundle_resource must be a relative path on the bundle service, such as "
            f"bundles/authz.tar.gz, got {str(resource)!r}."
        )
    low, high = v.get("bundle_polling_min_seconds"), v.get("bundle_polling_max_seconds")
    low_s, high_s = _seconds(low), _seconds(high)
    if low_s is None or high_s is None or not 1 <= low_s <= high_s:
        problems.append(
            "docker_authz_bundle_polling_min_seconds and docker_authz_bundle_polling_max_seconds must be "
            f"whole seconds with 1 <= min <= max, got {str(low)!r} and {str(high)!r}."
        )
    key = v.get("bundle_signing_key")
    if not isinstance(key, str) or (key and not key.startswith("/")):
        problems.append(
            "docker_authz_bundle_signing_key must be empty (an unsigned bundle) or an absolute path on the "
            f"controller, got {str(key)!r}."
        )
    return problems


def _read_args(
    name: str, args: str, image: Any, min_release: tuple[int, int] = (0, 0)
) -> tuple[OpaArgs, list[str]]:
    """The opa-args as the plugin reads them, and their problems prefixed with the variable.
    -log-only-denied is the role's to set (vars/main.yml): it is read without it. Flags are
    judged by the image's release from ``min_release`` on (below it another check names the
    release as the problem)."""
    image = image if isinstance(image, str) else ""
    release = opa_args.release_of(image)
    known = opa_args.flags_for(release) if release is not None and release >= min_release else None
    words = [w for w in args.split() if w != "-log-only-denied"]
    parsed = opa_args.parse(words, known, opa_args.tag_of(image))
    return parsed, [f"docker_authz_{name}='{args}': {problem}" for problem in parsed.problems]


def _args_problems(v: Mapping[str, Any], opa_config_in_plugin: str, opa_config_dest: str) -> list[str]:
    """The plugin must read what the role writes: the OPA config in bundle mode, the policy file
    in file mode (opa-docker-authz allows every request when it has no policy file), and start:
    the args are read as the plugin's Go flag package reads them (module_utils/opa_args.py)."""
    dest = v.get("policy_dest")
    dest_ok = isinstance(dest, str) and POLICY_DEST.fullmatch(dest) is not None
    if v.get("policy_mode") == "bundle":
        args = v.get("plugin_bundle_args")
        parsed, problems = OpaArgs(), []
        if isinstance(args, str):
            # a release before 0.9 cannot run bundle mode at all: render.yml says so, with the fix
            parsed, problems = _read_args("plugin_bundle_args", args, v.get("plugin_image"), (0, 9))
        if not (
            isinstance(args, str)
            and dest_ok
            and "policy-file" not in parsed.values
            and parsed.string("config-file") == opa_config_in_plugin
        ):
            problems.append(
                "In bundle mode the plugin must read the OPA config this role writes "
                f"({opa_config_dest}, which the plugin sees as {opa_config_in_plugin}). "
                f"docker_authz_plugin_bundle_args must contain '-config-file {opa_config_in_plugin}' and no "
                "-policy-file, and docker_authz_policy_dir must be under /etc/docker. "
                f"Got docker_authz_plugin_bundle_args='{args!s}', "
                f"docker_authz_policy_dest={dest!s}."
            )
        return problems
    args = v.get("plugin_args")
    if not isinstance(args, str):
        return []  # reported by _plugin_problems
    parsed, problems = _read_args("plugin_args", args, v.get("plugin_image"))
    expected = plugin_path(dest) if dest_ok else f"{PLUGIN_ROOT}/policies/authz.rego"
    if not (dest_ok and "config-file" not in parsed.values and parsed.string("policy-file") == expected):
        problems.append(
            "The plugin must read the policy this role writes, or it allows every request (opa-docker-authz "
            "fails open without a policy file). docker_authz_policy_dest must be a .rego file under "
            f"/etc/docker (the plugin sees /etc/docker as {PLUGIN_ROOT}), and docker_authz_plugin_args must "
            f"contain '-policy-file {expected}' and no -config-file. "
            f"Got docker_authz_policy_dest={dest!s}, docker_authz_plugin_args='{args}'."
        )
    return problems


def _daemon_problems(v: Mapping[str, Any]) -> list[str]:
    problems = []
    socket = v.get("docker_socket")
    if not isinstance(socket, str) or re.match(r"(unix://)?/", socket) is None:
        problems.append(
            "docker_authz_docker_socket must be the absolute path of the Docker socket (unix:// optional), "
            f"such as /var/run/docker.sock, got {str(socket)!r}."
        )
    for name in ("daemon_json_path", "docker_pidfile"):
        value = v.get(name)
        if not isinstance(value, str) or not value.startswith("/"):
            problems.append(f"docker_authz_{name} must be an absolute path, got {str(value)!r}.")
    if v.get("reload_method") not in RELOAD_METHODS:
        problems.append(
            f"docker_authz_reload_method must be one of {', '.join(RELOAD_METHODS)}, "
            f"got {str(v.get('reload_method'))!r}."
        )
    timeout = v.get("api_timeout")
    if (_seconds(timeout) or 0) < 1:
        problems.append(
            "docker_authz_api_timeout must be a positive whole number of seconds, "
            f"got {str(v.get('api_timeout'))!r}."
        )
    return problems


def _dictionary_problems(v: Mapping[str, Any]) -> list[str]:
    problems = []
    if not isinstance(v.get("verify_rules"), Mapping):
        problems.append(
            "docker_authz_verify_rules must be a dictionary of rule variables without the prefix "
            f"(for example {{deny_privileged: true}}), got {str(v.get('verify_rules'))!r}."
        )
    if not isinstance(v.get("registry_auth"), Mapping):
        problems.append(
            "docker_authz_registry_auth must be a dictionary ({username: ..., password: ...}; {} for none), "
            "got a value of another type."
        )
    return problems


def variable_problems(
    variables: Mapping[str, Any], *, opa_config_in_plugin: str, opa_config_dest: str
) -> list[str]:
    """Every problem of the role's plugin, mode, bundle, daemon and dictionary variables.

    ``variables`` maps the role's variable names, with or without the ``docker_authz_`` prefix,
    to their values. ``opa_config_in_plugin`` and ``opa_config_dest`` are where the role writes
    the OPA config (as the plugin sees it, and on the host). The bundle variables are checked in
    bundle mode only.
    """
    v = {(k[len(PREFIX) :] if k.startswith(PREFIX) else k): value for k, value in variables.items()}
    problems = [*_plugin_problems(v), *_mode_problems(v)]
    if v.get("policy_mode") == "bundle":
        problems += _bundle_problems(v)
    problems += _args_problems(v, opa_config_in_plugin, opa_config_dest)
    problems += _daemon_problems(v)
    problems += _dictionary_problems(v)
    return problems
