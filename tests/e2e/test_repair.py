"""Repair: hosts whose Docker API the role's own plugin locks come back with the next playbook run.

One disposable Docker-in-Docker host for the module (its tests run in file order and build on
each other's state). Every fault is made behind the role's back with the host's own tools; each
test ends with the Docker API answering and the intended state (enforced, or cleanly removed),
and the run's output naming the cause. Judged with the host's docker CLI and files.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.e2e.conftest import ALIAS, DAEMON_JSON, POLICY, TIMINGS, Fleet
from tests.lib.ansible_run import PlaybookRun

pytestmark = [pytest.mark.docker, pytest.mark.slow]

UNPARSABLE = "package docker.authz\n\nallow if {\n  input.Method == \n"  # a hand edit gone wrong
DENY_ALL = "package docker.authz\n\ndefault allow := false\n"
FAILED = f"plugin {ALIAS}:latest failed with error"


def _ok(run: PlaybookRun) -> str:
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-6000:]
    return out


def _locked(fleet: Fleet, text: str) -> str:
    """The host's own CLI fails on every call, with `text` in dockerd's answer."""
    r = fleet.host.docker("ps", check=False)
    assert r.returncode != 0 and text in r.stderr, f"the API should be locked ({text!r}):\n{r.stderr}"
    assert fleet.host.dockerd_pid() is not None, "dockerd should still run"
    return r.stderr


def _said(fleet: Fleet, run: PlaybookRun, task: str) -> str:
    """The message of the role's debug task `task` (stdout wraps long lines; the results do not)."""
    return str(fleet.task(run, task)["result"].get("msg", ""))


def _no_change(fleet: Fleet, run: PlaybookRun) -> None:
    changed = [r["task"] for r in run.results if r["host"] == fleet.host.name and r["result"].get("changed")]
    assert changed == [], changed


def _enforced_by_ours(fleet: Fleet, policy_backups: int | None = None) -> None:
    fleet.assert_enforced()
    state = fleet.state()
    assert [p["name"] for p in state.plugins] == [f"{ALIAS}:latest"], state.plugins
    assert state.plugins[0]["enabled"]
    assert ALIAS in (state.daemon_json or "")


def test_converge(fleet: Fleet) -> None:
    run, seconds = fleet.play("harden.yml")
    TIMINGS["repair: first converge"] = seconds
    _ok(run)
    _enforced_by_ours(fleet)


def test_unparsable_policy_check_mode_says_what_it_would_do(fleet: Fleet) -> None:
    h = fleet.host
    h.write_file(POLICY, UNPARSABLE, mode="0640")
    _locked(fleet, FAILED)
    before_policy = h.read_file(POLICY)
    run, _ = fleet.play("harden.yml", args=["--check"])
    _ok(run)
    said = _said(fleet, run, "Say what the repair will do")
    assert "Check mode: the run would repair" in said, said
    assert "answers every request with an error" in said and "rego_parse_error" in said, said
    assert "writes the compiled policy" in said, said
    assert h.read_file(POLICY) == before_policy, "check mode wrote the policy"
    _locked(fleet, FAILED)


def test_unparsable_policy_is_repaired_by_harden(fleet: Fleet) -> None:
    h = fleet.host
    pid = h.dockerd_pid()
    run, seconds = fleet.play("harden.yml")
    TIMINGS["repair: unparsable policy (policy write)"] = seconds
    _ok(run)
    # the cause named, with the plugin's own error quoted
    said = _said(fleet, run, "Say what the repair will do")
    assert f"the authorization plugin {ALIAS}:latest answers every request with an error" in said, said
    assert "rego_parse_error" in said, said
    done = _said(fleet, run, "Report the repair")
    assert "Repaired: the Docker API answers again after the compiled policy was written" in done, done
    assert fleet.ran(run, "Remove the locked plugin from authorization-plugins") == [], "no unhook needed"
    assert h.dockerd_pid() == pid, "dockerd restarted"
    _enforced_by_ours(fleet)
    # the broken policy is kept as a backup beside it
    backups = h.sh("ls /etc/docker/policies | grep -c '^authz.rego\\..*~$'", check=False).stdout.strip()
    assert backups == "1", h.sh("ls -la /etc/docker/policies").stdout
    # and the next run has nothing to do
    run, _ = fleet.play("harden.yml")
    _ok(run)
    _no_change(fleet, run)
    h.sh("rm -f /etc/docker/policies/authz.rego.*~")


