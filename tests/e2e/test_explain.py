"""playbooks/explain.yml on real hosts: denied runs of four kinds on a host hardened with the
restricted profile (policy-file mode and bundle mode), then explain names exactly the rule that
denied each, with its variable and documentation, and never prints the secret; an empty window,
a rotated (copied, gzipped, truncated) log, a host without the plugin and an unreachable host
get clear answers. The report counts the same denials per rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import BUSYBOX, DENIED, PLAYBOOKS
from tests.lib import dind
from tests.lib.ansible_run import PlaybookRun, run_playbook

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SECRET = "hunter2-e2e-s3cr3t"
# Compliant with the restricted profile but for the one violation each run adds.
COMPLIANT = [
    "--user",
    "1000",
    "--memory",
    "64m",
    "--cpus",
    "0.5",
    "--pids-limit",
    "100",
    "--security-opt",
    "no-new-privileges",
]
RUNS: dict[str, tuple[list[str], str, str]] = {
    # container name: (extra docker run flags, the rule that must deny it, its variable)
    "e2e-priv": (["--privileged"], "privileged", "docker_authz_deny_privileged"),
    "e2e-root": (["--user", "0"], "root_user", "docker_authz_deny_root_user"),
    "e2e-secret": (["-e", f"DB_PASSWORD={SECRET}"], "sensitive_env", "docker_authz_deny_sensitive_env"),
    "e2e-mount": (["-v", "/etc:/host-etc:ro"], "sensitive_mounts", "docker_authz_deny_sensitive_mounts"),
}


def _explain(tmp: Path, inventory: Path, name: str, **extra: Any) -> tuple[PlaybookRun, dict[str, Any]]:
    out = tmp / name
    out.mkdir()
    doc_path = out / "explain.json"
    run = run_playbook(
        PLAYBOOKS / "explain.yml",
        out,
        inventory=inventory,
        extra_vars={"docker_authz_explain_json": str(doc_path), **extra},
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    return run, json.loads(doc_path.read_text())


def _deny_runs(host: dind.DindHost, names: list[str]) -> None:
    ok = host.docker("run", "--rm", *COMPLIANT, BUSYBOX, "echo", "fine", check=False)
    assert ok.returncode == 0, f"the compliant run must pass: {ok.stderr}"
    for name in names:
        flags, _rule, _var = RUNS[name]
        r = host.docker("run", "--rm", *COMPLIANT, "--name", name, *flags, BUSYBOX, "true", check=False)
        assert DENIED in r.stderr, (name, r.stderr)


def _by_container(doc: dict[str, Any], host: str) -> dict[str, list[dict[str, Any]]]:
    row = next(h for h in doc["hosts"] if h["host"] == host)
    out: dict[str, list[dict[str, Any]]] = {}
    for item in row["items"]:
        out.setdefault(item["request"]["container"], []).append(item)
    return out


def _assert_explained(doc: dict[str, Any], run: PlaybookRun, host: str, names: list[str]) -> None:
    items = _by_container(doc, host)
    assert sorted(n for n in items if n in RUNS) == sorted(names)
    for name in names:
        _flags, rule, var = RUNS[name]
        (item,) = items[name]
        assert item["status"] == "denied" and item["logged"] == "denied", item
        assert [r["rule"] for r in item["reasons"]] == [rule], (name, item["reasons"])
        assert item["reasons"][0]["variable"] == var
        assert item["reasons"][0]["doc"] == f"docs/policy.md#{rule}--{var}"
        assert item["request"]["method"] == "POST" and item["request"]["endpoint"] == "/containers/create"
        assert item["request"]["image"] == BUSYBOX and item["time"].endswith("Z")
        assert f"controlled by {var}; see docs/policy.md#{rule}--{var}" in run.stdout
    secret = items["e2e-secret"][0]
    assert secret["masked"] == ["Body.Env[0] (DB_PASSWORD)"]
    assert "DB_PASSWORD=<masked>" in secret["input"]["Body"]["Env"]
    assert SECRET not in json.dumps(doc) and SECRET not in run.stdout + run.stderr


def test_explain_policy_file_mode_and_host_states(
    tmp_path: Path, dind_image: str, dind_ssh_key: Path, plugin_double: str
) -> None:
    hosts = dind.start_hosts(2, dind_ssh_key)
    try:
        hardened, plain = hosts
        inventory = dind.write_inventory(
            tmp_path / "inventory.yml",
            hosts,
            docker_authz_plugin_image=plugin_double,
            docker_authz_profile="restricted",
        )
        (tmp_path / "harden").mkdir()
        harden = run_playbook(
            PLAYBOOKS / "harden.yml",
            tmp_path / "harden",
            inventory=inventory,
            args=["--limit", hardened.name],
        )
        assert harden.returncode == 0, harden.stdout[-3000:]
        _deny_runs(hardened, list(RUNS))
        doc_inv = json.loads(inventory.read_text())
        group = doc_inv["all"]["children"]["docker_hosts"]["hosts"]
        group["hardening-test-ghost"] = dict(group[plain.name], ansible_port=dind.free_port())
        inventory.write_text(json.dumps(doc_inv))

        run, doc = _explain(tmp_path, inventory, "all")
        _assert_explained(doc, run, hardened.name, list(RUNS))
        states = {h["host"]: h for h in doc["hosts"]}
        assert states[hardened.name]["status"] == "ok"
        assert states[hardened.name]["sources"] == ["/var/log/docker.log"]
        assert states[hardened.name]["engine"] == "OPA (opa_bindings)"
        assert states[hardened.name]["probes_skipped"] > 10, "harden's verification probes are left out"
        assert states[plain.name]["status"] == "no-plugin"
        assert "not installed" in states[plain.name]["message"]
        assert states["hardening-test-ghost"]["status"] == "unreachable"
        assert f"== {plain.name}: no-plugin: plugin" in run.stdout
        assert "== hardening-test-ghost: unreachable:" in run.stdout
        assert [r for r in run.results if r["host"] != "localhost" and r["result"].get("changed")] == []

        # the last N, and a filter that matches nothing: an empty answer, said so
        run, doc = _explain(
            tmp_path,
            inventory,
            "last2",
            docker_authz_explain_last=2,
            docker_authz_explain_hosts=hardened.name,
        )
        assert [i["request"]["container"] for i in doc["hosts"][0]["items"]] == ["e2e-secret", "e2e-mount"]
        run, doc = _explain(
            tmp_path,
            inventory,
            "empty",
            docker_authz_explain_images=["nothing/here*"],
            docker_authz_explain_hosts=hardened.name,
        )
        (row,) = doc["hosts"]
        assert row["status"] == "empty" and row["items"] == []
        assert "no denied/error/fail_open decision in the log since" in row["message"]
        assert "matching the filters" in run.stdout

        # a rotated log: copied and gzipped, then truncated (logrotate copytruncate + compress)
        hardened.sh(
            "cp /var/log/docker.log /var/log/docker.log.1 && gzip -f /var/log/docker.log.1 && "
            ": > /var/log/docker.log"
        )
        _deny_runs(hardened, ["e2e-priv"])
        run, doc = _explain(tmp_path, inventory, "rotated", docker_authz_explain_hosts=hardened.name)
        (row,) = doc["hosts"]
        assert row["sources"] == ["/var/log/docker.log.1.gz", "/var/log/docker.log"]
        items = _by_container(doc, hardened.name)
        assert len(items["e2e-priv"]) == 2 and {i["status"] for i in items["e2e-priv"]} == {"denied"}
        assert len(items["e2e-root"]) == 1

        # the policy changed since (hardened again without the rule): the request is allowed now
        (tmp_path / "reharden").mkdir()
        harden = run_playbook(
            PLAYBOOKS / "harden.yml",
            tmp_path / "reharden",
            inventory=inventory,
            args=["--limit", hardened.name],
            extra_vars={"docker_authz_deny_privileged": False},
        )
        assert harden.returncode == 0, harden.stdout[-3000:]
        run, doc = _explain(
            tmp_path,
            inventory,
            "changed",
            docker_authz_explain_hosts=hardened.name,
            docker_authz_explain_containers=["e2e-priv"],
        )
        statuses = [i["status"] for i in doc["hosts"][0]["items"]]
        assert statuses == ["now_allowed", "now_allowed"], statuses
        assert all(i["policy_changed"] is True for i in doc["hosts"][0]["items"])
        assert "the policy the host runs now ALLOWS it" in run.stdout
    finally:
        for h in hosts:
            h.remove()


def test_explain_bad_window_fails_clearly(tmp_path: Path, dind_image: str, dind_ssh_key: Path) -> None:
    (host,) = dind.start_hosts(1, dind_ssh_key)
    try:
        inventory = dind.write_inventory(tmp_path / "inventory.yml", [host])
        (tmp_path / "run").mkdir()
        run = run_playbook(
            PLAYBOOKS / "explain.yml",
            tmp_path / "run",
            inventory=inventory,
            extra_vars={"docker_authz_explain_since": "yesterday"},
        )
        assert run.returncode != 0
        assert "since: 'yesterday' is not a time. Give an ISO 8601 time" in run.stdout
        # a host without any dockerd log file: said so, not an error
        host.sh("/etc/init.d/docker stop >/dev/null 2>&1; rm -f /var/log/docker.log*")
        run, doc = _explain(tmp_path, inventory, "nolog")
        assert doc["hosts"][0]["status"] == "no-log" and "no dockerd log found" in doc["hosts"][0]["message"]
    finally:
        host.remove()


def test_explain_bundle_mode(tmp_path: Path, dind_image: str, dind_ssh_key: Path, plugin_double: str) -> None:
    (host,) = dind.start_hosts(1, dind_ssh_key)
    try:
        inventory = dind.write_inventory(
            tmp_path / "inventory.yml",
            [host],
            docker_authz_plugin_image=plugin_double,
            docker_authz_profile="restricted",
            docker_authz_policy_mode="bundle",
        )
        (tmp_path / "harden").mkdir()
        harden = run_playbook(PLAYBOOKS / "harden.yml", tmp_path / "harden", inventory=inventory)
        assert harden.returncode == 0, harden.stdout[-3000:]
        assert (
            "-config-file"
            in host.docker("plugin", "inspect", "-f", "{{.Settings.Args}}", "opa-docker-authz").stdout
        )
        _deny_runs(host, list(RUNS))
        run, doc = _explain(tmp_path, inventory, "bundle")
        _assert_explained(doc, run, host.name, list(RUNS))
        row = doc["hosts"][0]
        assert row["policy"]["kind"] == "bundle" and row["policy"]["path"] == "/etc/docker/policies/bundle"
        assert {i["mode"] for i in row["items"]} == {"config-file"}
        assert all(i["policy_changed"] is False for i in row["items"])

        # the fleet report counts the same denials per rule
        (tmp_path / "report").mkdir()
        rep = run_playbook(
            PLAYBOOKS / "report.yml",
            tmp_path / "report",
            inventory=inventory,
            extra_vars={"docker_authz_report_dir": str(tmp_path / "out")},
        )
        assert rep.returncode == 0, rep.stdout[-3000:]
        report = json.loads((tmp_path / "out" / "report.json").read_text())
        by_rule = {r["rule"]: r["denied"] for r in report["denials"]["by_rule"]}
        assert by_rule == {"privileged": 1, "root_user": 1, "sensitive_env": 1, "sensitive_mounts": 1}
        assert SECRET not in (tmp_path / "out" / "report.html").read_text()
    finally:
        host.remove()
