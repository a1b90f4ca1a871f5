#!/usr/bin/python
# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""Ansible module hardening.docker_authz.authz_plugin (logic in module_utils/plugin.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: authz_plugin
short_description: Install, configure, enable, upgrade or remove the opa-docker-authz managed plugin
version_added: "0.1.0"
description:
  - Manages one Docker managed plugin (by default the Open Policy Agent authorization plugin
    C(opa-docker-authz)) through the Docker Engine API on the unix socket. Needs only Python 3
    on the managed host.
  - Installs from any registry (with O(registry_auth) for private mirrors) under an alias,
    sets its args (C(opa-args)) and settings, enables or disables it, upgrades it when
    O(reference) changes or the registry's digest for it changed, and removes it.
  - Grants the privileges the plugin asks for only when every one is within
    O(allowed_privileges); otherwise it refuses and lists what the plugin asked for.
  - Docker plugins are single-architecture. A reference whose tag names another
    architecture than the engine's (for example C(...:v0.10-linux-arm64) on an amd64 host)
    is refused. Without O(reference) the official image for the host is used.
  - Docker refuses C(set) and C(upgrade) on an enabled plugin, so the module disables the
    plugin, reconfigures or upgrades it, and enables it again (when it should be enabled).
  - B(The module never touches daemon.json.) An authorization plugin named in
    C(authorization-plugins) must be installed and enabled before the daemon is reloaded,
    and a daemon reloaded while it names a missing or disabled plugin exits. So the order is
    (the role C(hardening.docker_authz.opa_authz) does this) -
    install and enable with this module, then add the alias to C(authorization-plugins) and
    reload; to change args or the image, remove the alias from C(authorization-plugins) and
    reload, run this module, add the alias back and reload; to remove, unhook and reload first.
  - When a run fails after it changed something, the module puts back what it can exactly
    (a plugin it installed is removed; previous args, settings and enabled state are set
    again) and the failure result carries C(before) and C(actions) for the caller.
author:
  - hardening.docker_authz contributors
options:
  name:
    description:
      - The local name (alias) of the plugin. This is the name C(authorization-plugins) in
        daemon.json refers to. The engine stores it with a tag (C(opa-docker-authz) becomes
        C(opa-docker-authz:latest)); both spellings address the same plugin.
    type: str
    default: opa-docker-authz
    aliases: [alias]
  reference:
    description:
      - The plugin image, C([registry/]repository[:tag][@digest]). Docker Hub rules apply
        (C(foo) is C(docker.io/library/foo:latest)); a missing tag means C(latest).
      - C({arch}) is replaced by the engine's architecture (C(amd64), C(arm64), ...), so one
        value serves a mixed fleet.
      - Default is the official C(ghcr.io/open-policy-agent/opa-docker-authz:v0.10-linux-<arch>)
        for the engine's architecture.
      - Ignored when O(state=absent).
    type: str
  state:
    description:
      - V(enabled) installs and configures the plugin and enables it.
      - V(disabled) installs and configures it and leaves it disabled.
      - V(present) installs and configures it and keeps its enabled state (a new install
        stays disabled).
      - V(absent) disables and removes it.
    type: str
    choices: [present, enabled, disabled, absent]
    default: enabled
  args:
    description:
      - The plugin's args (for opa-docker-authz the setting C(opa-args)), as one string or a
        list; both are split on whitespace.
      - Without C(-policy-file) or C(-config-file) opa-docker-authz allows every request (it
        fails open); the module warns about that.
    type: raw
    default: -policy-file /opa/policies/authz.rego
  settings:
    description:
      - Other plugin settings as C(KEY=VALUE) - an environment variable C(NAME=value), a mount
        source C(NAME.source=/path) or a device C(NAME.path=/dev/x). Each key is checked
        against the installed plugin's settable fields before anything is set.
      - A mount source or device path must be granted by O(allowed_privileges) too (for
        example C(policy.source=/srv/policies) needs C(mount=/srv/policies)).
    type: list
    elements: str
    default: []
  allowed_privileges:
    description:
      - The privileges the plugin may be granted, as C(NAME=VALUE) strings or
        C({name, value}) dicts. Names are the engine's - C(network), C(mount), C(device),
        C(capabilities), C(allow-all-devices), C(host pid namespace), C(host ipc namespace).
      - The default is what opa-docker-authz asks for - host networking and a bind mount of
        C(/etc/docker).
    type: list
    elements: raw
    default: [network=host, mount=/etc/docker]
  registry_auth:
    description:
      - Credentials for a private registry or mirror, sent to the engine as C(X-Registry-Auth).
        The password is never logged.
    type: dict
    suboptions:
      username:
        description: Registry user name.
        type: str
      password:
        description: Password or token.
        type: str
      serveraddress:
        description: Registry address, for example C(registry.example.com:5000).
        type: str
  digest_check:
    description:
      - Ask the registry on every run whether the digest behind O(reference) changed, and
        upgrade when it did. V(false) upgrades only when O(reference) changes, so runs need
        no registry once the plugin is installed.
      - With V(true) a registry that cannot be reached fails the run (nothing is changed).
    type: bool
    default: true
  force_upgrade:
    description:
      - Upgrade (pull again) even when the reference and digest are unchanged. The task then
        always reports a change.
    type: bool
    default: false
  force:
    description:
      - Disable and remove even when the engine reports the plugin in use.
    type: bool
    default: false
  timeout:
    description:
      - Seconds allowed for each Engine API call (pulls included) and for the plugin to start
        when it is enabled. Disable and remove wait at least 60 seconds (the engine gives a
        plugin 10 seconds to exit before it kills it).
    type: int
    default: 120
  socket:
    description:
      - The Docker Engine API unix socket.
    type: path
    default: /var/run/docker.sock
