"""The QEMU test VMs themselves (tests/images/vm.py), which the molecule scenario `vm` relies on.

Two VMs boot in parallel from one cached image through copy-on-write overlays; each is its own
machine (hostname, machine id, SSH host keys, a run key only it accepts), reachable only on a
127.0.0.1 port, reaches the machine's registry through QEMU's user-mode gateway, and is hardened
by the real harden playbook, whose reload goes through systemd (what only a host with systemd
shows). A failed start leaves no QEMU process and no files behind.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.images import build as images
from tests.images import vm as vmlib
from tests.lib.ansible_run import run_playbook

ROOT = Path(__file__).resolve().parents[2]
NAMES = ("hardening-vm-pytest-1", "hardening-vm-pytest-2")
ROLE = "hardening.docker_authz.opa_authz : "

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def vms(dind_image: str, plugin_double: str) -> Iterator[list[vmlib.Vm]]:
    """dind_image builds local/busybox (loaded into each VM); plugin_double pushes the plugin,
    which the VMs install from their own repository pinned to this build."""
    vmlib.cleanup_stale()
    vmlib.pin_plugin_double(images.build(["plugin-double"])["plugin-double"].key)
    image = vmlib.build_image()
    before = image.disk.stat().st_mtime_ns
    with vmlib.running_vms(NAMES) as started:
        yield started
    assert image.disk.stat().st_mtime_ns == before, "a VM wrote to the shared base image"


def _qemu_processes(name: str) -> list[str]:
    """The QEMU processes running this VM, read from /proc/*/cmdline (not `ps`, whose output width
    depends on the caller's terminal settings): 'PID ARGS' per process."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:  # the process ended while we looked
            continue
        if argv and argv[0].endswith("qemu-system-x86_64") and any(f"/vm/{name}/" in a for a in argv):
            found.append(f"{cmdline.parent.name} {' '.join(argv)}")
    return found


def test_vms_boot_from_one_base_image_through_overlays(vms: list[vmlib.Vm]) -> None:
    image = vmlib.build_image()
    for v in vms:
        info = json.loads(
            subprocess.run(
                ["qemu-img", "info", "--output=json", "-U", str(v.dir / "overlay.qcow2")],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        assert info["format"] == "qcow2"
        assert info["backing-filename"] == str(image.disk)
        assert v.accel in ("kvm", "tcg")
        pid_file = v.dir / "qemu.pid"
        pid = pid_file.read_text().strip() if pid_file.exists() else "(no pid file)"
        procs = _qemu_processes(v.name)
        assert len(procs) == 1, f"{v.name}: expected one QEMU process (pid file: {pid}), found {procs}"


def test_each_vm_is_its_own_machine(vms: list[vmlib.Vm]) -> None:
    seen = []
    for v in vms:
        out = v.ssh(
            "hostname; cat /etc/machine-id; ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f2"
        ).stdout.split()
        assert out[0] == v.name
        seen.append(out)
    assert len({s[1] for s in seen}) == len(vms), f"machine ids repeat: {seen}"
    assert len({s[2] for s in seen}) == len(vms), f"SSH host keys repeat: {seen}"


def test_each_vm_accepts_only_its_own_run_key(vms: list[vmlib.Vm]) -> None:
    a, b = vms
    wrong = vmlib.Vm(a.name, a.ssh_port, b.key_path, a.accel, a.suite)
    r = wrong.ssh("true", check=False, timeout=60)
    assert r.returncode == 255 and "Permission denied" in r.stderr, r
    assert a.ssh("true", check=False).returncode == 0


def _listeners(port: int) -> list[str]:
    """Addresses listening on TCP `port` (any process), from /proc/net/tcp and tcp6."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, _, hexport = local.partition(":")
            if state == "0A" and int(hexport, 16) == port:
                found.append(addr)
    return found


def test_only_sshd_on_loopback_is_published(vms: list[vmlib.Vm]) -> None:
    for v in vms:
        assert _listeners(v.ssh_port) == ["0100007F"], f"{v.name}: {_listeners(v.ssh_port)}"
        pid = v.pid()
        assert pid is not None
        inodes = {
            p.readlink().name[len("socket:[") : -1]
            for p in Path(f"/proc/{pid}/fd").iterdir()
            if p.readlink().name.startswith("socket:[")
        }
        listening = []
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if cols[9] in inodes and cols[3] == "0A":
                    listening.append((table, cols[1]))
        assert listening == [("/proc/net/tcp", f"0100007F:{v.ssh_port:04X}")], listening


def test_guest_reaches_the_registry_through_the_user_mode_gateway(vms: list[vmlib.Vm]) -> None:
    r = vms[0].ssh(
        "python3 -c \"import urllib.request; print(urllib.request.urlopen('http://10.0.2.2:5000/v2/', "
        'timeout=20).status)"'
    )
    assert r.stdout.strip() == "200"
    daemon = json.loads(vms[0].ssh("cat /etc/docker/daemon.json").stdout)
    assert vmlib.GATEWAY_REGISTRY in daemon["insecure-registries"]


def test_harden_reloads_through_systemd_and_logs_decisions_to_journald(
    vms: list[vmlib.Vm], tmp_path: Path
) -> None:
    v = vms[0]
    inventory = vmlib.write_inventory(
        tmp_path / "inventory.json",
        [v],
        docker_authz_plugin_image=vmlib.PLUGIN_IMAGE.replace("-linux-amd64", "-linux-{arch}"),
        docker_authz_api_timeout=180,
    )
    pid_before = v.ssh("systemctl show -p MainPID --value docker").stdout.strip()
    t0 = time.monotonic()
    run = run_playbook(ROOT / "playbooks" / "harden.yml", tmp_path, inventory=inventory, timeout=1500)
    took = time.monotonic() - t0
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    mine = [r for r in run.results if r["host"] == v.name and r["status"] != "skipped"]
    # reload.yml's tasks, and the hook's daemon_json call, which reloads in the same module call
    prefix = ROLE + "Reload dockerd and wait"
    hook = ROLE + "Add the plugin to authorization-plugins in daemon.json and reload dockerd"
    reloads = [r["result"].get("method") for r in mine if r["task"].startswith(prefix)]
    hooked = [r["result"].get("reloaded") for r in mine if r["task"] == hook]
    reloads += [done["method"] for done in hooked if done]
    assert reloads and set(reloads) == {"systemd"}, f"reloads by method: {reloads} ({took:.0f}s)"
    # A reload, not a restart: the same dockerd process, and systemd logged the reload.
    assert v.ssh("systemctl show -p MainPID --value docker").stdout.strip() == pid_before
    journal = v.ssh("journalctl -b -u docker.service --no-pager -o cat").stdout
    assert "Reloaded docker.service" in journal
    assert "Got signal to reload configuration" in journal
    denied = v.ssh("docker run --rm --privileged local/busybox:latest true", check=False)
    assert "authorization denied by plugin opa-docker-authz" in denied.stderr, denied
    journal = v.ssh("journalctl -b -u docker.service --no-pager -o cat").stdout
    assert "Returning OPA policy decision" in journal


def test_a_failed_start_leaves_no_qemu_and_no_files(dind_image: str) -> None:
    name = "hardening-vm-pytest-fail"
    with pytest.raises(vmlib.VmError, match=r"did not answer|not ready"):
        vmlib.start_vms([name], timeout=1, load=())
    assert _qemu_processes(name) == []
    assert not (vmlib.VM_DIR / name).exists()
