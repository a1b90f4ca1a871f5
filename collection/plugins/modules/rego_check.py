#!/usr/bin/python
# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""Ansible module hardening.docker_authz.rego_check (logic in module_utils/rego_check.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rego_check
short_description: Check that a rendered opa-docker-authz policy or bundle runs on the plugin's OPA
version_added: "0.1.0"
description:
  - Checks a Rego policy file, or a whole OPA bundle directory, before it is deployed, so that a
    policy that would break the Docker API (opa-docker-authz answers every request with an error
    when its policy file does not compile, and never serves when its bundle does not load) never
    reaches a host.
  - First a structural scan for the dialect - Rego C(v0) for opa-docker-authz 0.2 to 0.8
    (OPA 0.9.1 syntax and builtins) or C(v1) for 0.9 and later (C(import rego.v1), C(if),
    C(contains), OPA 1.3.0 builtins without the deprecated ones).
  - Then a real compile and evaluation on sample requests - C(data.docker.authz.allow) must be a
    boolean (true for C(docker ps)) and C(data.docker.authz.deny) a set of strings. Rego C(v1)
    is compiled by OPA's own engine (opa-golib-python-bindings, OPA 1.20.2) when it is
    installed, by regopy (rego-cpp) otherwise; C(v0) always by regopy (OPA 1.x parses v1 only).
  - "Run it on the controller (C(delegate_to: localhost)); it only reads the files."
