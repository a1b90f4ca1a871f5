"""A fake Docker Engine API on a temporary unix socket, for the pure-logic tests of probes.py.

It answers like a daemon with an authorization plugin in front: an ``authz`` callable sees
each request (method, raw target, headers, body) and returns ``None`` (authorized), ``"deny"``
or ``"error"``; authorized requests get the answers a real daemon gives to the probes' names
(404 No such image / container / plugin, 503 not a swarm manager ...). Real enforcement is
tested on real engines in tests/integration/test_authz_verify_module.py.
"""

from __future__ import annotations

import json
import socketserver
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

Authz = Callable[["Request"], "str | None"]


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None


@dataclass
class FakeEngine:
    socket_path: str
    authz: Authz
    version: str = "20.10.24+dfsg1"
    api_version: str = "1.41"
    alias: str = "opa-docker-authz"
    plugins: list[dict[str, Any]] = field(default_factory=list)
    create_returns_201: bool = False
    podman: bool = False
    # Engines with the CVE-2026-34040 fix refuse a body over this many bytes before any plugin
    # (moby 25.0.16 / 29.3.1 and Debian 13's 26.1.5+dfsg1-9+deb13u1: 4 MiB); None: no limit.
    plugin_body_limit: int | None = None
    requests: list[Request] = field(default_factory=list)
    server: Any = None


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    engine: FakeEngine


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, doc: Any = None, headers: dict[str, str] | None = None) -> None:
        payload = b"" if doc is None else json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Api-Version", self.server.engine.api_version)
        self.send_header("Server", f"Docker/{self.server.engine.version} (linux)")
        if self.server.engine.podman:
            self.send_header("Libpod-Api-Version", "4.3.1")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _handle(self) -> None:
        engine = self.server.engine
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            # Read it all (closing with unread data resets the connection), then hand the
            # authorization none of it, as engines without the CVE-2024-41110 fix do.
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if not size:
                    self.rfile.readline()  # the empty line after the last chunk
                    break
                self.rfile.read(size + 2)  # the chunk and its CRLF
        req = Request(self.command, self.path, {k: v for k, v in self.headers.items()}, body)
        engine.requests.append(req)
        if req.path == "/_ping" and self.command == "HEAD":
            return self._send(200)  # -skip-ping: never asks the policy
        if engine.plugin_body_limit is not None and len(body) > engine.plugin_body_limit:
            return self._send(
                500,
                {
                    "message": "request body too large for authorization plugin: size exceeds "
                    f"{engine.plugin_body_limit} bytes"
                },
            )
        verdict = engine.authz(req)
        if verdict == "deny":
            return self._send(
                403,
                {
                    "message": f"authorization denied by plugin {engine.alias}: "
                    "request rejected by administrative policy"
                },
            )
        if verdict == "error":
            return self._send(
                500,
                {
                    "message": f"plugin {engine.alias} failed with error: "
                    "AuthZPlugin.AuthZReq: rego_parse_error: v0 syntax"
                },
            )
        self._route(req)

    def _route(self, req: Request) -> None:
        engine = self.server.engine
        path = req.path
        for prefix in (f"/v{engine.api_version}",):
            if path.startswith(prefix + "/"):
                path = path[len(prefix) :]
        path = path.replace("%2F", "/")
        if path == "/_ping":
            return self._send(200)
        if path == "/version":
            doc = {
                "Version": engine.version,
                "ApiVersion": engine.api_version,
                "Os": "linux",
                "Arch": "amd64",
            }
            if engine.podman:
                doc["Components"] = [{"Name": "Podman Engine", "Version": "4.3.1"}]
            return self._send(200, doc)
        if path == "/plugins" and req.method == "GET":
            return self._send(200, engine.plugins)
        if path == "/containers/json":
            return self._send(200, [])
        if path == "/containers/create":
            if engine.create_returns_201:
                return self._send(201, {"Id": "f" * 64, "Warnings": []})
            image = (req.json() or {}).get("Image", "")
            return self._send(404, {"message": f"No such image: {image}"})
        if path.startswith("/containers/") and req.method == "DELETE":
            return self._send(204)
        if path.startswith("/containers/"):
            return self._send(404, {"message": "No such container: hardening-verify-nonexistent"})
        if path.startswith("/services/"):
            return self._send(503, {"message": "This node is not a swarm manager."})
        if path == "/volumes/create":
            return self._send(201, {"Name": (req.json() or {}).get("Name"), "Driver": "local"})
        if path.startswith("/volumes/") and req.method == "DELETE":
            return self._send(204)
        if path.startswith("/plugins/"):
            return self._send(404, {"message": 'plugin "hardening-verify-nonexistent" not found'})
        if path == "/build":
            return self._send(500, {"message": "Cannot locate specified Dockerfile: Dockerfile"})
        if path == "/images/create":
            return self._send(500, {"message": "dial tcp 127.0.0.1:1: connect: connection refused"})
        return self._send(404, {"message": "page not found"})

    do_GET = do_POST = do_DELETE = do_HEAD = do_PUT = _handle


def start(authz: Authz, **kw: Any) -> FakeEngine:
    sock = Path(tempfile.mkdtemp(prefix="fake-engine-")) / "docker.sock"
    engine = FakeEngine(str(sock), authz, **kw)
    server = _Server(str(sock), _Handler)
    server.engine = engine
    engine.server = server
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return engine


def stop(engine: FakeEngine) -> None:
    engine.server.shutdown()
    engine.server.server_close()
    sock = Path(engine.socket_path)
    sock.unlink(missing_ok=True)
    sock.parent.rmdir()  # the mkdtemp of start(): left behind, 16 of them per run piled up in /tmp
