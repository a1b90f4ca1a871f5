#!/usr/bin/python
# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""Ansible module hardening.docker_authz.authz_lock (logic in module_utils/hostlock.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: authz_lock
short_description: One run of the role per host at a time (a lock file on the host)
version_added: "0.2.0"
description:
  - C(state=acquired) creates O(path) atomically for O(run_id), or fails naming the run that holds
    it (its id, play, controller and start time) and the fix. The same O(run_id) may take it again.
    A lock older than O(stale_seconds) (a run killed before it released it) is taken over with a
    warning.
  - C(state=released) removes O(path) if O(run_id) holds it, never another run's lock.
author:
  - hardening.docker_authz contributors
options:
  path:
    description: The lock file (in C(/run), so a reboot clears it).
    type: path
    default: /run/hardening-docker-authz.lock
  run_id:
    description: This run's id (the same for every task of one run on the host).
    type: str
    required: true
  state:
    description: C(acquired) or C(released).
    type: str
    default: acquired
    choices: [acquired, released]
  playbook:
    description: Shown to a second run (the play's name).
    type: str
    default: ""
  controller:
    description: Shown to a second run (who runs it, from where).
    type: str
    default: ""
  stale_seconds:
    description: Age after which a lock is taken over.
    type: int
    default: 3600
notes:
  - In check mode the lock is checked (a run holding it fails the check too) but not written.
"""

EXAMPLES = r"""
- name: Take the host's lock
  hardening.docker_authz.authz_lock:
    run_id: "{{ run_id }}"
    playbook: "{{ ansible_play_name }}"
"""

RETURN = r"""
acquired:
  description: Whether this run holds the lock now (state=acquired).
  returned: when state=acquired
  type: bool
released:
  description: Whether the lock was removed (state=released).
  returned: when state=released
  type: bool
message:
  description: What happened.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.hardening.docker_authz.plugins.module_utils.hostlock import (  # noqa: E402
    LockError,
    acquire,
    release,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "default": "/run/hardening-docker-authz.lock"},
            "run_id": {"type": "str", "required": True},
            "state": {"type": "str", "default": "acquired", "choices": ["acquired", "released"]},
            "playbook": {"type": "str", "default": ""},
            "controller": {"type": "str", "default": ""},
            "stale_seconds": {"type": "int", "default": 3600},
        },
        supports_check_mode=True,
    )
    p = module.params
    if not p["run_id"].strip():
        module.fail_json(msg="run_id must not be empty")
    try:
        if p["state"] == "released":
            result = release(p["path"], p["run_id"], check_mode=module.check_mode)
        else:
            result = acquire(
                p["path"],
                p["run_id"],
                playbook=p["playbook"],
                controller=p["controller"],
                stale_seconds=float(p["stale_seconds"]),
                check_mode=module.check_mode,
            )
    except (LockError, OSError) as exc:
        module.fail_json(msg=str(exc))
    for warning in result.pop("warnings", []):  # (a `warnings` result key is deprecated in ansible-core 2.19)
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
