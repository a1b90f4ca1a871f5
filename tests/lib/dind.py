"""Disposable Docker-in-Docker hosts: real Debian Docker hosts reached over SSH.

Each host is a container of local/dind-host (Debian 12; tests/images/build.py) or, for the
engine matrix, local/dind-host-bullseye / local/dind-host-trixie (Debian 11 / 13, each with
its release's docker.io: docs/engines.md) on the machine's dockerd,
started with `--network host`: it has its own dockerd (its own /etc/docker, /var/lib/docker
volume and socket), its own sshd on 127.0.0.1:<free port> with a key the run generates, and it
reaches the registry at 127.0.0.1:5000. Names start with `hardening-test-`; `remove()` (and
`cleanup_stale()` for runs that were killed) delete the container and its volume.

    .venv/bin/python -m tests.lib.dind up [-n 2] [--inventory PATH] [--plugin]
        [--name NAME --suite bullseye|bookworm|trixie ...]
    .venv/bin/python -m tests.lib.dind down NAME ... | --all-cli | --all
    .venv/bin/python -m tests.lib.dind list
    .venv/bin/python -m tests.lib.dind cleanup-stale
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import random
import shlex
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.images import build as images  # noqa: E402

PREFIX = "hardening-test-"
LABEL = "org.hardening.test"
OWNER_LABEL = "org.hardening.owner"
STATE_DIR = images.STATE_DIR
CLI_DIR = STATE_DIR / "dind"
BUSYBOX = "local/busybox:latest"
PORT_RANGE = (22000, 22999)
SUITES = images.DIND_SUITES


def builder(suite: str = images.SUITE) -> str:
    """The tests.images.build name of a release's host image."""
    images.base_recipe(suite)  # validates the name
    return "dind-host" if suite == images.SUITE else f"dind-host-{suite}"


def suite_image(suite: str = images.SUITE) -> str:
    """local/dind-host:latest (Debian 12) or local/dind-host-<suite>:latest."""
    return f"{images.dind_repo(suite)}:latest"


class DindError(RuntimeError):
    pass


