"""hardening.docker_authz.authz_plugin on a real Docker Engine: a disposable Docker-in-Docker host
reached over SSH, installing the opa-docker-authz test double from the registry on 127.0.0.1:5000.

Module calls are batched into few playbooks (each ansible-playbook run costs seconds); the
tests read every task's result through the jsonl callback and the host's real plugin state
through its own docker CLI. The host's daemon.json is never touched (the module must not).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.images import build as images
from tests.lib import dind
from tests.lib.ansible_run import PlaybookRun, run_playbook

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ALIAS = "opa-docker-authz"
TEST_TAG = "authz-plugin-test-a-linux-amd64"  # a tag these tests own in the double's repository


@pytest.fixture(scope="module")
def host(dind_image: str, dind_ssh_key: Path) -> Iterator[dind.DindHost]:
    """One host shared by this file's tests (each test brings it to the state it starts from)."""
    (h,) = dind.start_hosts(1, dind_ssh_key, image=dind_image)
    try:
        yield h
    finally:
        dind.remove_host(h.name)


@pytest.fixture
def inventory(host: dind.DindHost, tmp_path: Path) -> Path:
    return host.inventory(tmp_path / "inventory.yml")


def plugins(host: dind.DindHost) -> list[dict[str, Any]]:
    """The host's plugins as its engine reports them, plus the installed manifest digest."""
    out = host.sh(
        'ids=$(docker plugin ls -q --no-trunc); if [ -z "$ids" ]; then echo "[]"; '
        "else docker plugin inspect $ids; fi"
    ).stdout
    found = []
    for p in json.loads(out):
        disk = json.loads(host.read_file(f"/var/lib/docker/plugins/{p['Id']}/config.json"))
        found.append(
            {
                "id": p["Id"],
                "name": p["Name"],
                "enabled": p["Enabled"],
                "reference": p["PluginReference"],
                "args": p["Settings"]["Args"],
                "mounts": {m["Name"]: m["Source"] for m in p["Settings"]["Mounts"]},
                "digest": disk.get("Manifest"),
            }
        )
    return sorted(found, key=lambda p: p["name"])


def registry_manifest(tag: str) -> tuple[bytes, str]:
    got = images._manifest(tag)
    assert got, f"{images.PLUGIN_REPO}:{tag} is not in the registry"
    return got


def put_manifest(tag: str, body: bytes) -> str:
    images._put_manifest(tag, body)
    return registry_manifest(tag)[1]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def play(tasks: str) -> str:
    return f"""
- name: Exercise authz_plugin
  hosts: docker_hosts
  gather_facts: false
  tasks:
{tasks}"""


def result(run: PlaybookRun, name: str) -> dict[str, Any]:
    return run.task(name)["result"]


def failed(run: PlaybookRun, name: str) -> str:
    rec = run.task(name)
    assert rec["status"] == "failed", f"{name} should have failed: {rec['result']}"
    return rec["result"]["msg"]


LIFECYCLE_1 = play(
    """
    - name: Plan install
      hardening.docker_authz.authz_plugin: {reference: "{{ ref }}"}
      check_mode: true
      diff: true
    - name: Plugins after check mode
      ansible.builtin.command: docker plugin ls -q
      changed_when: false
    - name: Install
      hardening.docker_authz.authz_plugin: {reference: "{{ ref }}"}
      diff: true
    - name: Install again
      hardening.docker_authz.authz_plugin: {reference: "{{ ref }}"}
    - name: Install again in check mode
      hardening.docker_authz.authz_plugin: {reference: "{{ ref }}"}
      check_mode: true
    - name: Set args
      hardening.docker_authz.authz_plugin:
        reference: "{{ ref }}"
        args: [-policy-file /opa/policies/authz.rego, -quiet]
    - name: Set args again
      hardening.docker_authz.authz_plugin:
        reference: "{{ ref }}"
        args: "-policy-file /opa/policies/authz.rego   -quiet"
    - name: Disable
      hardening.docker_authz.authz_plugin: {reference: "{{ ref }}", args: "{{ quiet }}", state: disabled}
    - name: Disable again
      hardening.docker_authz.authz_plugin: {reference: "{{ ref }}", args: "{{ quiet }}", state: disabled}
    - name: Present keeps it disabled
      hardening.docker_authz.authz_plugin: {reference: "{{ ref }}", args: "{{ quiet }}", state: present}
    - name: Enable
      hardening.docker_authz.authz_plugin: {reference: "{{ ref }}", args: "{{ quiet }}", state: enabled}
    - name: Plan reference change
      hardening.docker_authz.authz_plugin: {reference: "{{ ref_b }}", args: "{{ quiet }}"}
      check_mode: true
    - name: Change reference
      hardening.docker_authz.authz_plugin: {reference: "{{ ref_b }}", args: "{{ quiet }}"}
      diff: true
    - name: Change reference again
      hardening.docker_authz.authz_plugin: {reference: "{{ ref_b }}", args: "{{ quiet }}"}
"""
)

