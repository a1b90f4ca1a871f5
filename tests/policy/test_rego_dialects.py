"""The v0 rendering uses only OPA 0.9.1 syntax and builtins, the v1 rendering only OPA 1.3.0's
(without deprecated builtins); rego_check refuses what does not compile."""

from __future__ import annotations

import re

import pytest

from module_utils.policy import OPA_0_9_1_BUILTINS, OPA_DEPRECATED_BUILTINS, allowed_builtins
from module_utils.rego_check import (
    RegoCheckError,
    called_names,
    check_policy,
    compile_policy,
    defined_functions,
    scan_rego,
    strip_comments_and_strings,
)
from tests.policy.harness import render

VARIANTS = [
    {"profile": "baseline"},
    {"profile": "restricted"},
    {
        "profile": "restricted",
        "trusted_registries": ["127.0.0.1:5000"],
        "exempt_users": ["ops"],
        "require_readonly_rootfs": True,
        "allowed_host_ips": ["127.0.0.1"],
    },
]


@pytest.mark.parametrize("variant", range(len(VARIANTS)))
@pytest.mark.parametrize("dialect", ["v0", "v1"])
def test_rendering_uses_only_its_dialect(dialect, variant):
    text = render(dialect, **VARIANTS[variant])
    assert scan_rego(text, dialect) == []
    other = "v1" if dialect == "v0" else "v0"
    assert scan_rego(text, other), "the scan must tell the dialects apart"
    code = strip_comments_and_strings(text)
    builtins = called_names(code) - defined_functions(code)
    assert builtins <= OPA_0_9_1_BUILTINS - OPA_DEPRECATED_BUILTINS, (
        "the shared logic sticks to the common subset"
    )
    result = check_policy(text, dialect)
    assert result["samples"][0] == {"allow": True, "deny": []}
    assert result["samples"][1]["allow"] is False


def test_v0_rendering_has_no_v1_syntax_and_v1_has_the_import():
    v0, v1 = render("v0"), render("v1")
    assert "import rego.v1" not in v0 and "\nimport rego.v1\n" in v1
    assert re.search(r"^default allow = false$", v0, re.M) and re.search(
        r"^default allow := false$", v1, re.M
    )
    assert re.search(r"^deny\[msg\] \{$", v0, re.M) and re.search(r"^deny contains msg if \{$", v1, re.M)
    assert "Rego v0" in v0 and "Rego v1" in v1


SCAN_FAILS = [
    ("v0", "allow if { true }", "keyword 'if'"),
    ("v0", "deny contains x if { x := 1 }", "'contains' as a keyword"),
    ("v0", "default allow := false", "default x :="),
    ("v0", "p := 1", "':=' in a rule head"),
    ("v0", "p { some x; x := 1 }", "keyword 'some'"),
    ("v0", 'p { x := object.get(input, "a", 1) }', "'object.get' is not a builtin of OPA 0.9.1"),
    ("v0", "import future.keywords.in", "imports need OPA 0.34+"),
    ("v1", "allow { true }", "requires 'if'"),
    ("v1", "deny[msg] { msg := 1 }", "requires 'contains'"),
    ("v1", 'p if { re_match("a", "b") }', "'re_match' is not a builtin of OPA 1.3.0"),
    ("v1", "p if { any([true]) }", "'any' is not a builtin"),
    ("v1", 'p if { strings.count("a", "a") == 1 }', "'strings.count' is not a builtin"),
]


@pytest.mark.parametrize(
    ("dialect", "line", "problem"), SCAN_FAILS, ids=[f"{d}:{p}" for d, _l, p in SCAN_FAILS]
)
def test_scan_catches_what_the_plugins_opa_rejects(dialect, line, problem):
    header = "package docker.authz\n" + ("import rego.v1\n" if dialect == "v1" else "")
    problems = scan_rego(header + line + "\n", dialect)
    assert any(problem in p for p in problems), problems


def test_scan_ignores_strings_and_comments():
    text = 'package docker.authz\n# if some in every object.get(\np = "if contains re_match(" { true }\n'
    assert scan_rego(text, "v0") == []


def test_allowed_builtins():
    assert "regex.match" in allowed_builtins("v1") and "re_match" not in allowed_builtins("v1")
    assert "re_match" in allowed_builtins("v0") and "object.get" not in allowed_builtins("v0")
    with pytest.raises(ValueError, match="dialect"):
        allowed_builtins("v2")


BROKEN = {
    "unclosed": "package docker.authz\nimport rego.v1\nallow if {\n",
    "unknown function": "package docker.authz\nimport rego.v1\nallow if { frobnicate(input) }\n",
    "allow not boolean": "package docker.authz\nimport rego.v1\nallow := 1\ndeny := set()\n",
    "deny not a set": "package docker.authz\nimport rego.v1\ndefault allow := true\ndeny := 7\n",
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_compile_refuses_broken_policies(name):
    with pytest.raises(RegoCheckError, match=r"compile|boolean|set of strings"):
        compile_policy(BROKEN[name])


def test_check_policy_names_every_dialect_problem():
    with pytest.raises(RegoCheckError) as err:
        check_policy(render("v1"), "v0")
    assert "keyword 'if'" in str(err.value) and "import" in str(err.value)
