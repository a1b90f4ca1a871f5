#!/usr/bin/python
# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""Ansible module hardening.docker_authz.authz_facts (logic in module_utils/report.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: authz_facts
short_description: Read what a Docker host runs for authorization (engine, plugin, hook, policy)
version_added: "0.1.0"
description:
  - Reads, and never changes, what the fleet report needs from one Docker host - the engine
    version, the authorization plugin (reference, manifest digest, enabled, args), whether
    C(daemon.json) names it in C(authorization-plugins), and the deployed policy (sha256, Rego
    dialect, the rules it enables).
  - The rules are read back from the C(config) object that the role C(hardening.docker_authz.opa_authz)
    renders into the policy, and returned as O(hardening.docker_authz.authz_verify#module:rules) in
    RV(verify_rules), so the verification probes test exactly what the host enforces.
  - A host without Docker, without the plugin or without a policy is described in the result, not
    an error; the module fails only for invalid options.
  - Talks to the Docker Engine API on its unix socket with the Python standard library only.
author:
  - hardening.docker_authz contributors
options:
  plugin:
    description:
      - The plugin's name (the alias it was installed with).
    type: str
    default: opa-docker-authz
    aliases: [alias, name]
  daemon_json_path:
    description:
      - dockerd's configuration file.
    type: path
    default: /etc/docker/daemon.json
  policy_path:
    description:
      - The policy file on the host. By default it is found from the plugin's C(-policy-file)
        argument through the plugin's mounts (C(/opa) is C(/etc/docker)).
    type: path
  socket:
    description:
      - The Docker Engine API socket.
    type: path
    default: /var/run/docker.sock
    aliases: [docker_socket]
  timeout:
    description:
      - Seconds to wait for each Engine API answer.
    type: int
    default: 15
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
notes:
  - Run with C(become) - the policy file and C(/var/lib/docker) (the plugin's manifest digest) are
    readable by root only.
seealso:
  - module: hardening.docker_authz.authz_verify
"""

EXAMPLES = r"""
- name: Read the host's authorization set-up
  hardening.docker_authz.authz_facts:
  register: authz

- name: Verify exactly what the deployed policy enforces
  hardening.docker_authz.authz_verify:
    rules: "{{ authz.policy.verify_rules }}"
  when: authz.policy.managed | default(false)
"""

RETURN = r"""
docker:
  description: Whether the Engine API answered (C(available)), and the error when it did not.
  returned: always
  type: dict
  sample: {available: true, error: null}
engine:
  description: The engine's version, API version, OS, architecture and kernel.
  returned: always
  type: dict
  sample: {version: 20.10.24+dfsg1, api_version: "1.41", os: linux, arch: amd64}
plugin:
  description: The plugin - C(installed), and when it is, C(enabled), C(reference), C(digest) (the
    manifest digest it was installed from), C(args), C(id).
  returned: always
  type: dict
daemon_json:
  description: C(exists), C(hooked) (the plugin is in C(authorization-plugins)), the
    C(authorization_plugins) list, and C(error) when the file cannot be read or parsed.
  returned: always
  type: dict
policy:
  description: The policy file - C(path), C(exists), C(sha256), C(size), C(dialect) (C(v0) or C(v1)),
    C(package), C(managed) (rendered by the role), C(rules) (the enabled rule ids) and
    C(verify_rules) (the rules option of authz_verify for this policy).
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.hardening.docker_authz.plugins.module_utils.docker_api import (  # noqa: E402
    DockerClient,
)
from ansible_collections.hardening.docker_authz.plugins.module_utils.report import host_facts  # noqa: E402


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "plugin": {"type": "str", "default": "opa-docker-authz", "aliases": ["alias", "name"]},
            "daemon_json_path": {"type": "path", "default": "/etc/docker/daemon.json"},
            "policy_path": {"type": "path"},
            "socket": {"type": "path", "default": "/var/run/docker.sock", "aliases": ["docker_socket"]},
            "timeout": {"type": "int", "default": 15},
        },
        supports_check_mode=True,
    )
    p = module.params
    if p["timeout"] <= 0:
        module.fail_json(msg=f"timeout must be a positive number of seconds, got {p['timeout']}")
    client = DockerClient(p["socket"], timeout=float(p["timeout"]))
    facts = host_facts(client, p["plugin"], p["daemon_json_path"], p["policy_path"])
    module.exit_json(changed=False, **facts)


if __name__ == "__main__":
    main()
