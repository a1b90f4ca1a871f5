"""playbooks/render_policy.yml renders exactly what the harness renders (byte for byte), bad
variables and non-compiling policies stop before anything is written, and the role compiles
before it deploys."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.lib.ansible_run import run_playbook
from tests.policy.harness import render

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "playbooks" / "render_policy.yml"
ROLE = "hardening.docker_authz.opa_authz : "

VARIABLE_SETS = {
    "defaults": {},
    "restricted-v0": {
        "docker_authz_profile": "restricted",
        "docker_authz_plugin_image": "openpolicyagent/opa-docker-authz-v2:0.4",
    },
    "custom": {
        "docker_authz_profile": "restricted",
        "docker_authz_deny_root_user": False,
        "docker_authz_require_readonly_rootfs": "yes",
        "docker_authz_trusted_registries": ["127.0.0.1:5000", "ghcr.io/my-org"],
        "docker_authz_allowed_capabilities": ["cap_net_admin"],
        "docker_authz_allowed_host_ports": ["8000-8100"],
        "docker_authz_exempt_users": ["ops-admin"],
        "docker_authz_rego_version": "v0",
    },
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(VARIABLE_SETS))
def test_playbook_output_is_byte_identical_to_the_harness(name, tmp_path):
    dest = tmp_path / "out" / "authz.rego"
    dest.parent.mkdir()
    variables = VARIABLE_SETS[name]
    # an empty compile cache (docker_authz_compile_cache): the compile runs, and remembers the text
    cache = tmp_path / "xdg-cache"
    run = run_playbook(
        PLAYBOOK,
        tmp_path,
        extra_vars={**variables, "docker_authz_render_dest": str(dest)},
        env={"XDG_CACHE_HOME": str(cache)},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    expected = render(
        **(
            {
                "plugin_image": variables.get(
                    "docker_authz_plugin_image",
                    "ghcr.io/open-policy-agent/opa-docker-authz:v0.10-linux-{arch}",
                )
            }
        ),
        **{k: v for k, v in variables.items() if k != "docker_authz_plugin_image"},
    )
    assert dest.read_bytes() == expected.encode()
    check = run.task(ROLE + "Compile the policy on the controller")
    # one compile per distinct policy of the play (a loop run once)
    (compiled,) = check["result"]["results"]
    assert compiled["samples"][0]["allow"] is True
    assert Path(compiled["cached_as"]).parent == cache / "hardening.docker_authz" / "rego_check"
    facts = run.task(ROLE + "Choose the Rego dialect and render the policy from the rule variables")["result"]
    assert facts["ansible_facts"]["docker_authz_policy_text"] == expected
    where = run.task(ROLE + "Say where the policy was written")["result"]["ansible_facts"]
    assert where["docker_authz_policy_path"] == str(dest)
    # file mode renders in the controller's process: no scratch folder, no module but the compile
    assert not [r for r in run.results if "scratch folder" in r["task"]]


@pytest.mark.slow
def test_invalid_variables_stop_before_anything_is_written(tmp_path):
    dest = tmp_path / "authz.rego"
    run = run_playbook(
        PLAYBOOK,
        tmp_path,
        extra_vars={"docker_authz_render_dest": str(dest), "docker_authz_allowed_host_ports": ["80-70000"]},
    )
    assert run.returncode != 0
    assert "docker_authz_allowed_host_ports" in run.stdout and "between 1 and 65535" in run.stdout
    assert not dest.exists()
    run = run_playbook(
        PLAYBOOK,
        tmp_path,
        extra_vars={"docker_authz_render_dest": str(dest), "docker_authz_profile": "paranoid"},
    )
    assert run.returncode != 0 and "docker_authz_profile must be one of" in run.stdout
    assert not dest.exists()


@pytest.mark.slow
def test_rego_check_refuses_a_policy_that_does_not_compile(tmp_path):
    broken = tmp_path / "authz.rego"
    broken.write_text("package docker.authz\nimport rego.v1\ndefault allow := false\nallow if {\n")
    wrong_dialect = tmp_path / "v1.rego"
    wrong_dialect.write_text(render("v1"))
    play = f"""
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Check the broken policy
      hardening.docker_authz.rego_check:
        path: {broken}
        dialect: v1
      ignore_errors: true
    - name: Check a v1 policy as v0
      hardening.docker_authz.rego_check:
        path: {wrong_dialect}
        dialect: v0
      ignore_errors: true
    - name: Check the v1 policy
      hardening.docker_authz.rego_check:
        path: {wrong_dialect}
        dialect: v1
"""
    run = run_playbook(play, tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    failed = run.task("Check the broken policy")
    assert failed["status"] == "failed"
    msg = failed["result"]["msg"]
    # OPA's own engine (opa_bindings) says "unexpected eof token", regopy (without it) "unclosed"
    assert "must not be deployed" in msg and ("unexpected eof token" in msg or "unclosed" in msg), msg
    wrong = run.task("Check a v1 policy as v0")
    assert (
        wrong["status"] == "failed" and "keyword 'if' does not exist in OPA 0.9.1" in wrong["result"]["msg"]
    )
    ok = run.task("Check the v1 policy")
    assert ok["status"] == "ok" and ok["result"]["dialect"] == "v1" and "walk" in ok["result"]["builtins"]


def test_the_role_compiles_before_it_deploys():
    tasks = yaml.safe_load((ROOT / "roles/opa_authz/tasks/render.yml").read_text())
    names = [t["name"] for t in tasks]
    # nothing is written (render_dest.yml) and no bundle is built before the compile check
    assert names.index("Compile the policy on the controller") < names.index(
        "Write the checked policy or bundle where it was asked for"
    )
    assert names.index("Compile the policy on the controller") < names.index("Render and check the bundle")
    dest_tasks = yaml.safe_load((ROOT / "roles/opa_authz/tasks/render_dest.yml").read_text())
    assert "Write the checked policy where it was asked for" in [t["name"] for t in dest_tasks]
    main = yaml.safe_load((ROOT / "roles/opa_authz/tasks/main.yml").read_text())
    # the phases run inside the block that holds the host's lock
    locked = next(t for t in main if "block" in t)["block"]
    order = [t.get("ansible.builtin.import_tasks") or t["name"] for t in locked]
    assert order.index("render.yml") < order.index(
        "Apply the policy, the plugin and the daemon configuration"
    )
