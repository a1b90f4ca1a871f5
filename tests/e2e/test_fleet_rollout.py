"""Rolling out to a fleet: one harden.yml run over hosts in different starting states, and a
batched rollout (serial as a percentage) that stops after a batch with a failed host.

Every host is a real Docker-in-Docker host reached over SSH; every judgement is made with the
host's own docker CLI and files.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ALIAS, BUSYBOX, DAEMON_JSON, DENIED, PLAYBOOKS, POLICY, ROLE, TIMINGS
from tests.lib import dind
from tests.lib.ansible_run import PlaybookRun, run_playbook

pytestmark = [pytest.mark.docker, pytest.mark.slow]

OTHER = "other-authz"
OTHER_POLICY = "/etc/docker/policies/other.rego"
ALLOW_ALL = "package docker.authz\n\nimport rego.v1\n\ndefault allow := true\n"
DENY_ALL = "package docker.authz\n\nimport rego.v1\n\ndefault allow := false\n"
# Another team's settings and authorization plugin, already live on the host before the rollout.
OTHER_SETTINGS = {
    "log-opts": {"max-size": "10m", "max-file": "3"},
    "max-concurrent-downloads": 4,
    "authorization-plugins": [OTHER],
    "labels": ["team=payments"],
}
BROKEN_JSON = '{\n  "log-driver": "json-file",\n  "log-opts": {"max-size": "10m",}\n}\n'


def _hook_other_plugin(host: dind.DindHost, ref: str) -> None:
    host.exec("install", "-d", "-m", "0755", "/etc/docker/policies")
    host.write_file(OTHER_POLICY, ALLOW_ALL)
    host.docker(
        "plugin", "install", "--alias", OTHER, "--grant-all-permissions", ref,
        f"opa-args=-policy-file /opa/policies/{Path(OTHER_POLICY).name} -quiet",
    )  # fmt: skip
    host.write_file(DAEMON_JSON, json.dumps(OTHER_SETTINGS, indent=2) + "\n")
    host.hup_dockerd()
    host.docker("run", "--rm", BUSYBOX, "true")  # the other plugin is live and allows


def _inventory(
    path: Path, hosts: list[dind.DindHost], per_host: dict[str, dict[str, Any]], **common: Any
) -> Path:
    """An inventory of the hosts in group docker_hosts, with common and per-host variables."""
    dind.write_inventory(path, hosts, **common)
    doc = json.loads(path.read_text())
    for name, extra in per_host.items():
        doc["all"]["children"]["docker_hosts"]["hosts"][name].update(extra)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def _touched(run: PlaybookRun, host: dind.DindHost) -> bool:
    return any(r["host"] == host.name for r in run.results)


def _enforced(host: dind.DindHost) -> None:
    err = host.docker("run", "--rm", "--privileged", BUSYBOX, "true", check=False).stderr
    assert f"{DENIED} {ALIAS}" in err, f"{host.name}: privileged run not denied:\n{err}"
    ok = host.docker("run", "--rm", BUSYBOX, "echo", "compliant-run-ok", check=False)
    assert ok.returncode == 0 and "compliant-run-ok" in ok.stdout, f"{host.name}: {ok.stderr}"
    host.docker("ps")


def _untouched(host: dind.DindHost) -> None:
    assert host.exec("test", "-e", POLICY, check=False).returncode != 0, f"{host.name}: policy written"
    assert host.docker("plugin", "ls", "-q").stdout.strip() == "", f"{host.name}: plugin installed"


@pytest.fixture(scope="module")
def mixed(
    tmp_path_factory: pytest.TempPathFactory, dind_image: str, dind_ssh_key: Path, plugin_double: str
) -> Iterator[dict[str, Any]]:
    """Four hosts prepared in four starting states, hardened by ONE harden.yml run."""
    hosts = dind.start_hosts(5, dind_ssh_key)
    try:
        _fresh, shared, strict, broken, nodocker = hosts
        # shared and strict: another authorization plugin (a second copy of the double, with its
        # own policy file) is installed, hooked into daemon.json next to other settings, and live.
        for h in (shared, strict):
            _hook_other_plugin(h, plugin_double)
        # broken: a daemon.json with a trailing comma (dockerd itself would refuse it).
        broken.write_file(DAEMON_JSON, BROKEN_JSON)
        # nodocker: a host without Docker (no daemon, no CLI, no socket).
        nodocker.stop_dockerd()
        nodocker.sh("rm -f /usr/bin/docker /usr/sbin/dockerd /usr/bin/dockerd /var/run/docker.sock")

        tmp = tmp_path_factory.mktemp("fleet-mixed")
        # shared lets the role unhook the other plugin for the install; strict keeps the default.
        inventory = _inventory(
            tmp / "inventory.yml",
            hosts,
            {shared.name: {"docker_authz_unhook_other_plugins": True}},
            docker_authz_plugin_image=plugin_double,
        )
        before = {"strict": strict.read_file(DAEMON_JSON), "broken": broken.read_file(DAEMON_JSON)}
        t0 = time.monotonic()
        run = run_playbook(PLAYBOOKS / "harden.yml", tmp, inventory=inventory)
        TIMINGS["fleet: one run over 5 mixed hosts"] = time.monotonic() - t0
        yield {
            "hosts": dict(zip(["fresh", "shared", "strict", "broken", "nodocker"], hosts, strict=True)),
            "run": run,
            "before": before,
            "inventory": inventory,
            "tmp": tmp,
        }
    finally:
        for h in hosts:
            h.remove()


def test_mixed_fleet_good_hosts_are_hardened(mixed: dict[str, Any]) -> None:
    run, h = mixed["run"], mixed["hosts"]
    assert run.returncode != 0, "three hosts must fail, so the run fails"
    for name in ("fresh", "shared"):
        recap = run.recap(h[name].name)
        assert recap["failed"] == 0 and recap["unreachable"] == 0, (name, recap, run.stdout[-3000:])
        _enforced(h[name])
    assert json.loads(h["fresh"].read_file(DAEMON_JSON)) == {"authorization-plugins": [ALIAS]}


def test_mixed_fleet_other_settings_and_plugin_are_kept(mixed: dict[str, Any]) -> None:
    host = mixed["hosts"]["shared"]
    doc = json.loads(host.read_file(DAEMON_JSON))
    assert doc["authorization-plugins"] == [OTHER, ALIAS], "the other plugin first, ours added"
    assert {k: v for k, v in doc.items() if k != "authorization-plugins"} == {
        k: v for k, v in OTHER_SETTINGS.items() if k != "authorization-plugins"
    }
    assert list(doc) == list(OTHER_SETTINGS), "key order kept"
    plugins = {p["Name"]: p for p in json.loads(host.docker("plugin", "inspect", OTHER, ALIAS).stdout)}
    assert plugins[f"{OTHER}:latest"]["Enabled"] and plugins[f"{ALIAS}:latest"]["Enabled"]
    # Both plugins must allow: when the other one refuses everything, a compliant run is refused
    # by it (ours allows), and when it allows again the run works.
    host.write_file(OTHER_POLICY, DENY_ALL)
    try:
        err = host.docker("run", "--rm", BUSYBOX, "true", check=False).stderr
        assert f"{DENIED} {OTHER}" in err, err
    finally:
        host.write_file(OTHER_POLICY, ALLOW_ALL)
    _enforced(host)


def test_mixed_fleet_other_plugin_blocks_the_install_by_default(mixed: dict[str, Any]) -> None:
    """Without docker_authz_unhook_other_plugins the hooked opa-docker-authz refuses our install
    (it cannot parse the JSON-array body of POST /plugins/pull): the host fails naming the
    blocking plugin and the fix, and is left exactly as it was, the other plugin enforcing."""
    run, host = mixed["run"], mixed["hosts"]["strict"]
    assert run.recap(host.name)["failed"] == 1
    msg = run.task(ROLE + "Fail the host with the reason", host.name)["result"]["msg"]
    assert f"the authorization plugin {OTHER}:latest, already in this engine's authorization-plugins" in msg
    assert "docker_authz_unhook_other_plugins: true" in msg and "Rolled back" in msg, msg
    assert host.read_file(DAEMON_JSON) == mixed["before"]["strict"]
    assert [p["Name"] for p in json.loads(host.docker("plugin", "inspect", OTHER).stdout)] == [
        f"{OTHER}:latest"
    ]
    assert host.docker("plugin", "ls", "-q").stdout.split().__len__() == 1, "our plugin was removed again"
    host.write_file(OTHER_POLICY, DENY_ALL)
    try:
        err = host.docker("run", "--rm", BUSYBOX, "true", check=False).stderr
        assert f"{DENIED} {OTHER}" in err, err
    finally:
        host.write_file(OTHER_POLICY, ALLOW_ALL)


def test_mixed_fleet_invalid_daemon_json_fails_that_host_only(mixed: dict[str, Any]) -> None:
    run, host = mixed["run"], mixed["hosts"]["broken"]
    assert run.recap(host.name)["failed"] == 1
    failed = [r for r in run.results if r["host"] == host.name and r["status"] == "failed"]
    msg = failed[0]["result"]["msg"]
    assert DAEMON_JSON in msg and "line 3" in msg, msg
    assert host.read_file(DAEMON_JSON) == mixed["before"]["broken"], "the broken file must stay as it was"
    _untouched(host)
    host.docker("ps")  # dockerd still runs (it read no new configuration)


def test_mixed_fleet_host_without_docker_fails_clearly(mixed: dict[str, Any]) -> None:
    run, host = mixed["run"], mixed["hosts"]["nodocker"]
    assert run.recap(host.name)["failed"] == 1
    failed = [r for r in run.results if r["host"] == host.name and r["status"] == "failed"]
    assert failed[0]["task"] == ROLE + "Fail when the Docker socket is missing"
    assert "Docker is not installed or dockerd is not running" in failed[0]["result"]["msg"]
    assert host.exec("test", "-e", "/etc/docker/policies", check=False).returncode != 0
    assert "Traceback" not in run.stdout + run.stderr


def test_mixed_fleet_old_engines_are_warned_about(mixed: dict[str, Any]) -> None:
    """Docker 20.10.24 predates the fixes for both authz bypass CVEs: each hardened host says so."""
    run, h = mixed["run"], mixed["hosts"]
    for name in ("fresh", "shared"):
        verify = run.task(ROLE + "Verify that the plugin enforces the policy", h[name].name)["result"]
        joined = " ".join(verify.get("warnings", []))
        assert "CVE-2024-41110" in joined and "CVE-2026-34040" in joined, verify.get("warnings")
    # and the operator sees it (Ansible prints identical warnings of several hosts once)
    assert "[WARNING]: Docker Engine 20.10.24" in run.stderr and "CVE-2024-41110" in run.stderr


def test_mixed_fleet_second_run_changes_no_task(mixed: dict[str, Any]) -> None:
    """On the hardened hosts a re-run reports no change on any single task, gathers no facts."""
    h = mixed["hosts"]
    names = [h["fresh"].name, h["shared"].name]
    tmp = mixed["tmp"] / "rerun"
    tmp.mkdir()
    run = run_playbook(
        PLAYBOOKS / "harden.yml", tmp, inventory=mixed["inventory"], args=["--limit", ",".join(names)]
    )
    assert run.returncode == 0, run.stdout[-3000:]
    changed = [(r["host"], r["task"]) for r in run.results if r["result"].get("changed")]
    assert changed == [], changed
    assert not [r for r in run.results if r["action"] in ("ansible.builtin.setup", "setup", "gather_facts")]
    assert {r["host"] for r in run.results} >= set(names)


# ------------------------------------------------------------------ batches


def test_percentage_batches_stop_after_a_batch_with_a_failed_host(
    tmp_path: Path, dind_image: str, dind_ssh_key: Path, plugin_double: str
) -> None:
    """serial 50% of 4 hosts = two batches of two. In the first batch one host fails
    verification (its policy lets privileged runs through while verification expects the
    denial): it is rolled back, its batch-mate is hardened, and the second batch never starts."""
    hosts = dind.start_hosts(4, dind_ssh_key)
    try:
        bad, good, later1, later2 = hosts
        inventory = _inventory(
            tmp_path / "inventory.yml",
            hosts,
            {
                bad.name: {
                    "docker_authz_deny_privileged": False,
                    "docker_authz_verify_rules": {"deny_privileged": True},
                }
            },
            docker_authz_plugin_image=plugin_double,
        )
        run = run_playbook(
            PLAYBOOKS / "harden.yml",
            tmp_path,
            inventory=inventory,
            extra_vars={"docker_authz_serial": "50%", "docker_authz_max_fail_percentage": 0},
        )
        assert run.returncode != 0
        assert run.recap(bad.name)["failed"] == 1
        out = run.stdout
        assert "Rolled back" in out, out[-3000:]
        # rolled back: no hook, no plugin, no policy; the API answers without authorization
        assert bad.exec("test", "-e", DAEMON_JSON, check=False).returncode != 0 or ALIAS not in bad.read_file(
            DAEMON_JSON
        )
        _untouched(bad)
        err = bad.docker("run", "--rm", "--privileged", BUSYBOX, "true", check=False).stderr
        assert DENIED not in err, err
        bad.docker("ps")
        assert run.recap(good.name)["failed"] == 0
        _enforced(good)
        for later in (later1, later2):
            assert not _touched(run, later), f"{later.name} is in the second batch: it must not start"
            _untouched(later)
    finally:
        for h in hosts:
            h.remove()
