"""Audit mode: rules in audit (docker_authz_enforcement: audit, docker_authz_audit_rules) put
their reasons in data.docker.authz.audit instead of deny; allow ignores audit; the always-on
checks never go to audit. v1 on OPA and regopy (which must agree), v0 on regopy; bundle mode on
OPA."""

from __future__ import annotations

import json
from typing import Any

import pytest

from module_utils import policy
from module_utils.policy import RULE_IDS, PolicyConfigError, build_policy_config
from tests.opa_docker_authz_double.opa_input import build_input
from tests.policy.engines import OpaPolicy
from tests.policy.harness import bundle_files, compiled, deny_members, request

CREATE = "/v1.43/containers/create"
# A create that runs as root without limits, privileged.
ROOT_NO_LIMITS = {"Image": "busybox", "HostConfig": {}}
PRIVILEGED = {"Image": "busybox", "User": "1000", "HostConfig": {"Privileged": True, "Memory": 1 << 26,
              "NanoCpus": 10**9, "PidsLimit": 64}}
AUDIT_TWO = ("resource_limits", "root_user")


def audit_members(engine: Any, req: dict[str, Any]) -> set[str]:
    return deny_members(engine.query("data.docker.authz.audit", build_input(req)))


def rules_of(reasons: set[str]) -> set[str]:
    return {reason.split(":", 1)[0] for reason in reasons}


@pytest.mark.parametrize("dialect", ["v1", "v0"])
def test_rules_in_audit_deny_nothing_and_report_their_reasons(dialect: str) -> None:
    enforce = compiled(dialect, profile="restricted")
    audit = compiled(dialect, profile="restricted", audit_rules=AUDIT_TWO)
    req = request("POST", CREATE, ROOT_NO_LIMITS)
    allowed, deny = enforce.decide(req)
    assert not allowed
    assert {"resource_limits", "root_user"} <= rules_of(deny)
    allowed, deny = audit.decide(req)
    # Other restricted rules still object to this body (no-new-privileges, read caps ...):
    assert not rules_of(deny) & set(AUDIT_TWO), deny
    members = audit_members(audit, req)
    assert rules_of(members) == set(AUDIT_TWO), members
    # the same reason strings as under enforce
    assert members == {r for r in enforce.decide(req)[1] if r.split(":", 1)[0] in AUDIT_TWO}


@pytest.mark.parametrize("dialect", ["v1", "v0"])
def test_a_request_only_audit_rules_flag_is_allowed(dialect: str) -> None:
    audit = compiled(
        dialect, profile="baseline", require_resource_limits=True, audit_rules=("resource_limits",)
    )
    req = request("POST", CREATE, {"Image": "busybox", "HostConfig": {}})
    allowed, deny = audit.decide(req)
    assert allowed and deny == set()
    assert rules_of(audit_members(audit, req)) == {"resource_limits"}
    # an enforcing rule still denies
    privileged = {"Image": "busybox", "HostConfig": {"Privileged": True}}
    allowed, deny = audit.decide(request("POST", CREATE, privileged))
    assert not allowed and "privileged" in rules_of(deny)
    # a compliant request has no audit reasons
    ok = request("POST", CREATE, {"Image": "busybox", "HostConfig": {"Memory": 1 << 26, "NanoCpus": 10**9,
                                                                        "PidsLimit": 64}})
    assert audit.decide(ok) == (True, set())
    assert audit_members(audit, ok) == set()


@pytest.mark.parametrize("dialect", ["v1", "v0"])
def test_enforcement_audit_puts_every_rule_in_audit_but_not_the_always_on_checks(dialect: str) -> None:
    audit = compiled(dialect, profile="restricted", enforcement="audit")
    req = request("POST", CREATE, PRIVILEGED)
    allowed, deny = audit.decide(req)
    assert allowed and deny == set()
    assert "privileged" in rules_of(audit_members(audit, req))
    # always on: an invisible body, an unknown write
    charset = "application/json; charset=utf-8"
    allowed, deny = audit.decide(request("POST", CREATE, PRIVILEGED, content_type=charset))
    assert not allowed and rules_of(deny) == {"body"}
    allowed, deny = audit.decide(request("POST", "/v1.43/frobnicate", {}))
    assert not allowed and rules_of(deny) == {"request"}


def test_pure_enforce_defines_no_audit_rule() -> None:
    """Nothing in audit: the policy has no audit rule (explain then reads denials only)."""
    text = policy.assemble_policy(
        policy_sources(),
        build_policy_config({"docker_authz_profile": "restricted"}),
        "v1",
    )
    assert "audit contains" not in text
    text = policy.assemble_policy(
        policy_sources(), build_policy_config({"docker_authz_profile": "restricted",
                                               "docker_authz_audit_rules": ["root_user"]}), "v0")
    assert "audit[" in text and "audit contains" not in text


def policy_sources() -> dict[str, str]:
    from ansible_collections.hardening.docker_authz.plugins.filter.policy import _sources

    return _sources()


def test_bundle_mode_puts_the_audit_rules_reasons_in_audit() -> None:
    files = bundle_files(profile="restricted", audit_rules=list(AUDIT_TWO))
    assert "audit contains" in files["docker/authz/rules/root_user.rego"]
    assert "audit contains" not in files["docker/authz/rules/privileged.rego"]
    assert json.loads(files["docker/authz/data.json"])["config"]["audit_rules"] == {
        "resource_limits": True, "root_user": True}
    modules = {p: t for p, t in files.items() if p.endswith(".rego")}
    data = {"docker": {"authz": json.loads(files["docker/authz/data.json"])}}
    engine = OpaPolicy(modules=modules, data=data)
    req = request("POST", CREATE, ROOT_NO_LIMITS)
    _allowed, deny = engine.decide(req)
    assert not rules_of(deny) & set(AUDIT_TWO)
    assert rules_of(deny_members(engine.query("data.docker.authz.audit", build_input(req)))) == set(AUDIT_TWO)


def test_every_reason_of_a_rule_starts_with_its_id() -> None:
    """Rewriting a rule's heads into audit moves exactly that rule's reasons."""
    sources = policy_sources()
    for rule_id in RULE_IDS:
        text = sources[policy.rule_source(rule_id)]
        for line in text.splitlines():
            if line.startswith("deny contains "):
                head = line[len("deny contains "):]
                assert head.startswith(f'"{rule_id}: ') or head.startswith("msg if"), (rule_id, line)


@pytest.mark.parametrize(
    ("variables", "problem"),
    [
        ({"docker_authz_enforcement": "dryrun"}, "'dryrun' is not an enforcement mode"),
        ({"docker_authz_audit_rules": ["root"]}, "'root' is not a rule id"),
        ({"docker_authz_audit_rules": "root_user"}, "is not a list"),
    ],
)
def test_bad_audit_settings_are_refused(variables: dict[str, Any], problem: str) -> None:
    with pytest.raises(PolicyConfigError) as err:
        build_policy_config(variables)
    assert problem in str(err.value)
    if "rule id" in problem:
        assert "privileged, seccomp_unconfined" in str(err.value) and "trusted_registries" in str(err.value)


def test_audit_settings_in_the_config() -> None:
    config = build_policy_config({"docker_authz_audit_rules": ["Root_User", "root_user", "privileged"]})
    assert config["enforcement"] == "enforce"
    assert list(config["audit_rules"]) == ["privileged", "root_user"]
    config = build_policy_config({"docker_authz_enforcement": "audit"})
    assert set(config["audit_rules"]) == set(RULE_IDS)
