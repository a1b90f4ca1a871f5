"""The fleet report's pure logic: reading a deployed policy back, classifying hosts, ordering
failures first, and a static HTML page in which nothing a host says is markup."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.hardening.docker_authz.plugins.module_utils import report as R
from ansible_collections.hardening.docker_authz.plugins.module_utils.policy import RULES, build_policy_config
from ansible_collections.hardening.docker_authz.plugins.module_utils.probes import normalize_rules
from tests.policy.harness import render


@pytest.mark.parametrize("dialect", ["v0", "v1"])
@pytest.mark.parametrize(
    "variables",
    [
        {},
        {"profile": "restricted"},
        {"profile": "restricted", "deny_root_user": False, "allowed_host_ports": ["80", "8000-8100"]},
        {
            "deny_privileged": False,
            "trusted_registries": ["registry.example.com:5000"],
            "max_memory_bytes": 1 << 30,
        },
        {"profile": "restricted", "audit_rules": ["resource_limits", "root_user"]},
        {"profile": "baseline", "enforcement": "audit"},
    ],
)
def test_a_rendered_policy_reads_back_as_what_it_enforces(dialect: str, variables: dict[str, Any]) -> None:
    text = render(dialect, **variables)
    summary = R.policy_summary(text)
    assert summary["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert summary["dialect"] == dialect and summary["package"] == "docker.authz" and summary["managed"]
    config = build_policy_config({f"docker_authz_{k}": v for k, v in variables.items()})
    assert summary["rules"] == sorted(k for k, v in config["rules"].items() if v)
    # authz_verify, given the rules read back, probes exactly the rules the policy enables
    settings = normalize_rules(summary["verify_rules"])
    for rule_id, (var, _b, _r) in RULES.items():
        assert settings.rules[var[len("docker_authz_") :]] == config["rules"][rule_id], rule_id
    assert settings.params["allowed_host_port_ranges"] == [tuple(p) for p in config["allowed_host_ports"]]
    assert sorted(settings.params["allowed_capabilities"]) == sorted(config["allowed_capabilities"])
    assert settings.params["trusted_registries"] == config["trusted_registries"]
    assert settings.params["max_memory_bytes"] == config["max_memory_bytes"]
    assert settings.params["enforcement"] == config["enforcement"]
    assert settings.params["audit_rules"] == sorted(config["audit_rules"])


def test_a_foreign_policy_is_summarised_without_rules() -> None:
    summary = R.policy_summary("package docker.authz\n\nallow = true\n")
    assert summary["dialect"] == "v0" and summary["managed"] is False and summary["rules"] is None
    assert R.policy_summary("package x\nimport rego.v1\nconfig := {not json\n")["managed"] is False


def test_read_policy_and_hook(tmp_path: Path) -> None:
    missing = str(tmp_path / "none.rego")
    assert R.read_policy(missing) == {"path": missing, "exists": False, "error": None}
    dj = tmp_path / "daemon.json"
    assert R.read_hook(str(dj), "opa-docker-authz")["exists"] is False
    dj.write_text(json.dumps({"authorization-plugins": ["other", "opa-docker-authz:latest"]}))
    hook = R.read_hook(str(dj), "opa-docker-authz")
    assert hook["hooked"] is True and hook["authorization_plugins"] == ["other", "opa-docker-authz:latest"]
    dj.write_text('{"authorization-plugins": ["other"],}')
    hook = R.read_hook(str(dj), "opa-docker-authz")
    assert hook["hooked"] is False and "not valid JSON" in hook["error"]


def _facts(**over: Any) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "docker": {"available": True, "error": None},
        "engine": {"version": "27.5.1", "api_version": "1.47"},
        "plugin": {
            "name": "opa-docker-authz:latest",
            "installed": True,
            "enabled": True,
            "reference": "ghcr.io/open-policy-agent/opa-docker-authz:v0.10-linux-amd64",
            "digest": "sha256:" + "a" * 64,
        },
        "daemon_json": {"hooked": True, "authorization_plugins": ["opa-docker-authz"]},
        "policy": {
            "path": "/etc/docker/policies/authz.rego",
            "exists": True,
            "sha256": "b" * 64,
            "dialect": "v1",
            "managed": True,
            "rules": ["privileged"],
        },
    }
    for key, value in over.items():
        facts[key] = {**facts[key], **value}
    return facts


def _verify(failed: int = 0, warnings: list[str] | None = None) -> dict[str, Any]:
    probes = [
        {"name": "privileged", "rule": "privileged", "expected": "deny", "outcome": "denied", "passed": True}
    ]
    bad = {"rule": "ports", "expected": "deny", "outcome": "authorized", "passed": False}
    probes += [{"name": f"bad{i}", **bad} for i in range(failed)]
    return {
        "probes": probes,
        "counts": {"total": len(probes), "passed": 1, "failed": failed},
        "enforced": True,
        "warnings": warnings or [],
        "failed": bool(failed),
        "msg": f"{failed} of {len(probes)} probes failed" if failed else None,
    }


CASES = {
    "ok": ({"facts": _facts(), "verify": _verify()}, "ok", ""),
    "warn": ({"facts": _facts(), "verify": _verify(warnings=["old engine"])}, "warning", "1 warning"),
    "fail": ({"facts": _facts(), "verify": _verify(failed=2)}, "failing", "2 of 3 probes failed"),
    "logstall": (
        {"facts": _facts(), "verify": _verify(warnings=["old engine"]), "log_warnings": ["stopped reading"]},
        "warning",
        "2 warning",
    ),
    "nopolicy": ({"facts": _facts(policy={"exists": False}), "verify": _verify()}, "failing", "is missing"),
    "unhooked": (
        {"facts": _facts(daemon_json={"hooked": False})},
        "not-hardened",
        "does not name the plugin",
    ),
    "disabled": ({"facts": _facts(plugin={"enabled": False})}, "not-hardened", "disabled"),
    "noplugin": ({"facts": _facts(plugin={"installed": False})}, "not-hardened", "not installed"),
    "nodocker": (
        {"facts": _facts(docker={"available": False, "error": "socket missing"})},
        "no-docker",
        "socket",
    ),
    "gone": ({"unreachable": True, "msg": "ssh: connect refused"}, "unreachable", "connect refused"),
    "empty": ({}, "unreachable", "did not answer"),
    "noverify": ({"facts": _facts()}, "failing", "verification did not run"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_host_status(name: str) -> None:
    entry, status, reason = CASES[name]
    row = R.host_row(name, entry)
    assert row["status"] == status and reason in row["reason"], row


def test_report_lists_failures_first_and_counts() -> None:
    report = R.build_report({name: entry for name, (entry, _s, _r) in CASES.items()}, "2026-11-28T00:00:00Z")
    statuses = [r["status"] for r in report["hosts"]]
    assert statuses == sorted(statuses, key=R.STATUS_ORDER.index)
    assert statuses[0] == "failing" and statuses[-1] == "ok"
    assert report["summary"] == {s: statuses.count(s) for s in R.STATUS_ORDER}
    assert report["hosts_total"] == len(CASES)
    json.dumps(report)  # serialisable as report.json


def test_html_escapes_everything_a_host_says() -> None:
    evil = '<script>alert("x")</script>'
    entry = {
        "facts": _facts(engine={"version": evil}, plugin={"reference": evil}),
        "verify": _verify(warnings=[evil]),
    }
    report = R.build_report({f"host{evil}": entry, "plain": CASES["fail"][0]})
    page = R.render_html(report)
    assert "<script" not in page and "&lt;script&gt;" in page
    assert page.index('id="host-plain"') < page.index('id="host-host&lt;script')  # failing first
    assert page.startswith("<!DOCTYPE html>") and "<link" not in page and "src=" not in page
