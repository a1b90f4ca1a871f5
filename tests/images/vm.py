"""Disposable Debian virtual machines (QEMU) as real Docker hosts: systemd, journald, AppArmor, reboots.

    .venv/bin/python -m tests.images.vm build [--suite bookworm] [--force]
    .venv/bin/python -m tests.images.vm up --name hardening-vm-a --name hardening-vm-b [--inventory PATH]
    .venv/bin/python -m tests.images.vm down NAME ... | --all
    .venv/bin/python -m tests.images.vm list | cleanup-stale | accel

The image: `debootstrap --variant=minbase --include=<VM_PACKAGES> SUITE` (Debian's own kernel
linux-image-cloud-amd64, systemd, sshd, docker.io, AppArmor), a few files (VM_FILES below),
then `mkfs.ext4 -d ROOTFS` on a 4 GiB sparse file (nothing is mounted) converted to qcow2, plus
the image's own kernel and initrd. It is cached under $HARDENING_STATE_DIR/images/vm-<suite>-<key>/
where the key hashes the recipe (suite, packages, files): editing the recipe rebuilds it.

A VM boots from a copy-on-write overlay of that base (`qemu-img create -b base.qcow2`), so many
boot at once from one image, with the base's kernel (`-kernel -initrd -append`), a virtio disk
and QEMU's user-mode network: sshd is forwarded from 127.0.0.1:<free port> (nothing else is
published) and the guest reaches the machine's loopback registry as 10.0.2.2:5000 (listed in the
image's /etc/docker/daemon.json as an insecure registry). The SSH key is generated per VM at
start and handed to the guest on the kernel command line (hardening.ssh_key=), so it survives
reboots. Acceleration: KVM when a short probe boot under KVM succeeds, TCG (software) otherwise;
HARDENING_VM_ACCEL=kvm|tcg forces one. QEMU runs daemonized; its pid file, overlay, console log
and key live in $HARDENING_STATE_DIR/vm/<name>/, and `down` / `cleanup-stale` kill it by pid
(checked against the process's command line) and delete that directory.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.images import build as images  # noqa: E402
from tests.lib.dind import _owner_alive, owner_token  # noqa: E402  (one owner scheme for test hosts and VMs)

SUITES = ("bullseye", "bookworm", "trixie")
DEFAULT_SUITE = os.environ.get("HARDENING_VM_SUITE", "bookworm")
PREFIX = "hardening-vm-"
VM_DIR = images.STATE_DIR / "vm"
PORT_RANGE = (23000, 23999)
MEMORY_MB = 1024
DISK_SIZE = "4G"
GATEWAY_REGISTRY = "10.0.2.2:5000"  # QEMU user-mode gateway = this machine's 127.0.0.1:5000
# The VMs install the plugin double from a repository of their own, which `up` points at the
# content-addressed build it just made or found (images.plugin_double's `:<key>` tag): the
# shared repository's v0.10 tags move whenever any session builds another double, and a tag
# that moves between converge and idempotence is a plugin upgrade, not an idempotent run.
VM_PLUGIN_REPO = "opa-docker-authz-double-vm"
PLUGIN_IMAGE = f"{GATEWAY_REGISTRY}/{VM_PLUGIN_REPO}:v0.10-linux-amd64"
BUSYBOX = "local/busybox:latest"

VM_PACKAGES = [
    "systemd-sysv",
    "udev",
    "dbus",
    "linux-image-cloud-amd64",
    "openssh-server",
    "python3",
    "docker.io",
    "iptables",
    "apparmor",
    "ifupdown",
    "isc-dhcp-client",
    "iproute2",
    "kmod",
    "ca-certificates",
    "procps",
]

# Files written into the root filesystem (path -> (mode, content)). Part of the cache key.
VM_FILES: dict[str, tuple[int, str]] = {
    "etc/fstab": (0o644, "/dev/vda / ext4 rw,errors=remount-ro 0 1\n"),
    "etc/network/interfaces": (
        0o644,
        "auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet dhcp\n",
    ),
    "etc/ssh/sshd_config.d/hardening-test.conf": (
        0o644,
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUseDNS no\n",
    ),
    # The machine's registry, seen from the guest through QEMU's user-mode gateway.
    "etc/docker/daemon.json": (
        0o644,
        json.dumps({"insecure-registries": [GATEWAY_REGISTRY]}, indent=2) + "\n",
    ),
    # Persistent journal: the plugin's decision log survives reboots too.
    "etc/systemd/journald.conf.d/hardening-test.conf": (0o644, "[Journal]\nStorage=persistent\n"),
    "usr/local/sbin/hardening-vm-init": (
        0o755,
        """#!/bin/sh
