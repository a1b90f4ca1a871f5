"""Audit mode end to end on one DinD host (policy-file mode, the plugin double): the restricted
profile with docker_authz_audit_rules [resource_limits, root_user] lets a run without limits as
root through while a privileged run is still denied; the verification expects the audit rules'
probes ALLOWED; explain and the report show the would-be denial under resource_limits and
root_user; the plugin logs allowed decisions (no -log-only-denied) while a rule is in audit and
only denials again in pure enforce; switching back to enforce denies the run again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import BUSYBOX, DENIED, PLAYBOOKS, ROLE
from tests.lib import dind
from tests.lib.ansible_run import PlaybookRun, run_playbook

pytestmark = [pytest.mark.docker, pytest.mark.slow]

AUDIT_RULES = ["resource_limits", "root_user"]
# Restricted but for limits and the user: root (the image default), no --memory/--cpus/--pids-limit.
ROOT_NO_LIMITS = ["--security-opt", "no-new-privileges"]
PRIVILEGED = ["--user", "1000", "--memory", "64m", "--cpus", "0.5", "--pids-limit", "100",
              "--security-opt", "no-new-privileges", "--privileged"]  # fmt: skip


def _play(tmp: Path, inventory: Path, playbook: str, name: str, **extra: Any) -> PlaybookRun:
    out = tmp / name
    out.mkdir()
    run = run_playbook(PLAYBOOKS / playbook, out, inventory=inventory, extra_vars=extra)
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    return run


def _explain(tmp: Path, inventory: Path, name: str, **extra: Any) -> tuple[PlaybookRun, dict[str, Any]]:
    path = tmp / f"{name}.json"
    run = _play(tmp, inventory, "explain.yml", name, docker_authz_explain_json=str(path), **extra)
    return run, json.loads(path.read_text())


def _args(host: dind.DindHost) -> str:
    return host.docker("plugin", "inspect", "-f", "{{.Settings.Args}}", "opa-docker-authz").stdout.strip()


def _log_size(host: dind.DindHost) -> int:
    return int(host.sh("stat -c %s /var/log/docker.log").stdout.strip())


def _verify(run: PlaybookRun, host: dind.DindHost) -> dict[str, Any]:
    return run.task(ROLE + "Verify that the plugin enforces the policy", host.name)["result"]


def _rules(entries: list[dict[str, Any]]) -> list[str]:
    return sorted({r["rule"] for r in entries})


def test_audit_rules_allow_log_and_explain(
    tmp_path: Path, dind_image: str, dind_ssh_key: Path, plugin_double: str
) -> None:
    (host,) = dind.start_hosts(1, dind_ssh_key)
    try:
        inventory = dind.write_inventory(
            tmp_path / "inventory.yml",
            [host],
            docker_authz_plugin_image=plugin_double,
            docker_authz_profile="restricted",
            docker_authz_audit_rules=AUDIT_RULES,
        )
        run = _play(tmp_path, inventory, "harden.yml", "harden")
        assert "-log-only-denied" not in _args(host), "allowed decisions must be logged in audit"
        verify = _verify(run, host)
        assert verify["counts"]["failed"] == 0
        probes = {p["name"]: p for p in verify["probes"]}
        for name in ("root-user-default", "limits-no-memory"):
            probe = probes[name]
            assert probe["expected"] == "allow" and probe["outcome"] == "authorized", probe
        assert probes["privileged"]["expected"] == "deny" and probes["privileged"]["outcome"] == "denied"
        assert "root-user-exec" not in probes, "an audit rule's non-create probes are left out"

        ok = host.docker("run", "--rm", "--name", "e2e-audit", *ROOT_NO_LIMITS, BUSYBOX, "true", check=False)
        assert ok.returncode == 0, ok.stderr
        denied = host.docker("run", "--rm", "--name", "e2e-priv", *PRIVILEGED, BUSYBOX, "true", check=False)
        assert DENIED in denied.stderr, denied.stderr
        # log volume in audit: every evaluated request is logged (bytes added to dockerd's log)
        before = _log_size(host)
        host.docker("ps")
        ps_bytes = _log_size(host) - before
        before = _log_size(host)
        again = host.docker("run", "--rm", "--name", "e2e-vol", *ROOT_NO_LIMITS, BUSYBOX, "true", check=False)
        assert again.returncode == 0, again.stderr
        run_bytes = _log_size(host) - before
        lines = host.sh("grep 'Returning OPA policy decision: true' /var/log/docker.log").stdout.splitlines()
        create = [len(x) + 1 for x in lines if "containers/create?name=e2e-vol" in x]
        assert create and ps_bytes > 0, "allowed decisions are logged while a rule is in audit"
        print(f"\naudit log volume: docker ps {ps_bytes} B, docker run --rm {run_bytes} B "
              f"(its create line {create[-1]} B)")

        run, doc = _explain(tmp_path, inventory, "explain")
        (row,) = doc["hosts"]
        items: dict[str, list[dict[str, Any]]] = {}
        for item in row["items"]:
            items.setdefault(item["request"]["container"], []).append(item)
        (audit,) = items["e2e-audit"]
        assert audit["status"] == "would_be_denied" and audit["logged"] == "allowed", audit
        assert _rules(audit["audit"]) == AUDIT_RULES and audit["reasons"] == []
        assert {r["variable"] for r in audit["audit"]} == {
            "docker_authz_require_resource_limits", "docker_authz_deny_root_user"}
        (priv,) = items["e2e-priv"]
        assert priv["status"] == "denied" and _rules(priv["reasons"]) == ["privileged"]
        assert "ALLOWED, would be denied (rules in audit mode)" in run.stdout
        assert "(audit) root_user:" in run.stdout and "(audit) resource_limits:" in run.stdout

        # the verification's own probes: the audit rules' would-be denials are in the log
        _run, doc = _explain(tmp_path, inventory, "probes", docker_authz_explain_include_probes=True)
        flagged = {r["rule"] for i in doc["hosts"][0]["items"] if i["status"] == "would_be_denied"
                   for r in i["audit"]}  # fmt: skip
        assert flagged == set(AUDIT_RULES), flagged

        # the report counts the would-be denial apart
        out = tmp_path / "report-out"
        _play(tmp_path, inventory, "report.yml", "report", docker_authz_report_dir=str(out))
        report = json.loads((out / "report.json").read_text())
        by_rule = {r["rule"]: r for r in report["denials"]["by_rule"]}
        assert report["denials"]["would_be_denied"] >= 1 and report["denials"]["denied"] >= 1
        for rule in AUDIT_RULES:
            assert by_rule[rule]["would_be_denied"] >= 1 and by_rule[rule]["denied"] == 0, by_rule[rule]
        assert by_rule["privileged"]["denied"] >= 1

        # back to enforce: denied again, and only denials are logged
        run = _play(tmp_path, inventory, "harden.yml", "enforce", docker_authz_audit_rules=[])
        assert "-log-only-denied" in _args(host)
        assert _verify(run, host)["counts"]["failed"] == 0
        again = host.docker("run", "--rm", "--name", "e2e-a2", *ROOT_NO_LIMITS, BUSYBOX, "true", check=False)
        assert DENIED in again.stderr, again.stderr
        # a third run changes nothing
        run = _play(tmp_path, inventory, "harden.yml", "idempotent", docker_authz_audit_rules=[])
        assert [r for r in run.results if r["host"] != "localhost" and r["result"].get("changed")] == []
    finally:
        host.remove()