def test_policy_that_denies_everything_is_repaired(fleet: Fleet) -> None:
    h = fleet.host
    h.write_file(POLICY, DENY_ALL, mode="0640")
    _locked(fleet, f"authorization denied by plugin {ALIAS}:latest")
    run, seconds = fleet.play("harden.yml")
    TIMINGS["repair: deny-all policy"] = seconds
    _ok(run)
    said = _said(fleet, run, "Say what the repair will do")
    assert f"the authorization plugin {ALIAS}:latest denies the role's own calls" in said, said
    assert "after the compiled policy was written" in _said(fleet, run, "Report the repair")
    _enforced_by_ours(fleet)
    h.sh("rm -f /etc/docker/policies/authz.rego.*~")


def test_plugin_disabled_behind_the_roles_back_is_repaired(fleet: Fleet) -> None:
    """`docker plugin disable -f` on the hooked plugin (dockerd 20.10): the API keeps answering
    with enforcement silently off, and dockerd would not start again ("found but disabled").
    The next run enables it (unhook + reload around the change) and verifies enforcement."""
    h = fleet.host
    pid = h.dockerd_pid()
    # the role's policy denies plugin changes: an admin lets this one through for a moment
    policy = h.read_file(POLICY)
    h.write_file(POLICY, "package docker.authz\n\nallow := true\n", mode="0640")
    h.docker("plugin", "disable", "-f", ALIAS)
    h.write_file(POLICY, policy, mode="0640")
    fleet.assert_not_enforced()
    run, seconds = fleet.play("harden.yml")
    TIMINGS["repair: plugin disabled (re-enable, converge)"] = seconds
    _ok(run)
    assert fleet.task(run, "Install, configure and enable the plugin")["result"]["changed"]
    assert fleet.ran(run, "Diagnose why the Docker Engine does not answer") == [], "the API answered"
    _enforced_by_ours(fleet)
    assert h.dockerd_pid() == pid, "a reload is enough"


def test_plugin_args_with_an_empty_word_are_repaired(fleet: Fleet) -> None:
    """opa-args set by hand with a leading space (a shell variable, a folded YAML string): the
    engine splits them on single spaces (moby plugin/v2 Set), so the plugin gets an empty first
    word, its Go flag package stops there and it reads no policy file: every request allowed
    while `docker plugin inspect` shows the usual args. The next run sees the difference and sets
    the args again."""
    h = fleet.host
    pid = h.dockerd_pid()
    policy = h.read_file(POLICY)
    h.write_file(POLICY, "package docker.authz\n\nallow := true\n", mode="0640")
    h.docker("plugin", "disable", "-f", ALIAS)
    h.docker("plugin", "set", ALIAS, "opa-args= -policy-file /opa/policies/authz.rego -log-only-denied")
    h.docker("plugin", "enable", ALIAS)
    h.write_file(POLICY, policy, mode="0640")
    args = json.loads(h.docker("plugin", "inspect", "-f", "{{json .Settings.Args}}", ALIAS).stdout)
    assert args == ["", "-policy-file", "/opa/policies/authz.rego", "-log-only-denied"], args
    fleet.assert_not_enforced()
    run, seconds = fleet.play("harden.yml")
    TIMINGS["repair: opa-args with an empty word (set again)"] = seconds
    _ok(run)
    assert fleet.task(run, "Install, configure and enable the plugin")["result"]["changed"]
    _enforced_by_ours(fleet)
    args = json.loads(h.docker("plugin", "inspect", "-f", "{{json .Settings.Args}}", ALIAS).stdout)
    assert args == ["-policy-file", "/opa/policies/authz.rego", "-log-only-denied"], args
    assert h.dockerd_pid() == pid, "a reload is enough"


def test_dockerd_restarted_with_the_plugin_hooked_keeps_enforcing(fleet: Fleet) -> None:
    h = fleet.host
    h.stop_dockerd()
    h.start_dockerd()
    # enforcement is on as soon as the API answers after the restart
    _enforced_by_ours(fleet)
    run, _ = fleet.play("harden.yml")
    _ok(run)
    _no_change(fleet, run)


