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
  - With O(adoption), also what C(hardening.docker_authz.authz_adopt) in check mode would find
    (opa-docker-authz plugins installed under another name), read from the same daemon.json.
  - With O(plan_reference), also the plan of C(hardening.docker_authz.authz_plugin) in check mode
    (O(plugin) enabled from O(plan_reference) with O(plan_args)), the registry asked for the digest
    as that module asks it.
  - Nothing is an error - a missing file is C(exists=false), an engine that does not answer has
    C(status=-1) and the reason in C(msg).
  - With O(lock), first takes the host's lock as C(hardening.docker_authz.authz_lock) does (one
    run of the role at a time), in the same round trip - the only thing this module may write.
    When another run holds it, the module fails with that module's message and reads nothing.
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
  adoption:
    description:
      - Also look for opa-docker-authz plugins installed under another name than O(plugin) (in
        dockerd's plugin store on disk, as C(hardening.docker_authz.authz_adopt) does) and return
        them as RV(adopt).
    type: bool
    default: false
  plan_reference:
    description:
      - Plan the plugin O(plugin) as C(hardening.docker_authz.authz_plugin) in check mode with
        C(state=enabled) and this reference (C({arch}) is the engine's) would, and return it as
        RV(plugin_plan).
    type: str
  plan_args:
    description: The plugin's args for the plan (see C(hardening.docker_authz.authz_plugin)).
    type: str
    default: ''
  plan_digest_check:
    description: Ask the registry for the digest of the reference's tag (C(digest_check) of the plan).
    type: bool
    default: true
  registry_auth:
    description:
      - Credentials for the registry of O(plan_reference) (C(username), C(password), C(serveraddress)).
    type: dict
  daemon_check:
    description:
      - Also check C(daemon.json) as C(hardening.docker_authz.daemon_json) in check mode would with
        O(plugin) merged into C(authorization-plugins) (C(list_merge=union)) - valid JSON, no key
        that conflicts with dockerd's command-line flags - and return it as RV(daemon_check).
    type: bool
    default: false
  lock:
    description:
      - Take the host's lock first (see C(hardening.docker_authz.authz_lock); release it with that
        module). A lock this module took is released again if the read fails.
    type: dict
    suboptions:
      run_id:
        description: The run's id; the lock is re-entrant for the same id.
        type: str
        required: true
      playbook:
        description: The play's name, shown to a run that finds the lock held.
        type: str
        default: ''
      controller:
        description: C(user@host) of the controller, shown likewise.
        type: str
        default: ''
      path:
        description: The lock file.
        type: path
        default: /run/hardening-docker-authz.lock
      stale_seconds:
        description: A lock older than this was left by a killed run and is taken over (with a warning).
        type: int
        default: 3600
      check:
        description:
          - Check the lock without taking it (pass C(ansible_check_mode) - the role runs this module
            with C(check_mode=false) so that check mode still reads).
        type: bool
        default: false
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
  description: C(path), C(exists), C(content) (base64), C(owner), C(group), C(mode), C(islink).
  returned: always
  type: dict
policy_dir:
  description: C(path), C(exists), and when it exists C(owner), C(group), C(mode), C(islink).
  returned: always
  type: dict
adopt:
  description:
    - C(adopted) (hooked plugins to swap for O(plugin)) and C(removed) (every old plugin the
      adoption removes); both empty when there is nothing to adopt. C(msg) instead when
      daemon.json cannot be read (run C(hardening.docker_authz.authz_adopt) for the details).
  returned: when O(adoption) is true
  type: dict
  sample: {"adopted": ["opa-docker-authz-v2:0.4"], "removed": ["opa-docker-authz-v2:0.4"]}
plugin_plan:
  description:
    - The result of C(hardening.docker_authz.authz_plugin) in check mode (C(actions), C(plugin),
      C(reference), C(remote_digest), C(privileges); its warnings are the module's warnings), or
      C(failed) and C(msg) when the plan failed (nothing is raised; run
      C(hardening.docker_authz.authz_plugin) for the error).
  returned: when O(plan_reference) is given
  type: dict
  sample: {"actions": [], "reference": "ghcr.io/open-policy-agent/opa-docker-authz:v0.10-linux-amd64"}
daemon_check:
  description:
    - What C(hardening.docker_authz.daemon_json) in check mode returns (C(config), C(changed_keys),
      C(reload_required), C(restart_required); its warnings are the module's warnings), or C(failed)
      and C(msg) (nothing is raised; run C(hardening.docker_authz.daemon_json) for the error).
  returned: when O(daemon_check) is true
  type: dict
  sample: {"config": {"authorization-plugins": ["opa-docker-authz"]}, "changed_keys": []}
bundle:
  description:
    - C(path), C(exists), C(files) (path inside the folder to content) and C(modes) (path inside
      the folder to its mode, such as C(0640); C(link) for a symbolic link).
  returned: always
  type: dict
  sample: {"path": "/etc/docker/policies/bundle", "exists": true, "files": {".manifest": "{}"},
           "modes": {".manifest": "0640"}}
lock:
  description:
    - The result of taking the lock - C(acquired) (false in check mode), C(changed) (this call
      created the lock file), C(message).
  returned: when O(lock) is given
  type: dict
  sample: {"acquired": true, "changed": true, "message": "lock /run/hardening-docker-authz.lock taken"}
opa_config:
  description: C(path), C(exists), C(content) (base64), C(owner), C(group), C(mode) and C(islink).
  returned: always
  type: dict
  sample: {"path": "/etc/docker/policies/opa-config.yaml", "exists": true, "content": "IyBNYW5h",
           "owner": "root", "group": "root", "mode": "0640", "islink": false}
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.hardening.docker_authz.plugins.module_utils.host_state import (  # noqa: E402
    host_state,
)
from ansible_collections.hardening.docker_authz.plugins.module_utils.hostlock import (  # noqa: E402
    DEFAULT_PATH,
    DEFAULT_STALE_SECONDS,
    LockError,
    under_lock,
)
from ansible_collections.hardening.docker_authz.plugins.module_utils.plugin import (  # noqa: E402
    REGISTRY_AUTH_OPTION,
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
            "adoption": {"type": "bool", "default": False},
            "plan_reference": {"type": "str"},
            "plan_args": {"type": "str", "default": ""},
            "plan_digest_check": {"type": "bool", "default": True},
            "daemon_check": {"type": "bool", "default": False},
            "registry_auth": REGISTRY_AUTH_OPTION,
            "lock": {
                "type": "dict",
                "options": {
                    "run_id": {"type": "str", "required": True},
                    "playbook": {"type": "str", "default": ""},
                    "controller": {"type": "str", "default": ""},
                    "path": {"type": "path", "default": DEFAULT_PATH},
                    "stale_seconds": {"type": "int", "default": DEFAULT_STALE_SECONDS},
                    "check": {"type": "bool", "default": False},
                },
            },
        },
        supports_check_mode=True,
    )
    p = module.params
    if p["timeout"] <= 0:
        module.fail_json(msg=f"timeout must be a positive number of seconds, got {p['timeout']}")
    plan_params = None
    if p["plan_reference"] is not None:
        plan_params = {
            "reference": p["plan_reference"],
            "args": p["plan_args"],
            "digest_check": p["plan_digest_check"],
            "registry_auth": p["registry_auth"],
        }

    def read() -> dict:
        return host_state(
            socket=p["socket"],
            plugin=p["plugin"],
            daemon_json_path=p["daemon_json_path"],
            policy_path=p["policy_path"],
            bundle_dir=p["bundle_dir"],
            opa_config_path=p["opa_config_path"],
            timeout=float(p["timeout"]),
            adoption=p["adoption"],
            plan_params=plan_params,
            daemon_check=p["daemon_check"],
        )

    try:
        result = under_lock(p["lock"], read)
    except (LockError, OSError) as exc:
        module.fail_json(msg=str(exc))
    for warning in (result.get("lock") or {}).pop("warnings", []):
        module.warn(warning)
    # the plan's warnings, as authz_plugin shows them (a tag that names no architecture ...)
    for part in ("plugin_plan", "daemon_check"):
        for warning in (result.get(part) or {}).pop("warnings", []):
            module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
