#!/usr/bin/python
# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""Ansible module hardening.docker_authz.daemon_json: merge settings into Docker's daemon.json."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: daemon_json
short_description: Merge settings into Docker's daemon.json without losing data
version_added: "0.1.0"
description:
  - Deep-merges O(settings) into Docker's C(daemon.json) and drops the keys or list values
    named in O(remove). Every other key, its value and the order of keys are kept.
  - The file is read strictly and the module refuses, without writing anything, when the file
    is not valid JSON (the message gives the line and column), is not one JSON object, is not
    UTF-8, has a duplicate key, or when an existing value and the requested one have different
    JSON types.
  - It also refuses settings that repeat a dockerd command-line flag, because dockerd refuses
    to start (and to reload) when a directive is both a flag and a file key. Flags are looked
    up in C(systemctl show docker -p ExecStart) (where systemd runs), the C(docker.service)
    unit file and its drop-ins, C(/etc/default/docker) (E(DOCKER_OPTS)),
    C(/etc/sysconfig/docker) (E(OPTIONS)), and the command line of every running dockerd that
    reads this O(path) as its configuration file.
  - A missing file (and a missing parent folder) is created, root-owned, mode C(0644)
    (folder C(0755)). An empty file counts as C({}).
  - Output is stable pretty JSON (2-space indent, trailing newline). A file whose content is
    already equivalent is not rewritten, so formatting-only differences are no change.
  - Writes are atomic (temporary file in the same folder, fsync, rename) and keep the
    file's owner, mode and SELinux context. An exclusive lock on C(.daemon.json.lock) next to
    the file keeps two runs on one host from interleaving.
  - Reports which top-level keys changed and whether a reload (SIGHUP, C(systemctl reload
    docker)) is enough or a restart is needed, following the "configuration reload behavior"
    list of the dockerd reference.
  - With O(reload), the module also reloads dockerd after a change that needs it, and waits
    until dockerd has applied the file and its API answers, in the same call (as
    M(hardening.docker_authz.dockerd_reload)). What the reload needs (systemd, or a pid file
    naming a live dockerd; systemd for a restart) is checked before anything is written, so a
    reload that cannot be done changes nothing.
    Without O(reload) (the default) the module never signals or restarts dockerd.
author:
  - hardening.docker_authz contributors
