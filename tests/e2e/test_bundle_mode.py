"""Bundle mode end to end (docker_authz_policy_mode: bundle) on a real Docker Engine.

One Docker-in-Docker host, hardened over SSH by the real playbooks with the opa-docker-authz
test double in config-file mode. The tests run in file order and build on each other: refused
inputs first (nothing may change), then check mode, converge, idempotence, a policy change
(restart in place, measured while requests keep coming), a bundle that does not activate
(rolled back), and a switch to file mode and back. Judged with the host's own CLI and files.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ALIAS, DENIED, PLAYBOOKS, TIMINGS, Fleet, HostState
from tests.lib.ansible_run import run_playbook

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# digest_check off: the double may be rebuilt (new digest, same tag) while this file runs
BUNDLE = {"docker_authz_policy_mode": "bundle", "docker_authz_plugin_digest_check": False}
BUNDLE_DIR = "/etc/docker/policies/bundle"
OPA_CONFIG = "/etc/docker/policies/opa-config.yaml"
WRITE = "Write the OPA config and the bundle (files of rules now off are removed)"
BUNDLE_ARGS = ["-config-file", "/opa/policies/opa-config.yaml"]
FILE_ARGS = ["-policy-file", "/opa/policies/authz.rego", "-log-only-denied"]

# Runs inside the host while a playbook runs: a privileged create and a `docker ps` (as API
# calls) in a loop until /tmp/stop-load exists; prints what was authorized and the slowest call.
LOAD = r"""
import http.client, json, os, socket, threading, time
class C(http.client.HTTPConnection):
    def __init__(s): super().__init__("localhost", timeout=90)
    def connect(s):
        s.sock = socket.socket(socket.AF_UNIX); s.sock.settimeout(90); s.sock.connect("/var/run/docker.sock")
def req(m, p, body=None):
    c = C(); c.request(m, p, body=None if body is None else json.dumps(body),
                       headers={"Content-Type": "application/json"} if body is not None else {})
    r = c.getresponse(); d = r.read(); c.close(); return r.status, d
log = []
def loop(kind):
    while not os.path.exists("/tmp/stop-load"):
        t = time.monotonic()
        try:
            if kind == "privileged":
                body = {"Image": "local/busybox:latest", "Cmd": ["true"], "HostConfig": {"Privileged": True}}
                s, d = req("POST", "/containers/create", body)
                if s == 201:
                    req("DELETE", "/containers/" + json.loads(d)["Id"] + "?force=1")
            else:
                s, d = req("GET", "/containers/json")
        except Exception as e:
            s, d = -1, str(e).encode()
        took = time.monotonic() - t
        log.append({"kind": kind, "status": s, "seconds": took, "body": d[:200].decode("utf-8", "replace")})
        time.sleep(0.05)
threads = [threading.Thread(target=loop, args=(k,)) for k in ("privileged", "ps")]
[t.start() for t in threads]; [t.join() for t in threads]
print(json.dumps(log))
"""


@dataclass
class Load:
    """What the API answered while a playbook ran (see LOAD)."""

    calls: list[dict[str, Any]]

    def authorized_privileged(self) -> int:
        return sum(1 for c in self.calls if c["kind"] == "privileged" and c["status"] == 201)

    def failed(self) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["status"] not in (200, 403) and c["kind"] == "ps"]

    def slowest(self) -> float:
        return max(c["seconds"] for c in self.calls)


class LoadRunner:
    def __init__(self, fleet: Fleet) -> None:
        self.host = fleet.host
        self.host.write_file("/tmp/load.py", LOAD)
        self.host.exec("rm", "-f", "/tmp/stop-load")
        self.proc = subprocess.Popen(
            ["docker", "exec", self.host.name, "python3", "/tmp/load.py"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        time.sleep(1)

    def stop(self) -> Load:
        self.host.exec("touch", "/tmp/stop-load")
        out, err = self.proc.communicate(timeout=120)
        assert self.proc.returncode == 0, err.decode()
        return Load(json.loads(out))


def bundle_state(fleet: Fleet) -> dict[str, Any]:
    """The role's bundle-mode files on the host, with the rest of the host state."""
    h = fleet.host
    files = h.sh(f"cd {BUNDLE_DIR} 2>/dev/null && find . -type f | sort", check=False).stdout.split()
    config = h.exec("cat", OPA_CONFIG, check=False)
    return {
        "host": fleet.state(),
        "bundle": {f: h.read_file(f"{BUNDLE_DIR}/{f[2:]}") for f in files},
        "config": config.stdout if config.returncode == 0 else None,
    }


