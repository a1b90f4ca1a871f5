"""The role end to end on real Docker Engines (Docker-in-Docker hosts reached over SSH).

The tests of each host run in file order and build on each other's state, like an operator's
day: preview, converge, re-run, verify, change a rule, survive faults, remove. Every judgement
is made with the host's own docker CLI and files, not with the role's own reports.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import ALIAS, DENIED, HOOK, POLICY, ROOT, TIMINGS, UNHOOK, Fleet, HostState
from tests.lib import dind
from tests.lib.ansible_run import run_playbook

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _failed_with(fleet: Fleet, run, text: str) -> str:
    assert run.returncode != 0, f"the run should have failed:\n{run.stdout[-3000:]}"
    recap = fleet.recap(run)
    assert recap["failed"] == 1, recap
    out = run.stdout + run.stderr
    assert text in out, f"expected {text!r} in the output:\n{out[-4000:]}"
    return out


# ------------------------------------------------------------------ life cycle of one host


def test_check_mode_on_a_fresh_host_reports_and_changes_nothing(fleet: Fleet) -> None:
    before = fleet.state()
    run, seconds = fleet.play("harden.yml", args=["--check", "--diff"])
    TIMINGS["check mode, fresh host"] = seconds
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr
    recap = fleet.recap(run)
    assert recap["changed"] > 0 and recap["failed"] == 0, recap
    assert fleet.state() == before
    fleet.assert_not_enforced()


def test_converge_enforces_the_policy(fleet: Fleet) -> None:
    pid = fleet.host.dockerd_pid()
    run, seconds = fleet.play("harden.yml")
    TIMINGS["first converge"] = seconds
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr
    assert fleet.recap(run)["failed"] == 0
    # the first read took the host's lock (same round trip), the passing verification released it
    # (same round trip), so the release task had nothing left to do
    lock = fleet.task(run, "Read the host's Docker socket, engine, plugin and files")["result"]["lock"]
    assert lock["acquired"] and lock["changed"], lock
    released = fleet.task(run, "Verify that the plugin enforces the policy")["result"]["lock"]
    assert released["released"] and released["run_id"], released
    assert fleet.task(run, "Release the host's lock")["status"] == "skipped"
    assert fleet.host.exec("test", "-e", "/run/hardening-docker-authz.lock", check=False).returncode != 0
    # the real CLI on the host: privileged refused by the plugin, compliant run and docker ps work
    fleet.assert_enforced()
    assert fleet.host.dockerd_pid() == pid, "dockerd was restarted; a reload (SIGHUP) is enough"
    # the hook's daemon.json write also reloads and waits, in the same module call (no systemd in
    # the DinD host: SIGHUP to the pid file's dockerd)
    assert fleet.reloads(run) == [HOOK]
    reloaded = fleet.task(run, HOOK)["result"]["reloaded"]
    assert (reloaded["method"], reloaded["pid"], reloaded["restarted"]) == ("signal", pid, False), reloaded
    state = fleet.state()
    assert state.plugins == [
        {
            "name": f"{ALIAS}:latest",
            "enabled": True,
            "reference": fleet.plugin_ref,
            # pure enforce: only denials are logged (docs/policy.md "Audit mode")
            "args": ["-policy-file", "/opa/policies/authz.rego", "-log-only-denied"],
        }
    ]
    assert state.daemon_json is not None and f'"{ALIAS}"' in state.daemon_json
    assert state.policy is not None and "package docker.authz" in state.policy
    modes = fleet.host.exec("stat", "-c", "%a %U %G %n", "/etc/docker/policies", POLICY).stdout.split("\n")
    assert modes[0] == "750 root root /etc/docker/policies" and modes[1] == f"640 root root {POLICY}", modes
    verify = fleet.task(run, "Verify that the plugin enforces the policy")
    assert verify["status"] == "ok" and not verify["result"]["changed"]
    assert verify["result"]["counts"]["failed"] == 0
    # the first converge changed the host: the whole probe table ran
    assert verify["result"]["depth"] == "full"
    assert verify["result"]["counts"]["total"] == verify["result"]["table_size"] > 10
    assert any(p["name"] == "privileged" and p["outcome"] == "denied" for p in verify["result"]["probes"])


def test_second_converge_changes_nothing(fleet: Fleet) -> None:
    before = fleet.state()
    run, seconds = fleet.play("harden.yml")
    TIMINGS["second converge (no change)"] = seconds
    assert run.returncode == 0, run.stdout[-4000:]
    recap = fleet.recap(run)
    changed = [(r["task"], r["result"].get("actions")) for r in run.results if r["result"].get("changed")]
    assert recap["changed"] == 0 and recap["failed"] == 0, (recap, changed)
    assert fleet.state() == before
    fleet.assert_enforced()
    _assert_quick_proof(fleet, run)


def _assert_quick_proof(fleet: Fleet, run) -> None:
    """The run changed nothing, so it proved the state and ran two probes, not the table."""
    verify = fleet.task(run, "Verify that the plugin enforces the policy")["result"]
    assert verify["depth"] == "quick", verify.get("msg")
    assert [(p["name"], p["outcome"], p["passed"]) for p in verify["probes"]] == [
        ("compliant-create", "authorized", True),
        ("privileged", "denied", True),
    ]
    policy = fleet.host.read_file(POLICY)
    assert verify["state"] == {
        "policy_sha256": hashlib.sha256(policy.encode()).hexdigest(),
        "args": "-policy-file /opa/policies/authz.rego -log-only-denied",
        "hooked": True,
    }
    # one module run reads the host, checks daemon.json, plans the plugin and looks for plugins
    # to adopt; nothing writes daemon.json or the policy again (the host has the rendered text
    # byte for byte); the text compiled on an earlier run is not compiled again
    assert fleet.ran(run, "Read the host's") == ["Read the host's Docker socket, engine, plugin and files"]
    read = fleet.task(run, "Read the host's Docker socket, engine, plugin and files")["result"]
    assert read["plugin_plan"]["actions"] == [] and read["adopt"] == {"adopted": [], "removed": []}
    assert read["daemon_check"]["changed_keys"] == []
    for step in (
        "Check that daemon.json is readable",
        "Find opa-docker-authz plugins",
        "Plan the plugin changes",
        "Write the policy file",
        "Add the plugin to authorization-plugins",
        "Compile the policy on the controller",
    ):
        assert fleet.ran(run, step) == [], step
    assert len([r for r in run.results if r["task"].endswith("Compile the policy on the controller")]) == 1


def test_check_mode_on_the_hardened_host_reports_no_change(fleet: Fleet) -> None:
    before = fleet.state()
    run, _ = fleet.play("harden.yml", args=["--check"])
    assert run.returncode == 0, run.stdout[-4000:]
    assert fleet.recap(run)["changed"] == 0, run.stdout[-4000:]
    assert fleet.state() == before


def test_verify_playbook_changes_nothing(fleet: Fleet) -> None:
    before = fleet.state()
    run, seconds = fleet.play("verify.yml")
    TIMINGS["verify.yml"] = seconds
    assert run.returncode == 0, run.stdout[-4000:]
    assert fleet.recap(run)["changed"] == 0
    assert "privileged" in run.stdout and "denied" in run.stdout
    assert fleet.state() == before
    read = fleet.task(run, "Read the host's Docker socket, engine, plugin and files")["result"]
    assert "lock" not in read, "verify.yml changes nothing: it takes no lock"
    verify = fleet.task(run, "Verify that the plugin enforces the policy")["result"]
    assert "lock" not in verify, "nor releases one"
    assert fleet.host.exec("test", "-e", "/run/hardening-docker-authz.lock", check=False).returncode != 0


def test_without_verification_the_release_task_frees_the_lock(fleet: Fleet) -> None:
    run, _ = fleet.play("harden.yml", {"docker_authz_verify": False})
    assert run.returncode == 0 and fleet.recap(run)["changed"] == 0, run.stdout[-4000:]
    assert fleet.task(run, "Verify that the plugin enforces the policy")["status"] == "skipped"
    assert fleet.task(run, "Release the host's lock")["status"] == "ok"
    assert fleet.host.exec("test", "-e", "/run/hardening-docker-authz.lock", check=False).returncode != 0


def test_verify_depth_full_and_a_changed_input_run_the_whole_table(fleet: Fleet) -> None:
    run, _ = fleet.play("harden.yml", {"docker_authz_verify_depth": "full"})
    assert run.returncode == 0 and fleet.recap(run)["changed"] == 0, run.stdout[-4000:]
    verify = fleet.task(run, "Verify that the plugin enforces the policy")["result"]
    assert verify["depth"] == "full" and verify["counts"]["total"] == verify["table_size"] > 10
    # a changed input (a rule off): the policy is written, and the whole table proves it
    run, _ = fleet.play("harden.yml", {"docker_authz_deny_devices": False})
    assert run.returncode == 0, run.stdout[-4000:]
    assert fleet.task(run, "Write the policy file")["result"]["changed"]
    verify = fleet.task(run, "Verify that the plugin enforces the policy")["result"]
    assert verify["depth"] == "full" and verify["counts"]["failed"] == 0
    run, _ = fleet.play("harden.yml")
    assert run.returncode == 0 and fleet.task(run, "Write the policy file")["result"]["changed"]
    assert fleet.task(run, "Verify that the plugin enforces the policy")["result"]["depth"] == "full"


def test_quick_proof_detects_a_tampered_host(fleet: Fleet) -> None:
    """The quick proof compares the host with what the role writes: a policy edited on the
    host fails it (named), and the next converge writes it back and runs the whole table."""
    h = fleet.host
    good = h.read_file(POLICY)
    h.write_file(POLICY, good + "\n# edited by hand\n", mode="0640")
    play = f"""