options:
  path:
    description:
      - The daemon configuration file. Must be absolute. When it is a symbolic link, the file
        it points to is updated and the link is kept.
    type: path
    default: /etc/docker/daemon.json
  settings:
    description:
      - Keys to merge into the file. Objects merge recursively; arrays merge as set by
        O(list_merge); any other value replaces the existing one.
      - A value of a different JSON type than the existing one is refused (type clash). To
        replace such a key whole, also list it in O(remove).
    type: dict
    default: {}
  remove:
    description:
      - What to drop before merging O(settings). Each item is either a top-level key name
        (the whole key goes), or a mapping of a key to the values to drop from that key's
        array (for example one plugin from C(authorization-plugins)) or the member names to
        drop from that key's object.
      - Absent keys and values are no change. An array emptied this way stays as C([]).
      - A key listed by name and also given in O(settings) is replaced in place by the new
        value. Dropping a value that O(settings) adds to the same key is refused.
    type: list
    elements: raw
    default: []
  list_merge:
    description:
      - How an array in O(settings) merges with the existing array.
      - V(union) keeps the existing items in their order and appends the new items that are
        not already there.
      - V(replace) replaces the existing array with the given one.
    type: str
    choices: [union, replace]
    default: union
  backup:
    description:
      - Before changing an existing file, copy it next to itself with a timestamp
        (C(daemon.json.<pid>.<date>@<time>~)). The copy's path is returned in RV(backup_file).
    type: bool
    default: false
  check_flags:
    description:
      - Look for dockerd command-line flags that repeat keys of O(settings), and refuse them.
      - Leave this on. Turn it off only where the flag sources cannot be read and you have
        checked them yourself.
    type: bool
    default: true
  check_with_dockerd:
    description:
      - Before a change, have the host's dockerd check the new content (C(dockerd --validate), Docker
        23.0 and later; the content goes through standard input, nothing is written), and refuse a
        file dockerd would refuse on its next reload or start, naming what dockerd said. When the
        file already held a configuration dockerd refuses, the message says so.
      - Engines before 23.0 cannot check a file this way; RV(validated) is then null.
      - Runs only when the file would change, in check mode too.
    type: bool
    default: true
  check_plugins:
    description:
      - Before writing, confirm that every plugin named in the resulting
        C(authorization-plugins) is ready, and refuse otherwise. A daemon reloaded or
        started with a missing or disabled authorization plugin exits after about 15 seconds.
      - A managed plugin must be installed, enabled and implement C(docker.authz/1.0)
        (asked through the Docker Engine API on O(docker_socket); a name without a tag
        matches the C(:latest) tag). A legacy plugin counts when a listening socket
        C(/run/docker/plugins/NAME.sock) (or C(NAME/NAME.sock)) or a spec file
        C(NAME.spec)/C(NAME.json) in C(/etc/docker/plugins) or C(/usr/lib/docker/plugins)
        exists.
      - Runs only when the file would change, in check mode too.
    type: bool
    default: false
  docker_socket:
    description:
      - The Docker Engine API unix socket used by O(check_plugins).
    type: path
    default: /var/run/docker.sock
  lock_timeout:
    description:
      - Seconds to wait for another run holding the lock on the same file.
    type: float
    default: 60.0
  reload:
    description:
      - V(none) - only write the file (reload dockerd yourself when RV(reload_required) or
        RV(restart_required) says so).
      - V(auto), V(systemd), V(signal) - after a change of the content that dockerd must load,
        reload it (SIGHUP, no container stops) with that method and wait for its API on
        O(docker_socket); restart it instead, through systemd only, when a changed key cannot
        be reloaded (RV(restart_required)). V(auto) uses systemd where it runs as PID 1, else
        SIGHUP to the dockerd in O(pidfile). A change of the file's attributes alone reloads
        nothing.
    type: str
    choices: [none, auto, systemd, signal]
    default: none
  pidfile:
    description: dockerd's pid file (its C(--pidfile)), for a reload by signal.
    type: path
    default: /var/run/docker.pid
  reload_timeout:
    description:
      - Seconds to wait for dockerd's reload event and for the API to answer after the reload (see
        M(hardening.docker_authz.dockerd_reload) - a SIGHUP returns before dockerd has read the file,
        and a file dockerd refuses leaves the old configuration running and fails the module).
      - An authorization plugin that fails every request because its policy does not compile (three
        answers in a row over two seconds naming an OPA C(rego_*_error)) ends the wait at once.
    type: int
    default: 60
extends_documentation_fragment:
  - ansible.builtin.files
attributes:
  check_mode:
    support: full
    description: Writes nothing and reports the C(changed) a real run would report.
  diff_mode:
    support: full
    description: Shows the file before and after.
  platform:
    platforms: posix
notes:
  - Only the standard library of Python 3 is needed on the managed host.
  - Writes are always atomic; O(unsafe_writes) is ignored.
  - The lock file C(.daemon.json.lock) stays next to the file (empty, mode C(0600)).
  - Pair a change with a handler that reloads dockerd when RV(reload_required) is true and
    restarts it when RV(restart_required) is true, or let O(reload) do it in the same call.
  - When the reload fails after the file was written, the module fails with C(changed=true)
    and says so; the file is not restored (the role hardening.docker_authz.opa_authz rolls the
    host back).
seealso:
  - name: dockerd reference, daemon configuration file
    description: Keys, flags and the options that can be reloaded.
    link: https://docs.docker.com/reference/cli/dockerd/#daemon-configuration-file
"""

EXAMPLES = r"""
- name: Enable the OPA authorization plugin and trust the local registry
  hardening.docker_authz.daemon_json:
    settings:
      authorization-plugins:
        - opa-docker-authz
      insecure-registries:
        - 127.0.0.1:5000
    check_plugins: true
    backup: true
  register: docker_authz_daemon_json

- name: Reload dockerd when a reload is enough
  ansible.builtin.command: systemctl reload docker
  when: docker_authz_daemon_json.reload_required
  changed_when: true