def plugin_args(state: HostState) -> list[str]:
    assert len(state.plugins) == 1, state.plugins
    return state.plugins[0]["args"]


def failed_with(fleet: Fleet, run: Any, text: str) -> str:
    assert run.returncode != 0, f"the run should have failed:\n{run.stdout[-3000:]}"
    assert fleet.recap(run)["failed"] == 1, fleet.recap(run)
    out = run.stdout + run.stderr
    assert text in out, f"expected {text!r} in the output:\n{out[-4000:]}"
    return out


def changed_tasks(fleet: Fleet, run: Any) -> list[str]:
    return [r["task"] for r in run.results if r["host"] == fleet.host.name and r["result"].get("changed")]


# ------------------------------------------------------------------ refused before any change


@pytest.mark.parametrize(
    ("extra", "text"),
    [
        (
            {"docker_authz_plugin_image": "127.0.0.1:5000/opa-docker-authz-double:0.4"},
            "opa-docker-authz 0.4 has no -config-file",
        ),
        (
            {"docker_authz_plugin_image": "127.0.0.1:5000/opa-docker-authz-double:0.8"},
            "cannot load a bundle directory",
        ),
        ({"docker_authz_rego_version": "v0"}, "a bundle is Rego v1 only"),
        (
            {"docker_authz_plugin_bundle_args": "-config-file /opa/other.yaml"},
            "must contain '-config-file /opa/policies/opa-config.yaml'",
        ),
    ],
    ids=["tag-0.4", "tag-0.8", "dialect-v0", "args"],
)
def test_bad_bundle_input_is_refused_before_any_change(
    fleet: Fleet, extra: dict[str, Any], text: str
) -> None:
    before = bundle_state(fleet)
    run, _ = fleet.play("harden.yml", {**BUNDLE, **extra})
    failed_with(fleet, run, text)
    assert fleet.ran(run, "Record why the run failed") == [], "nothing was changed, nothing to roll back"
    assert bundle_state(fleet) == before
    fleet.assert_not_enforced()


# ------------------------------------------------------------------ life cycle


def test_check_mode_predicts_the_bundle_converge_and_changes_nothing(fleet: Fleet) -> None:
    before = bundle_state(fleet)
    run, _ = fleet.play("harden.yml", BUNDLE, args=["--check", "--diff"])
    assert run.returncode == 0, run.stdout[-4000:]
    assert fleet.recap(run)["changed"] > 0
    predicted = fleet.task(run, WRITE)["result"]
    assert predicted["changed"] and predicted["written"] == [OPA_CONFIG], predicted
    assert predicted["bundle"]["changed"] and ".manifest" in predicted["bundle"]["written"], predicted
    assert "file:///opa/policies/bundle" in run.stdout, "diff mode shows the OPA config"
    assert bundle_state(fleet) == before
    fleet.assert_not_enforced()


def test_converge_in_bundle_mode_enforces_through_the_bundle(fleet: Fleet) -> None:
    pid = fleet.host.dockerd_pid()
    run, seconds = fleet.play("harden.yml", BUNDLE)
    TIMINGS["bundle: first converge"] = seconds
    assert run.returncode == 0, run.stdout[-6000:]
    fleet.assert_enforced()
    assert fleet.host.dockerd_pid() == pid
    state = bundle_state(fleet)
    assert plugin_args(state["host"]) == BUNDLE_ARGS
    assert "./.manifest" in state["bundle"] and "./docker/authz/lib.rego" in state["bundle"]
    assert json.loads(state["bundle"]["./.manifest"])["roots"] == ["docker/authz", "system/log"]
    assert "file:///opa/policies/bundle" in state["config"] and "console: true" in state["config"]
    assert state["host"].policy is None, "bundle mode does not write authz.rego"
    modes = fleet.host.exec("stat", "-c", "%a", BUNDLE_DIR, OPA_CONFIG, f"{BUNDLE_DIR}/.manifest")
    assert modes.stdout.split() == ["750", "640", "640"], modes.stdout
    verify = fleet.task(run, "Verify that the plugin enforces the policy")
    assert verify["status"] == "ok" and verify["result"]["counts"]["failed"] == 0
    # the OPA config and the bundle were one module call
    assert fleet.ran(run, "Write the") == [WRITE]
    # console decision logs land in dockerd's log
    assert "Decision Log" in fleet.host.dockerd_log()


