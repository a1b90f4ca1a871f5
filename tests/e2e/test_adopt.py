"""Adoption: a host set up the way the how-to does it is taken over by harden.yml.

One disposable Docker-in-Docker host (tests in file order, building on each other's state), set
up with the host's own tools as the how-to does: the plugin installed under its full reference
with no alias (the test double under a reference other than the role's), hooked into
authorization-plugins by that reference, its policy at /etc/docker/policies/authz.rego, plus an
authorization plugin of another kind (a legacy plugin that allows everything) after it, which
must stay. Judged with the host's docker CLI and files.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import threading
import time

import pytest

from tests.e2e.conftest import ALIAS, DAEMON_JSON, POLICY, TIMINGS, Fleet
from tests.lib.ansible_run import PlaybookRun

pytestmark = [pytest.mark.docker, pytest.mark.slow]

OTHER = "allow-all"
# The how-to's policy (v1 syntax: the double parses Rego v1 only, as v0.10 does).
HOWTO_POLICY = """package docker.authz

default allow := false

allow if {
    not deny
}

deny if {
    input.Body.HostConfig.Privileged == true
}
"""
# A legacy (unmanaged) authorization plugin: another team's, which the adoption must keep.
LEGACY_PLUGIN = r"""
import json, os, socketserver, http.server
PATH = "/run/docker/plugins/allow-all.sock"
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = {"Implements": ["authz"]} if self.path == "/Plugin.Activate" else {"Allow": True}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.docker.plugins.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *a):
        pass
