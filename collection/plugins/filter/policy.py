# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""Filters that turn the opa_authz role's rule variables into what authz.rego.j2 renders.

- ``hardening.docker_authz.policy_config``: a mapping of ``docker_authz_*`` variables -> the
  validated ``config`` object of the policy (rules on/off after the profile, normalised
  parameters). Bad values fail the render with a message naming the variable and the fix.
- ``hardening.docker_authz.rego_dialect``: the plugin image reference (and
  ``docker_authz_rego_version``) -> ``v0`` or ``v1``.

The logic lives in module_utils/policy.py (pure functions, unit-tested).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.hardening.docker_authz.plugins.module_utils.policy import (
    PolicyConfigError,
    build_policy_config,
)
from ansible_collections.hardening.docker_authz.plugins.module_utils.policy import (
    rego_dialect as _rego_dialect,
)


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


class FilterModule:
    """hardening.docker_authz policy filters."""

    def filters(self) -> dict[str, Any]:
        return {"policy_config": policy_config, "rego_dialect": rego_dialect}