def test_plugin_process_killed_repeatedly(fleet: Fleet) -> None:
    """The plugin's process killed three times in a row: dockerd starts it again each time (the
    API waits for it, nothing goes through unchecked) and the next run has nothing to repair."""
    h = fleet.host
    # the double's process in the plugin's container (the brackets keep pkill off this shell)
    pattern = "'[o]pa-docker-authz-double/server.py'"
    for _ in range(3):
        before = h.sh(f"pgrep -f {pattern}", check=False).stdout.split()
        assert before, h.sh("ps -eo pid,args").stdout
        h.sh(f"pkill -KILL -f {pattern}")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = h.sh(f"pgrep -f {pattern}", check=False).stdout.split()
            if now and now != before and h.docker_up():
                break
            time.sleep(0.5)
        _enforced_by_ours(fleet)
    run, _ = fleet.play("harden.yml")
    _ok(run)
    assert fleet.ran(run, "Diagnose why the Docker Engine does not answer") == []
    _enforced_by_ours(fleet)


def test_plugin_that_hangs_is_restarted_in_place(fleet: Fleet) -> None:
    """The plugin's process stopped (SIGSTOP): every API call waits on it. harden.yml names the
    cause, kills the hung process without the API (dockerd starts it again, still hooked: no
    unhook, enforcement never off) and converges."""
    h = fleet.host
    pid = h.dockerd_pid()
    pattern = "'[o]pa-docker-authz-double/server.py'"
    h.sh(f"pkill -STOP -f {pattern}")
    try:
        hung = h.exec("timeout", "5", "docker", "version", check=False)
        assert hung.returncode == 124, f"the API should hang: {hung.returncode} {hung.stderr}"
        run, seconds = fleet.play("harden.yml")
        TIMINGS["repair: plugin hung (SIGSTOP), restarted in place"] = seconds
    finally:
        h.sh(f"pkill -CONT -f {pattern}", check=False)
    _ok(run)
    said = _said(fleet, run, "Say what the repair will do")
    assert "does not answer in time" in said and "kills the hung plugin process" in said, said
    done = _said(fleet, run, "Report the repair")
    assert "after the hung plugin process was killed and dockerd started it again" in done, done
    assert "Cause: plugin_timeout" in done, done
    assert fleet.ran(run, "Remove the locked plugin from authorization-plugins") == [], "no unhook needed"
    assert h.dockerd_pid() == pid
    _enforced_by_ours(fleet)


def _fail_msg(fleet: Fleet, run: PlaybookRun) -> str:
    return str(fleet.task(run, "Fail the host with the reason")["result"]["msg"])


def test_disk_full_while_writing_the_policy_or_daemon_json(fleet: Fleet) -> None:
    """/etc/docker on a 1 MiB tmpfs (dockerd and the plugin restarted on it), filled to the last
    byte. A run that must write the policy, then one that must write daemon.json: each fails
    naming the cause, leaves no half-written or temporary file, rolls back to the previous state
    with the API answering; with space again the next run converges."""
    h = fleet.host
    h.stop_dockerd()
    h.sh(
        "cp -a /etc/docker /tmp/etc-docker && mount -t tmpfs -o size=1m tmpfs /etc/docker "
        "&& cp -a /tmp/etc-docker/. /etc/docker/"
    )
    h.start_dockerd()
    fleet.assert_enforced()
    fill = "dd if=/dev/zero of=/etc/docker/filler bs=1k count=2048 2>/dev/null; sync; true"

    def files() -> tuple[str, str, str]:
        listing = h.sh("find /etc/docker -type f ! -name filler -printf '%p %s\\n' | sort").stdout
        return h.read_file(POLICY), h.read_file(DAEMON_JSON), listing

    # 1. the policy: a profile change rewrites it
    h.sh(fill)
    before = files()
    run, _ = fleet.play("harden.yml", extra_vars={"docker_authz_profile": "restricted"})
    assert run.returncode != 0
    msg = _fail_msg(fleet, run)
    assert "No space left on device" in msg and "Rolled back" in msg, msg
    assert files() == before, "a file was half-written or left behind"
    fleet.assert_enforced()

    # 2. daemon.json: the plugin unhooked by hand, so the run must hook it again
    h.sh("rm -f /etc/docker/filler")
    doc = json.loads(h.read_file(DAEMON_JSON))
    doc["authorization-plugins"] = []
    h.write_file(DAEMON_JSON, json.dumps(doc, indent=2) + "\n")
    h.hup_dockerd()
    h.sh(fill)
    before = files()
    run, _ = fleet.play("harden.yml")
    assert run.returncode != 0
    msg = _fail_msg(fleet, run)
    assert "No space left on device" in msg and "Rolled back" in msg, msg
    assert files() == before, "a file was half-written or left behind"
    fleet.assert_not_enforced()  # the previous state: unhooked, the API answering

    h.sh("rm -f /etc/docker/filler")
    run, _ = fleet.play("harden.yml")
    _ok(run)
    fleet.assert_enforced()


