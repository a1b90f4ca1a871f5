"""The capture environment: a logging authorization plugin and a private dockerd using it.

Nothing here touches the machine's own dockerd, /etc/docker or /var/run/docker.sock: the
private daemon has its own --data-root, --exec-root, --pidfile, socket and --config-file, all
under STATE (/var/tmp/hardening-capture), and the plugin listens on its own socket name.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import socketserver
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

STATE = Path(os.environ.get("HARDENING_CAPTURE_STATE", "/var/tmp/hardening-capture"))
PLUGIN_NAME = "hardening-capture-authz"
PLUGIN_DIR = Path("/run/docker/plugins")
PLUGIN_SOCK = PLUGIN_DIR / f"{PLUGIN_NAME}.sock"
DOCKER_SOCK = STATE / "docker.sock"
DOCKER_HOST = f"unix://{DOCKER_SOCK}"
SWARM_PORT = 24377
DATA_PATH_PORT = 24789


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _PluginServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def address_string(self) -> str:  # unix sockets have no client address
        return "unix"

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path == "/Plugin.Activate":
            answer: dict[str, Any] = {"Implements": ["authz"]}
        elif self.path == "/AuthZPlugin.AuthZReq":
            self.server.record(json.loads(raw))
            answer = {"Allow": True}
        elif self.path == "/AuthZPlugin.AuthZRes":
            answer = {"Allow": True}
        else:
            answer = {"Err": f"unknown endpoint {self.path}"}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.docker.plugins.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _PluginServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str) -> None:
        super().__init__(path, _Handler)
        self.records: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def record(self, req: dict[str, Any]) -> None:
        with self.lock:
            self.records.append(req)


class LoggingPlugin:
    """A legacy authorization plugin that allows everything and records every AuthZReq."""

    def __init__(self) -> None:
        PLUGIN_DIR.mkdir(parents=True, exist_ok=True)
        if PLUGIN_SOCK.exists():
            PLUGIN_SOCK.unlink()
        self.server = _PluginServer(str(PLUGIN_SOCK))
        self.thread = threading.Thread(target=self.server.serve_forever, name="authz-logger", daemon=True)
        self.thread.start()

    def mark(self) -> int:
        with self.server.lock:
            return len(self.server.records)

    def since(self, mark: int) -> list[dict[str, Any]]:
        with self.server.lock:
            return list(self.server.records[mark:])

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if PLUGIN_SOCK.exists():
            PLUGIN_SOCK.unlink()


class PrivateDaemon:
    """dockerd with every piece of state under STATE, using the logging plugin."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = STATE / "dockerd.log"

    def start(self) -> None:
        for sub in ("data", "exec"):
            (STATE / sub).mkdir(parents=True, exist_ok=True)
        config = {
            "authorization-plugins": [PLUGIN_NAME],
            "insecure-registries": ["127.0.0.1:5000", "localhost:5000"],
            "storage-driver": "vfs",
        }
        (STATE / "daemon.json").write_text(json.dumps(config, indent=2) + "\n")
        if DOCKER_SOCK.exists():
            DOCKER_SOCK.unlink()
        cmd = [
            "dockerd",
            "--data-root",
            str(STATE / "data"),
            "--exec-root",
            str(STATE / "exec"),
            "--pidfile",
            str(STATE / "dockerd.pid"),
            "-H",
            DOCKER_HOST,
            "--config-file",
            str(STATE / "daemon.json"),
            "--bridge=none",
            "--iptables=false",
        ]
        log = open(self.log_path, "wb")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"private dockerd exited: {self.log_tail()}")
            if _ping():
                return
            time.sleep(0.2)
        raise RuntimeError(f"private dockerd did not answer within 60 s: {self.log_tail()}")

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def _ping() -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(str(DOCKER_SOCK))
            s.sendall(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def raw_http(request: bytes, timeout: float = 120) -> tuple[int, bytes]:
    """Send these exact bytes to the private daemon; return (status, body) of the answer.

    The request must carry ``Connection: close``: the answer is read until the daemon closes.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(DOCKER_SOCK))
        s.sendall(request)
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    answer = b"".join(chunks)
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    if b"transfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    return status, body


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            break
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return bytes(out)


def api(method: str, path: str, body: Any = None, timeout: float = 120) -> tuple[int, Any]:
    """A plain JSON API call to the private daemon (used for set-up, cleanup and inspection)."""
    data = b"" if body is None else json.dumps(body).encode()
    head = f"{method} {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\nContent-Length: {len(data)}\r\n"
    if body is not None:
        head += "Content-Type: application/json\r\n"
    status, raw = raw_http(head.encode() + b"\r\n" + data, timeout=timeout)
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def wipe_state() -> None:
    """Remove the private daemon's state (after it stopped)."""
    if STATE.exists():
        # The stopped daemon can leave mounts under its exec-root (netns/default): unmount ours only.
        prefix = str(STATE) + "/"
        with open("/proc/self/mounts") as mounts:
            points = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
        for point in sorted(points, key=len, reverse=True):
            subprocess.run(["umount", point], capture_output=True, check=False)
        # --one-file-system: never follow a mount that a crashed container may have left behind.
        subprocess.run(["rm", "-rf", "--one-file-system", str(STATE)], capture_output=True, check=False)