# Every boot, before sshd: host keys (first boot) and root's authorized key from the kernel
# command line (hardening.ssh_key=TYPE:BASE64), as the test run that started the VM generated it.
set -eu
ssh-keygen -A
install -d -m 0700 /root/.ssh
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    hardening.ssh_key=*)
      v="${arg#hardening.ssh_key=}"
      printf '%s %s hardening-test\\n' "${v%%:*}" "${v#*:}" >/root/.ssh/authorized_keys ;;
  esac
done
chmod 0600 /root/.ssh/authorized_keys
""",
    ),
    "etc/systemd/system/hardening-vm-init.service": (
        0o644,
        """[Unit]
Description=Test VM: SSH host keys and the run's authorized key
Before=ssh.service
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/hardening-vm-init
RemainAfterExit=yes
[Install]
WantedBy=multi-user.target
""",
    ),
}
VM_LINKS = {
    "etc/systemd/system/multi-user.target.wants/hardening-vm-init.service": (
        "/etc/systemd/system/hardening-vm-init.service"
    ),
}
VM_RECIPE_VERSION = 1  # bump when build_image()'s steps change


def log(msg: str) -> None:
    images.log(f"vm: {msg}")


class VmError(RuntimeError):
    pass


# ------------------------------------------------------------------------------ the image


@dataclass(frozen=True)
class VmImage:
    suite: str
    key: str
    disk: Path
    kernel: Path
    initrd: Path
    cached: bool
    seconds: float


def image_key(suite: str) -> str:
    recipe = {
        "suite": suite,
        "variant": "minbase",
        "include": VM_PACKAGES,
        "files": VM_FILES,
        "links": VM_LINKS,
        "size": DISK_SIZE,
        "recipe": VM_RECIPE_VERSION,
    }
    return images.sha(json.dumps(recipe, sort_keys=True), platform.machine())


def build_image(suite: str = DEFAULT_SUITE, force: bool = False) -> VmImage:
    """The cached VM image for a Debian release (built on a miss: debootstrap, about 1-3 minutes)."""
    if suite not in SUITES:
        raise VmError(f"unknown Debian release {suite!r}: use one of {', '.join(SUITES)}")
    if platform.machine() != "x86_64":
        raise VmError(
            f"the VM image is built for x86_64 (linux-image-cloud-amd64); this is {platform.machine()}"
        )
    start = time.monotonic()
    key = image_key(suite)
    out = images.CACHE / f"vm-{suite}-{key}"
    result = VmImage(suite, key, out / "disk.qcow2", out / "vmlinuz", out / "initrd.img", True, 0.0)
    if (out / "done").exists() and not force:
        return result
    with _vm_build_lock():
        if (out / "done").exists() and not force:
            return result
        _build(suite, out)
    for old in images.CACHE.glob(f"vm-{suite}-*"):
        if old != out and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return VmImage(suite, key, result.disk, result.kernel, result.initrd, False, time.monotonic() - start)


def _vm_build_lock() -> contextlib.AbstractContextManager[None]:
    """VM image builds wait for each other, not for the container image builds (their own lock)."""
    return images.build_lock(".vm-lock", "VM image build")


def _build(suite: str, out: Path) -> None:
    mirror = images.debian_mirror()
    shutil.rmtree(out, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=images.CACHE, prefix=f"vm-build-{suite}-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        log(f"debootstrap --variant=minbase {suite} with {len(VM_PACKAGES)} packages (first run only)")
        images.run_progress(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=" + ",".join(VM_PACKAGES),
                suite,
                str(rootfs),
                mirror,
            ],
            f"vm {suite} debootstrap",
            interesting=r"^I: ",
        )
        for rel, (mode, content) in VM_FILES.items():
            path = rootfs / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            path.chmod(mode)
        for rel, target in VM_LINKS.items():
            link = rootfs / rel
            link.parent.mkdir(parents=True, exist_ok=True)
            link.unlink(missing_ok=True)
            link.symlink_to(target)
        # Each VM gets its own machine id at first boot; no root password (key-only SSH).
        (rootfs / "etc/machine-id").write_text("")
        (rootfs / "var/lib/dbus/machine-id").unlink(missing_ok=True)
        (rootfs / "var/log/journal").mkdir(parents=True, exist_ok=True)
        kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
        initrds = sorted((rootfs / "boot").glob("initrd.img-*"))
        if not kernels or not initrds:
            raise VmError(f"no kernel or initrd in {rootfs}/boot after debootstrap: check VM_PACKAGES")
        images.slim(rootfs)
        out.mkdir(parents=True)
        shutil.copyfile(kernels[-1], out / "vmlinuz")
        shutil.copyfile(initrds[-1], out / "initrd.img")
        raw = Path(tmp) / "disk.raw"
        with open(raw, "wb") as fh:
            fh.truncate(4 * 2**30)
        images.run(["mkfs.ext4", "-q", "-F", "-L", "hardening-root", "-d", str(rootfs), str(raw)])
        images.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(out / "disk.qcow2")])
    (out / "recipe.json").write_text(json.dumps({"suite": suite, "packages": VM_PACKAGES}, indent=2) + "\n")
    (out / "done").write_text("")
    log(f"image cached: {out} ({(out / 'disk.qcow2').stat().st_size // 2**20} MB qcow2)")


# --------------------------------------------------------------------------- acceleration


def _qemu() -> str:
    exe = shutil.which("qemu-system-x86_64")
    if not exe:
        raise VmError(
            "qemu-system-x86_64 is missing: apt-get install qemu-system-x86 qemu-utils "
            "(scripts/setup.sh does)"
        )
    return exe


_ACCEL: str | None = None


def accel(image: VmImage | None = None, probe_timeout: float = 20) -> str:
    """'kvm' when a probe boot of the image's kernel under KVM reaches init in time, else 'tcg'."""
    global _ACCEL
    forced = os.environ.get("HARDENING_VM_ACCEL", "")
    if forced:
        if forced not in ("kvm", "tcg"):
            raise VmError(f"HARDENING_VM_ACCEL={forced!r}: use kvm or tcg (or unset it to probe)")
        return forced
    if _ACCEL:
        return _ACCEL
    image = image or build_image()
    _ACCEL = "tcg"
    why = "/dev/kvm is missing or not accessible"
    if os.access("/dev/kvm", os.R_OK | os.W_OK):
        ok, why = _probe_kvm(image, probe_timeout)
        if ok:
            _ACCEL = "kvm"
    log(f"acceleration: {_ACCEL}" + ("" if _ACCEL == "kvm" else f" (software emulation: {why})"))
    return _ACCEL


