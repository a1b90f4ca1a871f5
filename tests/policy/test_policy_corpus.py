"""The rendered policy on every captured request (tests/policy/corpus), both dialects, and
for v1 both engines: OPA's own (the plugin's engine) and regopy must agree on every request
(tests/policy/engines.py; where they differ OPA is right). v0 runs on regopy alone (OPA 1.x
parses v1 only). Each rendering is compiled once per engine and cached.

For each scenario (see tests/policy/corpus/README.md):
- ``compliant``: under each listed profile (default parameters) every request is allowed;
- ``rules``: with only that rule on (restricted's parameters, trusted registries
  ``127.0.0.1:5000``) at least one request is denied and a reason names the rule (or, for
  ``always_deny`` scenarios, the always-on body rule denies it whatever the toggles);
- turning that rule off (every rule off) allows the scenario again, unless it is ``always_deny``.

The input is built as opa-docker-authz v0.10 builds it (build_input). Requests the plugin
itself answers with an error (a JSON array body: ``docker plugin install/set/upgrade``) never
reach the policy; they are also evaluated without their body to prove the endpoint alone is
denied. ``HEAD /_ping`` is skipped by the plugin (``-skip-ping``) and by these tests.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from module_utils.policy import RULES
from tests.opa_docker_authz_double.opa_input import InputError, build_input, skips_evaluation
from tests.policy.engines import BothEngines, OpaPolicy
from tests.policy.harness import Policy, compiled, render

CORPUS = Path(__file__).resolve().parent / "corpus"
SCENARIOS = [json.loads(p.read_text()) for p in sorted(CORPUS.glob("*.json"))]
RULE_ID = {var: rule_id for rule_id, (var, _b, _r) in RULES.items()}
RULE_ID["docker_authz_trusted_registries"] = "trusted_registries"
ALL_OFF = {var: False for var, _b, _r in RULES.values()}
DIALECTS = ("v1", "v0")

# Scenarios no request policy can get right, with the reason (docs/policy.md, "Known limits").
KNOWN_LIMITS = {
    # The CLI resolves `--network host` to the host network's ID (random per daemon): the policy
    # only sees an ID it cannot tell from any other network's.
    "service-create-network-host.cli-20.10": "docker_authz_deny_host_namespaces",
    "service-create-network-host.cli-28": "docker_authz_deny_host_namespaces",
    "service-create-network-host.cli-20.10.5": "docker_authz_deny_host_namespaces",
    "service-create-network-host.cli-26.1": "docker_authz_deny_host_namespaces",
}


def test_v1_runs_on_both_engines_and_v0_on_regopy():
    assert isinstance(compiled("v1"), BothEngines) and isinstance(compiled("v0"), Policy)
    assert compiled("v1", "opa").engine_name == "opa" and compiled("v1", "regopy").engine_name == "regopy"


def test_the_corpus_is_there():
    assert len(SCENARIOS) > 100
    assert any(s["compliant"] for s in SCENARIOS)
    assert {v for s in SCENARIOS for v in s["rules"]} >= set(RULE_ID)


def _fs_root(scenario: dict[str, Any], tmp_path: Path) -> str:
    links = scenario.get("fs_links") or {}
    for link, target in links.items():
        where = tmp_path / link.lstrip("/")
        where.parent.mkdir(parents=True, exist_ok=True)
        if not where.is_symlink():
            os.symlink(target, where)
    return str(tmp_path) if links else "/"


def outcomes(
    policy: Policy | OpaPolicy | BothEngines,
    scenario: dict[str, Any],
    fs_root: str = "/",
    *,
    refused: bool = True,
) -> list[tuple[bool, set[str]]]:
    """(allow, deny) of every request the policy evaluates (``refused=False``: without the
    requests the plugin itself refuses)."""
    results = []
    for req in scenario["requests"]:
        if skips_evaluation(req):
            continue
        try:
            doc = build_input(req, fs_root=fs_root)
        except InputError:
            if not refused:
                continue
            # The plugin answers with an error (the request fails). The endpoint alone must
            # still be denied: evaluate the request without its body.
            doc = build_input({k: v for k, v in req.items() if k != "RequestBody"}, fs_root=fs_root)
        results.append(policy.evaluate(doc))
    return results


def _ids(scenarios: list[dict[str, Any]]) -> list[str]:
    return [s["id"] for s in scenarios]


COMPLIANT = [(s, p) for s in SCENARIOS for p in s["compliant"]]


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(("scenario", "profile"), COMPLIANT, ids=[f"{s['id']}-{p}" for s, p in COMPLIANT])
def test_compliant_scenarios_are_allowed(scenario, profile, dialect, tmp_path):
    policy = compiled(dialect, profile=profile)
    for allow, deny in outcomes(policy, scenario, _fs_root(scenario, tmp_path)):
        assert allow, f"{scenario['id']} ({scenario['command'][:120]}) denied under {profile}: {deny}"


RULE_CASES = [(s, var) for s in SCENARIOS for var in s["rules"]]
RULE_CASE_IDS = [f"{s['id']}-{RULE_ID[v]}" for s, v in RULE_CASES]


def only_rule_on(dialect: str, var: str) -> Policy | OpaPolicy | BothEngines:
    if var == "docker_authz_trusted_registries":
        return compiled(dialect, profile="restricted", trusted_registries=("127.0.0.1:5000",), **ALL_OFF)
    return compiled(dialect, profile="restricted", **{**ALL_OFF, var: True})


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(("scenario", "var"), RULE_CASES, ids=RULE_CASE_IDS)
def test_rule_scenarios_are_denied_by_their_rule(scenario, var, dialect, tmp_path):
    results = outcomes(only_rule_on(dialect, var), scenario, _fs_root(scenario, tmp_path))
    denied = [deny for allow, deny in results if not allow]
    if KNOWN_LIMITS.get(scenario["id"]) == var:
        assert not denied, f"{scenario['id']} is now denied: remove it from KNOWN_LIMITS and docs/policy.md"
        return
    assert denied, f"{scenario['id']} ({scenario['command'][:160]}) is allowed with {var} on"
    if scenario.get("always_deny"):
        assert any(r.startswith("body:") for deny in denied for r in deny), denied
        return
    rule_id = RULE_ID[var]
    assert any(r.startswith(rule_id + ":") for deny in denied for r in deny), (
        f"{scenario['id']} denied, but not by {rule_id}: {denied}"
    )


OFF_CASES = [s for s in SCENARIOS if s["rules"] and s["id"] not in KNOWN_LIMITS]


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("scenario", OFF_CASES, ids=_ids(OFF_CASES))
def test_rule_scenarios_pass_with_every_rule_off(scenario, dialect, tmp_path):
    """Proof that it is the rules that deny: with all of them off the same requests pass,
    except those the always-on part must deny (invisible bodies) or the plugin refuses."""
    policy = compiled(dialect, profile="restricted", **ALL_OFF)
    results = outcomes(policy, scenario, _fs_root(scenario, tmp_path), refused=False)
    denied = [deny for allow, deny in results if not allow]
    if scenario.get("always_deny"):
        assert denied and all(r.startswith("body:") for deny in denied for r in deny), denied
    else:
        assert not denied, f"{scenario['id']} denied with every rule off: {denied}"


def test_the_off_switch_changes_the_rendering():
    assert render("v1", **ALL_OFF) != render("v1")
