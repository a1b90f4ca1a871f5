# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""A small Docker Engine API client over the unix socket, standard library only.

Managed hosts need nothing but Python 3: no Docker SDK, no requests. Every call goes to
``unix://<socket_path>`` with an API version prefix negotiated once from ``/_ping``.

Errors are classes a caller can tell apart:

- ``DockerUnavailable``: no socket, connection refused, permission denied, or not a Docker
  Engine at all (the message says which and what to do);
- ``DockerAPIError``: the engine answered with an HTTP error status; carries ``status`` and
  the engine's ``message``.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import stat
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

DEFAULT_SOCKET = "/var/run/docker.sock"
# Oldest API we speak (Docker 20.10 = 1.41) and the newest we ask for.
MIN_API_VERSION = "1.40"
MAX_API_VERSION = "1.47"


class DockerError(Exception):
    """Base class of every error this client raises."""


class DockerUnavailable(DockerError):
    """The engine cannot be reached (or what answers is not a Docker Engine)."""


class DockerAPIError(DockerError):
    """The engine answered with an error status."""

    def __init__(self, method: str, path: str, status: int, message: str) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.message = message
        super().__init__(f"{method} {path}: HTTP {status}: {message}")


@dataclass
class Response:
    status: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        if not self.body:
            return None
        return json.loads(self.body.decode("utf-8"))

    @property
    def message(self) -> str:
        """The engine's error message (``{"message": ...}``) or the raw body."""
        text = self.body.decode("utf-8", "replace").strip()
        try:
            doc = json.loads(text)
        except ValueError:
            return text
        if isinstance(doc, dict) and "message" in doc:
            return str(doc["message"])
        return text


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split(".") if p.isdigit())


def parse_json_stream(data: bytes) -> list[Any]:
    """Split a stream of concatenated JSON documents (pull/push progress) into objects."""
    text = data.decode("utf-8", "replace")
    decoder = json.JSONDecoder()
    out: list[Any] = []
    i = 0
    while i < len(text):
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            break
        obj, i = decoder.raw_decode(text, i)
        out.append(obj)
    return out


