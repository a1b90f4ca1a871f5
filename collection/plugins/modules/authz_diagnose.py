#!/usr/bin/python
# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""Ansible module hardening.docker_authz.authz_diagnose (logic in module_utils/diagnose.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: authz_diagnose
short_description: Name why the Docker Engine API does not answer (dockerd down, or a plugin that locks it)
version_added: "0.1.0"
description:
  - Asks the Docker Engine for C(GET /version) once and, when that fails, names the cause from what
    the host shows without the API - the dockerd process (pid file and C(/proc)), the authorization
    plugins C(daemon.json) hooks, dockerd's plugin store on disk (installed, enabled) - and the
    engine's error text.
  - "Causes: C(ok); C(dockerd_down) (no dockerd process); C(dockerd_unreachable) (dockerd runs, its
    socket cannot be reached); C(dockerd_stuck); C(plugin_error) (the plugin answers errors, quoted);
    C(plugin_denies) (the policy denies the role's own calls); C(plugin_timeout) (a plugin that does
    not answer in time); C(plugin_down) (the plugin's process does not serve); C(plugin_missing) and
    C(plugin_disabled) (hooked but not installed, or disabled); C(api_error)."
  - A running dockerd is never reported as not running.
  - Never changes anything; the module fails only for invalid options.
author:
  - hardening.docker_authz contributors
options:
  plugin:
    description:
      - The role's plugin alias; RV(ours) tells whether this plugin is the one that locks the API.
    type: str
    default: opa-docker-authz
    aliases: [alias, name]
  socket:
    description:
      - The Docker Engine API unix socket.
    type: path
    default: /var/run/docker.sock
    aliases: [docker_socket]
  daemon_json_path:
    description:
      - dockerd's configuration file (read for C(authorization-plugins) and C(data-root)).
    type: path
    default: /etc/docker/daemon.json
  pidfile:
    description:
      - dockerd's pid file; C(/proc) is searched for a dockerd process when it is stale or missing.
    type: path
    default: /var/run/docker.pid
  timeout:
    description:
      - Seconds to wait for the answer to C(GET /version); a plugin that takes longer is reported as
        not answering in time.
    type: int
    default: 15
notes:
  - Supports check mode (it never changes anything).
"""

EXAMPLES = r"""
- name: Name why the Docker API does not answer
  hardening.docker_authz.authz_diagnose:
    plugin: opa-docker-authz
  register: diagnosis

- name: Stop with the cause and the fix
  ansible.builtin.fail:
    msg: "{{ diagnosis.message }}"
  when: not diagnosis.api_answers
"""

RETURN = r"""
cause:
  description: The cause, one of the names listed in the description.
  returned: always
  type: str
  sample: plugin_error
message:
  description: The cause and its fix in words (the plugin's error quoted).
  returned: always
  type: str
api_answers:
  description: Whether C(GET /version) answered with a success status.
  returned: always
  type: bool
dockerd_pid:
  description: The running dockerd's pid, or null when no dockerd process runs.
  returned: always
  type: int
hooked:
  description: The authorization plugins C(daemon.json) names, in order.
  returned: always
  type: list
  elements: str
plugin:
  description: The plugin blamed (named by dockerd's error), or null.
  returned: always
  type: str
ours:
  description: Whether the plugin blamed is O(plugin) (the role's own).
  returned: always
  type: bool
error:
  description: The engine's or the plugin's error text.
  returned: always
  type: str
status:
  description: The HTTP status of C(GET /version), or null when there was no answer.
  returned: always
  type: int
plugin_state:
  description:
    - C(enabled), C(disabled), C(missing) or C(unknown) for the plugin blamed, from the store on disk.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.hardening.docker_authz.plugins.module_utils.diagnose import diagnose  # noqa: E402


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "plugin": {"type": "str", "default": "opa-docker-authz", "aliases": ["alias", "name"]},
            "socket": {"type": "path", "default": "/var/run/docker.sock", "aliases": ["docker_socket"]},
            "daemon_json_path": {"type": "path", "default": "/etc/docker/daemon.json"},
            "pidfile": {"type": "path", "default": "/var/run/docker.pid"},
            "timeout": {"type": "int", "default": 15},
        },
        supports_check_mode=True,
    )
    p = module.params
    if p["timeout"] <= 0:
        module.fail_json(msg=f"timeout must be a positive number of seconds, got {p['timeout']}")
    result = diagnose(
        p["socket"], p["plugin"], p["daemon_json_path"], p["pidfile"], timeout=float(p["timeout"])
    )
    module.exit_json(changed=False, **result.as_dict())


if __name__ == "__main__":
    main()