- name: Hook the plugin and reload dockerd (systemd or SIGHUP) in one call
  hardening.docker_authz.daemon_json:
    settings:
      authorization-plugins:
        - opa-docker-authz
    check_plugins: true
    reload: auto
  register: hooked

- name: Remove one authorization plugin, keep any others
  hardening.docker_authz.daemon_json:
    remove:
      - authorization-plugins:
          - opa-docker-authz

- name: Replace the registry mirrors instead of adding to them
  hardening.docker_authz.daemon_json:
    settings:
      registry-mirrors:
        - https://mirror.example.com
    list_merge: replace

- name: Fix a key written with the wrong type (string instead of list)
  hardening.docker_authz.daemon_json:
    remove:
      - authorization-plugins
    settings:
      authorization-plugins:
        - opa-docker-authz

- name: Manage the configuration file of a second dockerd instance
  hardening.docker_authz.daemon_json:
    path: /etc/docker-private/daemon.json
    settings:
      log-driver: json-file
      log-opts:
        max-size: 10m
    owner: root
    group: root
    mode: "0600"
"""

RETURN = r"""
changed:
  description: Whether the file's content (or its attributes) changed, or would in check mode.
  returned: always
  type: bool
config:
  description: The resulting document (what the file holds after the run).
  returned: always
  type: dict
  sample: {"log-driver": "json-file", "authorization-plugins": ["opa-docker-authz"]}
changed_keys:
  description: Top-level keys added, removed or changed.
  returned: always
  type: list
  elements: str
  sample: ["authorization-plugins"]
reload_required:
  description:
    - True when some key changed and every changed key can be reloaded by SIGHUP
      (C(systemctl reload docker)) without restarting dockerd.
  returned: always
  type: bool
restart_required:
  description: True when some changed key is not reloadable, so dockerd must be restarted.
  returned: always
  type: bool
backup_file:
  description: The backup copy made because O(backup) was set.
  returned: when a backup was made
  type: str
  sample: /etc/docker/daemon.json.2345.2026-11-28@12:00:00~
path:
  description: The file that was managed (the target of O(path) when it is a link).
  returned: always
  type: str
  sample: /etc/docker/daemon.json
reloaded:
  description:
    - With O(reload), how dockerd was reloaded after the change - C(method) (V(systemd) or
      V(signal)), C(restarted), C(pid) (the dockerd sent SIGHUP), C(seconds) until the API
      answered, C(reload_event) (whether dockerd's reload event proved the reload, as
      M(hardening.docker_authz.dockerd_reload) returns it); in check mode what would be done (the
      API is asked, nothing is sent). Null when nothing needed a reload.
  returned: always
  type: dict
  sample: {"method": "signal", "restarted": false, "pid": 412, "seconds": 0.21, "reload_event": true}
validated:
  description:
    - V(true) when C(dockerd --validate) accepted the new content (O(check_with_dockerd)); null when
      nothing changed, when the check was off, or when the engine (before 23.0) cannot check a file.
  returned: always
  type: bool
  sample: true
plugins:
  description: How each authorization plugin was found by O(check_plugins).
  returned: when O(check_plugins) ran
  type: list
  elements: str
  sample: ["opa-docker-authz: managed plugin opa-docker-authz:latest (enabled)"]
