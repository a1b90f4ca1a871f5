#!/usr/bin/python
# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""Ansible module hardening.docker_authz.authz_decisions (logic in module_utils/decision_log.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: authz_decisions
short_description: Collect the authorization plugin's decision log entries on a Docker host
version_added: "0.2.0"
description:
  - Reads, and never changes, the decisions that opa-docker-authz logged on a host, from dockerd's
    log - journald (C(journalctl -u docker -o json)) where dockerd runs under systemd, otherwise the
    daemon's log file and its rotations (C(docker.log.1), C(docker.log.2.gz), C(docker.log-20261205)).
  - Parses both plugin modes - policy-file mode (the C(Returning OPA policy decision) lines after
    Go's log prefix, with their decision JSON, and the error and fail-open lines) and config-file mode
    console decision logs (JSON objects whose C(msg) is C(Decision Log); numbers printed as floats are
    turned back into integers) - from dockerd's text format (C(msg) quoted the Go way) or JSON format.
  - Returns structured entries (time, decision id, mode, kind, the request summarized and the full
    input) for a time window or the last N, filtered by container name, image or user.
  - Masks secrets BEFORE they leave the host - the values of environment variables whose name
    contains one of O(sensitive_env_keywords) (in every C(Env) list), registry credentials
    (C(password), C(auth), C(identitytoken), C(registrytoken), an C(authconfig) string; in bodies and
    headers), secret-looking keys anywhere in the input and secret-looking C(buildargs) of C(/build).
    Names stay, so re-evaluating a masked input gives the same verdict.
  - Also reads back the policy the host runs (O(policy_path), a file or a bundle directory), so the
    controller can re-evaluate each input (playbook C(hardening.docker_authz.explain)).
  - The requests of this collection's own verification probes (user agent C(hardening.docker_authz))
    are counted in RV(probes_skipped) and left out unless O(include_probes).
author:
  - hardening.docker_authz contributors
options:
  since:
    description:
      - Oldest decision to return - ISO 8601 (C(2026-12-06T01:50:00Z), UTC without a zone),
        C(@<unix seconds>), or an age on the host's clock (C(30m), C(24h), C(7d)).
    type: str
  until:
    description:
      - Newest decision to return, in the same forms as O(since).
    type: str
    aliases: [before]
  last:
    description:
      - Return only the newest N matching decisions (C(0) - all in the window).
    type: int
    default: 0
  kinds:
    description:
      - Which decisions to return - C(denied), C(allowed) (for would-be denials of rules in audit mode),
        C(error) (the plugin answered with an error), C(fail_open) (no policy file, allowed unevaluated).
        RV(counts) counts every kind whatever this says.
    type: list
    elements: str
    default: [denied, error, fail_open]
  container:
    description:
      - Keep decisions about these container names (shell patterns, C(web-*)).
    type: list
    elements: str
    default: []
  image:
    description:
      - Keep decisions about these images (shell patterns; a pattern without a tag matches every tag).
    type: list
    elements: str
    default: []
  user:
    description:
      - Keep decisions of these users (the TLS client certificate's CN; empty on the unix socket).
    type: list
    elements: str
    default: []
  source:
    description:
      - Where dockerd's log is - C(auto) (journald when dockerd runs under systemd and the journal
        has its unit, otherwise the log file), C(journald) or C(file).
    type: str
    choices: [auto, journald, file]
    default: auto
  log_path:
    description:
      - dockerd's log file. By default C(DOCKER_LOGFILE) of C(/etc/default/docker), else the first of
        C(/var/log/docker.log), C(/var/log/dockerd.log), C(/var/log/upstart/docker.log). Its rotated
        files next to it are read too.
    type: path
  journald_unit:
    description:
      - dockerd's systemd unit.
    type: str
    default: docker.service
  plugin_id:
    description:
      - Keep the lines of this plugin only (its id, or a prefix of it, as in dockerd's C(plugin=) field).
    type: str
  include_probes:
    description:
      - Return the requests of this collection's own verification probes too.
    type: bool
    default: false
  sensitive_env_keywords:
    description:
      - Name fragments (case-insensitive) of environment variables and keys whose values are masked.
        The policy's defaults are always included.
    type: list
    elements: str
    default: []
  policy_path:
    description:
      - The policy the host runs, returned in RV(policy) - a policy file, or a bundle directory
        (its C(.rego) files, C(data.json) and C(.manifest)). By default
        C(/etc/docker/policies/bundle) when it is a directory, else C(/etc/docker/policies/authz.rego).
    type: path
  allowed_if_audit:
    description:
      - Return C(allowed) decisions (when O(kinds) names them) only if the policy read back from
        O(policy_path) defines C(audit) (rules in audit mode, whose would-be denials are allowed
        decisions). Keeps the output small on hosts in pure enforce mode.
    type: bool
    default: false
  read_policy:
    description:
      - Return the policy in RV(policy).
    type: bool
    default: true
  max_entries:
    description:
      - At most this many entries are returned (the newest); RV(truncated) counts those left out.
    type: int
    default: 200
  max_bytes:
    description:
      - At most this many bytes of entries (JSON) are returned (the newest).
    type: int
    default: 4194304
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
notes:
  - Run with C(become) - dockerd's log and the journal are readable by root (or the adm and
    systemd-journal groups) only.
  - With C(-log-only-denied) (the role's default in enforce mode) allowed decisions are not logged.
seealso:
  - module: hardening.docker_authz.authz_facts
"""

EXAMPLES = r"""
- name: The last 10 denials on this host
  hardening.docker_authz.authz_decisions:
    last: 10
  become: true
  register: denials

- name: Denials of the image web in the last 2 hours, from a log file named explicitly
  hardening.docker_authz.authz_decisions:
    since: 2h
    image: ["registry.example.com/web*"]
    source: file
    log_path: /var/log/dockerd.log
  become: true
"""

RETURN = r"""
entries:
  description: The decisions, oldest first - C(time) (UTC), C(decision_id), C(mode) (C(policy-file) or
    C(config-file)), C(kind) (C(denied), C(allowed), C(error), C(fail_open)), C(allowed), C(result),
    C(error), C(config_hash) (policy-file mode - the sha256 of the policy then), C(plugin_id),
    C(source), C(probe), C(request) (C(method), C(endpoint), C(image), C(container), C(user),
    C(container_user), C(user_agent)), C(input) (masked) and C(masked) (where values were masked).
  returned: always
  type: list
  elements: dict
counts:
  description: Decisions in the window that match the filters, per kind (probes not counted).
  returned: always
  type: dict
  sample: {denied: 3, allowed: 0, error: 0, fail_open: 0}
matched:
  description: Entries that matched before O(last), O(max_entries) and O(max_bytes).
  returned: always
  type: int
returned:
  description: Entries returned.
  returned: always
  type: int
truncated:
  description: Matching entries left out by O(max_entries) or O(max_bytes) (the oldest).
  returned: always
  type: int
probes_skipped:
  description: Decisions about this collection's own verification probes that were left out.
  returned: always
  type: int
source:
  description: C(journald), C(file), or C(none) when no log was found.
  returned: always
  type: str
sources:
  description: What was read - C(journald:<unit>) or the files, oldest first.
  returned: always
  type: list
  elements: str
lines_read:
  description: Log lines read.
  returned: always
  type: int
log_stalls:
  description:
    - The last 5 times dockerd logged C(Error while reading from Writer - bufio.Scanner - token too long)
      for a plugin (a line of its stderr over 64 KiB; dockerd up to 24.0.2 then stops reading it, and
      the plugin hangs the Docker API once the pipe is full), each with C(time) and C(plugin).
  returned: always
  type: list
  elements: dict
message:
  description: Why nothing was found (no log, an empty window), or an empty string.
  returned: always
  type: str
kinds:
  description: The kinds returned (O(kinds) without C(allowed) when O(allowed_if_audit) found no
    C(audit) rule).
  returned: always
  type: list
  elements: str
policy:
  description: The policy read back - C(path), C(exists), C(kind) (C(file) or C(bundle)), C(files)
    (name to text) and C(error).
  returned: when O(read_policy)
  type: dict
"""

import os  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.hardening.docker_authz.plugins.module_utils.decision_log import (  # noqa: E402
    DEFAULT_SENSITIVE_ENV_KEYWORDS,
    KINDS,
    DecisionLogError,
    collect,
    default_log_file,
    defines_audit,
    file_lines,
    iso,
    journald_lines,
    journald_usable,
    parse_time,
    read_policy_files,
    rotated_files,
)

BUNDLE_DIR = "/etc/docker/policies/bundle"
POLICY_FILE = "/etc/docker/policies/authz.rego"


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "since": {"type": "str"},
            "until": {"type": "str", "aliases": ["before"]},
            "last": {"type": "int", "default": 0},
            "kinds": {"type": "list", "elements": "str", "default": ["denied", "error", "fail_open"]},
            "container": {"type": "list", "elements": "str", "default": []},
            "image": {"type": "list", "elements": "str", "default": []},
            "user": {"type": "list", "elements": "str", "default": []},
            "source": {"type": "str", "choices": ["auto", "journald", "file"], "default": "auto"},
            "log_path": {"type": "path"},
            "journald_unit": {"type": "str", "default": "docker.service"},
            "plugin_id": {"type": "str"},
            "include_probes": {"type": "bool", "default": False},
            "sensitive_env_keywords": {"type": "list", "elements": "str", "default": [], "no_log": False},
            "policy_path": {"type": "path"},
            "allowed_if_audit": {"type": "bool", "default": False},
            "read_policy": {"type": "bool", "default": True},
            "max_entries": {"type": "int", "default": 200},
            "max_bytes": {"type": "int", "default": 4194304},
        },
        supports_check_mode=True,
    )
    p = module.params
    bad_kinds = [k for k in p["kinds"] if k not in KINDS]
    if bad_kinds:
        module.fail_json(
            msg=f"kinds: unknown kind(s) {', '.join(bad_kinds)}. Use a subset of {', '.join(KINDS)}"
        )
    for name in ("last", "max_entries", "max_bytes"):
        if p[name] < 0 or (name != "last" and p[name] == 0):
            module.fail_json(
                msg=f"{name}: {p[name]} is not allowed. Give a positive number"
                + (" (0 for all)" if name == "last" else "")
            )
    try:
        since = parse_time(p["since"], "since")
        until = parse_time(p["until"], "until")
    except DecisionLogError as exc:
        module.fail_json(msg=str(exc))
    if since and until and since > until:
        module.fail_json(msg=f"since ({iso(since)}) is after until ({iso(until)}). Swap them")
    keywords = list(DEFAULT_SENSITIVE_ENV_KEYWORDS) + [
        k.lower()
        for k in p["sensitive_env_keywords"]
        if k.strip() and k.lower() not in DEFAULT_SENSITIVE_ENV_KEYWORDS
    ]

    policy_path = p["policy_path"] or (BUNDLE_DIR if os.path.isdir(BUNDLE_DIR) else POLICY_FILE)
    policy = read_policy_files(policy_path) if p["read_policy"] or p["allowed_if_audit"] else None
    kinds = list(p["kinds"])
    if p["allowed_if_audit"] and "allowed" in kinds and not defines_audit((policy or {}).get("files") or {}):
        kinds.remove("allowed")

    source = p["source"]
    if source == "auto":
        source = "journald" if not p["log_path"] and journald_usable(p["journald_unit"]) else "file"
    result: dict = {"changed": False, "source": source, "sources": [], "message": ""}
    if source == "journald":
        if not journald_usable(p["journald_unit"]) and p["source"] == "journald":
            module.fail_json(
                msg=f"source=journald: journalctl has no entries for {p['journald_unit']} "
                "(or systemd does not run "
                "here). Name dockerd's unit with journald_unit, or use source=file with log_path"
            )
        readers = [(f"journald:{p['journald_unit']}", journald_lines(p["journald_unit"], since, until))]
        result["sources"] = [readers[0][0]]
    else:
        path = p["log_path"] or default_log_file()
        files = rotated_files(path) if path else []
        if since is not None:  # a rotated file last written before the window holds nothing in it
            files = [f for f in files if os.path.getmtime(f) >= since.timestamp() - 1]
        readers = [(f, file_lines(f)) for f in files]
        result["sources"] = files
        if not path or not rotated_files(path):
            result["source"] = "none"
            if p["log_path"]:
                module.fail_json(
                    msg=f"log_path: {p['log_path']} does not exist. "
                    "Name dockerd's log file (see DOCKER_LOGFILE in "
                    "/etc/default/docker, or the --log-file of your service manager), or use source=journald",
                    **result,
                )
            result["message"] = (
                "no dockerd log found: not in journald, and none of /etc/default/docker's DOCKER_LOGFILE, "
                "/var/log/docker.log, /var/log/dockerd.log exists; set log_path"
            )
    try:
        found = collect(
            readers,
            since=since,
            until=until,
            kinds=kinds,
            last=p["last"],
            filters={"container": p["container"], "image": p["image"], "user": p["user"]},
            plugin_id=p["plugin_id"],
            include_probes=p["include_probes"],
            keywords=keywords,
            max_entries=p["max_entries"],
            max_bytes=p["max_bytes"],
        )
    except OSError as exc:
        module.fail_json(msg=f"cannot read dockerd's log: {exc}", **result)
    result.update(found)
    if not result["message"] and not found["entries"]:
        window = f" since {iso(since)}" if since else ""
        window += f" until {iso(until)}" if until else ""
        result["message"] = f"no {'/'.join(kinds)} decision in the log{window}" + (
            " matching the filters" if p["container"] or p["image"] or p["user"] else ""
        )
    result["since"] = iso(since)
    result["until"] = iso(until)
    result["kinds"] = kinds
    if p["read_policy"]:
        result["policy"] = policy
    module.exit_json(**result)


if __name__ == "__main__":
    main()