def _probe_kvm(image: VmImage, timeout: float) -> tuple[bool, str]:
    """Boot the kernel and initrd under KVM with init=/bin/true: success is init running (then a
    panic and, with -no-reboot, QEMU's exit) within the time-out."""
    with tempfile.TemporaryDirectory(prefix="hardening-kvm-probe-") as tmp:
        console = Path(tmp) / "console.log"
        cmd = [
            _qemu(),
            "-accel",
            "kvm",
            "-cpu",
            "host",
            "-m",
            "512",
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
            "-serial",
            f"file:{console}",
            "-kernel",
            str(image.kernel),
            "-initrd",
            str(image.initrd),
            "-append",
            "console=ttyS0 root=/dev/vda ro init=/bin/true panic=-1",
            "-drive",
            f"file={image.disk},if=virtio,format=qcow2,snapshot=on",
            "-nic",
            "none",
        ]
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return False, f"a KVM probe boot did not reach init within {timeout:.0f}s"
        text = console.read_text(errors="replace") if console.exists() else ""
        if "Attempted to kill init" in text:
            return True, "probe boot reached init"
        return (
            False,
            f"KVM probe boot failed (qemu exit {proc.returncode}: "
            f"{err.decode(errors='replace').strip()[:200]})",
        )


# ---------------------------------------------------------------------------- VMs


