# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""Filters that turn the opa_authz role's rule variables into the policy it ships.

- ``hardening.docker_authz.policy_config``: a mapping of ``docker_authz_*`` variables -> the
  validated ``config`` object of the policy (rules on/off after the profile, normalised
  parameters). Bad values fail the render with a message naming the variable and the fix.
- ``hardening.docker_authz.rego_dialect``: the plugin image reference (and
  ``docker_authz_rego_version``) -> ``v0`` or ``v1``.
- ``hardening.docker_authz.policy_rego``: variables (or a config) and a dialect -> the
  single-file policy of policy-file mode (authz.rego.j2 renders it under its header).
- ``hardening.docker_authz.policy_bundle``: variables (or a config) -> the files of the OPA
  bundle of bundle mode, ``{path inside the bundle: content}`` (Rego v1).
- ``hardening.docker_authz.rego_uncached``: a list of ``[dialect, policy text]`` -> those that
  did not pass ``hardening.docker_authz.rego_check`` (with ``cache: true``) before, with the same
  engine, engine version and checker (module_utils/rego_check.py, "cache").

The policy's sources are roles/opa_authz/files/policy (lib.rego and rules/<rule id>.rego); the
logic lives in module_utils/policy.py (pure functions, unit-tested).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.hardening.docker_authz.plugins.module_utils.policy import (
    BUNDLE_ROOT,
    LOG_POLICY,
    LOG_ROOT,
    POLICY_LIBRARY,
    POLICY_VARIABLES,
    RULE_IDS,
    PolicyConfigError,
    assemble_policy,
    build_policy_config,
    policy_bundle_files,
    rule_source,
)
from ansible_collections.hardening.docker_authz.plugins.module_utils.policy import (
    rego_dialect as _rego_dialect,
)
from ansible_collections.hardening.docker_authz.plugins.module_utils.rego_check import bundle_text, is_cached

# plugins/filter/policy.py -> the collection root -> roles/opa_authz/files/policy
SOURCES = Path(__file__).resolve().parents[2] / "roles" / "opa_authz" / "files" / "policy"


def policy_config(variables: Mapping[str, Any]) -> dict[str, Any]:
    """Validated policy config from a mapping of docker_authz_* variables."""
    if not isinstance(variables, Mapping):
        raise AnsibleFilterError(
            f"policy_config expects a mapping of docker_authz_* variables, got {type(variables).__name__}"
        )
    try:
        return build_policy_config(dict(variables))
    except PolicyConfigError as exc:
        raise AnsibleFilterError(f"Invalid policy variable: {exc}") from None


def rego_dialect(image: str | None, rego_version: str | None = "auto") -> str:
    """``v0`` or ``v1`` for the plugin image; ``rego_version`` (v0/v1) overrides ``auto``."""
    try:
        return _rego_dialect(None if image is None else str(image), rego_version)
    except PolicyConfigError as exc:
        raise AnsibleFilterError(f"Invalid policy variable: {exc}") from None


def _config(value: Any, filter_name: str) -> dict[str, Any]:
    """A validated config from the output of policy_config (it has ``rules``) or from a mapping
    of docker_authz_* variables (those that are not policy variables are left out)."""
    if not isinstance(value, Mapping):
        raise AnsibleFilterError(
            f"{filter_name} expects a mapping of docker_authz_* variables (or the output of "
            f"hardening.docker_authz.policy_config), got {type(value).__name__}"
        )
    if "rules" in value and not any(str(key).startswith("docker_authz_") for key in value):
        return dict(value)
    return policy_config({key: value[key] for key in POLICY_VARIABLES if key in value})


def _sources() -> dict[str, str]:
    names = [POLICY_LIBRARY, LOG_POLICY, *(rule_source(rule_id) for rule_id in RULE_IDS)]
    try:
        return {name: (SOURCES / name).read_text(encoding="utf-8") for name in names}
    except OSError as exc:
        raise AnsibleFilterError(
            f"The policy sources of hardening.docker_authz are incomplete ({exc}); reinstall the "
            "collection (roles/opa_authz/files/policy must hold lib.rego and rules/*.rego)"
        ) from None


def policy_rego(variables: Mapping[str, Any], dialect: str = "v1") -> str:
    """The single-file policy (policy-file mode) in Rego ``v0`` or ``v1``."""
    try:
        return assemble_policy(_sources(), _config(variables, "policy_rego"), str(dialect))
    except ValueError as exc:
        raise AnsibleFilterError(f"Cannot assemble the policy: {exc}") from None


def _bundle_problem(files: Mapping[str, str]) -> str:
    """'' when the bundle has what the plugin needs (a .manifest with the roots and a revision,
    docker/authz/data.json with the config, Rego files), else what is missing."""
    try:
        manifest = json.loads(files[".manifest"])
        config = json.loads(files[f"{BUNDLE_ROOT}/data.json"])["config"]
    except (KeyError, TypeError, ValueError) as exc:
        return f"no readable .manifest or docker/authz/data.json with a config ({exc})"
    if manifest.get("roots") != [BUNDLE_ROOT, LOG_ROOT] or not manifest.get("revision"):
        return f"the manifest has roots {manifest.get('roots')} and revision {manifest.get('revision')!r}"
    if not isinstance(config, Mapping) or not any(
        p.startswith(f"{BUNDLE_ROOT}/") and p.endswith(".rego") for p in files
    ):
        return "the config is not an object, or there is no Rego file under docker/authz"
    return ""


def policy_bundle(variables: Mapping[str, Any]) -> dict[str, str]:
    """The OPA bundle (bundle mode, Rego v1): {path inside the bundle directory: content}."""
    try:
        files = policy_bundle_files(_sources(), _config(variables, "policy_bundle"))
    except ValueError as exc:
        raise AnsibleFilterError(f"Cannot assemble the policy bundle: {exc}") from None
    problem = _bundle_problem(files)
    if problem:  # the assembly builds these itself: a failure here is a bug
        raise AnsibleFilterError(
            f"The bundle built from the rule variables is incomplete: {problem}. This is a bug of the "
            "collection; nothing was changed."
        )
    return files


def _checkable(item: Any) -> bool:
    if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str)):
        return False
    what = item[1]
    return isinstance(what, str) or (
        isinstance(what, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in what.items())
    )


def rego_uncached(items: Any, enabled: bool = True) -> list[Any]:
    """The ``[dialect, text]`` items of ``items`` (a policy text, or a bundle as ``{path:
    content}``) that have not passed the check before (all of them when ``enabled`` is false)."""
    if not isinstance(items, list) or not all(_checkable(i) for i in items):
        raise AnsibleFilterError(
            "rego_uncached expects a list of [dialect, policy text] or "
            "[dialect, {path: content} of a bundle] pairs"
        )
    if not enabled:
        return list(items)
    texts = [item[1] if isinstance(item[1], str) else bundle_text(item[1]) for item in items]
    return [item for item, text in zip(items, texts, strict=True) if not is_cached(text, item[0])]


class FilterModule:
    """hardening.docker_authz policy filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "policy_config": policy_config,
            "rego_dialect": rego_dialect,
            "policy_rego": policy_rego,
            "policy_bundle": policy_bundle,
            "rego_uncached": rego_uncached,
        }
