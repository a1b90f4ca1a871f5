"""The test infrastructure is real: Docker-in-Docker hosts over SSH, nested containers, and the
opa-docker-authz test double enforcing a policy on a host's own dockerd."""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from tests.lib.ansible_run import BIN, ansible_env
from tests.lib.dind import DindHost

pytestmark = [pytest.mark.docker, pytest.mark.slow]

POLICY_V1 = """package docker.authz

import rego.v1

default allow := false

allow if not input.Body.HostConfig.Privileged
"""

POLICY_V0 = """package docker.authz

default allow = false

allow {
    not input.Body.HostConfig.Privileged
}
"""

DENIED = "authorization denied by plugin opa-docker-authz:latest: request rejected by administrative policy"


def machine_docker_id() -> str:
    out = subprocess.run(["docker", "info", "-f", "{{.ID}}"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_host_answers_ansible_over_ssh(dind_host: DindHost, tmp_path):
    inv = dind_host.inventory(tmp_path / "inventory.yml")
    proc = subprocess.run(
        [str(BIN / "ansible"), "-i", str(inv), "docker_hosts", "-m", "ansible.builtin.ping"],
        capture_output=True,
        text=True,
        env=ansible_env(),
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{dind_host.name} | SUCCESS" in proc.stdout and "pong" in proc.stdout
    # over SSH we reach the host's OWN dockerd, not the machine's
    proc = subprocess.run(
        [
            str(BIN / "ansible"),
            "-i",
            str(inv),
            "docker_hosts",
            "-m",
            "ansible.builtin.shell",
            "-a",
            "docker info 2>/dev/null | sed -n 's/^ ID: //p'",
        ],
        capture_output=True,
        text=True,
        env=ansible_env(),
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    host_id = proc.stdout.strip().splitlines()[-1].strip()
    assert host_id and host_id != machine_docker_id()


def test_nested_busybox_container_runs_without_pull(dind_host: DindHost):
    out = dind_host.docker("run", "--rm", "--network", "none", "local/busybox:latest", "echo", "nested-ok")
    assert out.stdout.strip() == "nested-ok"
    assert dind_host.docker("ps", "-aq").stdout.strip() == ""


def test_hosts_are_independent(dind_hosts):
    a, b = dind_hosts(2)
    assert a.ssh_port != b.ssh_port and a.name != b.name
    a.write_file("/etc/docker/marker", "a\n")
    assert b.exec("test", "-e", "/etc/docker/marker", check=False).returncode == 1
    ids = {h.docker("info", "-f", "{{.ID}}").stdout.strip() for h in (a, b)}
    assert len(ids) == 2 and machine_docker_id() not in ids


def decision_lines(host: DindHost) -> list[dict]:
    """The plugin's JSON decision lines as dockerd logged them (Go log prefix removed)."""
    out = []
    for line in host.dockerd_log().splitlines():
        m = re.search(
            r'msg="\d{4}/\d\d/\d\d \d\d:\d\d:\d\d '
            r'Returning OPA policy decision: (?:true|false): (\{.*\})" plugin=',
            line,
        )
        if m:
            out.append(json.loads(m.group(1).encode().decode("unicode_escape")))
    return out


def enable_plugin(host: DindHost, ref: str, args: str = "-policy-file /opa/policies/authz.rego") -> float:
    t0 = time.monotonic()
    host.docker(
        "plugin", "install", "--grant-all-permissions", "--alias", "opa-docker-authz", ref, f"opa-args={args}"
    )
    took = time.monotonic() - t0
    settings = json.loads(
        host.docker("plugin", "inspect", "opa-docker-authz", "-f", "{{json .Settings.Args}}").stdout
    )
    assert settings == args.split()
    return took


def hook(host: DindHost, plugins: list[str]) -> None:
    """authorization-plugins in the HOST's daemon.json (inside the container), then HUP."""
    host.write_file("/etc/docker/daemon.json", json.dumps({"authorization-plugins": plugins}) + "\n")
    host.hup_dockerd()
    time.sleep(1)


def test_plugin_double_enforces_fails_open_and_errors(dind_host: DindHost, plugin_double: str):
    host = dind_host
    print(f"plugin install: {enable_plugin(host, plugin_double):.1f}s")
    plugin_id = host.docker("plugin", "inspect", "opa-docker-authz", "-f", "{{.Id}}").stdout.strip()
    host.write_file("/etc/docker/policies/authz.rego", POLICY_V1, mode="0640")
    hook(host, ["opa-docker-authz"])

    denied = host.docker("run", "--rm", "--privileged", "local/busybox:latest", "true", check=False)
    assert denied.returncode != 0 and DENIED in denied.stderr, denied.stderr
    allowed = host.docker("run", "--rm", "--network", "none", "local/busybox:latest", "echo", "compliant")
    assert allowed.stdout.strip() == "compliant"

    lines = decision_lines(host)
    assert lines, host.dockerd_log()[-2000:]
    for d in lines:
        assert set(d) == {"config_hash", "decision_id", "input", "labels", "result", "timestamp"}
    creates = [d for d in lines if d["input"]["PathPlain"].endswith("/containers/create")]
    assert [d["result"] for d in creates] == [False, True]
    assert creates[0]["input"]["Body"]["HostConfig"]["Privileged"] is True

    # policy file missing: the plugin fails OPEN (every request allowed) and says so
    host.exec("rm", "/etc/docker/policies/authz.rego")
    open_run = host.docker("run", "--rm", "--privileged", "local/busybox:latest", "true", check=False)
    assert "authorization denied" not in open_run.stderr
    assert "does not exist, failing open and allowing request" in host.dockerd_log()

    # a v0 policy: OPA 1.x parses v1 only, every request gets an error answer
    host.write_file("/etc/docker/policies/authz.rego", POLICY_V0, mode="0640")
    broken = host.docker("ps", check=False)
    assert broken.returncode != 0
    assert (
        "plugin opa-docker-authz:latest failed with error: AuthZPlugin.AuthZReq: 1 error occurred: "
        "/opa/policies/authz.rego:5: rego_parse_error: `if` keyword is required before rule body"
        in broken.stderr
    )

    # -check compiles a policy file and exits 0/1 (run with the plugin's own root filesystem)
    rootfs = f"/var/lib/docker/plugins/{plugin_id}/rootfs"
    host.write_file(f"{rootfs}/tmp/good.rego", POLICY_V1)
    host.write_file(f"{rootfs}/tmp/bad.rego", POLICY_V0)
    check = ["chroot", rootfs, "/usr/bin/python3", "-B", "/opt/opa-docker-authz-double/server.py", "-check"]
    assert host.exec(*check, "-policy-file", "/tmp/good.rego", check=False).returncode == 0
    bad = host.exec(*check, "-policy-file", "/tmp/bad.rego", check=False)
    assert bad.returncode == 1 and "rego_parse_error" in bad.stderr

    # unhook: the daemon answers again without the plugin
    hook(host, [])
    assert host.docker("ps", check=False).returncode == 0