def generate_key(path: Path) -> Path:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        images.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hardening-test", "-f", str(path)])
    return path


def _port_taken_by_vm() -> set[int]:
    taken = set()
    for f in VM_DIR.glob("*/port"):
        with contextlib.suppress(ValueError, OSError):
            taken.add(int(f.read_text()))
    return taken


def free_port() -> int:
    taken = _port_taken_by_vm()
    for _ in range(200):
        port = random.randint(*PORT_RANGE)
        if port in taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise VmError(f"no free port in {PORT_RANGE} on 127.0.0.1")


@dataclass
class Vm:
    name: str
    ssh_port: int
    key_path: Path
    accel: str
    suite: str
    started_at: float = 0.0
    ready_seconds: float | None = None

    @property
    def dir(self) -> Path:
        return VM_DIR / self.name

    @property
    def console_log(self) -> Path:
        return self.dir / "console.log"

    def pid(self) -> int | None:
        """QEMU's pid, only while the process with that pid is this VM's QEMU."""
        return _qemu_pid(self.name)

    def running(self) -> bool:
        return self.pid() is not None

    # ---------------------------------------------------------------- running things
    def ssh_args(self) -> list[str]:
        return [
            "ssh",
            "-i",
            str(self.key_path),
            "-p",
            str(self.ssh_port),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "ServerAliveInterval=5",
            "-o",
            "ServerAliveCountMax=6",
            "root@127.0.0.1",
        ]

    def ssh(
        self, script: str, *, input: bytes | str | None = None, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell command in the VM as root over SSH; check=True raises on non-zero."""
        data = input.encode() if isinstance(input, str) else input
        args = [*self.ssh_args(), script]
        try:
            proc = subprocess.run(args, input=data, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as e:
            raise VmError(f"{self.name}: {script!r} did not finish within {timeout:.0f}s") from e
        result = subprocess.CompletedProcess(
            args, proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
        )
        if check and proc.returncode != 0:
            raise VmError(
                f"{self.name}: {script} failed ({proc.returncode}):\n{result.stdout}{result.stderr}"
            )
        return result

    def ssh_banner(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.ssh_port), timeout=3) as s:
                s.settimeout(5)
                return s.recv(4).startswith(b"SSH-")
        except OSError:
            return False

    def boot_id(self) -> str | None:
        try:
            r = self.ssh("cat /proc/sys/kernel/random/boot_id", check=False, timeout=30)
        except VmError:
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    # ---------------------------------------------------------------- life cycle
    def _fail(self, what: str) -> VmError:
        tail = ""
        if self.console_log.exists():
            tail = "\n".join(self.console_log.read_text(errors="replace").splitlines()[-40:])
        return VmError(
            f"{self.name} ({self.accel}): {what}\n--- console ({self.console_log}), last lines:\n{tail}"
        )

    def wait_ready(self, timeout: float = 600) -> Vm:
        """Wait for SSH, for systemd to finish booting and for the Docker API to answer."""
        deadline = time.monotonic() + timeout
        while not self.ssh_banner():
            if not self.running():
                raise self._fail("QEMU exited during boot")
            if time.monotonic() > deadline:
                raise self._fail(f"sshd did not answer on 127.0.0.1:{self.ssh_port} within {timeout:.0f}s")
            time.sleep(1)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._fail(f"not ready within {timeout:.0f}s")
            try:
                r = self.ssh(
                    'state=$(timeout 120 systemctl is-system-running --wait); echo "system: $state"; '
                    "docker version --format 'docker: {{.Server.Version}}'",
                    check=False,
                    timeout=min(left, 150),
                )
            except VmError:
                continue
            if r.returncode == 0 and "docker:" in r.stdout:
                if "system: running" not in r.stdout:
                    failed = self.ssh(
                        "systemctl --failed --no-legend --plain", check=False, timeout=30
                    ).stdout
                    log(f"{self.name}: {r.stdout.splitlines()[0]}; failed units: {failed.strip() or 'none'}")
                break
            time.sleep(2)
        self.ready_seconds = time.monotonic() - self.started_at
        return self

    def reboot(self, timeout: float = 600) -> float:
        """`systemctl reboot` in the guest (QEMU resets with the same kernel and command line);
        waits for a new boot id and for the guest to be ready. Returns the seconds it took."""
        start = time.monotonic()
        old = self.boot_id()
        if not old:
            raise self._fail("cannot read the boot id before the reboot")
        with contextlib.suppress(VmError):  # the connection may drop before the command returns
            self.ssh("systemctl reboot", check=False, timeout=30)
        deadline = start + timeout
        while True:
            if not self.running():
                raise self._fail("QEMU exited during the reboot")
            if time.monotonic() > deadline:
                raise self._fail(f"no new boot within {timeout:.0f}s")
            if self.ssh_banner():
                new = self.boot_id()
                if new and new != old:
                    break
            time.sleep(2)
        self.started_at = start
        self.wait_ready(max(30.0, deadline - time.monotonic()))
        return time.monotonic() - start

    def load_image(self, ref: str = BUSYBOX) -> None:
        """`docker save REF | ssh VM docker load`: containers in the VM need no registry."""
        saved = subprocess.run(["docker", "save", ref], capture_output=True, check=True, timeout=120).stdout
        self.ssh("docker load -q", input=saved)

    def hostvars(self, **extra: Any) -> dict[str, Any]:
        return {
            "ansible_host": "127.0.0.1",
            "ansible_port": self.ssh_port,
            "ansible_user": "root",
            "ansible_connection": "ssh",
            "ansible_ssh_private_key_file": str(self.key_path),
            # keepalives: after a reboot the ControlMaster's connection to QEMU's port forward is
            # dead without a reset (see tests/fleet/molecule/vm/molecule.yml)
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
            "-o LogLevel=ERROR -o ServerAliveInterval=5 -o ServerAliveCountMax=6",
            "ansible_python_interpreter": "/usr/bin/python3",
            "docker_authz_plugin_image": PLUGIN_IMAGE,
            **extra,
        }

    def remove(self) -> None:
        remove_vm(self.name)


def _qemu_pid(name: str) -> int | None:
    d = VM_DIR / name
    try:
        pid = int((d / "qemu.pid").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if str(d / "overlay.qcow2").encode() in cmdline else None


def start_vm(
    name: str,
    image: VmImage,
    *,
    accel_mode: str,
    owner: str | None = None,
    memory_mb: int = MEMORY_MB,
) -> Vm:
    """Boot one VM from an overlay of the image (not waiting for it: call wait_ready)."""
    if not name.startswith(PREFIX) or not name.replace("-", "").isalnum() or len(name) > 63:
        raise VmError(f"VM names must start with {PREFIX} and be a hostname (letters, digits, '-'): {name!r}")
    if _qemu_pid(name):
        raise VmError(f"{name} is already running: `python -m tests.images.vm down {name}` first")
    d = VM_DIR / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    (d / "owner").write_text(owner or owner_token())
    (d / "suite").write_text(image.suite)
    key = generate_key(d / "id_ed25519")
    ktype, kblob = Path(f"{key}.pub").read_text().split()[:2]
    images.run(
        [
            "qemu-img",
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            str(image.disk),
            "-F",
            "qcow2",
            str(d / "overlay.qcow2"),
        ]
    )
    last_err = ""
    for _ in range(5):
        port = free_port()
        (d / "port").write_text(str(port))
        (d / "console.log").unlink(missing_ok=True)
        cmd = [
            _qemu(),
            "-name",
            f"{name},process={name}",
            "-accel",
            accel_mode,
            *(["-cpu", "host"] if accel_mode == "kvm" else ["-cpu", "max"]),
            "-smp",
            "1",
            "-m",
            str(memory_mb),
            "-nodefaults",
            "-display",
            "none",
            "-serial",
            f"file:{d / 'console.log'}",
            "-kernel",
            str(image.kernel),
            "-initrd",
            str(image.initrd),
            "-append",
            f"console=ttyS0 root=/dev/vda rw net.ifnames=0 systemd.hostname={name} "
            f"hardening.ssh_key={ktype}:{kblob}",
            "-drive",
            f"file={d / 'overlay.qcow2'},if=virtio,format=qcow2,cache=unsafe",
            "-netdev",
            f"user,id=net0,hostfwd=tcp:127.0.0.1:{port}-:22",
            "-device",
            "virtio-net-pci,netdev=net0",
            "-device",
            "virtio-rng-pci",
            "-pidfile",
            str(d / "qemu.pid"),
            "-daemonize",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode == 0:
            vm = Vm(name, port, key, accel_mode, image.suite, started_at=time.monotonic())
            (d / "accel").write_text(accel_mode)
            return vm
        last_err = proc.stderr.strip()
        if "hostfwd" not in last_err and "Could not set up host forwarding" not in last_err:
            break
    shutil.rmtree(d, ignore_errors=True)
    raise VmError(f"{name}: qemu did not start: {last_err}")


def load_vm(name: str) -> Vm:
    d = VM_DIR / name
    try:
        return Vm(
            name,
            int((d / "port").read_text()),
            d / "id_ed25519",
            (d / "accel").read_text().strip(),
            (d / "suite").read_text().strip(),
        )
    except (OSError, ValueError) as e:
        raise VmError(f"{name}: no such VM in {VM_DIR} ({e})") from e


def remove_vm(name: str, timeout: float = 20) -> None:
    """Stop the VM's QEMU (TERM, then KILL) and delete its overlay, key and logs."""
    if not name.startswith(PREFIX):
        raise VmError(f"refusing to remove {name!r}: not a test VM (names start with {PREFIX})")
    pid = _qemu_pid(name)
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _qemu_pid(name) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _qemu_pid(name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while _qemu_pid(name):
                time.sleep(0.1)
    shutil.rmtree(VM_DIR / name, ignore_errors=True)


def start_vms(
    names: Sequence[str],
    *,
    suite: str = DEFAULT_SUITE,
    owner: str | None = None,
    timeout: float = 600,
    load: Sequence[str] = (BUSYBOX,),
) -> list[Vm]:
    """Boot the VMs in parallel from one cached image and wait until each is ready, with the given
    local images loaded. On any failure every one of them is removed again."""
    image = build_image(suite)
    mode = accel(image)
    vms: list[Vm] = []
    try:
        for n in names:
            vms.append(start_vm(n, image, accel_mode=mode, owner=owner))

        def ready(vm: Vm) -> None:
            vm.wait_ready(timeout)
            for ref in load:
                vm.load_image(ref)

        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(vms))) as pool:
            list(pool.map(ready, vms))
    except BaseException:
        for vm in vms:
            remove_vm(vm.name)
        raise
    return vms