requirements:
  - For C(v1), opa-golib-python-bindings (C(pip install --ignore-requires-python
    opa-golib-python-bindings==0.4.4)) or regopy; for C(v0), regopy (C(pip install regopy)). In
    the Python that runs the module, normally the controller's.
  - PyYAML (Ansible's own dependency) only for C(data.yaml) files of a bundle.
author:
  - hardening.docker_authz contributors
options:
  path:
    description:
      - The rendered policy file to check (policy-file mode).
      - Exactly one of O(path), O(bundle_dir), O(content) and O(bundle_files) is required.
    type: path
  content:
    description:
      - The rendered policy text itself (policy-file mode), instead of a file. The role passes
        each distinct policy of a play this way, so nothing is written on the controller.
      - Exactly one of O(path), O(bundle_dir), O(content) and O(bundle_files) is required.
    type: str
  bundle_dir:
    description:
      - An OPA bundle directory to check as the plugin loads it in config-file mode - every
        C(*.rego) file below it, C(data.json)/C(data.yaml) files at the data path of their
        directory, and C(.manifest) (its C(roots) must cover every package and data path).
      - One module must declare C(package docker.authz); the others may be libraries in other
        packages (their functions may be called from the other modules).
      - Exactly one of O(path), O(bundle_dir), O(content) and O(bundle_files) is required.
    type: path
  bundle_files:
    description:
      - An OPA bundle given as its files, a dictionary of each path inside the bundle to its text
        (what the filter C(hardening.docker_authz.policy_bundle) builds), checked exactly as
        O(bundle_dir) checks the same files written to a directory. The role passes each distinct
        bundle of a play this way, so nothing is written on the controller.
      - Exactly one of O(path), O(bundle_dir), O(content) and O(bundle_files) is required.
    type: dict
  dialect:
    description:
      - The Rego dialect the plugin expects (see the filter C(hardening.docker_authz.rego_dialect)).
    type: str
    required: true
    choices: [v0, v1]
  cache:
    description:
      - With O(content) or O(bundle_files), remember a policy text or bundle that passed (a file named
        by the sha256 of the text or of the bundle's files,
        the dialect, the engine and its version and this checker's own code, under
        C($XDG_CACHE_HOME/hardening.docker_authz/rego_check), C(~/.cache/...) by default), so that
        the filter C(hardening.docker_authz.rego_uncached) can leave out a text or bundle that passed
        before.
        Failures are never remembered. The role C(hardening.docker_authz.opa_authz) sets it from
        C(docker_authz_compile_cache).
    type: bool
    default: false
notes:
  - OPA 1.20.2 and regopy are not the plugin's OPA (1.3.0 in v0.10). The scan keeps the policy
    within what the plugin's OPA version has; the compile proves the logic is well-formed and
    evaluates to the right types.
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

- name: Compile the rendered bundle (policy modules, data, manifest) on the controller
  hardening.docker_authz.rego_check:
    bundle_dir: /tmp/render/bundle
    dialect: v1
  delegate_to: localhost

- name: Compile a bundle built in the play, without writing it anywhere, and remember the pass
  hardening.docker_authz.rego_check:
    bundle_files: "{{ docker_authz_bundle_files }}"
    dialect: v1
    cache: true
  delegate_to: localhost
"""

RETURN = r"""
dialect:
  description: The dialect checked.
  returned: success
  type: str
  sample: v1
engine:
  description: The engine that compiled the policy - C(opa) (OPA's own, 1.20.2) or C(regopy).
  returned: success
  type: str
  sample: opa
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
files:
  description: The files of the bundle that were loaded (relative to O(bundle_dir)).
  returned: success and O(bundle_dir) or O(bundle_files) was given
  type: list
  elements: str
  sample: [.manifest, docker/authz/authz.rego, docker/authz/config/data.json]
cached_as:
  description: The cache file that records the pass (null when it could not be written).
  returned: success, O(content) or O(bundle_files), and O(cache) given
  type: str
  sample: /home/ops/.cache/hardening.docker_authz/rego_check/3ff2eaa1...
revision:
  description: The C(revision) of the bundle's C(.manifest) (empty without one).
  returned: success and O(bundle_dir) or O(bundle_files) was given
  type: str
  sample: "3f2a9c"
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.hardening.docker_authz.plugins.module_utils.rego_check import (  # noqa: E402
    RegoCheckError,
    bundle_text,
    check_bundle,
    check_bundle_files,
    check_policy,
    remember,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path"},
            "bundle_dir": {"type": "path"},
            "content": {"type": "str"},
            "bundle_files": {"type": "dict"},
            "dialect": {"type": "str", "required": True, "choices": ["v0", "v1"]},
            "cache": {"type": "bool", "default": False},
        },
        mutually_exclusive=[("path", "bundle_dir", "content", "bundle_files")],
        required_one_of=[("path", "bundle_dir", "content", "bundle_files")],
        supports_check_mode=True,
    )
    dialect = module.params["dialect"]
    bundle_dir = module.params["bundle_dir"]
    if bundle_dir:
        try:
            result = check_bundle(bundle_dir, dialect)
        except RegoCheckError as exc:
            module.fail_json(msg=f"the bundle {bundle_dir} must not be deployed: {exc}")
        module.exit_json(changed=False, **result)
    files = module.params["bundle_files"]
    if files is not None:
        not_text = sorted(str(k) for k, v in files.items() if not isinstance(v, str))
        if not_text:
            module.fail_json(
                msg="bundle_files must map each path inside the bundle to its text; not text: "
                + ", ".join(not_text)
            )
        try:
            result = check_bundle_files(files, dialect)
        except RegoCheckError as exc:
            module.fail_json(msg=f"the bundle built from the rule variables must not be deployed: {exc}")
        if module.params["cache"]:
            result["cached_as"] = remember(bundle_text(files), result)
        module.exit_json(changed=False, **result)
    if module.params["content"] is not None:
        try:
            result = check_policy(module.params["content"], dialect)
        except RegoCheckError as exc:
            module.fail_json(msg=f"the rendered policy must not be deployed: {exc}")
        if module.params["cache"]:
            result["cached_as"] = remember(module.params["content"], result)
        module.exit_json(changed=False, **result)
    path = module.params["path"]
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        module.fail_json(msg=f"cannot read the policy {path}: {exc}")
    try:
        result = check_policy(text, dialect)
    except RegoCheckError as exc:
        module.fail_json(msg=f"{path} must not be deployed: {exc}")
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
