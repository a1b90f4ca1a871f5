# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""Filters that check the opa_authz role's variables (logic in module_utils/role_vars.py).

- ``hardening.docker_authz.role_variable_problems``: a mapping of ``docker_authz_*`` variables ->
  the list of problems of the plugin, policy mode, bundle, daemon and dictionary variables (one
  message per problem, naming the variable and the fix); empty when they are usable. Keyword
  arguments ``opa_config_in_plugin`` and ``opa_config_dest``: where the role writes the OPA config.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.hardening.docker_authz.plugins.module_utils.role_vars import variable_problems


def role_variable_problems(
    variables: Mapping[str, Any], opa_config_in_plugin: str, opa_config_dest: str
) -> list[str]:
    if not isinstance(variables, Mapping):
        raise AnsibleFilterError(
            "role_variable_problems expects a mapping of docker_authz_* variables, "
            f"got {type(variables).__name__}"
        )
    return variable_problems(
        dict(variables), opa_config_in_plugin=opa_config_in_plugin, opa_config_dest=opa_config_dest
    )


class FilterModule:
    """hardening.docker_authz variable checks."""

    def filters(self) -> dict[str, Any]:
        return {"role_variable_problems": role_variable_problems}