def test_dockerd_down_is_named_not_repaired(fleet: Fleet) -> None:
    h = fleet.host
    h.stop_dockerd()
    try:
        run, _ = fleet.play("harden.yml")
        assert run.returncode != 0 and fleet.recap(run)["failed"] == 1
        msg = _said(fleet, run, "Fail with the cause when the role cannot repair the host")
        assert "dockerd is not running (no dockerd process" in msg, msg
        assert msg.endswith("Nothing was changed.") and "start it" in msg, msg
    finally:
        h.start_dockerd()
    _enforced_by_ours(fleet)


def test_remove_on_a_locked_host(fleet: Fleet) -> None:
    h = fleet.host
    pid = h.dockerd_pid()
    h.write_file(POLICY, UNPARSABLE, mode="0640")
    _locked(fleet, FAILED)
    run, seconds = fleet.play("remove.yml")
    TIMINGS["repair: remove.yml on a locked host"] = seconds
    _ok(run)
    said = _said(fleet, run, "Say what the repair will do")
    assert "answers every request with an error" in said, said
    assert "the plugin is removed" in said, said
    done = _said(fleet, run, "Report the repair")
    assert "after opa-docker-authz was unhooked and dockerd reloaded" in done, done
    state = fleet.state()
    assert state.plugins == [], state.plugins
    assert ALIAS not in (state.daemon_json or "")
    fleet.assert_not_enforced()
    fleet.compliant_run()
    assert h.dockerd_pid() == pid, "a reload is enough"


def test_locked_host_in_bundle_mode_is_repaired(fleet: Fleet) -> None:
    """Bundle mode (the plugin loads its bundle once, at start): a bundle that denies everything,
    loaded by a plugin restart, locks the host. The policy file cannot fix that, so harden.yml
    names the cause, unhooks and reloads without the API, writes the right bundle, restarts the
    plugin on it, hooks it again and verifies."""
    h = fleet.host
    bundle = {"docker_authz_policy_mode": "bundle", "docker_authz_plugin_digest_check": False}
    run, _ = fleet.play("harden.yml", extra_vars=bundle)
    _ok(run)
    _enforced_by_ours(fleet)
    h.sh("find /etc/docker/policies/bundle -name '*.rego' -delete")
    h.write_file("/etc/docker/policies/bundle/docker/authz/deny.rego", DENY_ALL, mode="0640")
    h.sh("pkill -KILL -f '[o]pa-docker-authz-double/server.py'")
    deadline = time.monotonic() + 60
    while h.exec("timeout", "10", "docker", "ps", check=False).returncode == 0:
        assert time.monotonic() < deadline, "the deny-all bundle never took effect"
        time.sleep(1)
    _locked(fleet, f"authorization denied by plugin {ALIAS}:latest")
    run, seconds = fleet.play("harden.yml", extra_vars=bundle)
    TIMINGS["repair: locked host in bundle mode"] = seconds
    _ok(run)
    said = _said(fleet, run, "Say what the repair will do")
    assert f"the authorization plugin {ALIAS}:latest denies the role's own calls" in said, said
    assert "reloads dockerd without the API" in said, said
    assert "after opa-docker-authz was unhooked and dockerd reloaded" in _said(
        fleet, run, "Report the repair"
    )
    assert fleet.task(run, "Restart the plugin in place to load the new bundle")["result"]["changed"]
    _enforced_by_ours(fleet)
    assert (
        h.exec("test", "-e", "/etc/docker/policies/bundle/docker/authz/deny.rego", check=False).returncode
        != 0
    )
