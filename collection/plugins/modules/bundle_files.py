#!/usr/bin/python
# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""Ansible module hardening.docker_authz.bundle_files (logic in module_utils/bundle.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: bundle_files
short_description: Make a directory hold exactly a set of text files (an OPA bundle), or read it
version_added: "0.2.0"
description:
  - With O(files), writes every file whose content differs (atomically, owner root, O(mode)),
    creates the folders (O(directory_mode)) and removes the files below O(path) that are not
    in O(files) - in one call, where a loop of C(copy) tasks costs one round trip per file.
  - Without O(files) (or with O(state=absent)) it only reads, or removes O(path).
  - Returns the current files' contents (C(files)) when O(read=true), for a later restore.
  - Supports check mode and diff mode (one entry per changed file).
author:
  - hardening.docker_authz contributors
options:
  path:
    description: The directory.
    type: path
    required: true
  files:
    description:
      - C({relative path - content}). Paths use C(/), stay below O(path) (no C(..), not absolute).
      - Omit to only read.
    type: dict
  state:
    description: V(present) syncs O(files) (when given); V(absent) removes O(path) and everything in it.
    type: str
    choices: [present, absent]
    default: present
  read:
    description: Return the files below O(path) as they were before this run (C(files)).
    type: bool
    default: false
  mode:
    description: Mode of the files written.
    type: str
    default: "0640"
  directory_mode:
    description: Mode of the folders created (O(path) included).
    type: str
    default: "0750"
  only_bundles:
    description:
      - Refuse to touch an O(path) that holds files but no C(.manifest) (not a bundle a previous
        run wrote), so a mistyped destination never loses its files.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Write the bundle
  hardening.docker_authz.bundle_files:
    path: /etc/docker/policies/bundle
    files: "{{ bundle_files }}"

- name: Record the bundle for a rollback
  hardening.docker_authz.bundle_files:
    path: /etc/docker/policies/bundle
    read: true
  register: prior
"""

RETURN = r"""
exists:
  description: Whether O(path) existed before the run.
  returned: always
  type: bool
files:
  description: The files below O(path) before the run (relative path - content), with O(read=true).
  returned: when read is true
  type: dict
written:
  description: The files written (or that would be, in check mode).
  returned: always
  type: list
  elements: str
removed:
  description: The files removed (or that would be).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.hardening.docker_authz.plugins.module_utils.bundle import (  # noqa: E402
    BundleFilesError,
    sync_files,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "files": {"type": "dict"},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "read": {"type": "bool", "default": False},
            "mode": {"type": "str", "default": "0640"},
            "directory_mode": {"type": "str", "default": "0750"},
            "only_bundles": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    p = module.params
    try:
        result = sync_files(
            p["path"],
            p["files"],
            absent=p["state"] == "absent",
            read=p["read"],
            mode=int(p["mode"], 8),
            directory_mode=int(p["directory_mode"], 8),
            check_mode=module.check_mode,
            only_bundles=p["only_bundles"],
        )
    except (BundleFilesError, ValueError) as exc:
        module.fail_json(msg=str(exc))
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