LIFECYCLE_2 = play(
    """
    - name: Without digest check
      hardening.docker_authz.authz_plugin:
        reference: "{{ ref_b }}"
        args: "{{ quiet }}"
        digest_check: false
    - name: Plan digest upgrade
      hardening.docker_authz.authz_plugin: {reference: "{{ ref_b }}", args: "{{ quiet }}"}
      check_mode: true
    - name: Digest upgrade
      hardening.docker_authz.authz_plugin: {reference: "{{ ref_b }}", args: "{{ quiet }}"}
    - name: Digest upgrade again
      hardening.docker_authz.authz_plugin: {reference: "{{ ref_b }}", args: "{{ quiet }}"}
    - name: Args that keep the plugin from starting
      hardening.docker_authz.authz_plugin: {reference: "{{ ref_b }}", args: "-no-such-flag", timeout: 10}
      ignore_errors: true
    - name: After the failed start
      hardening.docker_authz.authz_plugin: {reference: "{{ ref_b }}", args: "{{ quiet }}"}
    - name: Plan remove
      hardening.docker_authz.authz_plugin: {state: absent}
      check_mode: true
    - name: Remove
      hardening.docker_authz.authz_plugin: {state: absent}
      diff: true
    - name: Remove again
      hardening.docker_authz.authz_plugin: {state: absent}
"""
)


