# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""Filters that assemble the fleet report on the controller (playbooks/report.yml).

- ``hardening.docker_authz.fleet_report``: ``hostvars`` and the list of hosts -> the report
  document built from what report.yml registered for each host (``docker_authz_report_facts``
  from authz_facts, ``docker_authz_report_verify`` from authz_verify), one row per host,
  failures first; a host without them is reported unreachable.
- ``hardening.docker_authz.fleet_report_html``: the report document -> a static HTML page.

The logic lives in module_utils/report.py (pure functions, unit-tested).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ansible.errors import AnsibleFilterError

# module_utils.report and .explain (with probes.py, the largest) are imported by the filters that
# use them: Ansible loads every filter file of the collection in each task's worker that calls any
# of the collection's filters, and the role's own tasks use others.
if TYPE_CHECKING:
    from ansible_collections.hardening.docker_authz.plugins.module_utils.explain import PolicyEvaluator

FACTS_VAR = "docker_authz_report_facts"
VERIFY_VAR = "docker_authz_report_verify"
DECISIONS_VAR = "docker_authz_report_decisions"


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _entry(hostvars: Any) -> dict[str, Any]:
    """What report.yml registered for one host (authz_facts, authz_verify), and reachability."""
    facts = _plain(hostvars.get(FACTS_VAR)) if hostvars is not None else None
    verify = _plain(hostvars.get(VERIFY_VAR)) if hostvars is not None else None
    entry: dict[str, Any] = {}
    if not isinstance(facts, dict) or facts.get("unreachable") or facts.get("failed"):
        entry["unreachable"] = True
        entry["msg"] = (facts or {}).get("msg") if isinstance(facts, dict) else None
        return entry
    entry["facts"] = facts
    if isinstance(verify, dict) and not verify.get("skipped"):
        if verify.get("unreachable"):
            entry["unreachable"] = True
            entry["msg"] = verify.get("msg")
        else:
            entry["verify"] = verify
    return entry


def _denials(hostvars: Any, host: str, cache: dict[str, PolicyEvaluator]) -> dict[str, Any]:
    """The host's collected decisions re-evaluated with its policy (explain.py): {denials: items}."""
    decisions = _plain(hostvars.get(DECISIONS_VAR)) if hostvars is not None else None
    if not isinstance(decisions, dict) or decisions.get("skipped") or decisions.get("unreachable"):
        return {}
    if decisions.get("failed"):
        return {"denials": [], "denials_error": f"the decision log was not collected: {decisions.get('msg')}"}
    from ansible_collections.hardening.docker_authz.plugins.module_utils.explain import (
        ExplainError,
        explain_host,
    )

    try:
        explained = explain_host(host, decisions, decisions.get("policy"), cache)
    except ExplainError as exc:
        return {"denials": [], "denials_error": str(exc)}
    out: dict[str, Any] = {"denials": explained["items"]}
    if explained.get("warning"):  # dockerd stopped reading the plugin's log (a line over 64 KiB)
        out["log_warnings"] = [explained["warning"]]
    if decisions.get("source") == "none":
        out["denials_error"] = str(decisions.get("message") or "no dockerd log found")
    elif explained.get("truncated"):
        out["denials_error"] = (
            f"{explained['truncated']} older decision(s) left out (docker_authz_report_max_decisions)"
        )
    return out


def fleet_report(
    hostvars: Mapping[str, Any], hosts: list[str], generated_at: str = "", denials_since: str | None = None
) -> dict[str, Any]:
    """hostvars (the magic variable) and the hosts of the report -> the report document."""
    if not isinstance(hosts, (list, tuple)):
        raise AnsibleFilterError(f"fleet_report expects the list of hosts, got {type(hosts).__name__}")
    cache: dict[str, PolicyEvaluator] = {}
    starts = []
    try:
        entries = {}
        for h in hosts:
            decisions = (
                _plain((hostvars.get(h) or {}).get(DECISIONS_VAR)) if hostvars.get(h) is not None else None
            )
            if isinstance(decisions, dict) and isinstance(decisions.get("since"), str):
                starts.append(decisions["since"])
            entry = _entry(hostvars.get(h))
            if not entry.get("unreachable"):
                entry.update(_denials(hostvars.get(h), str(h), cache))
            entries[str(h)] = entry
    finally:
        for ev in cache.values():
            ev.close()
    from ansible_collections.hardening.docker_authz.plugins.module_utils.report import build_report

    return build_report(entries, generated_at, min(starts) if starts else denials_since)


def fleet_report_html(report: Mapping[str, Any]) -> str:
    if not isinstance(report, Mapping) or "hosts" not in report:
        raise AnsibleFilterError("fleet_report_html expects the document made by fleet_report")
    from ansible_collections.hardening.docker_authz.plugins.module_utils.report import render_html

    return render_html(report)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"fleet_report": fleet_report, "fleet_report_html": fleet_report_html}
