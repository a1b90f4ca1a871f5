#!/usr/bin/python
# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""Ansible module hardening.docker_authz.authz_plugin_restart (logic in module_utils/plugin_restart.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: authz_plugin_restart
short_description: Restart an enabled authorization plugin in place so it reloads its bundle
version_added: "0.2.0"
description:
  - Kills the process of an enabled Docker managed plugin (found through its containerd shim
    in the C(plugins.moby) namespace, without the plugin API) and waits until the Docker API
    answers through the authorization chain again. dockerd restarts an enabled plugin whose
    process exits, with the same args and settings.
  - Meant for opa-docker-authz in config-file mode with a local bundle, which is read once
    at start. The plugin stays in the live authorization chain throughout - requests made
    during the restart wait (dockerd retries the plugin for up to 30 seconds), none is
    authorized without the policy, and no reload is needed.
  - When the new process does not serve within O(timeout) (a bundle that does not load),
    the module fails. dockerd marks such a plugin disabled after about 12.5 seconds and every
    API call then fails - remove it from C(authorization-plugins), reload dockerd, and
    restore the previous bundle (the role C(hardening.docker_authz.opa_authz) does this).
  - Must run on the Docker host itself, as root.
author:
  - hardening.docker_authz contributors
options:
  name:
    description: The plugin's local name (alias).
    type: str
    default: opa-docker-authz
    aliases: [alias]
  timeout:
    description: Seconds to wait for the restarted plugin to serve.
    type: int
    default: 30
  socket:
    description: The Docker Engine API socket.
    type: path
    default: /var/run/docker.sock
    aliases: [docker_socket]
notes:
  - Check mode finds the plugin's process and reports a change without killing it.
"""

EXAMPLES = r"""
- name: Load the new bundle
  hardening.docker_authz.authz_plugin_restart:
    name: opa-docker-authz
    timeout: 30
  register: restart

- name: Show how long the API waited
  ansible.builtin.debug:
    msg: "requests waited at most {{ restart.seconds }} s"
"""

RETURN = r"""
plugin_id:
  description: The plugin's id.
  returned: always
  type: str
old_pids:
  description: The plugin processes that were killed (in check mode, that would be).
  returned: always
  type: list
  elements: int
new_pids:
  description: The processes of the restarted plugin.
  returned: always
  type: list
  elements: int
seconds:
  description: Seconds from the kill until the Docker API answered through the chain again.
  returned: always
  type: float
  sample: 1.06
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.hardening.docker_authz.plugins.module_utils.docker_api import (  # noqa: E402
    DockerError,
)
from ansible_collections.hardening.docker_authz.plugins.module_utils.plugin_restart import (  # noqa: E402
    DEFAULT_RESTART_TIMEOUT,
    RestartError,
    restart,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "default": "opa-docker-authz", "aliases": ["alias"]},
            "timeout": {"type": "int", "default": DEFAULT_RESTART_TIMEOUT},
            "socket": {"type": "path", "default": "/var/run/docker.sock", "aliases": ["docker_socket"]},
        },
        supports_check_mode=True,
    )
    p = module.params
    if p["timeout"] <= 0:
        module.fail_json(msg=f"timeout must be a positive number of seconds, got {p['timeout']}")
    try:
        result = restart(p["name"], p["socket"], float(p["timeout"]), check_mode=module.check_mode)
    except RestartError as exc:
        module.fail_json(msg=str(exc), **exc.details)
    except DockerError as exc:
        module.fail_json(msg=f"restarting plugin {p['name']}: {exc}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
