# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""Filters that explain authorization decisions on the controller (playbooks/explain.yml).

- ``hardening.docker_authz.explain_decisions``: ``hostvars`` and the list of hosts -> the explain
  document: for each host what ``authz_facts`` (``docker_authz_explain_facts``) and
  ``authz_decisions`` (``docker_authz_explain_decisions``) returned, every collected decision
  re-evaluated with the policy read back from that host (OPA's engine), with its rules, their
  variables and documentation; unreachable hosts, hosts without the plugin and hosts without a
  log are said to be so.
- ``hardening.docker_authz.explain_text``: the document -> readable text.

The logic lives in module_utils/explain.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

# module_utils.explain is imported by the filters that use it: Ansible loads every filter file of
# the collection in each task's worker that calls any of the collection's filters.

FACTS_VAR = "docker_authz_explain_facts"
DECISIONS_VAR = "docker_authz_explain_decisions"


def plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def host_input(
    hostvars: Any, facts_var: str = FACTS_VAR, decisions_var: str = DECISIONS_VAR
) -> dict[str, Any]:
    """What the playbook registered for one host -> explain_fleet's input for it."""
    facts = plain(hostvars.get(facts_var)) if hostvars is not None else None
    decisions = plain(hostvars.get(decisions_var)) if hostvars is not None else None
    if not isinstance(facts, dict) or facts.get("unreachable"):
        msg = (facts or {}).get("msg") if isinstance(facts, dict) else None
        return {"status": "unreachable", "message": str(msg or "the host did not answer (SSH or Python)")}
    if facts.get("failed"):
        return {"status": "failed", "message": str(facts.get("msg") or "reading the host failed")}
    plugin = facts.get("plugin") or {}
    docker = facts.get("docker") or {}
    if docker.get("available") and not plugin.get("installed"):
        return {
            "status": "no-plugin",
            "message": f"plugin {plugin.get('name')} is not installed: "
            "this host authorizes nothing and logs no decision",
        }
    if not isinstance(decisions, dict) or decisions.get("skipped"):
        return {"status": "failed", "message": "the decision log was not collected"}
    if decisions.get("unreachable"):
        return {"status": "unreachable", "message": str(decisions.get("msg") or "")}
    if decisions.get("failed"):
        return {
            "status": "failed",
            "message": str(decisions.get("msg") or "collecting the decision log failed"),
        }
    if decisions.get("source") == "none":
        return {"status": "no-log", "message": str(decisions.get("message") or "no dockerd log found")}
    notes = []
    if not docker.get("available"):
        notes.append(f"the Docker Engine does not answer ({docker.get('error')}); the log was read anyway")
    elif not plugin.get("enabled"):
        notes.append(f"plugin {plugin.get('name')} is disabled: it decides nothing now")
    if not decisions.get("entries") and decisions.get("message"):
        notes.append(str(decisions["message"]))
    return {"decisions": decisions, "policy": decisions.get("policy"), "message": "; ".join(notes)}


def explain_decisions(
    hostvars: Mapping[str, Any], hosts: list[str], keep_allowed: bool = False
) -> dict[str, Any]:
    """``keep_allowed``: list allowed decisions that no audit rule flags too (else only would-be denials)."""
    if not isinstance(hosts, (list, tuple)):
        raise AnsibleFilterError(f"explain_decisions expects the list of hosts, got {type(hosts).__name__}")
    from ansible_collections.hardening.docker_authz.plugins.module_utils.explain import (
        ExplainError,
        explain_fleet,
    )

    try:
        # Hosts the playbook did not try (left out by --limit) have nothing registered: not listed.
        return explain_fleet(
            keep_allowed=keep_allowed,
            hosts={
                str(h): host_input(hostvars.get(h))
                for h in hosts
                if hostvars.get(h) is not None and hostvars.get(h).get(FACTS_VAR) is not None
            },
        )
    except ExplainError as exc:
        raise AnsibleFilterError(str(exc)) from None


def explain_text(doc: Mapping[str, Any]) -> str:
    if not isinstance(doc, Mapping) or "hosts" not in doc:
        raise AnsibleFilterError("explain_text expects the document made by explain_decisions")
    from ansible_collections.hardening.docker_authz.plugins.module_utils.explain import render_text

    return render_text(doc)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"explain_decisions": explain_decisions, "explain_text": explain_text}