class DockerClient:
    """Talk to one Docker Engine on its unix socket."""

    def __init__(
        self,
        socket_path: str = DEFAULT_SOCKET,
        timeout: float = 60.0,
        api_version: str | None = None,
    ) -> None:
        if socket_path.startswith("unix://"):
            socket_path = socket_path[len("unix://") :]
        self.socket_path = socket_path
        self.timeout = timeout
        self._api_version = api_version
        self._ping_headers: dict[str, str] | None = None

    # -- transport -------------------------------------------------------------------
    def _check_socket(self) -> None:
        try:
            st = os.stat(self.socket_path)
        except FileNotFoundError:
            raise DockerUnavailable(
                f"Docker socket {self.socket_path} does not exist: is Docker installed and dockerd "
                "running? Install docker (docker.io or docker-ce) and start it, or set the socket path."
            ) from None
        except PermissionError:
            raise DockerUnavailable(
                f"permission denied on {self.socket_path}: run as root (become: true)"
            ) from None
        if not stat.S_ISSOCK(st.st_mode):
            raise DockerUnavailable(f"{self.socket_path} exists but is not a unix socket")

    def raw_request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        versioned: bool = True,
        chunked: bool = False,
    ) -> Response:
        """Send one request and return the response whatever its status.

        ``body``: ``None``, ``bytes`` (sent as is), or any JSON value (sent as
        ``application/json``). ``path`` starts with ``/`` and has no version prefix unless
        ``versioned`` is false. ``chunked`` sends the body with ``Transfer-Encoding: chunked``
        and no Content-Length (the CVE-2024-41110 probe).
        """
        self._check_socket()
        url = path
        if versioned:
            url = f"/v{self.api_version}{path}"
        if query:
            pairs = []
            for k, v in query.items():
                if v is None:
                    continue
                if isinstance(v, bool):
                    v = "1" if v else "0"
                elif isinstance(v, (dict, list)):
                    v = json.dumps(v, separators=(",", ":"))
                pairs.append((k, str(v)))
            if pairs:
                url += "?" + urllib.parse.urlencode(pairs)
        hdrs = {"Host": "docker", "User-Agent": "hardening.docker_authz"}
        data: bytes | None = None
        if body is not None:
            if isinstance(body, bytes):
                data = body
            else:
                data = json.dumps(body).encode("utf-8")
                hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        conn = UnixHTTPConnection(self.socket_path, timeout if timeout is not None else self.timeout)
        try:
            try:
                if chunked and data is not None:
                    # an iterable body without Content-Length: http.client sends it chunked
                    conn.request(method, url, body=iter([data]), headers=hdrs, encode_chunked=False)
                else:
                    conn.request(method, url, body=data, headers=hdrs)
            except (BrokenPipeError, ConnectionResetError):
                # dockerd can answer (a denial, say) before it has read a large body, and close
                # its side: the answer is still there to read.
                if data is None:
                    raise
            resp = conn.getresponse()
            payload = resp.read()
            return Response(
                status=resp.status,
                reason=resp.reason,
                headers={k.lower(): v for k, v in resp.getheaders()},
                body=payload,
            )
        except (ConnectionRefusedError, FileNotFoundError) as exc:
            raise DockerUnavailable(
                f"cannot connect to the Docker daemon at unix://{self.socket_path} ({exc.strerror}): "
                "is dockerd running? Start it (systemctl start docker) and retry."
            ) from None
        except PermissionError:
            raise DockerUnavailable(
                f"permission denied on {self.socket_path}: run as root (become: true)"
            ) from None
        except TimeoutError:
            raise DockerUnavailable(
                f"Docker daemon at unix://{self.socket_path} did not answer {method} {path} within "
                f"{timeout if timeout is not None else self.timeout:.0f}s"
            ) from None
        except (http.client.HTTPException, OSError) as exc:
            raise DockerUnavailable(
                f"broken connection to unix://{self.socket_path} during {method} {path}: {exc}"
            ) from None
        finally:
            conn.close()

    # -- version negotiation -----------------------------------------------------------
    def ping(self) -> dict[str, str]:
        """``GET /_ping``; returns the response headers (API-Version, OSType, ...)."""
        resp = self.raw_request("GET", "/_ping", versioned=False)
        if resp.status != 200:
            raise DockerUnavailable(
                f"unix://{self.socket_path} answered /_ping with HTTP {resp.status}: {resp.message}"
            )
        self._ping_headers = resp.headers
        return resp.headers

    @property
    def api_version(self) -> str:
        if self._api_version is None:
            headers = self._ping_headers if self._ping_headers is not None else self.ping()
            server = headers.get("api-version")
            if not server:
                raise DockerUnavailable(
                    f"unix://{self.socket_path} answered /_ping without an API-Version header: "
                    "not a Docker Engine"
                )
            if _version_tuple(server) < _version_tuple(MIN_API_VERSION):
                raise DockerUnavailable(
                    f"Docker Engine API {server} is older than {MIN_API_VERSION} (Docker 19.03); "
                    "upgrade the engine"
                )
            self._api_version = min(server, MAX_API_VERSION, key=_version_tuple)
        return self._api_version

    # -- JSON helpers ------------------------------------------------------------------
    def call(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        ok: tuple[int, ...] = (200, 201, 204, 304),
    ) -> Any:
        """Send a request; return the parsed JSON body, or raise ``DockerAPIError``."""
        resp = self.raw_request(method, path, query=query, body=body, headers=headers, timeout=timeout)
        if resp.status not in ok:
            raise DockerAPIError(method, path, resp.status, resp.message)
        ctype = resp.headers.get("content-type", "")
        if not resp.body or "json" not in ctype:
            return None
        try:
            return resp.json()
        except ValueError:
            return parse_json_stream(resp.body)

    def call_stream(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> list[Any]:
        """A progress-streaming call (plugin pull/upgrade, image pull); raise on an error event."""
        resp = self.raw_request(method, path, query=query, body=body, headers=headers, timeout=timeout)
        if resp.status not in (200, 201, 204):
            raise DockerAPIError(method, path, resp.status, resp.message)
        events = parse_json_stream(resp.body) if resp.body else []
        for ev in events:
            if isinstance(ev, dict) and (ev.get("error") or ev.get("errorDetail")):
                detail = ev.get("errorDetail") or {}
                msg = ev.get("error") or detail.get("message") or json.dumps(ev)
                raise DockerAPIError(method, path, resp.status, str(msg))
        return events

    def get(self, path: str, **kw: Any) -> Any:
        return self.call("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.call("POST", path, body=body, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.call("DELETE", path, **kw)

    # -- engine facts ------------------------------------------------------------------
    def version(self) -> dict[str, Any]:
        return self.get("/version")

    def info(self) -> dict[str, Any]:
        return self.get("/info")

    def engine_kind(self) -> str:
        """``docker`` or ``podman`` (Podman's Docker-compatible socket), from ``/version``."""
        headers = self._ping_headers if self._ping_headers is not None else self.ping()
        if any(k.startswith("libpod") for k in headers):
            return "podman"
        ver = self.raw_request("GET", "/version", versioned=False).json() or {}
        for comp in ver.get("Components") or []:
            if "podman" in str(comp.get("Name", "")).lower():
                return "podman"
        return "docker"

    # -- added for probes.py -----------------------------------------------------------
    def ping_head(self) -> dict[str, str]:
        """``HEAD /_ping``: like ``ping()``, but the request opa-docker-authz lets through without
        asking its policy (``-skip-ping``, the default), so it answers even when the policy errors."""
        resp = self.raw_request("HEAD", "/_ping", versioned=False)
        if resp.status != 200:
            raise DockerUnavailable(f"unix://{self.socket_path} answered HEAD /_ping with HTTP {resp.status}")
        self._ping_headers = resp.headers
        return resp.headers