notes:
  - Supports check mode (predicts the actions, reads the engine and the registry, changes
    nothing) and diff mode (the plugin state before and after).
  - Errors say what is wrong and what to do - daemon not running, socket missing, registry
    unreachable, image not found, unauthorized, privileges outside the expected set,
    architecture mismatch, Podman or another engine without managed plugins.
  - The engine gives a starting plugin about 12.5 seconds to listen on its socket. A plugin that
    is still starting then (a loaded or emulated host) is enabled again, up to three times. One
    that exited at start (an unknown flag, a broken image; the module watches the plugin's
    processes on the host while it is enabled) is not, and the error says so and where its
    output is (dockerd's log, C(plugin=ID)).
  - The installed manifest digest is read from the engine's state under C(DockerRootDir)
    (the Engine API does not report it), so digest checks need root on the host.
requirements:
  - Docker Engine 19.03 or later (API 1.40) on Linux
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
"""

EXAMPLES = r"""
- name: Install and enable opa-docker-authz (official image for the host's architecture)
  hardening.docker_authz.authz_plugin:
    state: enabled

- name: Install from a private mirror, with extra args
  hardening.docker_authz.authz_plugin:
    name: opa-docker-authz
    reference: "registry.example.com/security/opa-docker-authz:v0.10-linux-{arch}"
    args: [-policy-file, /opa/policies/authz.rego, -quiet]
    registry_auth:
      username: "{{ mirror_user }}"
      password: "{{ mirror_password }}"
      serveraddress: registry.example.com

- name: Predict what would change (nothing is done)
  hardening.docker_authz.authz_plugin:
    reference: ghcr.io/open-policy-agent/opa-docker-authz:v0.10-linux-amd64
  check_mode: true
  register: plugin_plan

- name: Remove the plugin (after removing it from authorization-plugins and reloading)
  hardening.docker_authz.authz_plugin:
    state: absent
"""

RETURN = r"""
plugin:
  description: The plugin after the run (in check mode, the predicted state); empty when absent.
  returned: always
  type: dict
  contains:
    id:
      description: Plugin ID.
      type: str
      sample: b1e1900caa1ee9aabc5679a9ba55a083314281440e602c4a1930dd61e9e6ff6e
    name:
      description: Name as the engine stores it.
      type: str
      sample: opa-docker-authz:latest
    reference:
      description: The image the plugin was installed from.
      type: str
      sample: ghcr.io/open-policy-agent/opa-docker-authz:v0.10-linux-amd64
    enabled:
      description: Whether the plugin is enabled.
      type: bool
    args:
      description: The plugin's args.
      type: list
      elements: str
      sample: [-policy-file, /opa/policies/authz.rego]
    digest:
      description: Manifest digest installed (null when the engine's state cannot be read).
      type: str
      sample: sha256:e3b8ec2d4ca7a985aceb1fc4251ce72225ddd0328648d0d62531b5fc07375256
    env:
      description: Environment settings.
      type: dict
    mounts:
      description: Mount name to host source.
      type: dict
      sample: {policy: /etc/docker}
actions:
  description: What was done (in check mode, what would be done), in order.
  returned: always
  type: list
  elements: str
  sample: [disabled, upgraded, configured, enabled]
privileges:
  description: The privileges the plugin asked for and was granted (only when installed or upgraded).
  returned: always
  type: list
  elements: dict
  sample: [{Name: network, Description: permissions to access a network, Value: [host]}]
reference:
  description: The normalised reference the run wanted.
  returned: when state is not absent
  type: str
  sample: 127.0.0.1:5000/opa-docker-authz:v0.10-linux-amd64
remote_digest:
  description: The registry's manifest digest for the reference (null when not asked).
  returned: when state is not absent
  type: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.hardening.docker_authz.plugins.module_utils.docker_api import (  # noqa: E402
    DockerError,
)
from ansible_collections.hardening.docker_authz.plugins.module_utils.plugin import (  # noqa: E402
    DEFAULT_ALIAS,
    DEFAULT_ALLOWED_PRIVILEGES,
    DEFAULT_ARGS,
    DEFAULT_TIMEOUT,
    REGISTRY_AUTH_OPTION,
    STATES,
    PluginError,
    ensure,
)

ARGUMENT_SPEC = {
    "name": {"type": "str", "default": DEFAULT_ALIAS, "aliases": ["alias"]},
    "reference": {"type": "str"},
    "state": {"type": "str", "choices": list(STATES), "default": "enabled"},
    "args": {"type": "raw", "default": DEFAULT_ARGS},
    "settings": {"type": "list", "elements": "str", "default": []},
    "allowed_privileges": {"type": "list", "elements": "raw", "default": list(DEFAULT_ALLOWED_PRIVILEGES)},
    "registry_auth": REGISTRY_AUTH_OPTION,
    "digest_check": {"type": "bool", "default": True},
    "force_upgrade": {"type": "bool", "default": False},
    "force": {"type": "bool", "default": False},
    "timeout": {"type": "int", "default": DEFAULT_TIMEOUT},
    "socket": {"type": "path", "default": "/var/run/docker.sock"},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        result = ensure(module.params, check_mode=module.check_mode)
    except (PluginError, DockerError) as exc:
        module.fail_json(msg=str(exc), **getattr(exc, "details", {}))
    for warning in result.pop("warnings", []):
        module.warn(warning)
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
