# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""Filters of the opa_authz role's bundle mode (logic in module_utils/bundle.py).

- ``hardening.docker_authz.bundle_support_problem``: plugin image reference -> '' when the
  plugin can run bundle mode, else the reason and the fix.
"""

from __future__ import annotations

from typing import Any

from ansible_collections.hardening.docker_authz.plugins.module_utils.bundle import (
    bundle_support_problem,
)


class FilterModule:
    """hardening.docker_authz bundle filters."""

    def filters(self) -> dict[str, Any]:
        return {"bundle_support_problem": bundle_support_problem}