"""

import os  # noqa: E402
import traceback  # noqa: E402
from typing import Any  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.hardening.docker_authz.plugins.module_utils.daemon_config import (  # noqa: E402
    DEFAULT_DOCKER_SOCKET,
    DEFAULT_LOCK_TIMEOUT,
    DEFAULT_PATH,
    DaemonConfigError,
    apply,
    check_file_attributes,
)
from ansible_collections.hardening.docker_authz.plugins.module_utils.dockerd_reload import (  # noqa: E402
    METHODS,
    Plan,
    ReloadError,
    check_timeout,
    execute,
    plan,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "default": DEFAULT_PATH},
            "settings": {"type": "dict", "default": {}},
            "remove": {"type": "list", "elements": "raw", "default": []},
            "list_merge": {"type": "str", "choices": ["union", "replace"], "default": "union"},
            "backup": {"type": "bool", "default": False},
            "check_flags": {"type": "bool", "default": True},
            "check_plugins": {"type": "bool", "default": False},
            "check_with_dockerd": {"type": "bool", "default": True},
            "docker_socket": {"type": "path", "default": DEFAULT_DOCKER_SOCKET},
            "lock_timeout": {"type": "float", "default": DEFAULT_LOCK_TIMEOUT},
            "reload": {"type": "str", "choices": ["none", *METHODS], "default": "none"},
            "pidfile": {"type": "path", "default": "/var/run/docker.pid"},
            "reload_timeout": {"type": "int", "default": 60},
        },
        add_file_common_args=True,
        supports_check_mode=True,
    )
    p = module.params
    planned: list[Plan] = []

    def approve(res: Any) -> None:
        # before the write: can dockerd be reloaded as asked? (refused with nothing written)
        if p["reload"] != "none" and (res.reload_required or res.restart_required):
            planned[:] = [plan(p["reload"], restart=res.restart_required, pidfile=p["pidfile"])]

    try:
        if p["reload"] != "none":
            check_timeout(float(p["reload_timeout"]))
        check_file_attributes(p["owner"], p["group"], p["mode"])
        res = apply(
            p["path"],
            p["settings"],
            p["remove"],
            list_merge=p["list_merge"],
            backup=p["backup"],
            check_mode=module.check_mode,
            check_flags=p["check_flags"],
            check_plugins=p["check_plugins"],
            check_with_dockerd=p["check_with_dockerd"],
            docker_socket=p["docker_socket"],
            lock_timeout=p["lock_timeout"],
            approve=approve,
        )
    except DaemonConfigError as exc:
        module.fail_json(msg=str(exc), path=p["path"], changed=False)
    except ReloadError as exc:
        module.fail_json(msg=f"{exc} Nothing was changed.", path=p["path"], changed=False, **exc.details)
    except OSError as exc:
        module.fail_json(
            msg=f"cannot update {p['path']}: {exc}",
            path=p["path"],
            changed=False,
            exception=traceback.format_exc(),
        )

    for w in res.warnings:
        module.warn(w)
    changed = res.changed
    attr_diff: dict = {}
    if os.path.exists(res.path):
        file_args = module.load_file_common_arguments(module.params, path=res.path)
        fail_json = module.fail_json
        if res.changed and not module.check_mode:
            # The new content is in place: a failure setting the attributes must say so.
            def fail_after_write(**kwargs: Any) -> None:
                why = kwargs.get("msg")
                kwargs["msg"] = f"{res.path} was written, but its file attributes could not be set: {why}"
                fail_json(**{**kwargs, "changed": True, "config": res.after})

            module.fail_json = fail_after_write  # type: ignore[method-assign]
        try:
            changed = module.set_fs_attributes_if_different(file_args, changed, diff=attr_diff)
        finally:
            # only the attributes' failures: a failed reload below must not be called one
            module.fail_json = fail_json  # type: ignore[method-assign]

    result = {
        "changed": changed,
        "path": res.path,
        "config": res.after,
        "changed_keys": res.changed_keys,
        "reload_required": res.reload_required,
        "restart_required": res.restart_required,
        "reloaded": None,
        "validated": res.validated,
    }
    if planned and res.changed:
        try:
            reloaded = execute(
                planned[0],
                socket_path=p["docker_socket"],
                timeout=float(p["reload_timeout"]),
                check_mode=module.check_mode,
            )
        except ReloadError as exc:
            written = "would be written" if module.check_mode else "was written"
            module.fail_json(
                msg=f"{res.path} {written}, but dockerd was not reloaded: {exc}",
                **{**result, "changed": changed, **exc.details},
            )
        reloaded.pop("changed", None)
        for warning in reloaded.pop("warnings", []):
            module.warn(warning)
        result["reloaded"] = reloaded
    if res.backup_file:
        result["backup_file"] = res.backup_file
    if p["check_plugins"] and res.plugins:
        result["plugins"] = res.plugins
    if module._diff:
        result["diff"] = [res.diff(), attr_diff] if attr_diff else res.diff()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