- hosts: docker_hosts
  gather_facts: false
  tasks:
    - name: Quick proof against the policy the role writes
      hardening.docker_authz.authz_verify:
        depth: quick
        policy_path: {POLICY}
        expect_policy_sha256: {hashlib.sha256(good.encode()).hexdigest()}
        expect_args: -policy-file /opa/policies/authz.rego -log-only-denied
        expect_hooked_in: /etc/docker/daemon.json
      ignore_errors: true
"""
    run = run_playbook(play, fleet.tmp, inventory=fleet.inventory)
    proof = run.task("Quick proof against the policy the role writes")
    assert proof["status"] == "failed", proof["result"].get("msg")
    assert f"the policy {POLICY} is not the one the role writes" in proof["result"]["msg"]
    run, _ = fleet.play("harden.yml")
    assert run.returncode == 0, run.stdout[-4000:]
    assert fleet.task(run, "Write the policy file")["result"]["changed"]
    verify = fleet.task(run, "Verify that the plugin enforces the policy")["result"]
    assert verify["depth"] == "full" and verify["counts"]["failed"] == 0
    assert h.read_file(POLICY) == good

    # the hook taken out of daemon.json (and dockerd reloaded): put back, fully verified
    before = fleet.state()
    doc = json.loads(h.read_file("/etc/docker/daemon.json"))
    doc["authorization-plugins"] = [p for p in doc["authorization-plugins"] if p != ALIAS]
    h.write_file("/etc/docker/daemon.json", json.dumps(doc))
    h.hup_dockerd()
    time.sleep(1)
    fleet.assert_not_enforced()
    run, _ = fleet.play("harden.yml")
    assert run.returncode == 0, run.stdout[-4000:]
    assert fleet.task(run, HOOK)["result"]["changed"]
    assert fleet.task(run, "Verify that the plugin enforces the policy")["result"]["depth"] == "full"
    fleet.assert_enforced()
    assert fleet.state().plugins == before.plugins
    _assert_quick_proof(fleet, _no_change_run(fleet))


def _no_change_run(fleet: Fleet):
    """A re-run that must change nothing. The local registry is shared by every checkout on
    this machine: when another one pushed a new plugin double under the same tag meanwhile,
    the run upgrades the plugin (digest check), and the run after it must change nothing."""
    for _ in range(2):
        run, _ = fleet.play("harden.yml")
        assert run.returncode == 0, run.stdout[-4000:]
        if fleet.task(run, "Install, configure and enable the plugin")["status"] != "skipped":
            continue
        changed = [r["task"] for r in run.results if r["result"].get("changed")]
        assert fleet.recap(run)["changed"] == 0, changed
        return run
    raise AssertionError("the plugin changed on two runs in a row")


def test_bad_verify_depth_is_refused_before_anything(fleet: Fleet) -> None:
    before = fleet.state()
    run, _ = fleet.play("harden.yml", {"docker_authz_verify_depth": "deep"})
    out = _failed_with(fleet, run, "docker_authz_verify_depth")
    assert "auto, quick, full" in out and "deep" in out, out[-3000:]
    assert fleet.ran(run, "Read the host's") == []
    assert fleet.state() == before


def test_bad_role_variables_are_refused_together_before_anything(fleet: Fleet) -> None:
    before = fleet.state()
    bad = {
        "docker_authz_plugin_alias": "Opa Authz",
        "docker_authz_docker_socket": "docker.sock",
        "docker_authz_plugin_args": "-policy-file /opa/other.rego",
    }
    run, _ = fleet.play("harden.yml", bad)
    out = _failed_with(fleet, run, "docker_authz_plugin_alias must be a plugin name")
    # one task reports every problem, each naming its variable and the fix
    assert "docker_authz_docker_socket must be the absolute path of the Docker socket" in out, out[-3000:]
    assert "must contain '-policy-file /opa/policies/authz.rego'" in out and "Nothing was changed" in out
    failed = [r["task"] for r in run.results if r["status"] == "failed"]
    assert len(failed) == 1 and "Check the plugin, policy mode" in failed[0], failed
    assert fleet.ran(run, "Read the host's") == []
    assert fleet.state() == before


def test_toggling_a_rule_changes_enforcement_without_a_restart(fleet: Fleet) -> None:
    h = fleet.host
    keeper = h.docker("run", "-d", "--user", "1000:1000", "local/busybox", "sleep", "3600").stdout.strip()
    pid = h.dockerd_pid()
    # the root user is allowed by the baseline profile
    fleet.compliant_run()
    run, seconds = fleet.play("harden.yml", {"docker_authz_deny_root_user": True})
    TIMINGS["rule toggle (policy only)"] = seconds
    assert run.returncode == 0, run.stdout[-6000:]
    assert fleet.reloads(run) == [], "a policy-only change needs no reload"
    assert fleet.ran(run, "Verify that the plugin enforces the policy"), "it is still verified"
    denied = h.docker("run", "--rm", "local/busybox", "true", check=False)
    assert f"{DENIED} {ALIAS}" in denied.stderr, denied.stderr
    fleet.compliant_run("--user", "1000:1000")
    # back to the profile's default
    run, _ = fleet.play("harden.yml")
    assert run.returncode == 0, run.stdout[-6000:]
    fleet.compliant_run()
    assert h.dockerd_pid() == pid, "dockerd restarted"
    running = h.docker("inspect", "-f", "{{.State.Running}}", keeper).stdout.strip()
    assert running == "true", "a container started before the rule changes stopped"
    h.docker("rm", "-f", keeper, check=False)


def test_fault_verification_failure_rolls_back(fleet: Fleet) -> None:
    before = fleet.state()
    pid = fleet.host.dockerd_pid()
    # The policy stops denying privileged runs, while verification still expects the denial.
    run, seconds = fleet.play(
        "harden.yml",
        {"docker_authz_deny_privileged": False, "docker_authz_verify_rules": {"deny_privileged": True}},
    )
    TIMINGS["fault: verification failure + rollback"] = seconds
    out = _failed_with(fleet, run, "Verify that the plugin enforces the policy")
    assert "Rolled back" in out
    assert fleet.task(run, "Restore the previous policy file")["result"]["changed"]
    # the failed verification kept the lock for the rollback; the rescue released it
    assert "lock" not in fleet.task(run, "Verify that the plugin enforces the policy")["result"]
    assert fleet.task(run, "Release the host's lock after the failure")["status"] == "ok"
    assert fleet.host.exec("test", "-e", "/run/hardening-docker-authz.lock", check=False).returncode != 0
    assert fleet.state() == before
    assert fleet.host.dockerd_pid() == pid
    fleet.assert_enforced()


def test_fault_policy_in_the_wrong_dialect_rolls_back(fleet: Fleet) -> None:
    """A v0 policy under opa-docker-authz v0.10 makes every Docker API request fail: the run
    stops at the next API call and the previous policy comes back."""
    before = fleet.state()
    run, _ = fleet.play("harden.yml", {"docker_authz_rego_version": "v0"})
    out = _failed_with(fleet, run, "Rolled back")
    # the first API call after the policy write already fails: the plugin errors on every request
    assert "rego_parse_error" in out, out[-3000:]
    # The hook's reload waits for dockerd's reload event, so it meets the new chain's failing
    # plugin (before it did, Docker 20.10 sometimes answered /_ping with the old chain, the hook
    # passed and the verification failed instead), and it stops waiting at once: the policy
    # cannot compile, so waiting would only keep the API down before the rollback.
    hook = fleet.task(run, HOOK)
    assert hook["status"] == "failed", hook
    msg = hook["result"]["msg"]
    assert "but dockerd was not reloaded" in msg and "file attributes" not in msg, msg[:800]
    assert "policy does not compile (" in msg and "answers in a row over" in msg, msg[:800]
    assert fleet.state() == before
    fleet.assert_enforced()


@pytest.mark.parametrize(
    ("args", "text"),
    [
        # the plugin would exit at start (before, the run waited out the engine's socket window
        # three times, about 80 s, then rolled back)
        ("-policy-file /opa/policies/authz.rego -no-such-flag", "has no flag -no-such-flag"),
        # Go's flag package stops at 'false': no policy file, every request allowed (before, the
        # run installed it and only the verification noticed)
        ("-skip-ping false -policy-file /opa/policies/authz.rego", "write -skip-ping=false"),
    ],
)
def test_args_the_plugin_reads_otherwise_are_refused_before_anything_changes(
    fleet: Fleet, args: str, text: str
) -> None:
    before = fleet.state()
    run, seconds = fleet.play("harden.yml", {"docker_authz_plugin_args": args})
    TIMINGS[f"args refused ({args.split()[0]})"] = seconds
    out = _failed_with(fleet, run, text)
    assert "Check the plugin, policy mode, bundle, daemon and dictionary variables" in out
    assert fleet.state() == before


def test_fault_plugin_that_fails_to_start_rolls_back(fleet: Fleet) -> None:
    before = fleet.state()
    # A tag that names no release (edge): the role cannot know the image's flags and leaves an
    # unknown one to the plugin, which exits at start on it.
    edge = fleet.plugin_ref.rsplit(":", 1)[0] + ":edge"
    run, seconds = fleet.play(
        "harden.yml",
        {
            "docker_authz_plugin_image": edge,
            "docker_authz_plugin_args": "-policy-file /opa/policies/authz.rego -no-such-flag",
        },
    )
    TIMINGS["fault: plugin fails to start + rollback"] = seconds
    out = _failed_with(fleet, run, "Install, configure and enable the plugin")
    assert "Rolled back" in out
    # seen exiting at start (its processes on the host), so not enabled again and again
    assert "exited at start" in out and "attempts to enable it failed" not in out, out[-3000:]
    # args change on a hooked plugin: it was unhooked (reload) before it was touched
    unhook = fleet.task(run, UNHOOK)["result"]
    assert unhook["changed"] and unhook["reloaded"]["method"] == "signal", unhook
    assert fleet.state() == before
    fleet.assert_enforced()


def test_remove_playbook_leaves_a_daemon_without_authorization(fleet: Fleet) -> None:
    pid = fleet.host.dockerd_pid()
    run, seconds = fleet.play("remove.yml")
    TIMINGS["remove.yml"] = seconds
    assert run.returncode == 0, run.stdout[-4000:]
    state = fleet.state()
    assert state.plugins == []
    assert ALIAS not in (state.daemon_json or "")
    assert state.policy is not None, "policies are kept unless docker_authz_remove_policies is true"
    fleet.assert_not_enforced()
    fleet.compliant_run()
    assert fleet.host.dockerd_pid() == pid
    run, _ = fleet.play("remove.yml", {"docker_authz_remove_policies": True})
    assert run.returncode == 0, run.stdout[-4000:]
    assert fleet.recap(run)["changed"] == 2, "only the policy file and its folder should go"
    state = fleet.state()
    assert state.policy is None and not state.policy_dir
    fleet.api_works()


# ------------------------------------------------------------------ faults on a fresh host


def test_fault_policy_that_does_not_compile_never_reaches_the_host(
    fresh_fleet: Fleet, tmp_path: Path
) -> None:
    """A template regression (here: a copy of the collection whose template emits invalid Rego)
    is stopped by the compile check on the controller: nothing reaches the host."""
    collections = broken_template_collection(tmp_path)
    before = fresh_fleet.state()
    run, _ = fresh_fleet.play("harden.yml", env={"ANSIBLE_COLLECTIONS_PATH": str(collections)})
    _failed_with(fresh_fleet, run, "Compile the policy on the controller")
    assert fresh_fleet.task(run, "Compile the policy on the controller")["status"] == "failed"
    assert fresh_fleet.ran(run, "Write the policy file") == []
    assert fresh_fleet.ran(run, "Record why the run failed") == [], (
        "nothing was changed, so nothing to roll back"
    )
    assert fresh_fleet.state() == before
    fresh_fleet.assert_not_enforced()


def broken_template_collection(tmp: Path) -> Path:
    """ansible_collections/hardening/docker_authz linking to the checkout, except the template."""
    src = ROOT / "collection"
    dest = tmp / "collections" / "ansible_collections" / "hardening" / "docker_authz"
    role = dest / "roles" / "opa_authz"
    (role / "templates").mkdir(parents=True)
    for name in ("galaxy.yml", "meta", "plugins", "playbooks"):
        (dest / name).symlink_to((src / name).resolve())
    real_role = (src / "roles" / "opa_authz").resolve()
    for child in real_role.iterdir():
        if child.name != "templates":
            (role / child.name).symlink_to(child)
    template = (real_role / "templates" / "authz.rego.j2").read_text()
    (role / "templates" / "authz.rego.j2").write_text(template + "\nallow if { input.Method == }\n")
    return tmp / "collections"


@contextlib.contextmanager
def _daemon_json_before_the_run(fleet: Fleet, text: str) -> Iterator[tuple[HostState, int]]:
    """daemon.json as a host set up by hand has it (removed again afterwards): yields the host's
    state and dockerd's pid before the run."""
    h = fleet.host
    h.write_file("/etc/docker/daemon.json", text)
    try:
        yield fleet.state(), h.dockerd_pid()
    finally:
        h.exec("rm", "-f", "/etc/docker/daemon.json")


