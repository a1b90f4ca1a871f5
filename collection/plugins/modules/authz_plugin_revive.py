#!/usr/bin/python
# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""Ansible module hardening.docker_authz.authz_plugin_revive (logic in module_utils/diagnose.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: authz_plugin_revive
short_description: Restart a hung authorization plugin in place, without the Docker API
version_added: "0.2.0"
description:
  - For an installed, enabled managed plugin whose process does not answer (stopped with SIGSTOP,
    wedged), so that every Docker API call waits on it. Finds the plugin on dockerd's plugin store
    on disk and its process through its containerd shim (no API needed), sends it SIGKILL, and
    waits until C(GET /version) answers again.
  - dockerd starts an enabled plugin whose process exits again with the same args; the plugin stays
    in C(authorization-plugins) throughout, so no request is authorized without it.
  - Must run on the Docker host itself, as root.
author:
  - hardening.docker_authz contributors
options:
  name:
    description: The plugin's local name (alias).
    type: str
    default: opa-docker-authz
  socket:
    description: The Docker Engine API unix socket.
    type: path
    default: /var/run/docker.sock
  daemon_json_path:
    description: dockerd's configuration file (read for C(data-root)).
    type: path
    default: /etc/docker/daemon.json
  timeout:
    description: Seconds to wait for the API to answer after the kill.
    type: int
    default: 45
notes:
  - Check mode names the process it would kill and kills nothing.
"""

EXAMPLES = r"""
- name: Restart the hung plugin
  hardening.docker_authz.authz_plugin_revive:
    name: opa-docker-authz
  register: revive
"""

RETURN = r"""
revived:
  description: Whether the API answered after the kill.
  returned: always
  type: bool
pids:
  description: The plugin processes killed (or that would be).
  returned: always
  type: list
  elements: int
seconds:
  description: Seconds from the kill until the API answered, or null.
  returned: always
  type: float
message:
  description: What was done, in words.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.hardening.docker_authz.plugins.module_utils.diagnose import revive_plugin  # noqa: E402


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "default": "opa-docker-authz"},
            "socket": {"type": "path", "default": "/var/run/docker.sock"},
            "daemon_json_path": {"type": "path", "default": "/etc/docker/daemon.json"},
            "timeout": {"type": "int", "default": 45},
        },
        supports_check_mode=True,
    )
    p = module.params
    if p["timeout"] <= 0:
        module.fail_json(msg=f"timeout must be a positive number of seconds, got {p['timeout']}")
    module.exit_json(
        **revive_plugin(
            p["name"],
            p["socket"],
            p["daemon_json_path"],
            check_mode=module.check_mode,
            timeout=float(p["timeout"]),
        )
    )


if __name__ == "__main__":
    main()
