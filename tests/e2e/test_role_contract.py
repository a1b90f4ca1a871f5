"""Static contract checks of the role's orchestration (no Docker needed, milliseconds).

The verification must follow exactly the rules the policy is rendered from, so the list of
names the role hands to authz_verify must match both module_utils (policy and probes).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ansible_collections.hardening.docker_authz.plugins.module_utils import policy, probes

ROLE = Path(__file__).resolve().parents[2] / "roles" / "opa_authz"


def _role_vars() -> dict:
    return yaml.safe_load((ROLE / "vars" / "main.yml").read_text())


def test_verify_rule_names_match_the_policy_variables() -> None:
    names = _role_vars()["__docker_authz_verify_rule_names"]
    assert len(names) == len(set(names))
    assert {f"docker_authz_{n}" for n in names} == set(policy.POLICY_VARIABLES)


def test_verify_rule_names_are_what_authz_verify_accepts() -> None:
    names = set(_role_vars()["__docker_authz_verify_rule_names"]) - {"profile"}
    assert names == (
        set(probes.RULE_DEFAULTS) | set(probes.LIST_PARAMS) | set(probes.INT_PARAMS) | set(probes.STR_PARAMS)
    )


def test_change_phases_run_inside_the_rollback_block() -> None:
    main = yaml.safe_load((ROLE / "tasks" / "main.yml").read_text())
    order = [t.get("ansible.builtin.import_tasks") for t in main if "ansible.builtin.import_tasks" in t]
    assert order == ["validate.yml"], "only the validation runs outside the host's lock"
    locked = next(t for t in main if "block" in t)
    imp = "ansible.builtin.import_tasks"
    phases = [t[imp] for t in locked["block"] if imp in t]
    assert phases == ["preflight_lock.yml", "preflight.yml", "render.yml"], (
        "the lock first, then the read-only phases, outside the rollback block"
    )
    assert "always" not in locked, "an outer always hides a rescued failure from max_fail_percentage"
    lock = "hardening.docker_authz.authz_lock"
    assert locked["block"][-1][lock]["state"] == "released", "released at the end of a good run"
    assert locked["rescue"][0][lock]["state"] == "released", "and first thing after a failure"
    assert "ansible.builtin.fail" in locked["rescue"][-1], "the failure is raised again"
    block = next(t for t in locked["block"] if "block" in t)
    assert [t["ansible.builtin.import_tasks"] for t in block["block"]] == [
        "adopt.yml",
        "policy.yml",
        "plugin.yml",
        "daemon.yml",
        "verify.yml",
    ]
    assert [t["ansible.builtin.import_tasks"] for t in block["rescue"]] == ["rollback.yml"]


def test_the_plugin_is_enabled_before_daemon_json_names_it() -> None:
    """A daemon reloaded with a missing or disabled authorization plugin exits."""
    daemon = yaml.safe_load((ROLE / "tasks" / "daemon.yml").read_text())
    hook = daemon[0]["hardening.docker_authz.daemon_json"]
    assert hook["check_plugins"] == "{{ not ansible_check_mode }}"
    plugin = yaml.safe_load((ROLE / "tasks" / "plugin.yml").read_text())
    unhook = next(t for t in plugin if "hardening.docker_authz.daemon_json" in t)
    install = next(t for t in plugin if t["name"] == "Install, configure and enable the plugin")
    assert plugin.index(unhook) < plugin.index(install)


ORCHESTRATION_VARIABLES = [
    "docker_authz_plugin_alias",
    "docker_authz_plugin_args",
    "docker_authz_plugin_digest_check",
    "docker_authz_registry_auth",
    "docker_authz_daemon_json_path",
    "docker_authz_docker_socket",
    "docker_authz_docker_pidfile",
    "docker_authz_reload_method",
    "docker_authz_unhook_other_plugins",
    "docker_authz_api_timeout",
    "docker_authz_verify",
    "docker_authz_verify_depth",
    "docker_authz_verify_bypasses",
    "docker_authz_verify_accept_other_plugins",
    "docker_authz_verify_rules",
    "docker_authz_rollback",
    "docker_authz_remove_policies",
]


def test_orchestration_variables_have_defaults_specs_and_docs() -> None:
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    options = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"][
        "options"
    ]
    readme = (ROLE / "README.md").read_text()
    role_doc = (ROLE.parents[1] / "docs" / "role.md").read_text()
    # the end of defaults/main.yml is this section, in this order
    assert list(defaults)[-len(ORCHESTRATION_VARIABLES) :] == ORCHESTRATION_VARIABLES
    for var in ORCHESTRATION_VARIABLES:
        assert options[var]["default"] == defaults[var], var
        assert options[var]["description"], var
        assert f"`{var}`" in role_doc, var
        assert var in readme, var
    assert list(options) == list(defaults), "argument_specs main follows defaults/main.yml"