def test_second_bundle_converge_changes_nothing(fleet: Fleet) -> None:
    before = bundle_state(fleet)
    run, seconds = fleet.play("harden.yml", BUNDLE)
    TIMINGS["bundle: second converge (no change)"] = seconds
    assert run.returncode == 0, run.stdout[-4000:]
    assert fleet.recap(run)["changed"] == 0, changed_tasks(fleet, run)
    assert fleet.ran(run, "Restart the plugin in place") == []
    # the host read showed the same bundle and OPA config (content and modes): no write runs, and
    # the bundle that passed the first converge's compile is not compiled again (compile cache);
    # nothing is written on the controller without a signing key
    assert fleet.ran(run, "Write the") == [], fleet.ran(run, "Write the")
    assert fleet.ran(run, "Compile the bundle on the controller") == []
    assert fleet.ran(run, "Create a scratch folder") == []
    assert bundle_state(fleet) == before
    run, _ = fleet.play("harden.yml", BUNDLE, args=["--check"])
    assert run.returncode == 0 and fleet.recap(run)["changed"] == 0, changed_tasks(fleet, run)
    # drift in a mode alone is still seen and repaired: the skip needs content AND mode to match
    fleet.host.exec("chmod", "0644", f"{BUNDLE_DIR}/.manifest", OPA_CONFIG)
    run, _ = fleet.play("harden.yml", BUNDLE)
    assert run.returncode == 0, run.stdout[-4000:]
    repaired = fleet.task(run, WRITE)["result"]
    assert repaired["changed"] and repaired["written"] == [OPA_CONFIG], repaired
    assert repaired["bundle"]["changed"] and repaired["bundle"]["written"] == [], "content alone unchanged"
    modes = fleet.host.exec("stat", "-c", "%a", OPA_CONFIG, f"{BUNDLE_DIR}/.manifest")
    assert modes.stdout.split() == ["640", "640"], modes.stdout
    fleet.assert_enforced()


def test_policy_change_restarts_the_plugin_in_place_without_a_window(fleet: Fleet) -> None:
    h = fleet.host
    pid = h.dockerd_pid()
    fleet.compliant_run()  # root is allowed by the baseline profile
    before = bundle_state(fleet)
    # check mode predicts the restart and changes nothing
    change = {**BUNDLE, "docker_authz_deny_root_user": True}
    run, _ = fleet.play("harden.yml", change, args=["--check", "--diff"])
    assert run.returncode == 0, run.stdout[-4000:]
    assert fleet.task(run, "Restart the plugin in place to load the new bundle")["result"]["changed"]
    assert "root_user" in run.stdout, "diff mode shows the new rule file"
    assert bundle_state(fleet) == before

    load = LoadRunner(fleet)
    try:
        run, seconds = fleet.play("harden.yml", change)
    finally:
        result = load.stop()
    TIMINGS["bundle: policy change (restart in place)"] = seconds
    assert run.returncode == 0, run.stdout[-6000:]
    restart = fleet.task(run, "Restart the plugin in place to load the new bundle")
    assert restart["result"]["changed"] and restart["result"]["new_pids"], restart
    TIMINGS["bundle: restart in place, kill -> API answers"] = restart["result"]["seconds"]
    TIMINGS["bundle: slowest API call during the converge"] = result.slowest()
    assert fleet.reloads(run) == [], "no reload, the plugin never left the chain"
    assert h.dockerd_pid() == pid
    privileged = [c for c in result.calls if c["kind"] == "privileged"]
    assert len(privileged) > 10, "the load ran during the converge"
    assert result.authorized_privileged() == 0, "a privileged create went through during the change"
    assert result.failed() == [], result.failed()[:3]
    denied = h.docker("run", "--rm", "local/busybox", "true", check=False)
    assert f"{DENIED} {ALIAS}" in denied.stderr, denied.stderr
    fleet.compliant_run("--user", "1000:1000")
    assert "./docker/authz/rules/root_user.rego" in bundle_state(fleet)["bundle"]
    # and back: the rule's file leaves the bundle
    run, _ = fleet.play("harden.yml", BUNDLE)
    assert run.returncode == 0, run.stdout[-6000:]
    fleet.compliant_run()
    assert bundle_state(fleet) == before


