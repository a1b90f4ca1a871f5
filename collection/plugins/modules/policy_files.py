#!/usr/bin/python
# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""Ansible module hardening.docker_authz.policy_files (logic in module_utils/policy_files.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: policy_files
short_description: Write the policy folder and files in it, owned by root, in one module call
version_added: "0.2.0"
description:
  - Makes the folder O(path) exist, owned by root with O(directory_mode), and each of O(files)
    in it hold exactly its content, owned by root with O(mode) - what C(ansible.builtin.file) and
    C(ansible.builtin.copy) do, in one module call (C(copy) runs two modules and a file transfer
    per file).
  - Each file is written atomically (a temporary file in the folder, then a rename), so the
    plugin never reads half a policy. A symbolic link at a file's path is replaced by the file,
    as C(ansible.builtin.copy) does.
  - A file whose content, owner and mode already match is not touched.
  - With O(bundle), the same call also makes a folder inside O(path) hold exactly an OPA
    bundle's files (the OPA config and the bundle it loads, in one call). What would refuse the
    bundle is checked before anything is written.
  - Must run as root.
author:
  - hardening.docker_authz contributors
options:
  path:
    description: The folder (absolute). Missing parent folders are created with mode 0755.
    type: path
    required: true
  files:
    description: The files to write, as absolute path (directly in O(path)) to text content.
    type: dict
    required: true
  mode:
    description: The files' mode.
    type: str
    default: '0640'
  directory_mode:
    description: The folder's mode (also the bundle's folders).
    type: str
    default: '0750'
  bundle:
    description:
      - An OPA bundle to write in a folder directly inside O(path), files of O(mode) and folders
        of O(directory_mode) (what M(hardening.docker_authz.bundle_files) does with
        C(only_bundles=true)) - files not in C(files) are removed.
      - A folder that is not empty and holds no C(.manifest) is refused (it is not a bundle a
        run wrote), before anything is written.
    type: dict
    suboptions:
      path:
        description: The bundle folder (absolute, directly inside O(path)).
        type: path
        required: true
      files:
        description: The bundle's files, as path relative to the bundle folder to text content.
        type: dict
        required: true
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
"""

EXAMPLES = r"""
- name: Write the policy
  hardening.docker_authz.policy_files:
    path: /etc/docker/policies
    files:
      /etc/docker/policies/authz.rego: "{{ policy_text }}"

- name: Write the OPA config and the bundle it loads
  hardening.docker_authz.policy_files:
    path: /etc/docker/policies
    files:
      /etc/docker/policies/opa-config.yaml: "{{ opa_config_text }}"
    bundle:
      path: /etc/docker/policies/bundle
      files: "{{ bundle_files }}"
"""

RETURN = r"""
directory_changed:
  description: Whether the folder was created or its owner or mode changed.
  returned: always
  type: bool
written:
  description: The files written (content, owner or mode differed).
  returned: always
  type: list
  elements: str
  sample: ["/etc/docker/policies/authz.rego"]
bundle:
  description:
    - With O(bundle), what changed in the bundle folder - C(changed), C(exists) (before the
      run), C(written) and C(removed) (paths relative to the bundle folder).
  returned: with O(bundle)
  type: dict
  sample: {"changed": true, "exists": false, "written": [".manifest", "lib.rego"], "removed": []}
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.hardening.docker_authz.plugins.module_utils.policy_files import (  # noqa: E402
    PolicyFilesError,
    write_files,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "files": {"type": "dict", "required": True},
            "mode": {"type": "str", "default": "0640"},
            "directory_mode": {"type": "str", "default": "0750"},
            "bundle": {
                "type": "dict",
                "options": {
                    "path": {"type": "path", "required": True},
                    "files": {"type": "dict", "required": True},
                },
            },
        },
        supports_check_mode=True,
    )
    p = module.params
    bad = sorted(str(k) for k, v in p["files"].items() if not isinstance(v, str))
    if bad:
        module.fail_json(
            msg=f"files: the content of {', '.join(bad)} is not text; give each file's content as a string"
        )
    try:
        result = write_files(
            p["path"],
            p["files"],
            mode=p["mode"],
            directory_mode=p["directory_mode"],
            check_mode=module.check_mode,
            bundle=p["bundle"],
        )
    except (PolicyFilesError, OSError) as exc:
        module.fail_json(msg=f"writing the policy files in {p['path']}: {exc}")
    diff = result.pop("diff")
    if module._diff and diff:
        result["diff"] = diff
    for warning in result.pop("warnings", []):  # (a `warnings` result key is deprecated in ansible-core 2.19)
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
