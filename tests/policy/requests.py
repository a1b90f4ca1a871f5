"""Hand-made AuthZReq fixtures, shaped like what the docker CLI sends (see the corpus).

Every create starts from a container that complies with the restricted profile and changes
one thing, so a fixture breaks exactly the rule it is about.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from tests.policy.harness import request

IMAGE = "127.0.0.1:5000/hardening-capture/busybox:latest"
COMPLIANT_CONFIG: dict[str, Any] = {"Image": IMAGE, "User": "1000:1000", "Cmd": ["sleep", "60"], "Env": None}
COMPLIANT_HOST_CONFIG: dict[str, Any] = {
    "Memory": 67108864,
    "NanoCpus": 500000000,
    "PidsLimit": 100,
    "SecurityOpt": ["no-new-privileges"],
    "CapDrop": ["ALL"],
    "ReadonlyRootfs": True,
    "NetworkMode": "default",
}


def body_create(
    config: dict[str, Any] | None = None, host_config: dict[str, Any] | None = None
) -> dict[str, Any]:
    body = {**COMPLIANT_CONFIG, **(config or {})}
    body["HostConfig"] = {**COMPLIANT_HOST_CONFIG, **(host_config or {})}
    return body


def create(
    config: dict[str, Any] | None = None,
    host_config: dict[str, Any] | None = None,
    uri: str = "/v1.41/containers/create?name=c1",
) -> dict[str, Any]:
    return request("POST", uri, body_create(config, host_config))


def raw(
    method: str,
    uri: str,
    body_text: str | None,
    content_type: str | None = "application/json",
    headers: dict[str, str] | None = None,
    user: str = "",
) -> dict[str, Any]:
    """An AuthZReq with the body exactly as given (key case, duplicate keys ...)."""
    req: dict[str, Any] = {"RequestMethod": method, "RequestUri": uri}
    hdrs = dict(headers or {})
    if content_type:
        hdrs["Content-Type"] = content_type
    if body_text is not None:
        media = (content_type or "").split(";")[0].strip().lower()
        if media == "application/json":  # the daemon forwards only JSON bodies
            req["RequestBody"] = base64.b64encode(body_text.encode()).decode()
    if hdrs:
        req["RequestHeaders"] = hdrs
    if user:
        req["User"] = user
        req["UserAuthNMethod"] = "TLS"
    return req


def exec_create(body: dict[str, Any]) -> dict[str, Any]:
    return request("POST", "/v1.41/containers/0123abcd/exec", {"AttachStdout": True, "Cmd": ["id"], **body})


def update(body: dict[str, Any]) -> dict[str, Any]:
    return request("POST", "/v1.41/containers/0123abcd/update", body)


def service(
    container_spec: dict[str, Any] | None = None,
    task_template: dict[str, Any] | None = None,
    uri: str = "/v1.44/services/create",
    endpoint_spec: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A service that complies with the restricted profile (user, limits, NoNewPrivileges,
    read-only), with ``container_spec`` merged over its ContainerSpec (Privileges merged key by
    key) and ``task_template`` over its TaskTemplate."""
    extra = dict(container_spec or {})
    privileges = {"NoNewPrivileges": True, **(extra.pop("Privileges", None) or {})}
    spec = {
        "Image": IMAGE, "Args": ["sleep", "60"], "ReadOnly": True, "User": "1000:1000",
        "Privileges": privileges, **extra,
    }  # fmt: skip
    task = {
        "ContainerSpec": spec,
        "Resources": {"Limits": {"MemoryBytes": 64 << 20, "NanoCPUs": 500_000_000, "Pids": 100}},
        **(task_template or {}),
    }
    body: dict[str, Any] = {"Name": "svc", "TaskTemplate": task, "Mode": {"Replicated": {}}}
    if endpoint_spec is not None:
        body["EndpointSpec"] = endpoint_spec
    return request("POST", uri, body)


def volume(driver_opts: dict[str, str] | None, driver: str = "local") -> dict[str, Any]:
    return request(
        "POST",
        "/v1.41/volumes/create",
        {"Name": "v1", "Driver": driver, "DriverOpts": driver_opts or {}, "Labels": {}},
    )


def read(uri: str) -> dict[str, Any]:
    return request("GET", uri)


def write(method: str, uri: str, body: Any = None) -> dict[str, Any]:
    return request(method, uri, body)


def dumps(obj: Any) -> str:
    return json.dumps(obj)
