"""Requests with large bodies sent to a DinD host's Docker socket from inside the host (its
python3), for the decision-log line-length tests: dockerd up to 24.0.2 stops reading a plugin's
stderr at a line over 64 KiB (docs/explain.md "Log volume")."""

from __future__ import annotations

import json
from typing import Any

BUSYBOX = "local/busybox:latest"

# Runs inside the host: python3 /tmp/flood.py (the spec in /tmp/flood.py.json); prints one JSON
# line {"results": [[HTTP status or null on a timeout, seconds], ...]}.
SENDER = r'''
import json, socket, sys, threading, time

def req(method, path, body, timeout):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    t = time.time()
    try:
        s.connect("/var/run/docker.sock")
        data = json.dumps(body).encode() if body is not None else b""
        head = (f"{method} {path} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n")
        s.sendall(head.encode() + data)
        buf = b""
        while b"\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        return [int(buf.split(b" ", 2)[1]) if buf else None, round(time.time() - t, 2)]
    except (socket.timeout, OSError):
        return [None, round(time.time() - t, 2)]
    finally:
        s.close()

spec = json.loads(sys.argv[1]) if len(sys.argv) > 1 else json.load(open(sys.argv[0] + ".json"))
results = [None] * len(spec["requests"])
def run(i, r):
    results[i] = req(r["method"], r["path"], r.get("body"), spec.get("timeout", 20))
threads = []
for i, r in enumerate(spec["requests"]):
    t = threading.Thread(target=run, args=(i, r))
    t.start()
    threads.append(t)
    if not spec.get("parallel"):
        t.join()
for t in threads:
    t.join()
print(json.dumps({"results": results}))
'''


def big_create(name: str, size: int, *, privileged: bool, image: str = BUSYBOX) -> dict[str, Any]:
    """A container create whose body carries a label of ``size`` characters."""
    host_config: dict[str, Any] = {"SecurityOpt": ["no-new-privileges"], "Memory": 67108864,
                                   "NanoCpus": 500000000, "PidsLimit": 100}  # fmt: skip
    if privileged:
        host_config["Privileged"] = True
    body = {"Image": image, "User": "1000", "Labels": {"big": "x" * size}, "HostConfig": host_config}
    return {"method": "POST", "path": f"/v1.41/containers/create?name={name}", "body": body}


def send(
    host: Any, requests: list[dict[str, Any]], *, timeout: float = 20, parallel: bool = False
) -> list[Any]:
    """Send the requests from inside the host; [[HTTP status or None on timeout, seconds], ...]."""
    host.write_file("/tmp/flood.py", SENDER)
    spec = {"requests": requests, "timeout": timeout, "parallel": parallel}
    host.write_file("/tmp/flood.py.json", json.dumps(spec))
    out = host.exec("python3", "/tmp/flood.py", timeout=timeout * (1 if parallel else len(requests)) + 60)
    return json.loads(out.stdout.strip().splitlines()[-1])["results"]