def test_bundle_that_does_not_activate_is_rolled_back(fleet: Fleet) -> None:
    """The OPA config points at a bundle that is not there: the plugin never serves after its
    restart, every API call fails; the run restores the previous bundle and config and the API."""
    h = fleet.host
    before = bundle_state(fleet)
    broken = {"bundles": {"authz": {"resource": "file:///opa/policies/no-such-bundle"}}}
    run, seconds = fleet.play(
        "harden.yml",
        {**BUNDLE, "docker_authz_opa_config_extra": broken, "docker_authz_bundle_activation_timeout": 15},
    )
    TIMINGS["bundle: fault, bundle does not activate + rollback"] = seconds
    out = failed_with(fleet, run, "Rolled back")
    assert "did not serve again within 15s" in out, out[-3000:]
    assert bundle_state(fleet) == before
    fleet.assert_enforced()
    assert h.docker("plugin", "inspect", "-f", "{{.Enabled}}", ALIAS).stdout.strip() == "true"


def test_switch_to_file_mode_and_back(fleet: Fleet) -> None:
    file_mode = {"docker_authz_plugin_digest_check": False}
    run, seconds = fleet.play("harden.yml", file_mode)
    TIMINGS["bundle -> file"] = seconds
    assert run.returncode == 0, run.stdout[-6000:]
    state = fleet.state()
    assert plugin_args(state) == FILE_ARGS
    assert state.policy is not None and "package docker.authz" in state.policy
    fleet.assert_enforced()
    run, _ = fleet.play("harden.yml", file_mode)
    assert run.returncode == 0 and fleet.recap(run)["changed"] == 0, changed_tasks(fleet, run)

    run, seconds = fleet.play("harden.yml", BUNDLE)
    TIMINGS["file -> bundle"] = seconds
    assert run.returncode == 0, run.stdout[-6000:]
    assert plugin_args(fleet.state()) == BUNDLE_ARGS
    fleet.assert_enforced()
    run, _ = fleet.play("harden.yml", BUNDLE)
    assert run.returncode == 0 and fleet.recap(run)["changed"] == 0, changed_tasks(fleet, run)


def test_render_policy_writes_the_bundle_directory(tmp_path: Path) -> None:
    dest = tmp_path / "bundle"
    run = run_playbook(
        PLAYBOOKS / "render_policy.yml",
        tmp_path,
        extra_vars={**BUNDLE, "docker_authz_render_dest": str(dest), "docker_authz_profile": "restricted"},
    )
    assert run.returncode == 0, run.stdout[-4000:]
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert ".manifest" in files and "docker/authz/data.json" in files and "docker/authz/lib.rego" in files
    assert "docker/authz/rules/root_user.rego" in files, "restricted turns deny_root_user on"
    config = json.loads((dest / "docker/authz/data.json").read_text())["config"]
    assert config


# ------------------------------------------------------------------ remote bundle service


@dataclass
class BundleServer:
    url: str
    root: Path
    key: Path

    def publish(self, tmp: Path, **policy: Any) -> None:
        """Build and sign the bundle with render_policy.yml, as an operator would, into the server."""
        dest = self.root / "bundles" / "authz"
        run = run_playbook(
            PLAYBOOKS / "render_policy.yml",
            tmp,
            extra_vars={
                **BUNDLE,
                "docker_authz_render_dest": str(dest),
                "docker_authz_bundle_signing_key": str(self.key),
                "docker_authz_bundle_signing_key_create": True,
                **policy,
            },
        )
        assert run.returncode == 0, run.stdout[-4000:]
        assert (self.root / "bundles" / "authz.tar.gz").is_file()


