# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""Filters of the opa_authz role's bundle mode (logic in module_utils/bundle.py).

- ``hardening.docker_authz.bundle_support_problem``: plugin image reference -> '' when the
  plugin can run bundle mode, else the reason and the fix.
- ``hardening.docker_authz.bundle_dialect``: plugin image reference and
  ``docker_authz_rego_version`` -> ``v1``, the dialect the bundle is compiled in; an error naming
  the fix when the plugin cannot load the role's bundle (tag before 0.9, Rego v0).
"""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.hardening.docker_authz.plugins.module_utils.bundle import (
    bundle_mode_problem,
    bundle_support_problem,
)
from ansible_collections.hardening.docker_authz.plugins.module_utils.policy import (
    PolicyConfigError,
    rego_dialect,
)


def bundle_dialect(image: str, rego_version: str | None = "auto") -> str:
    try:
        dialect = rego_dialect(image, rego_version)
    except PolicyConfigError as exc:
        raise AnsibleFilterError(str(exc)) from None
    problem = bundle_mode_problem(str(image), dialect)
    if problem:
        raise AnsibleFilterError(problem)
    return dialect


class FilterModule:
    """hardening.docker_authz bundle filters."""

    def filters(self) -> dict[str, Any]:
        return {"bundle_support_problem": bundle_support_problem, "bundle_dialect": bundle_dialect}