def test_fault_daemon_json_invalid_before_the_run(fresh_fleet: Fleet) -> None:
    h = fresh_fleet.host
    broken = '{"log-level": "info",,}\n'
    with _daemon_json_before_the_run(fresh_fleet, broken) as (before, _pid):
        run, _ = fresh_fleet.play("harden.yml")
        out = _failed_with(fresh_fleet, run, "daemon.json")
        assert "line 1" in out or "column" in out, out[-3000:]
        assert fresh_fleet.state() == before
        assert h.read_file("/etc/docker/daemon.json") == broken
        fresh_fleet.assert_not_enforced()


def test_fault_daemon_json_names_a_missing_plugin(fresh_fleet: Fleet) -> None:
    """A stale authorization-plugins entry (dockerd started before it was written): reloading
    would make dockerd exit, so the hook is refused and everything installed is rolled back."""
    h = fresh_fleet.host
    stale = '{\n  "authorization-plugins": ["ghost-authz"]\n}\n'
    with _daemon_json_before_the_run(fresh_fleet, stale) as (before, pid):
        run, _ = fresh_fleet.play("harden.yml")
        out = _failed_with(fresh_fleet, run, "Rolled back")
        assert "ghost-authz" in out
        assert fresh_fleet.task(run, HOOK)["status"] == "failed"
        assert fresh_fleet.reloads(run) == [], "dockerd must not be reloaded with a missing plugin"
        assert fresh_fleet.state() == before
        assert h.dockerd_pid() == pid
        fresh_fleet.assert_not_enforced()