@pytest.fixture(scope="module")
def bundle_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A bundle server on loopback (the DinD hosts share the machine's loopback)."""
    import functools
    import http.server
    import threading

    root = tmp_path_factory.mktemp("bundle-server")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield BundleServer(f"http://127.0.0.1:{server.server_address[1]}", root, root.parent / "signing.pem")
    finally:
        server.shutdown()
        server.server_close()


def remote(server: BundleServer, **extra: Any) -> dict[str, Any]:
    return {
        **BUNDLE,
        "docker_authz_bundle_service_url": server.url,
        "docker_authz_bundle_signing_key": str(server.key),
        "docker_authz_bundle_polling_min_seconds": 1,
        "docker_authz_bundle_polling_max_seconds": 2,
        **extra,
    }


def plugin_pid(fleet: Fleet) -> str:
    """The pid of the plugin's process: the child of the containerd shim of namespace plugins.moby."""
    out = fleet.host.exec("ps", "-eo", "pid=,ppid=,args=").stdout
    rows = [line.split(None, 2) for line in out.splitlines()]
    shims = {r[0] for r in rows if len(r) == 3 and "containerd-shim" in r[2] and "plugins.moby" in r[2]}
    pids = [r[0] for r in rows if len(r) >= 2 and r[1] in shims]
    assert len(pids) == 1, rows
    return pids[0]


def wait_for(what: str, probe: Any, timeout: float = 30) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if probe():
            return time.monotonic() - start
        time.sleep(0.5)
    raise AssertionError(f"{what} not seen within {timeout}s")


def test_unreachable_bundle_service_is_refused(fleet: Fleet, bundle_server: BundleServer) -> None:
    before = bundle_state(fleet)
    dead = {"docker_authz_bundle_service_url": "http://127.0.0.1:9"}
    run, _ = fleet.play("harden.yml", {**remote(bundle_server), **dead})
    out = failed_with(fleet, run, "The bundle service does not serve http://127.0.0.1:9/bundles/authz.tar.gz")
    assert "Nothing was changed" in out
    assert fleet.ran(run, "Record why the run failed") == [], "stopped before any change"
    assert bundle_state(fleet) == before
    fleet.api_works()


def test_missing_signing_key_is_refused(fleet: Fleet, bundle_server: BundleServer, tmp_path: Path) -> None:
    bundle_server.publish(tmp_path)
    before = bundle_state(fleet)
    missing = tmp_path / "no-such-key.pem"
    run, _ = fleet.play("harden.yml", remote(bundle_server, docker_authz_bundle_signing_key=str(missing)))
    failed_with(fleet, run, f"the bundle signing key {missing} does not exist on the controller")
    assert fleet.ran(run, "Record why the run failed") == [], "stopped before any change"
    assert bundle_state(fleet) == before
    assert not missing.exists()


def test_remote_bundle_service_with_signing(
    fleet: Fleet, bundle_server: BundleServer, tmp_path: Path
) -> None:
    h = fleet.host
    bundle_server.publish(tmp_path / "a")
    run, seconds = fleet.play("harden.yml", remote(bundle_server))
    TIMINGS["bundle service: converge"] = seconds
    assert run.returncode == 0, run.stdout[-6000:]
    fleet.assert_enforced()
    config = h.read_file(OPA_CONFIG)
    assert bundle_server.url in config and "keyid: authz" in config and "BEGIN PUBLIC KEY" in config
    assert "BEGIN PRIVATE KEY" not in config
    assert plugin_args(fleet.state()) == BUNDLE_ARGS
    run, _ = fleet.play("harden.yml", remote(bundle_server))
    assert run.returncode == 0 and fleet.recap(run)["changed"] == 0, changed_tasks(fleet, run)

    # a policy change published on the server reaches the plugin without a run or a restart
    pid, plugin = h.dockerd_pid(), plugin_pid(fleet)
    fleet.compliant_run()
    bundle_server.publish(tmp_path / "b", docker_authz_deny_root_user=True)

    def root_denied() -> bool:
        r = h.docker("run", "--rm", "local/busybox", "true", check=False)
        return f"{DENIED} {ALIAS}" in r.stderr

    TIMINGS["bundle service: new revision enforced after"] = wait_for("the new bundle", root_denied)
    assert plugin_pid(fleet) == plugin and h.dockerd_pid() == pid, "picked up without a restart"
    fleet.compliant_run("--user", "1000:1000")
    bundle_server.publish(tmp_path / "c")
    wait_for("the previous bundle", lambda: not root_denied())


def test_wrong_signing_key_is_rolled_back(fleet: Fleet, bundle_server: BundleServer, tmp_path: Path) -> None:
    """The hosts are given another public key than the one the served bundle is signed with:
    the plugin refuses the bundle and never serves; the run rolls back to the working config."""
    before = bundle_state(fleet)
    other = tmp_path / "other.pem"
    run, seconds = fleet.play(
        "harden.yml",
        remote(
            bundle_server,
            docker_authz_bundle_signing_key=str(other),
            docker_authz_bundle_signing_key_create=True,
            docker_authz_bundle_activation_timeout=15,
        ),
    )
    TIMINGS["bundle service: fault, wrong key + rollback"] = seconds
    out = failed_with(fleet, run, "Rolled back")
    assert "did not serve again within 15s" in out, out[-3000:]
    assert other.exists(), "the key was created on the controller"
    assert bundle_state(fleet) == before
    fleet.assert_enforced()