def _docker(
    *args: str, input: bytes | None = None, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(["docker", *args], input=input, capture_output=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise DindError(f"docker {' '.join(args)} failed ({proc.returncode}): {err}")
    return proc


def _process_start(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def owner_token(pid: int | None = None) -> str:
    """`<pid>:<start time>` of this process: a host whose owner is gone is stale."""
    pid = pid or os.getpid()
    return f"{pid}:{_process_start(pid)}"


def _owner_alive(token: str) -> bool:
    if token == "cli":
        return True  # started by `python -m tests.lib.dind up`: removed by `down`
    pid, _, start = token.partition(":")
    return pid.isdigit() and _process_start(int(pid)) == start


def generate_key(path: Path) -> Path:
    """An ed25519 key pair for this run (path and path.pub)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hardening-test", "-f", str(path)],
            check=True,
            capture_output=True,
        )
    return path


def port_range() -> tuple[int, int]:
    """PORT_RANGE, or this pytest-xdist worker's own slice of it: two workers starting hosts at
    the same moment cannot pick the same port before either host has claimed it."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if not (worker.startswith("gw") and worker[2:].isdigit() and count.isdigit() and int(count) > 1):
        return PORT_RANGE
    low, high = PORT_RANGE
    size = (high - low + 1) // int(count)
    start = low + (int(worker[2:]) % int(count)) * size
    return start, start + size - 1


def free_port() -> int:
    """A TCP port free on 127.0.0.1 and not claimed by another test host."""
    out = _docker(
        "ps", "-a", "--filter", f"label={LABEL}=dind-host", "--format", '{{.Label "org.hardening.ssh-port"}}'
    )
    taken = {int(p) for p in out.stdout.decode().split() if p.isdigit()}
    low, high = port_range()
    for _ in range(200):
        port = random.randint(low, high)
        if port in taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise DindError(f"no free port in {low}-{high} on 127.0.0.1")


@dataclass
class DindHost:
    name: str
    ssh_port: int
    key_path: Path
    image: str = "local/dind-host:latest"
    started_at: float = field(default_factory=time.monotonic)
    ready_seconds: float | None = None

    # ---------------------------------------------------------------- running things
    def exec(
        self, *cmd: str, input: bytes | str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in the host (docker exec, as root); check=True raises on non-zero."""
        data = input.encode() if isinstance(input, str) else input
        args = ["docker", "exec", *(["-i"] if data is not None else []), self.name, *cmd]
        proc = subprocess.run(args, input=data, capture_output=True, timeout=timeout, check=False)
        result = subprocess.CompletedProcess(
            args, proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
        )
        if check and proc.returncode != 0:
            raise DindError(
                f"{self.name}: {shlex.join(cmd)} failed ({proc.returncode}):\n{result.stdout}{result.stderr}"
            )
        return result

    def sh(self, script: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.exec("sh", "-c", script, **kw)

    def docker(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        """The host's own docker CLI (20.10) against the host's own dockerd."""
        return self.exec("docker", *args, **kw)

    def write_file(self, path: str, content: str | bytes, mode: str = "0644") -> None:
        self.exec(
            "sh",
            "-c",
            f'mkdir -p "$(dirname {shlex.quote(path)})" && cat > {shlex.quote(path)} && chmod {mode} '
            f"{shlex.quote(path)}",
            input=content,
        )

    def read_file(self, path: str) -> str:
        return self.exec("cat", path).stdout

    def dockerd_log(self) -> str:
        return self.exec("cat", "/var/log/docker.log", check=False).stdout

    def dockerd_pid(self) -> int | None:
        out = self.exec("cat", "/var/run/docker.pid", check=False).stdout.strip()
        if not out.isdigit():
            return None
        alive = self.exec("kill", "-0", out, check=False).returncode == 0
        return int(out) if alive else None

    def hup_dockerd(self) -> None:
        """Reload the host's dockerd the way a non-systemd host does: HUP to its pid file."""
        self.sh("kill -HUP $(cat /var/run/docker.pid)")

    def start_dockerd(self, timeout: float = 60) -> None:
        self.exec("/etc/init.d/docker", "start")
        self._wait(lambda: self.docker_up(), timeout, "dockerd")

    def stop_dockerd(self) -> None:
        self.exec("/etc/init.d/docker", "stop", check=False)

    def running(self) -> bool:
        out = _docker("inspect", "-f", "{{.State.Running}}", self.name, check=False)
        return out.returncode == 0 and out.stdout.strip() == b"true"

    def docker_up(self) -> bool:
        return (
            self.exec(
                "docker", "version", "--format", "{{.Server.Version}}", check=False, timeout=20
            ).returncode
            == 0
        )

    def ssh_up(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.ssh_port), timeout=2) as s:
                return s.recv(4).startswith(b"SSH-")
        except OSError:
            return False

    # ---------------------------------------------------------------- Ansible
    def hostvars(self, **extra: Any) -> dict[str, Any]:
        return {
            "ansible_host": "127.0.0.1",
            "ansible_port": self.ssh_port,
            "ansible_user": "root",
            "ansible_connection": "ssh",
            "ansible_ssh_private_key_file": str(self.key_path),
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
            "-o LogLevel=ERROR",
            "ansible_python_interpreter": "/usr/bin/python3",
            **extra,
        }

    def inventory(self, path: str | Path, group: str = "docker_hosts", **hostvars: Any) -> Path:
        """Write an Ansible YAML inventory for this host alone; returns the path."""
        return write_inventory(path, [self], group=group, **hostvars)

    # ---------------------------------------------------------------- life cycle
    def _wait(self, probe: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        problem = f"not ready after {timeout:.0f}s"
        while time.monotonic() < deadline:
            if probe():
                return
            if not self.running():
                problem = "container exited"
                break
            time.sleep(0.2)
        raise DindError(
            f"{self.name}: {what} {problem}\n--- container log:\n"
            + _docker("logs", "--tail", "30", self.name, check=False).stderr.decode(errors="replace")
            + "\n--- /var/log/docker.log:\n"
            + "\n".join(self.dockerd_log().splitlines()[-30:])
        )

    def wait_ready(self, timeout: float = 90, load: Sequence[str] = (BUSYBOX,)) -> DindHost:
        """Wait for the host's dockerd and sshd, then load the given local images into it."""
        self._wait(self.docker_up, timeout, "dockerd")
        self._wait(self.ssh_up, timeout, "sshd")
        for ref in load:
            self.load_image(ref)
        self.ready_seconds = time.monotonic() - self.started_at
        return self

    def load_image(self, ref: str = BUSYBOX) -> None:
        """`docker save REF | docker exec -i HOST docker load`: nested containers need no pull."""
        saved = _docker("save", ref).stdout
        self.exec("docker", "load", "-q", input=saved)

    def remove(self) -> None:
        remove_host(self.name)


def remove_host(name: str) -> None:
    """Remove a test host and its /var/lib/docker volume (nested containers first, if it can)."""
    if not name.startswith(PREFIX):
        raise DindError(f"refusing to remove {name!r}: not a test host (names start with {PREFIX})")
    running = _docker("inspect", "-f", "{{.State.Running}}", name, check=False)
    if running.returncode == 0 and running.stdout.strip() == b"true":
        # Let the nested dockerd remove its containers (and their cgroups) before the kill.
        with contextlib.suppress(subprocess.TimeoutExpired):
            _docker(
                "exec",
                name,
                "sh",
                "-c",
                'ids=$(docker ps -aq 2>/dev/null) && [ -n "$ids" ] && docker rm -f $ids',
                check=False,
                timeout=30,
            )
    _docker("rm", "-f", "-v", name, check=False)
    _docker("volume", "rm", "-f", f"{name}-data", check=False)


def start_host(
    key_path: Path,
    *,
    name: str | None = None,
    image: str = "local/dind-host:latest",
    owner: str | None = None,
    ssh_port: int | None = None,
    env: dict[str, str] | None = None,
) -> DindHost:
    """Start one host (not waiting for it: call wait_ready)."""
    name = name or f"{PREFIX}{uuid.uuid4().hex[:8]}"
    if not name.startswith(PREFIX):
        raise DindError(f"test host names must start with {PREFIX}: {name!r}")
    pub = Path(f"{key_path}.pub").read_text().strip()
    for attempt in range(5):
        port = ssh_port or free_port()
        args = [
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "host",
            "--cap-add",
            "ALL",
            "--cap-drop",
            "SYS_RESOURCE",
            "--security-opt",
            "seccomp=unconfined",
            "--security-opt",
            "apparmor=unconfined",
            "-v",
            "/sys/fs/cgroup:/sys/fs/cgroup:rw",
            "--tmpfs",
            "/run",
            "-v",
            f"{name}-data:/var/lib/docker",
            "--label",
            f"{LABEL}=dind-host",
            "--label",
            f"{OWNER_LABEL}={owner or owner_token()}",
            "--label",
            f"org.hardening.ssh-port={port}",
            "-e",
            f"SSH_PORT={port}",
            "-e",
            f"SSH_AUTHORIZED_KEY={pub}",
        ]
        for k, v in (env or {}).items():
            args += ["-e", f"{k}={v}"]
        _docker(*args, image)
        host = DindHost(name, port, key_path, image)
        # sshd fails at once when another process took the port in the meantime
        time.sleep(0.3)
        if _docker("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == b"true":
            return host
        logs = _docker("logs", name, check=False).stderr.decode(errors="replace")
        remove_host(name)
        if ssh_port or "Address already in use" not in logs or attempt == 4:
            raise DindError(f"{name} exited at start:\n{logs}")
    raise AssertionError("unreachable")


def start_hosts(
    n: int, key_path: Path, *, owner: str | None = None, timeout: float = 120, **kw: Any
) -> list[DindHost]:
    """Start n hosts and wait until all are ready (in parallel). On failure none is left."""
    hosts: list[DindHost] = []
    try:
        for _ in range(n):
            hosts.append(start_host(key_path, owner=owner, **kw))
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, n)) as pool:
            list(pool.map(lambda h: h.wait_ready(timeout), hosts))
    except BaseException:
        for h in hosts:
            remove_host(h.name)
        raise
    return hosts


def list_hosts() -> list[dict[str, str]]:
    out = _docker(
        "ps",
        "-a",
        "--filter",
        f"label={LABEL}=dind-host",
        "--format",
        '{{.Names}}\t{{.Label "org.hardening.owner"}}\t{{.Label "org.hardening.ssh-port"}}\t{{.Status}}',
    ).stdout.decode()
    rows = []
    for line in out.splitlines():
        name, owner, port, status = [*line.split("\t"), "", "", "", ""][:4]
        if name.startswith(PREFIX):
            rows.append({"name": name, "owner": owner, "ssh_port": port, "status": status})
    return rows


def cleanup_stale() -> list[str]:
    """Remove test hosts whose owning test process is gone (killed runs), and orphan volumes."""
    removed = []
    for row in list_hosts():
        if not _owner_alive(row["owner"]):
            remove_host(row["name"])
            removed.append(row["name"])
    names = {r["name"] for r in list_hosts()}
    vols = _docker("volume", "ls", "-q", "--filter", f"name={PREFIX}").stdout.decode().split()
    for vol in vols:
        if vol.startswith(PREFIX) and vol.endswith("-data") and vol[: -len("-data")] not in names:
            _docker("volume", "rm", "-f", vol, check=False)
    return removed


def write_inventory(
    path: str | Path, hosts: Sequence[DindHost], group: str = "docker_hosts", **hostvars: Any
) -> Path:
    """An Ansible YAML inventory (JSON is valid YAML) reaching the hosts over SSH."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"all": {"children": {group: {"hosts": {h.name: h.hostvars(**hostvars) for h in hosts}}}}}
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


# ------------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tests.lib.dind",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="build images if needed, start hosts, write an inventory")
    up.add_argument("-n", "--count", type=int, default=1)
    up.add_argument("--name", action="append", default=[], help=f"host name(s), each starting with {PREFIX}")
    up.add_argument(
        "--suite",
        action="append",
        default=[],
        choices=SUITES,
        help=f"Debian release of the host(s): one for all, or one per --name (default {images.SUITE})",
    )
    up.add_argument("--inventory", default=str(CLI_DIR / "inventory.yml"))
    up.add_argument("--group", default="docker_hosts")
    up.add_argument("--plugin", action="store_true", help="also build and push the plugin double")
    down = sub.add_parser("down", help="remove the named hosts (see `list`)")
    down.add_argument("names", nargs="*")
    down.add_argument("--all-cli", action="store_true", help="every host started by `up` (anyone's)")
    down.add_argument("--all", action="store_true", help=f"every {PREFIX}* host, whoever started it")
    sub.add_parser("list")
    sub.add_parser("cleanup-stale")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "up":
            names = args.name or [None] * args.count
            suites = args.suite or [images.SUITE]
            if len(suites) == 1:
                suites = suites * len(names)
            elif len(suites) != len(names):
                raise DindError(
                    f"{len(suites)} --suite for {len(names)} host(s): give one --suite for all, "
                    "or one per --name"
                )
            wanted = [*dict.fromkeys(builder(s) for s in suites), "busybox"]
            images.build(wanted + (["plugin-double"] if args.plugin else []))
            key = generate_key(CLI_DIR / "id_ed25519")
            t0 = time.monotonic()
            hosts = []
            try:
                for n, s in zip(names, suites, strict=True):
                    hosts.append(start_host(key, name=n, owner="cli", image=suite_image(s)))
                with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
                    list(pool.map(lambda h: h.wait_ready(), hosts))
            except BaseException:
                for h in hosts:
                    remove_host(h.name)
                raise
            inv = write_inventory(args.inventory, hosts, group=args.group)
            for h in hosts:
                ready = f"ready in {h.ready_seconds:.1f}s"
                print(f"[dind] {h.name} ({h.image}): ssh root@127.0.0.1 -p {h.ssh_port} -i {key} ({ready})")
            print(f"[dind] {len(hosts)} host(s) ready in {time.monotonic() - t0:.1f}s; inventory: {inv}")
        elif args.cmd == "down":
            if args.all:
                names = [r["name"] for r in list_hosts()]
            elif args.all_cli:
                names = [r["name"] for r in list_hosts() if r["owner"] == "cli"]
            elif args.names:
                names = args.names
            else:
                raise DindError("name the hosts to remove (see `list`), or pass --all-cli / --all")
            for n in names:
                remove_host(n)
                print(f"[dind] removed {n}")
        elif args.cmd == "list":
            for r in list_hosts():
                print(f"{r['name']}\tport {r['ssh_port']}\towner {r['owner']}\t{r['status']}")
        elif args.cmd == "cleanup-stale":
            for n in cleanup_stale():
                print(f"[dind] removed stale {n}")
    except (DindError, images.BuildError) as e:
        print(f"[dind] ERROR: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
