#!/usr/bin/python
# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""Ansible module hardening.docker_authz.dockerd_reload (logic in module_utils/dockerd_reload.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dockerd_reload
short_description: Reload dockerd without stopping containers and wait until its API answers
version_added: "0.2.0"
description:
  - Reloads dockerd's configuration (SIGHUP, which keeps every container running) and waits
    until dockerd has applied it and the Docker API answers C(GET /_ping) again, in one module call.
  - dockerd reloads asynchronously - a SIGHUP and C(systemctl reload) return before it has read
    daemon.json, and an API that answers right after them may still run the old configuration
    and the old authorization chain. So after a reload the module waits for dockerd's C(reload)
    event (C(GET /events) since the moment before the signal), which dockerd logs only when the
    reload succeeded, and then for C(/_ping). A daemon.json that dockerd refuses (a key also given
    as a dockerd flag, an invalid value) leaves the old configuration running and logs no event -
    the module fails, saying so, once the API has answered for 10 seconds without the event (a
    reload takes milliseconds), or at O(timeout) if that comes first. Where an authorization plugin denies
    C(GET /events), the module falls back to C(/_ping) alone and warns.
  - With O(method=systemd), runs C(systemctl reload docker) (the unit's ExecReload sends
    SIGHUP), or C(systemctl restart docker) when O(restart=true).
  - With O(method=signal), sends SIGHUP to the pid in O(pidfile). The pid must be a running
    dockerd; a stale pid file is an error and nothing is signalled. A restart cannot be done
    this way (nothing would start dockerd again), so O(restart=true) fails.
  - O(method=auto) uses systemd where systemd runs as PID 1 (C(/run/systemd/system) exists),
    else the signal.
  - Must run on the Docker host itself, as root.
author:
  - hardening.docker_authz contributors
options:
  method:
    description: How to reload.
    type: str
    choices: [auto, systemd, signal]
    default: auto
  restart:
    description:
      - Restart dockerd instead (systemd only), for daemon.json keys SIGHUP does not reload.
        Containers stop unless C(live-restore) is on.
    type: bool
    default: false
  pidfile:
    description: dockerd's pid file (its C(--pidfile)), for O(method=signal).
    type: path
    default: /var/run/docker.pid
  socket:
    description: The Docker Engine API socket to wait for.
    type: path
    default: /var/run/docker.sock
    aliases: [docker_socket]
  timeout:
    description:
      - Seconds to wait for the reload event and for the API to answer after the reload.
      - An authorization plugin that fails every request because its policy does not compile (three
        answers in a row over two seconds naming an OPA C(rego_*_error)) ends the wait at once, since
        waiting would only keep the API down before the caller's rollback.
      - With O(method=signal), a dockerd that is gone after the signal ends the wait at once (dockerd
        ends itself on a reload that names a missing or disabled authorization plugin).
    type: int
    default: 60
notes:
  - Check mode chooses the method and checks the pid file, sends nothing, asks C(/_ping) (a
    read) and reports a change.
  - The result always reports a change - a reload is an action.
"""

EXAMPLES = r"""
- name: Reload dockerd after changing daemon.json
  hardening.docker_authz.dockerd_reload:
    method: auto
    timeout: 60
  register: reload

- name: Show how long the API took to answer
  ansible.builtin.debug:
    msg: "{{ reload.method }}: the API answered after {{ reload.seconds }} s"
"""

RETURN = r"""
method:
  description: How dockerd was reloaded (O(method=auto) resolved).
  returned: always
  type: str
  sample: signal
restarted:
  description: Whether dockerd was restarted instead of reloaded.
  returned: always
  type: bool
pid:
  description: The dockerd process that was sent SIGHUP (O(method=signal)), else null.
  returned: always
  type: int
  sample: 412
seconds:
  description: Seconds from the reload until the API answered C(/_ping) (after the reload event).
  returned: success
  type: float
  sample: 0.21
refused:
  description:
    - On failure, true when dockerd refused the reloaded daemon.json (its API answered without the
      reload event), so it still runs the configuration it had.
  returned: when dockerd refused the file
  type: bool
  sample: true
reload_event:
  description:
    - Whether dockerd's C(reload) event proved the reload - V(true); V(false) when an authorization
      plugin denies C(GET /events) and C(/_ping) alone was waited for (with a warning); null for a
      restart and in check mode, where there is no reload to prove.
  returned: success
  type: bool
  sample: true
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.hardening.docker_authz.plugins.module_utils.dockerd_reload import (  # noqa: E402
    METHODS,
    ReloadError,
    reload,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "method": {"type": "str", "choices": list(METHODS), "default": "auto"},
            "restart": {"type": "bool", "default": False},
            "pidfile": {"type": "path", "default": "/var/run/docker.pid"},
            "socket": {"type": "path", "default": "/var/run/docker.sock", "aliases": ["docker_socket"]},
            "timeout": {"type": "int", "default": 60},
        },
        supports_check_mode=True,
    )
    p = module.params
    try:
        result = reload(
            p["method"],
            restart=p["restart"],
            pidfile=p["pidfile"],
            socket_path=p["socket"],
            timeout=float(p["timeout"]),
            check_mode=module.check_mode,
        )
    except ReloadError as exc:
        module.fail_json(msg=str(exc), **exc.details)
    for warning in result.pop("warnings", []):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
