#!/usr/bin/python
# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""Ansible module hardening.docker_authz.authz_verify (logic in module_utils/probes.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: authz_verify
short_description: Prove through the Docker Engine API that the authorization plugin enforces the policy
version_added: "0.1.0"
description:
  - Sends real requests to the Docker Engine API on the unix socket and checks the answers
    of the authorization plugin (by default C(opa-docker-authz)). Needs only Python 3 on the
    managed host; the docker CLI is not used.
  - Requests that must be B(denied) (HTTP 403 C(authorization denied by plugin <alias>)) -
    a privileged create, one or more requests per enabled rule (each is the compliant request
    with exactly one thing changed), and with O(probe_bypasses) one per bypass class a policy
    can stop - key case (C(hostconfig)/C(privileged)), path spelling (no C(/vX.Y) prefix,
    C(containers%2Fcreate), a query string), an invisible body
    (C(application/json; charset=utf-8), which the plugin hands to the policy as C(null)),
    value spellings (C(sys_admin), C(seccomp:unconfined), user C(0:0)), host path spellings
    (C(/var/run/../run/docker.sock), C(//etc)), and the other endpoints (exec, update,
    services, volumes with bind driver options, C(build?networkmode=host), and - when
    C(deny_plugin_changes) is on - the plugin endpoints).
  - Requests that must be B(authorized) - a container create that satisfies every enabled
    rule (user C(1000:1000) when root is denied, the required limits, C(no-new-privileges),
    a read-only root filesystem, an image of a trusted registry ...) and a container list.
  - B(Nothing is created or changed.) Authorization runs before the daemon looks anything
    up, so creates name an image that does not exist (C(hardening-verify/nonexistent:probe)),
    exec and update name a container that does not exist, plugin requests a plugin that does
    not exist, pulls a registry on C(127.0.0.1:1) that nobody runs. An authorized request
    therefore ends in 404 (or 400/500/503) and no pull happens. Anything a probe does create
    anyway is removed at once. C(changed) is always false, and check mode runs the same
    read-only probes.
  - Each answer is classified as C(denied) (403 with the plugin's text; RV(probes[].plugin)
    says which plugin), C(authorized) (any other HTTP answer), C(plugin-error)
    (C(plugin <alias> failed with error), i.e. the policy errors - a Rego v0 policy under
    opa-docker-authz v0.10 does that for every request) or C(error) (no answer).
  - Fails, with a table of the failed probes in C(msg), when a request the rules forbid is
    authorized, when the compliant request is refused, or when the plugin denied nothing at
    all (not hooked into C(authorization-plugins), disabled, or failing open). With
    O(expect_enforced=false) it only reports.
  - Warns about an engine older than the fixes for CVE-2024-41110 (23.0.15, 25.0.6, 26.1.5,
    27.1.1; 20.10 and 24.0 never got one) and CVE-2026-34040 (25.0.16, 29.3.1), compared
    per release branch; about the plugin failing open (its policy file missing, or no
    C(opa-args)); and about probes denied by another authorization plugin first.
  - A deny answer carries no reason (opa-docker-authz always says C(request rejected by
    administrative policy)), so a probe shows that a request was denied, not which rule
    denied it.
author:
  - hardening.docker_authz contributors
options:
  plugin:
    description:
      - The alias of the authorization plugin, as named in C(authorization-plugins)
        (C(opa-docker-authz) and C(opa-docker-authz:latest) are the same plugin).
    type: str
    default: opa-docker-authz
    aliases: [alias, name]
  rules:
    description:
      - The enabled rules and their parameters, as the role C(hardening.docker_authz.opa_authz)
        computes them. Keys are the role's variable names with or without the
        C(docker_authz_) prefix, for example C(deny_privileged), C(require_resource_limits),
        C(required_limits), C(max_memory_bytes), C(allowed_host_ports), C(allowed_host_ips),
        C(sensitive_env_keywords), C(sensitive_env_allowed), C(allowed_capabilities),
        C(sensitive_host_paths), C(trusted_registries), C(exempt_users); C(profile) may be
        given here too.
      - A rule not given takes its default from O(profile); an unknown name is an error.
    type: dict
    default: {}
  profile:
    description:
      - The profile whose defaults apply to rules not given in O(rules).
    type: str
    choices: [baseline, restricted]
    default: baseline
  probe_bypasses:
    description:
      - Also send the bypass probes (key case, path spelling, invisible body, value and path
        spellings, other endpoints). Without them only one request per rule is sent.
    type: bool
    default: true
  expect_enforced:
    description:
      - Fail when enforcement is not as expected. V(false) makes a report-only run that
        returns the same table and warnings without failing.
    type: bool
    default: true
  accept_other_plugins:
    description:
      - Authorization plugins are asked in the order of C(authorization-plugins), and the first
        denial ends the request. A deny probe that another plugin denied before O(plugin) was
        asked proves nothing about O(plugin)'s policy, so by default it FAILS (and the message
        says which plugin). V(true) counts such denials as passes, with a warning.
    type: bool
    default: false
  policy_path:
    description:
      - The policy file on the host (for example C(/etc/docker/policies/authz.rego)). When it
        is missing opa-docker-authz allows every request, which is reported as fail-open.
      - Default is the C(-policy-file) of the plugin's C(opa-args) mapped through the
        plugin's mounts to the host (C(/opa) is the host's C(/etc/docker)).
    type: path
  depth:
    description:
      - V(full) sends the whole probe table. V(quick) sends two probes - the compliant create
        (must be allowed) and a privileged create (must be denied; the first rule's plain
        create probe when C(deny_privileged) is off) - and, with the O(expect_policy_sha256),
        O(expect_args) and O(expect_hooked_in) given, checks that the host runs exactly that
        policy, plugin arguments and hook. The role runs V(quick) on runs that changed
        nothing and V(full) otherwise.
    type: str
    choices: [full, quick]
    default: full
  expect_policy_sha256:
    description:
      - The sha256 of the policy file the plugin must read (O(policy_path), or the one found
        from the plugin's C(-policy-file)); a different or missing file fails the verification.
    type: str
  expect_args:
    description:
      - The plugin's C(opa-args) as they must be set (compared word by word); the plugin must
        also be installed and enabled.
    type: str
  expect_hooked_in:
    description:
      - A C(daemon.json) whose C(authorization-plugins) must name O(plugin).
    type: path
  socket:
    description:
      - The Docker Engine API unix socket (C(unix://) prefix allowed).
    type: path
    default: /var/run/docker.sock
    aliases: [docker_socket]
  timeout:
    description:
      - Seconds to wait for each answer.
    type: int
    default: 30
  release_lock:
    description:
      - Release the host's run lock (M(hardening.docker_authz.authz_lock)) after a verification
        that B(passed), in the same call. The role takes the lock in its first module call
        (M(hardening.docker_authz.authz_host_state)) and releases it here, in its last, so that a
        run that changes nothing needs no call of its own for the lock.
      - A failed verification keeps the lock (the rollback that follows runs under it); so does
        O(expect_enforced=false), which proves nothing. Another run's lock is never removed.
    type: dict
    suboptions:
      run_id:
        description: The id of the run that holds the lock.
        type: str
        required: true
      path:
        description: The lock file.
        type: path
        default: /run/hardening-docker-authz.lock
notes:
  - Supports check mode (the same probes run; they change nothing). With O(release_lock), check
    mode reports whether the lock would be released and removes nothing.
  - Probing over the unix socket has no TLS client identity, so O(rules) C(exempt_users)
    cannot be verified (a warning says so).
  - Requests with duplicate JSON keys (the daemon merges them, a parser into a map keeps the
    last) cannot be judged correctly by any policy over the parsed body; they are not probed.
seealso:
  - module: hardening.docker_authz.authz_plugin
  - module: hardening.docker_authz.daemon_json
"""

EXAMPLES = r"""
- name: Verify the baseline profile on a hardened host
  hardening.docker_authz.authz_verify:
  register: verify

- name: Print the probe table
  ansible.builtin.debug:
    var: verify.table

- name: Verify the rules the role computed for a restricted profile with a trusted registry
  hardening.docker_authz.authz_verify:
    plugin: opa-docker-authz
    rules:
      profile: restricted
      deny_privileged: true
      require_resource_limits: true
      required_limits: [memory, pids]
      max_memory_bytes: 1073741824
      trusted_registries: [registry.example.com]
    policy_path: /etc/docker/policies/authz.rego

- name: Quick proof on a run that changed nothing (two probes, and the deployed state)
  hardening.docker_authz.authz_verify:
    depth: quick
    policy_path: /etc/docker/policies/authz.rego
    expect_policy_sha256: "{{ lookup('ansible.builtin.file', 'authz.rego') | hash('sha256') }}"
    expect_args: -policy-file /opa/policies/authz.rego
    expect_hooked_in: /etc/docker/daemon.json

- name: Report only (never fails), without the bypass probes
  hardening.docker_authz.authz_verify:
    expect_enforced: false
    probe_bypasses: false
  register: report
"""

RETURN = r"""
changed:
  description: Always false; the module changes nothing (a released lock is not a change).
  returned: always
  type: bool
enforced:
  description: True when at least one probe was denied by the plugin O(plugin).
  returned: success or verification failure
  type: bool
probes:
  description: One entry per request sent.
  returned: success or verification failure
  type: list
  elements: dict
  contains:
    name:
      description: The probe's name, for example C(privileged) or C(path-percent-encoded).
      type: str
    rule:
      description: The rule it tests (the role variable without C(docker_authz_)), or C(always_on).
      type: str
    bypass:
      description: The bypass class it stands for, or null for the rule's plain probe.
      type: str
    request:
      description: Method and request target as sent (the Content-Type when it is not plain JSON).
      type: str
      sample: POST /v1.41/containers/create
    summary:
      description: What makes the request special.
      type: str
      sample: HostConfig.Privileged=true
    expected:
      description: V(deny) or V(allow).
      type: str
    status:
      description: The HTTP status of the answer (null when there was none).
      type: int
      sample: 403
    outcome:
      description: V(denied), V(authorized), V(plugin-error) or V(error).
      type: str
    plugin:
      description: The plugin that denied or errored.
      type: str
    message:
      description: The daemon's answer (for a denial, the plugin's message).
      type: str
      sample: request rejected by administrative policy
    passed:
      description: Whether the answer is the expected one.
      type: bool
    cleanup:
      description: What was removed after an authorized probe created something.
      type: str
counts:
  description: How many probes were sent (C(total)), got the expected answer (C(passed)) or not (C(failed)).
  returned: success or verification failure
  type: dict
  sample: {"total": 59, "passed": 59, "failed": 0}
warnings:
  description:
    - The warnings (also shown by Ansible) - engine CVEs, fail-open, plugin not installed or
      disabled, probes denied by another plugin, cleanup failures.
  returned: success or verification failure
  type: list
  elements: str
table:
  description: One text line per probe (result, probe, rule, expected, outcome, answer), for display.
  returned: success or verification failure
  type: list
  elements: str
rules:
  description: The rules that were in force for this run (parameters applied).
  returned: success or verification failure
  type: list
  elements: str
profile:
  description: The profile used for defaults.
  returned: success or verification failure
  type: str
engine:
  description: The engine's version, API version, OS, architecture and CVE status.
  returned: success or verification failure
  type: dict
  sample:
    version: 20.10.24+dfsg1
    api_version: "1.41"
    os: linux
    arch: amd64
    kind: docker
    cves:
      - id: CVE-2024-41110
        vulnerable: true
        fixed_in: 23.0.15, 25.0.6, 26.1.5, 27.1.1
plugin:
  description: What the engine reports about the plugin, and its policy file on the host.
  returned: success or verification failure
  type: dict
  sample:
    name: opa-docker-authz
    installed: true
    enabled: true
    args: -policy-file /opa/policies/authz.rego -quiet
    policy_file: /etc/docker/policies/authz.rego
    policy_file_exists: true
depth:
  description: The depth that ran (V(full) or V(quick)).
  returned: success or verification failure
  type: str
table_size:
  description: How many probes the full table has for these rules (RV(counts.total) at V(full)).
  returned: success or verification failure
  type: int
state:
  description: What the state checks found (only the ones asked for) - C(policy_sha256), C(args), C(hooked).
  returned: success or verification failure
  type: dict
  sample: {"policy_sha256": "9f2c...", "args": "-policy-file /opa/policies/authz.rego", "hooked": true}
findings:
  description: Structured warnings - C(kind) V(cve) or V(fail-open), and the message.
  returned: success or verification failure
  type: list
  elements: dict
lock:
  description:
    - With O(release_lock), what became of the lock - C(released) (this run held it and it was
      removed), C(run_id) (O(release_lock.run_id)), C(message). Not returned when the
      verification failed (the lock is kept).
  returned: success, with O(release_lock)
  type: dict
  sample:
    released: true
    run_id: 7YkqW2mZ0cXa
    message: lock /run/hardening-docker-authz.lock released
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.hardening.docker_authz.plugins.module_utils.docker_api import (  # noqa: E402
    DockerClient,
    DockerError,
)
from ansible_collections.hardening.docker_authz.plugins.module_utils.hostlock import (  # noqa: E402
    DEFAULT_PATH as LOCK_PATH,
)
from ansible_collections.hardening.docker_authz.plugins.module_utils.hostlock import (  # noqa: E402
    LockError,
    release_after_verification,
)
from ansible_collections.hardening.docker_authz.plugins.module_utils.probes import (  # noqa: E402
    DEFAULT_ALIAS,
    PROFILES,
    VerifyInputError,
    normalize_rules,
    verify,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "plugin": {"type": "str", "default": DEFAULT_ALIAS, "aliases": ["alias", "name"]},
            "rules": {"type": "dict", "default": {}},
            "profile": {"type": "str", "choices": list(PROFILES), "default": "baseline"},
            "probe_bypasses": {"type": "bool", "default": True},
            "expect_enforced": {"type": "bool", "default": True},
            "accept_other_plugins": {"type": "bool", "default": False},
            "policy_path": {"type": "path"},
            "socket": {"type": "path", "default": "/var/run/docker.sock", "aliases": ["docker_socket"]},
            "timeout": {"type": "int", "default": 30},
            "depth": {"type": "str", "choices": ["full", "quick"], "default": "full"},
            "expect_policy_sha256": {"type": "str"},
            "expect_args": {"type": "str"},
            "expect_hooked_in": {"type": "path"},
            "release_lock": {
                "type": "dict",
                "options": {
                    "run_id": {"type": "str", "required": True},
                    "path": {"type": "path", "default": LOCK_PATH},
                },
            },
        },
        supports_check_mode=True,
    )
    p = module.params
    if p["timeout"] <= 0:
        module.fail_json(msg=f"timeout must be a positive number of seconds, got {p['timeout']}")
    try:
        settings = normalize_rules(p["rules"], p["profile"])
    except VerifyInputError as exc:
        module.fail_json(msg=str(exc), changed=False)
    client = DockerClient(p["socket"], timeout=float(p["timeout"]))
    try:
        result = verify(
            client,
            settings,
            alias=p["plugin"],
            probe_bypasses=p["probe_bypasses"],
            expect_enforced=p["expect_enforced"],
            accept_other_plugins=p["accept_other_plugins"],
            policy_path=p["policy_path"],
            timeout=float(p["timeout"]),
            depth=p["depth"],
            expect_policy_sha256=p["expect_policy_sha256"],
            expect_args=p["expect_args"],
            expect_hooked_in=p["expect_hooked_in"],
        )
    except (DockerError, VerifyInputError) as exc:
        module.fail_json(msg=f"cannot verify authorization: {exc}", changed=False)
    for warning in result.pop("warnings"):
        module.warn(warning)
    if result.pop("failed_verification", False):
        module.fail_json(**result)  # the lock stays: the rollback runs under it
    if p["release_lock"]:
        try:
            result["lock"] = release_after_verification(
                p["release_lock"], enforced_expected=p["expect_enforced"], check_mode=module.check_mode
            )
        except LockError as exc:
            module.fail_json(msg=str(exc), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