class S(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    def get_request(self):
        req, _ = super().get_request()
        return req, ("local", 0)
os.makedirs(os.path.dirname(PATH), exist_ok=True)
if os.path.exists(PATH):
    os.unlink(PATH)
S(PATH, H).serve_forever()
"""


def _ok(run: PlaybookRun) -> str:
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-6000:]
    return out


def _old_ref(fleet: Fleet) -> str:
    # the double is also pushed as :v0.10: a reference other than the role's :v0.10-linux-amd64
    return re.sub(r":[^:/]+$", ":v0.10", fleet.plugin_ref)


def _chain(fleet: Fleet) -> list[str]:
    return list(json.loads(fleet.host.read_file(DAEMON_JSON)).get("authorization-plugins", []))


@pytest.fixture(scope="module")
def howto(fleet: Fleet) -> str:
    """The how-to set-up on the module's host; returns the old plugin's name (its reference)."""
    h = fleet.host
    old = _old_ref(fleet)
    h.write_file(POLICY, HOWTO_POLICY, mode="0644")
    h.docker(
        "plugin", "install", "--grant-all-permissions", old, "opa-args=-policy-file /opa/policies/authz.rego"
    )
    h.write_file("/usr/local/sbin/allow-all-authz.py", LEGACY_PLUGIN, mode="0755")
    h.sh("setsid nohup python3 /usr/local/sbin/allow-all-authz.py >/dev/null 2>&1 &")
    h.sh(
        "for i in $(seq 50); do [ -S /run/docker/plugins/allow-all.sock ] && exit 0; sleep 0.1; done; exit 1"
    )
    doc = json.loads(h.exec("cat", DAEMON_JSON, check=False).stdout or "{}")
    doc["authorization-plugins"] = [old, OTHER]
    h.write_file(DAEMON_JSON, json.dumps(doc, indent=2) + "\n")
    h.hup_dockerd()
    # the how-to's plugin enforces its policy
    err = fleet.privileged_run()
    assert f"authorization denied by plugin {old}" in err, err
    fleet.compliant_run()
    return old


def test_check_mode_says_exactly_what_adoption_does(fleet: Fleet, howto: str) -> None:
    h = fleet.host
    before = (h.read_file(DAEMON_JSON), h.read_file(POLICY), fleet.state().plugins)
    run, _ = fleet.play("harden.yml", args=["--check", "--diff"])
    out = _ok(run)
    said = str(fleet.task(run, "Say what the adoption will do")["result"]["msg"])
    assert said.startswith(
        f"Check mode: the run would adopt {howto} (authorization plugin serving opa-docker-authz.sock"
    ), said
    assert f"hooked at position 1 of authorization-plugins {json.dumps([howto, OTHER])}" in said, said
    assert f"Other authorization plugins stay where they are: {OTHER}" in said, said
    for step in (
        f"(1) back up {POLICY}",
        f"(2) install {fleet.plugin_ref} as {ALIAS}, set its args and enable it while {howto} still enforces",
        f"(3) put {ALIAS} in place of {howto} in authorization-plugins ({json.dumps([ALIAS, OTHER])})",
        f"(4) remove the old plugin {howto}",
        f"(5) write the role's compiled policy to {POLICY}",
    ):
        assert step in said, (step, said)
    # diff mode shows daemon.json's new chain
    assert f'+    "{ALIAS}",' in out or f'+  "authorization-plugins": [\n+    "{ALIAS}"' in out, out[-4000:]
    assert (h.read_file(DAEMON_JSON), h.read_file(POLICY), fleet.state().plugins) == before, (
        "check mode changed the host"
    )


def test_harden_adopts_the_howto_plugin(fleet: Fleet, howto: str) -> None:
    h = fleet.host
    pid = h.dockerd_pid()
    run, seconds = fleet.play("harden.yml")
    TIMINGS["adopt: harden.yml adopting a how-to host"] = seconds
    _ok(run)
    res = fleet.task(
        run, "Adopt the plugin (unhook, install ours, remove the old one, hook ours at its place)"
    )["result"]
    TIMINGS["adopt: window, old plugin reads our file"] = float(res["unenforced_seconds"])
    print(
        f"\nadoption (old plugin reads the same file): unenforced {res['unenforced_seconds']} s, "
        f"swap reload until ours answered first {res['swap_seconds']} s"
    )
    assert res["enforcement_confirmed"] is True, res
    assert res["adopted"] == [howto] and res["removed"] == [howto], res
    # the how-to policy allowed the install under the old plugin: one reload swapped them, the old
    # plugin was removed under the old policy, then the role's policy was written - no window
    assert res["mode"] == "handover" and res["unenforced_seconds"] == 0.0, res
    said = str(fleet.task(run, "Report the adoption")["result"]["msg"])
    assert said.startswith(f"Adopted {howto}: {ALIAS}"), said
    assert "took its place in one reload" in said and "Without this enforcement for 0.0 s." in said, said
    # one plugin, ours, at the old one's place; the other plugin stays
    state = fleet.state()
    assert [p["name"] for p in state.plugins] == [f"{ALIAS}:latest"], state.plugins
    assert _chain(fleet) == [ALIAS, OTHER]
    fleet.assert_enforced()
    assert h.dockerd_pid() == pid, "adoption needs reloads only"
    # the old policy kept as a backup, named in the report
    backup = res["policy_backup"]
    assert backup and backup in said and h.read_file(backup) == HOWTO_POLICY
    assert h.read_file(POLICY) != HOWTO_POLICY


def test_second_run_changes_nothing(fleet: Fleet, howto: str) -> None:
    run, _ = fleet.play("harden.yml")
    _ok(run)
    changed = [r["task"] for r in run.results if r["host"] == fleet.host.name and r["result"].get("changed")]
    assert changed == [], changed
    assert fleet.ran(run, "Adopt the plugin") == []
    assert _chain(fleet) == [ALIAS, OTHER]


def test_old_plugin_under_an_alias_reading_another_file(fleet: Fleet, howto: str) -> None:
    """remove.yml, then a hand install under another alias (same reference as the role's) reading
    its own file, hooked after the other plugin. The role's policy goes in before the swap (the
    old plugin does not read it), the swap needs one reload, and the old plugin's removal, which
    the role's policy denies, happens between an unhook and a hook: a short, measured window."""
    h = fleet.host
    run, _ = fleet.play("remove.yml")
    _ok(run)
    assert fleet.state().plugins == [] and _chain(fleet) == [OTHER]
    h.write_file("/etc/docker/policies/howto.rego", HOWTO_POLICY, mode="0644")
    h.docker(
        "plugin",
        "install",
        "--grant-all-permissions",
        "--alias",
        "howto-authz",
        fleet.plugin_ref,
        "opa-args=-policy-file /opa/policies/howto.rego",
    )
    doc = json.loads(h.read_file(DAEMON_JSON))
    doc["authorization-plugins"] = [OTHER, "howto-authz"]
    h.write_file(DAEMON_JSON, json.dumps(doc, indent=2) + "\n")
    h.hup_dockerd()
    err = fleet.privileged_run()
    assert "authorization denied by plugin howto-authz" in err, err
    run, seconds = fleet.play("harden.yml")
    TIMINGS["adopt: harden.yml, old plugin reads another file"] = seconds
    _ok(run)
    res = fleet.task(
        run, "Adopt the plugin (unhook, install ours, remove the old one, hook ours at its place)"
    )["result"]
    TIMINGS["adopt: window, removal denied by our policy"] = float(res["unenforced_seconds"])
    print(f"\nadoption (old plugin reads another file): unenforced {res['unenforced_seconds']} s")
    assert res["mode"] == "handover" and res["adopted"] == ["howto-authz:latest"], res
    assert res["removal_window"] and res["unenforced_seconds"] > 0, res
    said = str(fleet.task(run, "Report the adoption")["result"]["msg"])
    assert "(the old plugin's removal, which the role's policy denies, between an unhook and a hook)" in said
    assert [p["name"] for p in fleet.state().plugins] == [f"{ALIAS}:latest"]
    assert _chain(fleet) == [OTHER, ALIAS]
    fleet.assert_enforced()


def _playbook_processes() -> list[int]:
    """This test process's ansible-playbook descendants (the controller and its workers, not the
    ssh connections they share with other runs)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = list(children.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
        except OSError:
            continue
        if not os.path.basename(argv[0]).startswith(b"ssh") and any(b"ansible-playbook" in a for a in argv):
            found.append(pid)
    return found


def test_two_runs_at_once_the_second_is_refused(fleet: Fleet, howto: str) -> None:
    """Two harden.yml runs on one host at once: the second stops at the host's lock, naming the
    run that holds it, and changes nothing; the first converges and releases the lock. Once the
    first holds the lock, its controller is paused (SIGSTOP) until the second has finished: a
    run that changes nothing holds the lock for about two seconds, less than a second
    ansible-playbook takes to start on a loaded machine."""
    h = fleet.host
    lock = "/run/hardening-docker-authz.lock"
    first: dict[str, PlaybookRun] = {}
    thread = threading.Thread(target=lambda: first.setdefault("run", fleet.play("harden.yml")[0]))
    thread.start()
    paused: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while h.exec("test", "-f", lock, check=False).returncode != 0:
            assert time.monotonic() < deadline and thread.is_alive(), "the first run never took the lock"
            time.sleep(0.2)
        paused = _playbook_processes()
        assert paused, "the first run's ansible-playbook was not found"
        for pid in paused:
            os.kill(pid, signal.SIGSTOP)
        second, _ = fleet.play("harden.yml")
    finally:
        for pid in paused:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        thread.join()
    _ok(first["run"])
    assert second.returncode != 0 and fleet.recap(second)["failed"] == 1
    msg = str(fleet.task(second, "Read the host's Docker socket, engine, plugin and files")["result"]["msg"])
    assert msg.startswith(
        f"another run of hardening.docker_authz holds the lock {lock} on this host: run "
    ), msg
    assert "Wait for it to finish and run again" in msg and msg.endswith("Nothing was changed."), msg
    changed = [r["task"] for r in second.results if r["result"].get("changed")]
    assert changed == [], changed
    assert h.exec("test", "-f", lock, check=False).returncode != 0, "the first run left its lock"
    fleet.assert_enforced()


def test_daemon_json_rewritten_by_a_role_that_owns_the_file(fleet: Fleet, howto: str) -> None:
    """Another role writes the whole daemon.json between two runs (as geerlingguy.docker does with
    docker_daemon_options) and reloads: the plugin is unhooked, enforcement silently off. The next
    run says so - the fight, and how to end it - hooks the plugin again and keeps the other
    role's settings."""
    h = fleet.host
    owned = {k: v for k, v in json.loads(h.read_file(DAEMON_JSON)).items() if k != "authorization-plugins"}
    owned["log-level"] = "warn"
    h.write_file(DAEMON_JSON, json.dumps(owned, indent=4) + "\n")
    h.hup_dockerd()
    fleet.assert_not_enforced()
    run, _ = fleet.play("harden.yml")
    _ok(run)
    said = str(
        fleet.task(run, "Warn that another tool rewrote daemon.json and unhooked the plugin")["result"]["msg"]
    )
    assert f"{DAEMON_JSON} no longer names {ALIAS} in authorization-plugins ([])" in said, said
    assert "geerlingguy.docker" in said and f'"authorization-plugins": ["{ALIAS}"]' in said, said
    assert "Sharing daemon.json with another role" in said, said
    assert _chain(fleet) == [ALIAS] and json.loads(h.read_file(DAEMON_JSON))["log-level"] == "warn"
    fleet.assert_enforced()


# The common case of the issue: the how-to's old plugin tag (0.8, OPA 0.30) with a v0 policy.
OLD_TAG_POLICY = """package docker.authz

default allow = false

allow {
    not deny
}

deny {
    input.Body.HostConfig.Privileged == true
}
"""


@pytest.fixture(scope="module")
def old_tag_ref() -> str:
    """The old-tag double (127.0.0.1:5000/opa-docker-authz-double:0.8): tag 0.8's behaviour, Rego
    v0 only (evaluated with regopy), built from the same sources as the v0.10 double."""
    from tests.lib.fixtures import _build

    return _build(["plugin-double-0.8"])["plugin-double-0.8"].ref


def test_old_tag_with_a_v0_policy_is_adopted(fleet: Fleet, howto: str, old_tag_ref: str) -> None:
    """remove.yml, then the how-to's set-up with an old tag: the 0.8 plugin under its full
    reference, hooked first and the other plugin after it, a v0 policy in the file the role
    writes. Check mode says what will happen and changes nothing; harden.yml adopts it (the role's
    v0.10 plugin cannot parse the v0 policy, so the role's policy goes in right after the swap);
    a second run changes nothing."""
    h = fleet.host
    _ok(fleet.play("remove.yml")[0])
    doc = json.loads(h.read_file(DAEMON_JSON))
    doc.pop("authorization-plugins", None)
    h.write_file(DAEMON_JSON, json.dumps(doc, indent=2) + "\n")
    h.hup_dockerd()
    for left in fleet.state().plugins:  # the how-to plugin, when this test runs alone (-k)
        h.docker("plugin", "rm", "-f", left["name"])
    old = old_tag_ref
    h.write_file(POLICY, OLD_TAG_POLICY, mode="0644")
    h.docker(
        "plugin", "install", "--grant-all-permissions", old, "opa-args=-policy-file /opa/policies/authz.rego"
    )
    doc = json.loads(h.read_file(DAEMON_JSON))
    doc["authorization-plugins"] = [old, OTHER]
    h.write_file(DAEMON_JSON, json.dumps(doc, indent=2) + "\n")
    h.hup_dockerd()
    err = fleet.privileged_run()
    assert f"authorization denied by plugin {old}" in err, err
    fleet.compliant_run()

    before = (h.read_file(DAEMON_JSON), h.read_file(POLICY), fleet.state().plugins)
    run, _ = fleet.play("harden.yml", args=["--check", "--diff"])
    _ok(run)
    said = str(fleet.task(run, "Say what the adoption will do")["result"]["msg"])
    print(f"\ncheck mode (old tag, v0 policy): {said}")
    assert said.startswith(f"Check mode: the run would adopt {old} ("), said
    assert f"hooked at position 1 of authorization-plugins {json.dumps([old, OTHER])}" in said, said
    assert f"Other authorization plugins stay where they are: {OTHER}" in said, said
    assert f"(2) install {fleet.plugin_ref} as {ALIAS}, set its args and enable it while {old} still" in said
    assert f"right after the swap, before (4), when {ALIAS} cannot parse the old policy" in said, said
    assert (h.read_file(DAEMON_JSON), h.read_file(POLICY), fleet.state().plugins) == before

    pid = h.dockerd_pid()
    run, seconds = fleet.play("harden.yml")
    TIMINGS["adopt: harden.yml, old tag 0.8 with a v0 policy"] = seconds
    _ok(run)
    res = fleet.task(
        run, "Adopt the plugin (unhook, install ours, remove the old one, hook ours at its place)"
    )["result"]
    done = str(fleet.task(run, "Report the adoption")["result"]["msg"])
    TIMINGS["adopt: window, old tag 0.8 with a v0 policy"] = float(res["unenforced_seconds"])
    print(
        f"\nadoption (old tag 0.8, v0 policy): mode {res['mode']}, unenforced {res['unenforced_seconds']} s, "
        f"swap {res.get('swap_seconds')} s, removal window {res.get('removal_window')}, "
        f"old policy unusable: {res.get('old_policy_unusable')}\n{done}"
    )
    assert res["adopted"] == [old] and res["removed"] == [old], res
    assert res["enforcement_confirmed"] is True, res
    assert done.startswith(f"Adopted {old}: {ALIAS}"), done
    # 0.8 allowed the install (handover); after the swap the role's v0.10 plugin could not parse
    # the v0 policy (requests failed closed, never open) until the role's policy was written; the
    # old plugin's removal, denied by that policy, took a short unhook-remove-hook window
    assert res["mode"] == "handover" and "rego_parse_error" in res["old_policy_unusable"], res
    assert res["removal_window"] is True and res["unenforced_seconds"] > 0, res
    assert "could not use the old policy" in done and "between an unhook and a hook" in done, done
    # one plugin, ours, at the old one's place; the other plugin stays; no dockerd restart
    assert [p["name"] for p in fleet.state().plugins] == [f"{ALIAS}:latest"]
    assert _chain(fleet) == [ALIAS, OTHER]
    assert h.dockerd_pid() == pid
    fleet.assert_enforced()
    # the v0 policy kept as a backup, named in the report
    backup = res["policy_backup"]
    assert backup and backup in done and h.read_file(backup) == OLD_TAG_POLICY
    assert h.read_file(POLICY) != OLD_TAG_POLICY

    run, _ = fleet.play("harden.yml")
    _ok(run)
    changed = [r["task"] for r in run.results if r["host"] == h.name and r["result"].get("changed")]
    assert changed == [], changed
    assert fleet.ran(run, "Adopt the plugin") == []