def list_vms() -> list[dict[str, str]]:
    rows = []
    for d in sorted(VM_DIR.glob(f"{PREFIX}*")):
        if not d.is_dir():
            continue
        pid = _qemu_pid(d.name)
        rows.append(
            {
                "name": d.name,
                "port": (d / "port").read_text() if (d / "port").exists() else "",
                "owner": (d / "owner").read_text() if (d / "owner").exists() else "",
                "status": f"running (pid {pid})" if pid else "stopped",
            }
        )
    return rows


def cleanup_stale() -> list[str]:
    """Remove VMs whose owning process is gone (killed test runs)."""
    removed = []
    for row in list_vms():
        if not _owner_alive(row["owner"]):
            remove_vm(row["name"])
            removed.append(row["name"])
    return removed


@contextlib.contextmanager
def running_vms(names: Sequence[str], **kw: Any) -> Iterator[list[Vm]]:
    """Boot VMs for a with-block and remove them afterwards, whatever happens inside it."""
    vms = start_vms(names, **kw)
    try:
        yield vms
    finally:
        for vm in vms:
            remove_vm(vm.name)


def write_inventory(
    path: str | Path, vms: Sequence[Vm], group: str = "docker_hosts", **hostvars: Any
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"all": {"children": {group: {"hosts": {v.name: v.hostvars(**hostvars) for v in vms}}}}}
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def pin_plugin_double(key: str) -> str:
    """Tag the double's build `key` as VM_PLUGIN_REPO:v0.10-linux-amd64 and :v0.10 (blobs mounted
    from the shared repository, no copy); returns the manifest digest."""
    got = images._registry(
        "GET", f"/v2/{images.PLUGIN_REPO}/manifests/{key}", headers={"Accept": images.MANIFEST_V2}
    )
    if got[0] != 200:
        raise VmError(f"the registry has no {images.PLUGIN_REPO}:{key} (status {got[0]}): rebuild the images")
    manifest = json.loads(got[1])
    for digest in [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]:
        status = images._registry(
            "POST", f"/v2/{VM_PLUGIN_REPO}/blobs/uploads/?mount={digest}&from={images.PLUGIN_REPO}", body=b""
        )[0]
        if status != 201:
            raise VmError(f"mounting blob {digest} into {VM_PLUGIN_REPO} failed (status {status})")
    for tag in images.PLUGIN_TAGS:
        status = images._registry(
            "PUT",
            f"/v2/{VM_PLUGIN_REPO}/manifests/{tag}",
            body=got[1],
            headers={"Content-Type": images.MANIFEST_V2},
        )[0]
        if status != 201:
            raise VmError(f"tagging {VM_PLUGIN_REPO}:{tag} failed (status {status})")
    return got[2].get("Docker-Content-Digest", "")