def test_lifecycle_install_configure_toggle_upgrade_remove(host, inventory, plugin_double, tmp_path):
    original, d0 = registry_manifest("v0.10-linux-amd64")
    assert put_manifest(TEST_TAG, original) == d0  # a second tag, same image
    ref_b = f"{images.REGISTRY}/{images.PLUGIN_REPO}:{TEST_TAG}"
    quiet = "-policy-file /opa/policies/authz.rego -quiet"
    xvars = {"ref": plugin_double, "ref_b": ref_b, "quiet": quiet}
    assert plugins(host) == []

    run = run_playbook(LIFECYCLE_1, tmp_path, inventory=inventory, extra_vars=xvars)
    assert run.returncode == 0, run.stdout + run.stderr

    plan = result(run, "Plan install")
    assert plan["changed"] and plan["actions"] == ["installed", "configured", "enabled"]
    assert plan["plugin"]["reference"] == plugin_double and plan["plugin"]["digest"] == d0
    assert plan["diff"]["before"] == {}
    assert result(run, "Plugins after check mode")["stdout"] == ""

    inst = result(run, "Install")
    assert inst["changed"] and inst["actions"] == ["installed", "configured", "enabled"]
    assert inst["privileges"] == [
        {"Name": "network", "Description": "permissions to access a network", "Value": ["host"]},
        {"Name": "mount", "Description": "host path to mount", "Value": ["/etc/docker"]},
    ]
    assert inst["plugin"]["args"] == ["-policy-file", "/opa/policies/authz.rego"]
    assert inst["plugin"]["enabled"] and inst["plugin"]["digest"] == d0 and inst["diff"]["before"] == {}

    for name in (
        "Install again",
        "Install again in check mode",
        "Set args again",
        "Disable again",
        "Present keeps it disabled",
        "Change reference again",
    ):
        r = result(run, name)
        assert not r["changed"] and r["actions"] == [], (name, r)
        assert r["privileges"] == [], name  # nothing granted when nothing is installed
    assert result(run, "Set args")["actions"] == ["disabled", "configured", "enabled"]
    assert result(run, "Set args")["plugin"]["args"] == ["-policy-file", "/opa/policies/authz.rego", "-quiet"]
    assert result(run, "Disable")["actions"] == ["disabled"]
    assert result(run, "Present keeps it disabled")["plugin"]["enabled"] is False
    assert result(run, "Enable")["actions"] == ["enabled"]
    assert result(run, "Plan reference change")["actions"] == ["disabled", "upgraded", "enabled"]
    change = result(run, "Change reference")
    assert change["actions"] == ["disabled", "upgraded", "enabled"]
    assert change["diff"]["before"]["reference"] == plugin_double
    assert change["plugin"]["reference"] == ref_b and change["plugin"]["id"] == inst["plugin"]["id"]

    # the engine's own view: same plugin, new reference, settings kept, running
    (p,) = plugins(host)
    assert p == {
        "id": inst["plugin"]["id"],
        "name": f"{ALIAS}:latest",
        "enabled": True,
        "reference": ref_b,
        "args": ["-policy-file", "/opa/policies/authz.rego", "-quiet"],
        "mounts": {"policy": "/etc/docker"},
        "digest": d0,
    }
    assert "opa-docker-authz.sock" in host.exec("ls", f"/run/docker/plugins/{p['id']}").stdout
    assert "authorization-plugins" not in host.exec("cat", "/etc/docker/daemon.json", check=False).stdout

    # the registry's digest for ref_b changes: same layers and config, new manifest bytes
    variant = json.dumps(json.loads(original), indent=4).encode()
    d1 = put_manifest(TEST_TAG, variant)
    assert d1 != d0
    try:
        run2 = run_playbook(LIFECYCLE_2, tmp_path, inventory=inventory, extra_vars=xvars)
    finally:
        images._registry("DELETE", f"/v2/{images.PLUGIN_REPO}/manifests/{d1}")
    assert run2.returncode == 0, run2.stdout + run2.stderr

    assert not result(run2, "Without digest check")["changed"]
    plan_up = result(run2, "Plan digest upgrade")
    assert plan_up["actions"] == ["disabled", "upgraded", "enabled"] and plan_up["plugin"]["digest"] == d1
    up = result(run2, "Digest upgrade")
    assert up["actions"] == ["disabled", "upgraded", "enabled"] and up["plugin"]["digest"] == d1
    assert up["remote_digest"] == d1 and up["plugin"]["enabled"]
    assert not result(run2, "Digest upgrade again")["changed"]

    bad = run2.task("Args that keep the plugin from starting")
    assert bad["status"] == "failed"
    assert "did not start" in bad["result"]["msg"]
    assert bad["result"]["actions"] == ["disabled", "configured"]
    assert bad["result"]["restored"] == "previous settings, enabled again"
    after_bad = result(run2, "After the failed start")
    assert not after_bad["changed"] and after_bad["plugin"]["enabled"]
    assert after_bad["plugin"]["args"] == ["-policy-file", "/opa/policies/authz.rego", "-quiet"]

    assert result(run2, "Plan remove")["actions"] == ["disabled", "removed"]
    rm = result(run2, "Remove")
    assert rm["actions"] == ["disabled", "removed"] and rm["plugin"] == {} and rm["diff"]["after"] == {}
    assert not result(run2, "Remove again")["changed"]
    assert plugins(host) == []


