#!/usr/bin/python
# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""Ansible module hardening.docker_authz.authz_adopt (logic in module_utils/adopt.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: authz_adopt
short_description: Take over an opa-docker-authz plugin installed and hooked by hand, with the shortest window
version_added: "0.1.0"
description:
  - Finds the opa-docker-authz plugins installed under any name or reference other than O(alias),
    recognised by what they are (an authorization plugin serving C(opa-docker-authz.sock), or with an
    opa-docker-authz entrypoint or C(opa-args)), read from dockerd's plugin store on disk. Other
    authorization plugins stay where they are.
  - For a hooked one, in one call on the host - backs up the old policy and daemon.json, unhooks it
    and reloads dockerd, writes O(policy_text), installs O(reference) as O(alias) with O(args) and
    enables it, removes the old plugin, hooks O(alias) at the old plugin's place and reloads dockerd -
    then measures the window without this enforcement (until a privileged create of a missing image is
    denied by O(alias)).
  - A failure before the old plugin is removed restores daemon.json, the policy and the reload, and
    removes the new plugin.
  - Nothing to adopt - no change (idempotent).
author:
  - hardening.docker_authz contributors
options:
  alias:
    description: The role's plugin name (what daemon.json names).
    type: str
    default: opa-docker-authz
  reference:
    description: The plugin reference to install as O(alias) (C({arch}) expanded).
    type: str
    required: true
  args:
    description: The plugin's C(opa-args).
    type: str
    required: true
  registry_auth:
    description: Registry credentials (username, password, serveraddress).
    type: dict
  digest_check:
    description: Resolve the reference's digest in the registry.
    type: bool
    default: true
  socket:
    description: The Docker Engine API unix socket.
    type: path
    default: /var/run/docker.sock
  daemon_json_path:
    description: dockerd's configuration file.
    type: path
    default: /etc/docker/daemon.json
  pidfile:
    description: dockerd's pid file (reload by SIGHUP).
    type: path
    default: /var/run/docker.pid
  reload_method:
    description: C(systemd) (systemctl reload docker), C(signal) (SIGHUP) or C(auto).
    type: str
    default: auto
    choices: [auto, systemd, signal]
  policy_path:
    description:
      - The policy file the old plugin reads and O(alias) will read (file mode); backed up before it is
        replaced by O(policy_text). Omit in bundle mode.
    type: path
  policy_text:
    description: The compiled policy written to O(policy_path) inside the window.
    type: str
  timeout:
    description: Seconds for each engine call (pulls included).
    type: int
    default: 120
notes:
  - Supports check mode (the message says exactly what would happen) and diff mode (daemon.json and the
    policy).
"""

EXAMPLES = r"""
- name: Take over a plugin installed by the how-to
  hardening.docker_authz.authz_adopt:
    reference: ghcr.io/open-policy-agent/opa-docker-authz:v0.10-linux-{arch}
    args: -policy-file /opa/policies/authz.rego
    policy_path: /etc/docker/policies/authz.rego
    policy_text: "{{ lookup('ansible.builtin.file', 'authz.rego') }}"
  register: adoption
"""

RETURN = r"""
message:
  description: What the adoption does (check mode) or did, with the measured window.
  returned: always
  type: str
plan:
  description: The chain before, unhooked and after, the plugins adopted, stale and other.
  returned: always
  type: dict
adopted:
  description: The hooked plugins replaced by O(alias).
  returned: always
  type: list
  elements: str
removed:
  description: The old plugins removed (hooked and unhooked ones).
  returned: always
  type: list
  elements: str
policy_backup:
  description: Where the old policy was copied, or null.
  returned: always
  type: str
daemon_json_backup:
  description: Where the old daemon.json was copied, or null.
  returned: always
  type: str
unenforced_seconds:
  description: Seconds from the unhook to the first request O(alias) denied, or null.
  returned: always
  type: float
enforcement_confirmed:
  description: Whether a probe was seen denied by O(alias) after the hook.
  returned: always
  type: bool
daemon_json_b64:
  description: daemon.json after the adoption (base64).
  returned: when changed and not in check mode
  type: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.hardening.docker_authz.plugins.module_utils.adopt import AdoptError, adopt  # noqa: E402
from ansible_collections.hardening.docker_authz.plugins.module_utils.daemon_config import (  # noqa: E402
    DaemonConfigError,
)
from ansible_collections.hardening.docker_authz.plugins.module_utils.docker_api import DockerError  # noqa: E402
from ansible_collections.hardening.docker_authz.plugins.module_utils.plugin import PluginError  # noqa: E402


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "alias": {"type": "str", "default": "opa-docker-authz"},
            "reference": {"type": "str", "required": True},
            "args": {"type": "str", "required": True},
            "registry_auth": {"type": "dict", "no_log": True},
            "digest_check": {"type": "bool", "default": True},
            "socket": {"type": "path", "default": "/var/run/docker.sock"},
            "daemon_json_path": {"type": "path", "default": "/etc/docker/daemon.json"},
            "pidfile": {"type": "path", "default": "/var/run/docker.pid"},
            "reload_method": {"type": "str", "default": "auto", "choices": ["auto", "systemd", "signal"]},
            "policy_path": {"type": "path"},
            "policy_text": {"type": "str"},
            "timeout": {"type": "int", "default": 120},
        },
        required_by={"policy_text": ["policy_path"]},
        supports_check_mode=True,
    )
    try:
        result = adopt(module.params, check_mode=module.check_mode)
    except (AdoptError, PluginError, DaemonConfigError, DockerError, OSError) as exc:
        module.fail_json(msg=str(exc), **dict(getattr(exc, "details", {}) or {}))
    if not module._diff:
        result.pop("diff", None)
    for warning in result.pop("warnings", []):  # (a `warnings` result key is deprecated in ansible-core 2.19)
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