def test_fault_daemon_json_with_a_value_dockerd_refuses_rolls_back(fresh_fleet: Fleet) -> None:
    """A value written by hand and never applied (dockerd keeps the configuration it started with,
    and refuses the file on every reload): Docker 20.10 cannot check a file beforehand, so the
    hook's reload is refused, and says so after 10 s; the rollback's reloads are refused for the
    same reason, and it restores everything else all the same."""
    h = fresh_fleet.host
    refused = '{"max-concurrent-downloads": -1}\n'
    with _daemon_json_before_the_run(fresh_fleet, refused) as (before, pid):
        run, seconds = fresh_fleet.play("harden.yml")
        TIMINGS["fault: daemon.json value dockerd refuses + rollback"] = seconds
        out = _failed_with(fresh_fleet, run, "Rolled back")
        hook = fresh_fleet.task(run, HOOK)
        assert hook["status"] == "failed", hook
        msg = hook["result"]["msg"]
        assert "dockerd did not reload its configuration: its API answered for 1" in msg, msg[:800]
        assert "dockerd did not reload its configuration" in out, out[-3000:]
        assert "the rollback then failed" not in out, out[-3000:]
        assert fresh_fleet.state() == before
        assert h.read_file("/etc/docker/daemon.json") == refused
        assert h.dockerd_pid() == pid
        fresh_fleet.assert_not_enforced()


