"""playbooks/report.yml on a real fleet: a hardened host, a host that is not hardened, a host
whose dockerd is down, and a host that does not answer SSH. report.json is checked against
what is really on each host (the policy's sha256 from the file, the plugin's digest from the
engine's own state), and report.html lists failures first."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from tests.e2e.conftest import ALIAS, BUSYBOX, DENIED, PLAYBOOKS, POLICY
from tests.lib import dind
from tests.lib.ansible_run import run_playbook

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_report_describes_every_host(
    tmp_path: Path, dind_image: str, dind_ssh_key: Path, plugin_double: str
) -> None:
    hosts = dind.start_hosts(3, dind_ssh_key)
    try:
        hardened, plain, down = hosts
        inventory = dind.write_inventory(
            tmp_path / "inventory.yml", hosts, docker_authz_plugin_image=plugin_double
        )
        (tmp_path / "harden").mkdir()
        harden = run_playbook(
            PLAYBOOKS / "harden.yml",
            tmp_path / "harden",
            inventory=inventory,
            args=["--limit", hardened.name],
        )
        assert harden.returncode == 0, harden.stdout[-3000:]
        denied = hardened.docker(
            "run", "--rm", "--privileged", "--name", "report-priv", BUSYBOX, "true", check=False
        )
        assert DENIED in denied.stderr, denied.stderr
        down.stop_dockerd()
        # a fourth inventory host that does not answer SSH
        doc = json.loads(inventory.read_text())
        ghost = dict(
            doc["all"]["children"]["docker_hosts"]["hosts"][plain.name], ansible_port=dind.free_port()
        )
        doc["all"]["children"]["docker_hosts"]["hosts"]["hardening-test-ghost"] = ghost
        inventory.write_text(json.dumps(doc))
        out = tmp_path / "out"
        (tmp_path / "report").mkdir()
        run = run_playbook(
            PLAYBOOKS / "report.yml",
            tmp_path / "report",
            inventory=inventory,
            extra_vars={"docker_authz_report_dir": str(out)},
        )
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
        changed = [
            (r["host"], r["task"])
            for r in run.results
            if r["host"] != "localhost" and r["result"].get("changed")
        ]
        assert changed == [], "report.yml changes nothing on the hosts"

        report = json.loads((out / "report.json").read_text())
        rows = {r["host"]: r for r in report["hosts"]}
        assert report["hosts_total"] == 4 and set(rows) == {h.name for h in hosts} | {"hardening-test-ghost"}

        # the hardened host: everything read back from the host itself
        row = rows[hardened.name]
        assert row["status"] == "warning", row  # Docker 20.10.24: the CVE warnings
        assert (
            row["engine"]["version"]
            == hardened.docker("version", "--format", "{{.Server.Version}}").stdout.strip()
        )
        assert (
            row["policy"]["sha256"]
            == hashlib.sha256(hardened.exec("cat", POLICY).stdout.encode()).hexdigest()
        )
        assert row["policy"]["dialect"] == "v1" and row["policy"]["managed"] is True
        assert (
            "privileged" in row["policy"]["rules"] and "root_user" not in row["policy"]["rules"]
        )  # baseline
        plugin = json.loads(hardened.docker("plugin", "inspect", ALIAS).stdout)[0]
        on_disk = json.loads(
            hardened.exec("cat", f"/var/lib/docker/plugins/{plugin['Id']}/config.json").stdout
        )
        assert row["plugin"]["reference"] == plugin["PluginReference"]
        assert row["plugin"]["digest"] and row["plugin"]["digest"] in json.dumps(on_disk)
        assert row["plugin"]["enabled"] is True and row["hooked"] is True
        assert row["counts"]["failed"] == 0 and row["counts"]["total"] == len(row["probes"]) > 10
        assert any(p["name"] == "privileged" and p["outcome"] == "denied" for p in row["probes"])
        assert any("CVE-2024-41110" in c.get("cve", json.dumps(c)) for c in row["cves"]) or any(
            "CVE-2024-41110" in w for w in row["warnings"]
        )

        # the denied run, counted under its rule; harden's and the report's own probes are not
        den = row["denials"]
        assert den["denied"] == 1 and [r["rule"] for r in den["by_rule"]] == ["privileged"]
        assert den["recent"][0]["request"]["container"] == "report-priv"
        assert report["denials"]["denied"] == 1 and report["denials"]["hosts"] == 1
        assert report["denials"]["top_offenders"][0]["host"] == hardened.name
        assert rows[plain.name]["denials"] is None and rows[down.name]["denials"] is None

        assert rows[plain.name]["status"] == "not-hardened"
        assert "not installed" in rows[plain.name]["reason"]
        assert rows[down.name]["status"] == "no-docker"
        assert rows["hardening-test-ghost"]["status"] == "unreachable"

        # failures first: unreachable, no Docker, not hardened, then the hardened host
        order = [r["host"] for r in report["hosts"]]
        assert order == ["hardening-test-ghost", down.name, plain.name, hardened.name]
        page = (out / "report.html").read_text()
        assert re.findall(r'<tr class="[\w-]+" id="host-([\w-]+)"', page) == order
        assert page.index('id="denials-rules"') < page.index('id="d-')
        assert "<script" not in page and "http" not in page.split("<body>")[1], (
            "a static, self-contained page"
        )
    finally:
        for h in hosts:
            h.remove()
