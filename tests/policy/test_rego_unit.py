"""roles/opa_authz/files/authz_test.rego: every test_ rule, with regopy, on every rendering.

Each test_ rule is ``case := cases.NAME; outcome_ok(case) with input as case.input``. regopy
1.5.2 aborts on ``with input as`` over rules that depend on other rules, so this suite
evaluates the same ``outcome_ok(case)`` with the case's input set as the input document
(the test_ rules themselves are left out of what regopy loads; ``opa test`` runs them).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import regopy
from regopy.interpreter import rego_query
from regopy.output import rego_output_string

from tests.policy.harness import render

TESTS = Path(__file__).resolve().parents[2] / "roles" / "opa_authz" / "files" / "authz_test.rego"
TEXT = TESTS.read_text()
NAMES = re.findall(
    r"^test_(\w+) if \{\n\tcase := cases\.(\w+)\n\toutcome_ok\(case\) with input as case\.input\n\}",
    TEXT,
    re.M,
)
SUPPORT = TEXT[: TEXT.index("\ntest_")]


def _cases() -> dict:
    rego = regopy.Interpreter()
    rego.add_module("authz_test.rego", SUPPORT)
    return json.loads(rego_output_string(rego_query(rego._impl, "x := data.docker.authz_test.cases")))[
        "bindings"
    ]["x"]


CASES = _cases()


def test_every_test_rule_is_a_case():
    assert len(NAMES) == len(re.findall(r"^test_", TEXT, re.M)) == len(CASES) > 30
    assert all(test == case for test, case in NAMES)
    assert {case for _t, case in NAMES} == set(CASES)


@pytest.mark.parametrize("profile", ["baseline", "restricted"])
@pytest.mark.parametrize("dialect", ["v1", "v0"])
def test_rego_unit_tests_pass(dialect, profile):
    rego = regopy.Interpreter()
    rego.add_module("authz.rego", render(dialect, profile=profile))
    rego.add_module("authz_test.rego", SUPPORT)
    bundle = rego.build(
        "x := data.docker.authz_test.outcome_ok(data.docker.authz_test.cases[input.__case])", []
    )
    failed = []
    for name in CASES:
        run = regopy.Interpreter()
        run.set_input({**CASES[name]["input"], "__case": name})
        if '"x":true' not in str(run.query_bundle(bundle)):
            failed.append(name)
    assert failed == []


def test_the_unit_tests_can_fail():
    """A policy that allows everything fails the deny cases."""
    rego = regopy.Interpreter()
    rego.add_module(
        "authz.rego",
        "package docker.authz\nimport rego.v1\nallow := true\ndeny := set()\n"
        'config := {"rules": {"privileged": true}}\n',
    )
    rego.add_module("authz_test.rego", SUPPORT)
    run_input = {**CASES["privileged"]["input"]}
    rego.set_input(run_input)
    out = rego_output_string(
        rego_query(
            rego._impl, "x := data.docker.authz_test.outcome_ok(data.docker.authz_test.cases.privileged)"
        )
    )
    assert '"x":true' not in out
