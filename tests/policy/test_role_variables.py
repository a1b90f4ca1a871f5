"""The policy variables agree everywhere: defaults/main.yml, meta/argument_specs.yml (main and
render), module_utils/policy.py, the template, the README and docs/policy.md."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from module_utils.policy import PARAMETER_DEFAULTS, POLICY_VARIABLES, RULES

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "opa_authz"
DEFAULTS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
SPECS = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]
OWN = [
    *POLICY_VARIABLES,
    "docker_authz_rego_version",
    "docker_authz_policy_dir",
    "docker_authz_policy_dest",
    "docker_authz_plugin_image",
]


def test_every_policy_variable_has_a_default_and_a_spec():
    for entry in ("main", "render"):
        options = SPECS[entry]["options"]
        for var in OWN:
            assert var in DEFAULTS, var
            assert var in options, (entry, var)
            assert options[var].get("default") == DEFAULTS[var], (entry, var)
            assert options[var]["description"], (entry, var)


def test_rule_variables_default_to_the_profile_and_are_booleans():
    for var, _baseline, _restricted in RULES.values():
        assert DEFAULTS[var] is None
        assert SPECS["main"]["options"][var]["type"] == "bool"


def test_parameter_defaults_match_module_utils():
    for var, value in PARAMETER_DEFAULTS.items():
        assert DEFAULTS[var] == value, var


def test_choices():
    options = SPECS["main"]["options"]
    assert options["docker_authz_profile"]["choices"] == ["baseline", "restricted"]
    assert options["docker_authz_rego_version"]["choices"] == ["auto", "v0", "v1"]


def test_the_template_reads_every_policy_variable():
    template = (ROLE / "templates" / "authz.rego.j2").read_text()
    for var in POLICY_VARIABLES:
        assert re.search(rf"'{var}': {var},", template), var


def test_docs_name_every_rule_variable():
    readme = (ROLE / "README.md").read_text()
    docs = (ROOT / "docs" / "policy.md").read_text()
    for var in POLICY_VARIABLES:
        assert f"`{var}" in readme, var
        assert var in docs or var in readme, var
    for rule_id, (var, _b, _r) in RULES.items():
        assert f"### {rule_id} — `{var}`" in docs
