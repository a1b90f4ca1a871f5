"""The probe table against the project's real policy: roles/opa_authz/templates/authz.rego.j2
rendered exactly as the role renders it, each probe turned into the input document the
opa-docker-authz double builds (tests/policy/harness.py), evaluated by a real Rego engine
(regopy).

This proves, for several rule configurations and both Rego dialects, that the compliant
requests are allowed and that every denial probe is denied for ITS rule and no other: the deny
reasons ("rule: text") name exactly the rule the probe stands for. On a daemon the reasons are
not visible (opa-docker-authz always answers "request rejected by administrative policy"), so
this is where a probe that passes for the wrong reason would be caught.
"""

from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.hardening.docker_authz.plugins.module_utils import policy as policy_vars
from ansible_collections.hardening.docker_authz.plugins.module_utils import probes as P
from tests.policy import harness as H

# probes.py rule name (role variable without docker_authz_) -> the policy's rule id
RULE_IDS = {var[len("docker_authz_") :]: rule_id for rule_id, (var, _b, _r) in policy_vars.RULES.items()}
RULE_IDS["trusted_registries"] = "trusted_registries"

CONFIGS: dict[str, dict[str, Any]] = {
    "baseline": {"profile": "baseline"},
    "restricted": {"profile": "restricted"},
    "everything": {
        "profile": "restricted",
        "require_readonly_rootfs": True,
        "trusted_registries": ["registry.example.com/team"],
        "max_memory_bytes": 1 << 30,
        "max_nano_cpus": 2_000_000_000,
        "allowed_host_ips": ["127.0.0.1"],
        "allowed_host_ports": ["8000-8999"],
        "allowed_capabilities": ["NET_BIND_SERVICE", "SYS_ADMIN"],
        "sensitive_env_allowed": ["*_FILE", "*_PASSWORD"],
        "required_limits": ["memory", "pids"],
        "allowed_bind_sources": ["/srv/data"],
    },
    "privileged-only": {
        "profile": "baseline",
        **{var[len("docker_authz_") :]: False for var, _b, _r in policy_vars.RULES.values()},
        "deny_privileged": True,
    },
    # rules in audit: their plain create probes are expected ALLOWED, their others left out
    "audit-two": {"profile": "restricted", "audit_rules": ["resource_limits", "root_user"]},
    "audit-all": {"profile": "restricted", "enforcement": "audit"},
}


def decisions(config: dict[str, Any], dialect: str) -> list[tuple[P.Probe, bool, set[str]]]:
    policy = H.Policy(H.render(dialect, **config))
    out = []
    for probe in P.build_probes(P.normalize_rules(config)):
        req = H.request(
            probe.method, probe.request_target("1.44"), probe.body, content_type=probe.content_type
        )
        allow, deny = policy.decide(req)
        out.append((probe, allow, deny))
    return out


@pytest.mark.parametrize("dialect", ["v1", "v0"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_each_probe_gets_the_expected_answer_for_its_own_rule(name: str, dialect: str) -> None:
    config = CONFIGS[name]
    results = decisions(config, dialect)
    assert len(results) > 10
    problems = []
    for probe, allow, deny in results:
        if probe.expect == P.ALLOW:
            if probe.rule != P.ALWAYS_ON and not allow:
                problems.append(f"{probe.name}: the probe of a rule in audit was denied: {sorted(deny)}")
            if not allow:
                problems.append(f"{probe.name}: compliant request denied: {sorted(deny)}")
            continue
        if allow:
            problems.append(f"{probe.name}: {probe.summary} was ALLOWED")
            continue
        rules = {reason.split(":", 1)[0] for reason in deny}
        if probe.rule == P.ALWAYS_ON:
            # An invisible body also hides the fields the require_* rules look for: those may
            # fire too, but the body rule must.
            if "body" not in rules:
                problems.append(f"{probe.name}: denied without the body rule: {sorted(deny)}")
            continue
        want = {RULE_IDS[probe.rule]}
        if probe.bypass == "engine bugs" and (rules == want or "body" in rules):
            # its own rule when the engine forwards the body; the body rule (and the require_*
            # rules, which see no fields) when it does not, as opa-docker-authz gets no body
            # over 1 MiB
            continue
        if rules != want:
            problems.append(
                f"{probe.name}: denied for {sorted(rules)}, not only {sorted(want)}: {sorted(deny)}"
            )
    assert not problems, "\n".join(problems)


def test_every_policy_rule_has_probes() -> None:
    """A rule added to the policy without a probe table entry fails here."""
    assert set(RULE_IDS) == set(P.RULE_PROBES)
    assert set(P.RULE_DEFAULTS) == {var[len("docker_authz_") :] for var, _b, _r in policy_vars.RULES.values()}
    for rule_id, (var, baseline, restricted) in policy_vars.RULES.items():
        assert P.RULE_DEFAULTS[var[len("docker_authz_") :]] == (baseline, restricted), rule_id
    assert set(P.LIST_PARAMS) | set(P.INT_PARAMS) | set(P.STR_PARAMS) == {
        k[len("docker_authz_") :] for k in policy_vars.PARAMETER_DEFAULTS
    }
    for key, default in policy_vars.PARAMETER_DEFAULTS.items():
        name = key[len("docker_authz_") :]
        mine = P.LIST_PARAMS.get(name, P.INT_PARAMS.get(name, P.STR_PARAMS.get(name, (None,))[0]))
        assert mine == default, name
    assert P.RULE_IDS == RULE_IDS
    assert P.STR_PARAMS["enforcement"] == policy_vars.ENFORCEMENT_MODES


@pytest.mark.parametrize("dialect", ["v1", "v0"])
def test_probes_of_rules_in_audit_are_allowed_and_flagged_in_audit(dialect: str) -> None:
    config = CONFIGS["audit-two"]
    policy = H.Policy(H.render(dialect, **config))
    audited = ("require_resource_limits", "deny_root_user")
    flipped = [p for p in P.build_probes(P.normalize_rules(config)) if p.rule in audited]
    assert flipped and all(p.expect == P.ALLOW and p.path == "/containers/create" for p in flipped)
    for probe in flipped:
        target = probe.request_target("1.44")
        req = H.request(probe.method, target, probe.body, content_type=probe.content_type)
        audit = H.deny_members(policy.query("data.docker.authz.audit", H.build_input(req)))
        assert {r.split(":", 1)[0] for r in audit} == {RULE_IDS[probe.rule]}, (probe.name, audit)
    names = {p.name for p in P.build_probes(P.normalize_rules(config))}
    assert "root-user-exec" not in names and "limits-update-memory" not in names
    assert "privileged" in names


def test_audit_rule_ids_are_checked() -> None:
    with pytest.raises(P.VerifyInputError, match="unknown rule id"):
        P.normalize_rules({"audit_rules": ["root"]})
    with pytest.raises(P.VerifyInputError, match="enforcement must be one of enforce, audit"):
        P.normalize_rules({"enforcement": "dryrun"})