def test_fault_dockerd_not_running(fresh_fleet: Fleet) -> None:
    h = fresh_fleet.host
    h.stop_dockerd()
    try:
        run, _ = fresh_fleet.play("harden.yml")
        _failed_with(fresh_fleet, run, "dockerd is not running")
    finally:
        h.start_dockerd()
    fresh_fleet.assert_not_enforced()
    state = fresh_fleet.state()
    assert state.plugins == [] and state.daemon_json is None and state.policy is None


def test_fault_plugin_image_that_does_not_exist_rolls_back(fresh_fleet: Fleet) -> None:
    before = fresh_fleet.state()
    missing = "127.0.0.1:5000/opa-docker-authz-double:v0.0-does-not-exist-linux-amd64"
    run, seconds = fresh_fleet.play("harden.yml", {"docker_authz_plugin_image": missing})
    TIMINGS["fault: missing plugin image + rollback"] = seconds
    out = _failed_with(fresh_fleet, run, "Rolled back")
    assert "not found" in out or "unknown" in out.lower(), out[-3000:]
    assert fresh_fleet.state() == before, "the policy written before the plugin step must be gone"
    fresh_fleet.assert_not_enforced()


# ------------------------------------------------------------------ rollout across hosts


def test_canary_rollout_stops_at_the_first_failed_host(
    tmp_path: Path, dind_image: str, dind_ssh_key: Path, plugin_double: str
) -> None:
    """serial=1 and max_fail_percentage=0: a failed first host keeps the rest untouched."""
    hosts = dind.start_hosts(2, dind_ssh_key)
    try:
        first, second = hosts
        first.write_file("/etc/docker/daemon.json", "{not json\n")
        inventory = dind.write_inventory(
            tmp_path / "inventory.yml", hosts, docker_authz_plugin_image=plugin_double
        )
        run = run_playbook(
            ROOT / "playbooks" / "harden.yml",
            tmp_path,
            inventory=inventory,
            extra_vars={"docker_authz_serial": 1, "docker_authz_max_fail_percentage": 0},
        )
        assert run.returncode != 0
        assert run.recap(first.name)["failed"] == 1
        assert second.name not in {r["host"] for r in run.results}, "the second batch must not start"
        assert second.exec("test", "-e", "/etc/docker/daemon.json", check=False).returncode != 0
        assert second.docker("plugin", "ls", "-q").stdout.strip() == ""
    finally:
        for h in hosts:
            h.remove()
