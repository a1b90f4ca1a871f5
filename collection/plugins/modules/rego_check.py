#!/usr/bin/python
# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""Ansible module hardening.docker_authz.rego_check (logic in module_utils/rego_check.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rego_check
short_description: Check that a rendered opa-docker-authz policy runs on the plugin's OPA
version_added: "0.1.0"
description:
  - Checks a Rego policy file before it is deployed, so that a policy that would break the
    Docker API (opa-docker-authz answers every request with an error when its policy does not
    compile) never reaches a host.
  - First a structural scan for the dialect - Rego C(v0) for opa-docker-authz 0.2 to 0.8
    (OPA 0.9.1 syntax and builtins) or C(v1) for 0.9 and later (C(import rego.v1), C(if),
    C(contains), OPA 1.3.0 builtins without the deprecated ones).
  - Then a real compile and evaluation with regopy (rego-cpp) on sample requests -
    C(data.docker.authz.allow) must be a boolean (true for C(docker ps)) and
    C(data.docker.authz.deny) a set of strings.
  - "Run it on the controller (C(delegate_to: localhost)); it only reads the file."
requirements:
  - regopy (C(pip install regopy)) in the Python that runs the module, normally the
    controller's.
author:
  - hardening.docker_authz contributors
options:
  path:
    description:
      - The rendered policy file to check.
    type: path
    required: true
  dialect:
    description:
      - The Rego dialect the plugin expects (see the filter C(hardening.docker_authz.rego_dialect)).
    type: str
    required: true
    choices: [v0, v1]
notes:
  - regopy is not OPA. The scan keeps the policy within what the plugin's OPA version has; the
    compile proves the logic is well-formed and evaluates to the right types.
  - Supports check mode (it never changes anything).
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Compile the rendered policy on the controller
  hardening.docker_authz.rego_check:
    path: /tmp/authz.rego
    dialect: v1
  delegate_to: localhost
"""

RETURN = r"""
dialect:
  description: The dialect checked.
  returned: success
  type: str
  sample: v1
builtins:
  description: The builtins the policy calls.
  returned: success
  type: list
  elements: str
  sample: [concat, count, lower, walk]
samples:
  description: allow and deny for each sample request (docker ps; a privileged create binding /etc).
  returned: success
  type: list
  elements: dict
  sample:
    - {"allow": true, "deny": []}
    - {"allow": false, "deny": ["privileged: privileged containers are not allowed (--privileged)"]}
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.hardening.docker_authz.plugins.module_utils.rego_check import (  # noqa: E402
    RegoCheckError,
    check_policy,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "dialect": {"type": "str", "required": True, "choices": ["v0", "v1"]},
        },
        supports_check_mode=True,
    )
    path = module.params["path"]
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        module.fail_json(msg=f"cannot read the policy {path}: {exc}")
    try:
        result = check_policy(text, module.params["dialect"])
    except RegoCheckError as exc:
        module.fail_json(msg=f"{path} must not be deployed: {exc}")
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