REFUSALS = play(
    """
    - name: Install
      hardening.docker_authz.authz_plugin: {reference: "{{ ref }}"}
    - name: Arch mismatch
      hardening.docker_authz.authz_plugin: {reference: "{{ ref | replace('amd64', 'arm64') }}"}
      ignore_errors: true
    - name: Image not found
      hardening.docker_authz.authz_plugin: {reference: "{{ ref }}-no-such-build"}
      ignore_errors: true
    - name: Registry unreachable
      hardening.docker_authz.authz_plugin:
        reference: "127.0.0.1:{{ closed_port }}/opa-docker-authz:v0.10-linux-amd64"
      ignore_errors: true
    - name: Privileges outside the set on install
      hardening.docker_authz.authz_plugin:
        name: opa-docker-authz-narrow
        reference: "{{ ref }}"
        allowed_privileges: [network=host]
      ignore_errors: true
    - name: Privileges outside the set on upgrade
      hardening.docker_authz.authz_plugin:
        reference: "{{ ref }}"
        force_upgrade: true
        allowed_privileges: [{name: network, value: [host]}, mount=/etc/docker/policies]
      ignore_errors: true
    - name: Mount source outside the set
      hardening.docker_authz.authz_plugin: {reference: "{{ ref }}", settings: [policy.source=/]}
      ignore_errors: true
    - name: Socket missing
      hardening.docker_authz.authz_plugin: {reference: "{{ ref }}", socket: /run/no-such-docker.sock}
      ignore_errors: true
    - name: Stop dockerd
      ansible.builtin.command: /etc/init.d/docker stop
      changed_when: true
    - name: Daemon not running
      hardening.docker_authz.authz_plugin: {reference: "{{ ref }}"}
      ignore_errors: true
    - name: Start dockerd
      ansible.builtin.command: /etc/init.d/docker start
      changed_when: true
    - name: Wait for the API
      ansible.builtin.command: docker version
      register: api
      until: api.rc == 0
      retries: 60
      delay: 1
      changed_when: false
    - name: Nothing to do after the refusals
      hardening.docker_authz.authz_plugin: {reference: "{{ ref }}"}
"""
)


def test_refusals_leave_the_plugin_state_unchanged(host, inventory, plugin_double, tmp_path):
    port = closed_port()
    run = run_playbook(
        REFUSALS, tmp_path, inventory=inventory, extra_vars={"ref": plugin_double, "closed_port": port}
    )
    assert run.returncode == 0, run.stdout + run.stderr
    installed = result(run, "Install")["plugin"]
    arm = plugin_double.replace("amd64", "arm64")

    msgs = {
        "Arch mismatch": [
            f"reference {arm} is built for linux/arm64",
            "this host is linux/amd64",
            f"Use {plugin_double}",
        ],
        "Image not found": [
            f"plugin image {plugin_double}-no-such-build not found in registry 127.0.0.1:5000",
            "manifest unknown",
        ],
        "Registry unreachable": [
            f"registry 127.0.0.1:{port} is unreachable from the Docker host",
            "connection refused",
        ],
        "Privileges outside the set on install": [
            "asks for privileges outside the expected set: mount=/etc/docker.",
            "It asks for: network=host, mount=/etc/docker; allowed_privileges grants: network=host.",
        ],
        "Privileges outside the set on upgrade": [
            "outside the expected set: mount=/etc/docker.",
            "grants: mount=/etc/docker/policies, network=host",
        ],
        "Mount source outside the set": ["setting policy.source=/ mounts a host path", "(mount=/)"],
        "Socket missing": ["/run/no-such-docker.sock does not exist", "dockerd running"],
        "Daemon not running": ["dockerd running"],
    }
    for name, fragments in msgs.items():
        msg = failed(run, name)
        for fragment in fragments:
            assert fragment in msg, (name, msg)
        assert run.task(name)["result"].get("changed") is False, name

    after = result(run, "Nothing to do after the refusals")
    assert not after["changed"]
    assert after["plugin"] == installed  # same ID, reference, digest, args, enabled
    (p,) = plugins(host)  # and no opa-docker-authz-narrow
    assert p["id"] == installed["id"] and p["enabled"] and p["reference"] == plugin_double
    assert p["args"] == ["-policy-file", "/opa/policies/authz.rego"]
