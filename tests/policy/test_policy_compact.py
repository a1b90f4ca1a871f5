"""The compact single file of policy-file mode (module_utils/policy.py ``specialise_policy``) decides
every captured request exactly as the full assembly of the sources does: same allow, same deny
reasons, same audit reasons, for several configs (the disabled branches of each left out), on
OPA's own engine (v1) and on regopy (v0, the dialect of plugin tags 0.2-0.8)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.hardening.docker_authz.plugins.filter.policy import _sources, policy_config
from module_utils.policy import POLICY_VARIABLES, assemble_policy, specialise_policy
from tests.opa_docker_authz_double.opa_input import InputError, build_input, skips_evaluation
from tests.policy.engines import OpaPolicy
from tests.policy.harness import Policy, variables

CORPUS = Path(__file__).resolve().parent / "corpus"
QUERY = "data.docker.authz"

CONFIGS: dict[str, dict[str, Any]] = {
    "restricted": {"profile": "restricted"},
    "baseline": {"profile": "baseline"},
    # every optional parameter set: the branches the two above leave out are in
    "restricted-all-parameters": {
        "profile": "restricted",
        "allowed_bind_sources": ["/srv/data"],
        "allowed_host_ips": ["127.0.0.1"],
        "max_memory_bytes": 268435456,
        "max_nano_cpus": 1000000000,
        "exempt_users": ["admin"],
        "trusted_registries": ["127.0.0.1:5000"],
        "require_readonly_rootfs": True,
    },
    "restricted-audit": {"profile": "restricted", "audit_rules": ["root_user", "resource_limits"]},
    "every-rule-off": {"profile": "baseline", **{
        k.removeprefix("docker_authz_"): False for k in POLICY_VARIABLES
        if k.startswith(("docker_authz_deny_", "docker_authz_require_", "docker_authz_restrict_"))
    }},
}


def _config(name: str) -> dict[str, Any]:
    values = variables(**CONFIGS[name])
    return policy_config({k: v for k, v in values.items() if k in POLICY_VARIABLES})


def _inputs() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(CORPUS.glob("*.json")):
        for req in json.loads(path.read_text())["requests"]:
            if skips_evaluation(req):
                continue
            try:
                docs.append(build_input(req))
            except InputError:
                docs.append(build_input({k: v for k, v in req.items() if k != "RequestBody"}))
    # the exempt user over TLS, and an input without the fields the policy needs
    docs.append({**docs[0], "User": "admin", "AuthMethod": "TLS"})
    docs.append({"Method": "POST"})
    return docs


INPUTS = _inputs()


def _decisions(policy: OpaPolicy | Policy) -> list[Any]:
    out = []
    for doc in INPUTS:
        allow, deny = policy.evaluate(doc)
        audit = policy.query(f"{QUERY}.audit", doc) if isinstance(policy, OpaPolicy) and "audit contains" in (
            policy.text or "") else None
        out.append((allow, sorted(deny), sorted(audit) if isinstance(audit, list) else audit))
    return out


@pytest.mark.parametrize("name", list(CONFIGS))
def test_compact_file_decides_the_corpus_as_the_full_assembly_on_opa(name):
    config = _config(name)
    full = assemble_policy(_sources(), config, "v1", compact=False)
    compact = assemble_policy(_sources(), config, "v1")
    assert len(compact) < len(full) * 0.8, "the compact file should be much smaller"
    full_policy, compact_policy = OpaPolicy(full), OpaPolicy(compact)
    try:
        assert len(INPUTS) > 200
        got, want = _decisions(compact_policy), _decisions(full_policy)
        for doc, a, b in zip(INPUTS, got, want, strict=True):
            assert a == b, f"{name}: compact {a} != full {b} for {json.dumps(doc)[:400]}"
        assert any(not allow for allow, _d, _a in want) and any(allow for allow, _d, _a in want)
    finally:
        full_policy.close()
        compact_policy.close()


def test_compact_v0_file_decides_the_corpus_as_the_full_assembly_on_regopy():
    config = _config("restricted-all-parameters")
    full = Policy(assemble_policy(_sources(), config, "v0", compact=False))
    compact = Policy(assemble_policy(_sources(), config, "v0"))
    for doc in INPUTS[::3]:  # regopy is slow: every third request (all of them run on OPA above)
        assert compact.evaluate(doc) == full.evaluate(doc), json.dumps(doc)[:400]


def test_disabled_branches_are_left_out_and_come_back_with_their_parameter():
    restricted = assemble_policy(_sources(), _config("restricted"), "v1")
    everything = assemble_policy(_sources(), _config("restricted-all-parameters"), "v1")
    for name in ("allowed_bind_source(", "bind_sources contains", "above_ceiling(", "exempt_user if",
                 "config.allowed_host_ips[ip]"):
        assert name not in restricted, name
        assert name in everything, name
    # no comments but the section markers; the config stays (authz_test.rego reads config.rules)
    comments = [line for line in restricted.splitlines() if line.lstrip().startswith("#")]
    assert comments and all(line.startswith(("# lib.rego", "# rules/")) for line in comments), comments
    assert "\nconfig := {" in restricted


def test_a_negated_rule_that_the_config_removes_is_an_error_not_a_guess():
    text = (
        "package docker.authz\n\nimport rego.v1\n\n"
        "config := {\"exempt_users\": {}}\n"
        "exempt if {\n\tconfig.exempt_users[input.User]\n}\n"
        "deny contains \"x\" if {\n\tnot exempt\n}\n"
    )
    with pytest.raises(ValueError, match="negates"):
        specialise_policy(text, {"exempt_users": {}})
    kept = specialise_policy(text, {"exempt_users": {"admin": True}})
    assert "exempt if {" in kept and "not exempt" in kept
