#!/usr/bin/python
# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""Ansible module hardening.docker_authz.authz_host_state (logic in module_utils/host_state.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: authz_host_state
short_description: Read in one round trip what the opa_authz role needs to know about a Docker host
version_added: "0.2.0"
description:
  - Reads, and never changes, everything the role C(hardening.docker_authz.opa_authz) checks and
    records before it changes a host - whether the Docker socket exists, C(GET /version) and
    C(GET /plugins/<plugin>/json) of the Engine API, C(daemon.json) (content, owner, group, mode),
    the policy file, whether its folder exists, the bundle folder's files and the OPA config.
  - One module run instead of one per file and request (the role's preflight did ten).
  - Nothing is an error - a missing file is C(exists=false), an engine that does not answer has
    C(status=-1) and the reason in C(msg).
author:
  - hardening.docker_authz contributors
options:
  plugin:
    description: The plugin's alias.
    type: str
    default: opa-docker-authz
  socket:
    description: The Docker Engine API unix socket (C(unix://) prefix allowed).
    type: path
    default: /var/run/docker.sock
  daemon_json_path:
    description: dockerd's configuration file.
    type: path
    default: /etc/docker/daemon.json
  policy_path:
    description: The policy file (policy-file mode).
    type: path
    required: true
  bundle_dir:
    description: The bundle folder (bundle mode).
    type: path
    required: true
  opa_config_path:
    description: The OPA config file (bundle mode).
    type: path
    required: true
  timeout:
    description: Seconds to wait for each Engine API answer.
    type: int
    default: 15
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
notes:
  - Run with C(become) (daemon.json, the policy and the socket are root's).
seealso:
  - module: hardening.docker_authz.authz_facts
"""

EXAMPLES = r"""
- name: Read the host's state
  hardening.docker_authz.authz_host_state:
    policy_path: /etc/docker/policies/authz.rego
    bundle_dir: /etc/docker/policies/bundle
    opa_config_path: /etc/docker/policies/opa-config.yaml
  register: state

- name: Show whether the plugin is installed
  ansible.builtin.debug:
    msg: "{{ state.plugin.status == 200 }}"
"""

RETURN = r"""
socket:
  description: C(path), C(exists), C(issock).
  returned: always
  type: dict
version:
  description: C(status) (-1 without an answer), C(json) (the engine's C(GET /version)), C(msg).
  returned: always
  type: dict
plugin:
  description: C(status) (200, 404, or -1), C(json) (C(GET /plugins/<plugin>/json)), C(msg).
  returned: always
  type: dict
daemon_json:
  description: C(path), C(exists), C(content) (base64), C(owner), C(group), C(mode).
  returned: always
  type: dict
policy:
  description: C(path), C(exists), C(content) (base64).
  returned: always
  type: dict
policy_dir:
  description: C(path), C(exists).
  returned: always
  type: dict
bundle:
  description: C(path), C(exists), C(files) (path inside the folder to content).
  returned: always
  type: dict
opa_config:
  description: C(path), C(exists), C(content) (base64).
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.hardening.docker_authz.plugins.module_utils.host_state import (  # noqa: E402
    host_state,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "plugin": {"type": "str", "default": "opa-docker-authz"},
            "socket": {"type": "path", "default": "/var/run/docker.sock"},
            "daemon_json_path": {"type": "path", "default": "/etc/docker/daemon.json"},
            "policy_path": {"type": "path", "required": True},
            "bundle_dir": {"type": "path", "required": True},
            "opa_config_path": {"type": "path", "required": True},
            "timeout": {"type": "int", "default": 15},
        },
        supports_check_mode=True,
    )
    p = module.params
    if p["timeout"] <= 0:
        module.fail_json(msg=f"timeout must be a positive number of seconds, got {p['timeout']}")
    module.exit_json(
        **host_state(
            socket=p["socket"],
            plugin=p["plugin"],
            daemon_json_path=p["daemon_json_path"],
            policy_path=p["policy_path"],
            bundle_dir=p["bundle_dir"],
            opa_config_path=p["opa_config_path"],
            timeout=float(p["timeout"]),
        )
    )


if __name__ == "__main__":
    main()