# ------------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tests.images.vm",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build (or find cached) the VM image")
    b.add_argument("--suite", default=DEFAULT_SUITE, choices=SUITES)
    b.add_argument("--force", action="store_true")
    up = sub.add_parser("up", help="build images if needed, boot VMs in parallel, write an inventory")
    up.add_argument("--name", action="append", required=True, help=f"VM name(s), each starting with {PREFIX}")
    up.add_argument("--suite", default=DEFAULT_SUITE, choices=SUITES)
    up.add_argument("--inventory", default=str(VM_DIR / "inventory.json"))
    up.add_argument("--group", default="docker_hosts")
    up.add_argument("--timeout", type=float, default=600, help="seconds for each VM to be ready")
    down = sub.add_parser("down", help="stop and delete the named VMs")
    down.add_argument("names", nargs="*")
    down.add_argument("--all", action="store_true", help=f"every {PREFIX}* VM, whoever started it")
    sub.add_parser("list")
    sub.add_parser("cleanup-stale")
    a = sub.add_parser("accel", help="probe and print the acceleration VMs would use")
    a.add_argument("--suite", default=DEFAULT_SUITE, choices=SUITES)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "build":
            img = build_image(args.suite, force=args.force)
            state = "cached" if img.cached else f"built in {img.seconds:.0f}s"
            print(f"[vm] {img.suite} image {img.key} ({state}): {img.disk}")
        elif args.cmd == "up":
            built = images.build(["busybox", "plugin-double"])
            digest = pin_plugin_double(built["plugin-double"].key)
            print(f"[vm] plugin double {built['plugin-double'].key} ({digest}) as {PLUGIN_IMAGE}")
            t0 = time.monotonic()
            vms = start_vms(args.name, suite=args.suite, owner="cli", timeout=args.timeout)
            inv = write_inventory(args.inventory, vms, group=args.group)
            for v in vms:
                print(
                    f"[vm] {v.name}: Debian {v.suite}, {v.accel}, ssh root@127.0.0.1 -p {v.ssh_port} "
                    f"-i {v.key_path} (ready in {v.ready_seconds:.1f}s)"
                )
            print(
                f"[vm] {len(vms)} VM(s) ready in {time.monotonic() - t0:.1f}s "
                f"({vms[0].accel}); inventory: {inv}"
            )
        elif args.cmd == "down":
            names = [r["name"] for r in list_vms()] if args.all else args.names
            if not names and not args.all:
                raise VmError("name the VMs to remove (see `list`), or pass --all")
            for n in names:
                remove_vm(n)
                print(f"[vm] removed {n}")
        elif args.cmd == "list":
            for r in list_vms():
                print(f"{r['name']}\tport {r['port']}\towner {r['owner']}\t{r['status']}")
        elif args.cmd == "cleanup-stale":
            for n in cleanup_stale():
                print(f"[vm] removed stale {n}")
        elif args.cmd == "accel":
            print(f"[vm] acceleration: {accel(build_image(args.suite))}")
    except (VmError, images.BuildError) as e:
        print(f"[vm] ERROR: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
