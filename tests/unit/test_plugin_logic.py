"""Unit tests of module_utils/plugin.py: pure logic, then request sequences against a fake engine.

The fake Engine API server (a thread serving HTTP on a temporary unix socket) reproduces the
behaviours of Docker 20.10 that the module depends on, as seen on a real daemon: ``set`` and
``upgrade`` refused on an enabled plugin, ``set`` applied key by key, ``pull`` refusing
privileges that differ from what the plugin asks, ``/plugins/privileges`` answering ``[]`` for
a reference that does not exist, the upgrade route refusing a 64-hex ID, the manifest digest
kept only on disk. The real engine is exercised by tests/integration/test_authz_plugin_module.py.
"""

from __future__ import annotations

import base64
import copy
import http.server
import json
import os
import re
import socket
import socketserver
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.hardening.docker_authz.plugins.module_utils import plugin as P
from ansible_collections.hardening.docker_authz.plugins.module_utils.docker_api import (
    DockerAPIError,
    DockerUnavailable,
)
from tests.lib.ansible_run import run_playbook

OPA_PRIVS = [
    {"Name": "network", "Description": "permissions to access a network", "Value": ["host"]},
    {"Name": "mount", "Description": "host path to mount", "Value": ["/etc/docker"]},
]
OPA_CONFIG = {
    "Args": {"Name": "opa-args", "Settable": ["value"], "Value": [], "Description": "args"},
    "Env": [
        {"Name": "DEBUG", "Settable": ["value"], "Value": "0"},
        {"Name": "FIXED", "Settable": [], "Value": "x"},
    ],
    "Mounts": [
        {
            "Name": "policy",
            "Source": "/etc/docker",
            "Destination": "/opa",
            "Settable": ["source"],
            "Type": "none",
        }
    ],
    "Linux": {"Devices": None},
    "Interface": {"Socket": "opa-docker-authz.sock", "Types": ["docker.authz/1.0"]},
    "Network": {"Type": "host"},
}
REG = "127.0.0.1:5000/opa-docker-authz"
REF_AMD = f"{REG}:v0.10-linux-amd64"


def digest(n: int) -> str:
    return "sha256:" + f"{n:064x}"


# --------------------------------------------------------------------------------------
# fake engine
# --------------------------------------------------------------------------------------
class FakeEngine:
    def __init__(
        self, root: Path, arch: str = "amd64", podman: bool = False, plugins_api: bool = True
    ) -> None:
        self.root = root
        self.arch = arch
        self.podman = podman
        self.plugins_api = plugins_api
        self.registry: dict[str, dict[str, Any]] = {}
        self.unreachable: set[str] = set()
        self.plugins: dict[str, dict[str, Any]] = {}  # id -> plugin object
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self.forced: list[str] = []  # paths of requests sent with force=1
        self.fail_enable: str | None = None
        self.enable_in_use = 0  # answer 409 "id already in use" this many times
        self.n = 0
        self.sock = str(root / "docker.sock")
        (root / "data").mkdir()

    # registry content
    def push(self, ref: str, dig: str, privileges: list[dict[str, Any]] | None = None) -> None:
        self.registry[P.parse_reference(ref).canonical] = {
            "digest": dig,
            "privileges": copy.deepcopy(OPA_PRIVS if privileges is None else privileges),
        }

    def mutations(self) -> list[str]:
        return [
            f"{m} {p}" + ("?force=1" if p in self.forced else "")
            for m, p, _, _ in self.requests
            if m in ("POST", "DELETE")
        ]

    def by_name(self, name: str) -> dict[str, Any] | None:
        for p in self.plugins.values():
            if p["Name"] == name or p["Id"] == name or p["Name"] == P.normalize_alias(name):
                return p
        return None

    def write_disk(self, p: dict[str, Any], manifest: str) -> None:
        d = self.root / "data" / "plugins" / p["Id"]
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps({"plugin": p, "Manifest": manifest}))

    def add_installed(
        self,
        ref: str,
        name: str = "opa-docker-authz:latest",
        enabled: bool = True,
        args: list[str] | None = None,
        dig: str | None = None,
    ) -> dict[str, Any]:
        self.n += 1
        pid = f"{self.n:064x}"
        p = {
            "Id": pid,
            "Name": name,
            "PluginReference": P.parse_reference(ref).canonical,
            "Enabled": enabled,
            "Config": copy.deepcopy(OPA_CONFIG),
            "Settings": {
                "Args": list(args or []),
                "Env": ["DEBUG=0", "FIXED=x"],
                "Mounts": copy.deepcopy(OPA_CONFIG["Mounts"]),
                "Devices": [],
            },
        }
        self.plugins[pid] = p
        self.write_disk(p, dig or self.registry[P.parse_reference(ref).canonical]["digest"])
        return p

    # HTTP
    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: Any) -> tuple[int, Any, dict]:
        url = urllib.parse.urlsplit(raw_path)
        path = re.sub(r"^/v1\.\d+", "", url.path)
        q = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        self.requests.append((method, path, headers, body))
        if q.get("force") in ("1", "true"):
            self.forced.append(path)
        ping_headers = {"API-Version": "1.41", "OSType": "linux"}
        if self.podman:
            ping_headers["Libpod-API-Version"] = "4.3.1"
        if path == "/_ping":
            return 200, b"OK", ping_headers
        if path == "/version":
            comps = [{"Name": "Podman Engine" if self.podman else "Engine", "Version": "x"}]
            return 200, {"Arch": self.arch, "Os": "linux", "ApiVersion": "1.41", "Components": comps}, {}
        if path == "/info":
            return 200, {"DockerRootDir": str(self.root / "data")}, {}
        if path.startswith("/plugins") and not self.plugins_api:
            return 404, {"message": "page not found"}, {}
        m = re.match(r"^/distribution/(.+)/json$", path)
        if m:
            ref = P.parse_reference(m.group(1))
            if ref.domain in self.unreachable:
                return (
                    500,
                    {
                        "message": f'Get "http://{ref.domain}/v2/": dial tcp {ref.domain}: connect: '
                        "connection refused"
                    },
                    {},
                )
            entry = self.registry.get(ref.canonical)
            if ref.digest:
                entry = next((e for e in self.registry.values() if e["digest"] == ref.digest), None)
            if entry is None:
                return 404, {"message": "manifest unknown: manifest unknown"}, {}
            return 200, {"Descriptor": {"digest": entry["digest"], "size": 418}, "Platforms": None}, {}
        if path == "/plugins":
            return 200, list(self.plugins.values()), {}
        if path == "/plugins/privileges":
            entry = self.registry.get(P.parse_reference(q["remote"]).canonical)
            return 200, (entry or {}).get("privileges", []), {}  # 20.10 answers [] for a missing ref
        if path == "/plugins/pull":
            ref = P.parse_reference(q["remote"])
            entry = self.registry[ref.canonical]
            if body != entry["privileges"]:
                return (
                    200,
                    [
                        {"status": "Pulling"},
                        {"error": "incorrect privileges", "errorDetail": {"message": "incorrect privileges"}},
                    ],
                    {},
                )
            p = self.add_installed(ref.canonical, name=P.normalize_alias(q["name"]), enabled=False)
            return 200, [{"status": f"Digest: {entry['digest']}"}, {"status": "Download complete"}], {}
        m = re.match(r"^/plugins/(.+?)(?:/(json|set|enable|disable|upgrade))?$", path)
        if m:
            target, op = m.group(1), m.group(2) or ""
            if op == "upgrade" and re.fullmatch(r"[0-9a-f]{64}", target):
                return (
                    500,
                    {
                        "message": f"invalid repository name ({target}), cannot specify 64-byte "
                        "hexadecimal strings"
                    },
                    {},
                )
            p = self.by_name(target)
            if p is None:
                return 404, {"message": f"plugin {target} not found"}, {}
            if op == "json":
                return 200, p, {}
            if op == "set":
                if p["Enabled"]:
                    return (
                        500,
                        {"message": "cannot set on an active plugin, disable plugin before setting"},
                        {},
                    )
                for item in body:
                    key, _, value = item.partition("=")
                    if key == "opa-args":
                        p["Settings"]["Args"] = value.split(" ")
                    elif key.endswith(".source"):
                        for mnt in p["Settings"]["Mounts"]:
                            if mnt["Name"] == key[: -len(".source")]:
                                mnt["Source"] = value
                    elif key in ("DEBUG",):
                        p["Settings"]["Env"] = [
                            e for e in p["Settings"]["Env"] if not e.startswith(key + "=")
                        ]
                        p["Settings"]["Env"].append(item)
                    else:
                        return 500, {"message": f'setting "{key}" not found in the plugin configuration'}, {}
                return 204, None, {}
            if op == "enable":
                if p["Enabled"]:
                    return 500, {"message": f"plugin {p['Name']} is already enabled"}, {}
                if self.fail_enable:
                    return 500, {"message": self.fail_enable}, {}
                if self.enable_in_use > 0:
                    self.enable_in_use -= 1
                    return 409, {"message": "error creating containerd container: id already in use"}, {}
                p["Enabled"] = True
                return 200, None, {}
            if op == "disable":
                if not p["Enabled"]:
                    return 500, {"message": f"plugin {p['Name']} is already disabled"}, {}
                p["Enabled"] = False
                return 200, None, {}
            if op == "upgrade":
                if p["Enabled"]:
                    return 500, {"message": "plugin must be disabled before upgrading"}, {}
                ref = P.parse_reference(q["remote"])
                entry = self.registry[ref.canonical]
                if body != entry["privileges"]:
                    return 200, [{"error": "incorrect privileges"}], {}
                p["PluginReference"] = ref.canonical
                self.write_disk(p, entry["digest"])
                return 200, [{"status": f"Digest: {entry['digest']}"}], {}
            if method == "DELETE":
                if p["Enabled"] and q.get("force") not in ("1", "true"):
                    return 500, {"message": f"plugin {p['Name']} is enabled"}, {}
                del self.plugins[p["Id"]]
                return 200, None, {}
        return 404, {"message": f"no route {method} {path}"}, {}


class _Handler(http.server.BaseHTTPRequestHandler):
    engine: FakeEngine

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        status, payload, extra = self.server.engine.handle(  # type: ignore[attr-defined]
            self.command, self.path, {k: v for k, v in self.headers.items()}, body
        )
        if isinstance(payload, bytes):
            data, ctype = payload, "text/plain"
        elif (
            isinstance(payload, list)
            and payload
            and isinstance(payload[0], dict)
            and ("status" in payload[0] or "error" in payload[0])
        ):
            data, ctype = b"".join(json.dumps(x).encode() + b"\r\n" for x in payload), "application/json"
        elif payload is None:
            data, ctype = b"", "text/plain"
        else:
            data, ctype = json.dumps(payload).encode(), "application/json"
        self.send_response(status)
        for k, v in extra.items():
            self.send_header(k, v)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = do_HEAD = _serve

    def address_string(self) -> str:
        return "fake"

    def log_message(self, *args: Any) -> None:
        pass


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def engine(tmp_path, monkeypatch):
    monkeypatch.setattr(P, "ENABLE_SETTLE_SECONDS", 0.0)  # the fake has no exit handler to wait for
    eng = FakeEngine(tmp_path)
    server = _Server(eng.sock, _Handler)
    server.engine = eng  # type: ignore[attr-defined]
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield eng
    server.shutdown()
    server.server_close()


def run(engine: FakeEngine, check: bool = False, **params: Any) -> dict[str, Any]:
    base = {
        "socket": engine.sock,
        "reference": REF_AMD,
        "state": "enabled",
        "args": P.DEFAULT_ARGS,
        "timeout": 5,
    }
    base.update(params)
    return P.ensure(base, check_mode=check)


def refused(engine: FakeEngine, check: bool = False, **params: Any) -> P.PluginError:
    with pytest.raises(P.PluginError) as info:
        run(engine, check=check, **params)
    return info.value


# --------------------------------------------------------------------------------------
# references
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "canonical", "familiar"),
    [
        ("opa", "docker.io/library/opa:latest", "opa:latest"),
        ("user/repo", "docker.io/user/repo:latest", "user/repo:latest"),
        ("index.docker.io/library/x:1", "docker.io/library/x:1", "x:1"),
        (
            "docker.io/openpolicyagent/opa-docker-authz-v2:0.4",
            "docker.io/openpolicyagent/opa-docker-authz-v2:0.4",
            "openpolicyagent/opa-docker-authz-v2:0.4",
        ),
        (
            "ghcr.io/open-policy-agent/opa-docker-authz:v0.10-linux-amd64",
            "ghcr.io/open-policy-agent/opa-docker-authz:v0.10-linux-amd64",
            "ghcr.io/open-policy-agent/opa-docker-authz:v0.10-linux-amd64",
        ),
        ("127.0.0.1:5000/x", "127.0.0.1:5000/x:latest", "127.0.0.1:5000/x:latest"),
        ("localhost/a/b", "localhost/a/b:latest", "localhost/a/b:latest"),
        ("localhost:5000/a/b:t", "localhost:5000/a/b:t", "localhost:5000/a/b:t"),
        ("Registry.Example.com/x", "Registry.Example.com/x:latest", "Registry.Example.com/x:latest"),
        ("[::1]:5000/x:y", "[::1]:5000/x:y", "[::1]:5000/x:y"),
        (f"r.io/x@{digest(1)}", f"r.io/x@{digest(1)}", f"r.io/x@{digest(1)}"),
        (f"r.io/x:v1@{digest(2)}", f"r.io/x:v1@{digest(2)}", f"r.io/x:v1@{digest(2)}"),
        ("a__b/c-d.e_f:1.0-rc_1", "docker.io/a__b/c-d.e_f:1.0-rc_1", "a__b/c-d.e_f:1.0-rc_1"),
    ],
)
def test_parse_reference_normalises_like_the_engine(text, canonical, familiar):
    ref = P.parse_reference(text)
    assert ref.canonical == canonical
    assert ref.familiar == familiar
    assert P.parse_reference(ref.canonical) == ref  # idempotent


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("  ", "empty"),
        ("Bad/Ref", "must be lowercase"),
        ("r.io/x:-bad", "tag '-bad'"),
        ("r.io/x:" + "a" * 129, "at most 128"),
        ("r.io/x@sha256:abc", "not algorithm:hex"),
        (f"r.io/x@sha256:{'a' * 63}0a", "64 hex digits"),
        ("r.io/x y", "whitespace"),
        ("r.io//x", "path component ''"),
        ("r.io/x!:1", "path component 'x!'"),
        ("-bad.io:5000/x", "registry host"),
        (":tag", "no repository name"),
    ],
)
def test_parse_reference_refuses_malformed(text, fragment):
    with pytest.raises(P.PluginError) as info:
        P.parse_reference(text)
    assert fragment in str(info.value)


def test_normalize_alias():
    assert P.normalize_alias("opa-docker-authz") == "opa-docker-authz:latest"
    assert P.normalize_alias("opa-docker-authz:v0.10") == "opa-docker-authz:v0.10"
    assert P.normalize_alias("corp/authz") == "corp/authz:latest"
    with pytest.raises(P.PluginError, match="cannot contain a digest"):
        P.normalize_alias(f"x@{digest(3)}")


# --------------------------------------------------------------------------------------
# architectures
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("tag", "arch"),
    [
        ("v0.10-linux-amd64", "amd64"),
        ("v0.10-linux-arm64", "arm64"),
        ("v0.10-linux-arm-v7", "arm"),
        ("v0.10-linux-386", "386"),
        ("v0.10_linux_s390x", "s390x"),
        ("0.9-aarch64", "arm64"),
        ("x86_64-0.9", "amd64"),
        ("v0.10", None),
        ("edge", None),
        ("1.386", None),  # a bare 386/arm is a version, not an arch
        ("armada", None),
        ("v0.10-linux-amd64-rc1", "amd64"),
    ],
)
def test_reference_arch(tag, arch):
    assert P.reference_arch(P.parse_reference(f"r.io/p:{tag}")) == arch


def test_default_reference_per_host_arch():
    assert P.default_reference("amd64") == "ghcr.io/open-policy-agent/opa-docker-authz:v0.10-linux-amd64"
    assert P.default_reference("aarch64") == "ghcr.io/open-policy-agent/opa-docker-authz:v0.10-linux-arm64"
    assert P.default_reference("x86_64", repository="m.io/authz", version="v1") == "m.io/authz:v1-linux-amd64"
    with pytest.raises(P.PluginError) as info:
        P.default_reference("s390x")
    assert "linux/amd64 and linux/arm64 only" in str(info.value) and "linux/s390x" in str(info.value)
    assert P.expand_reference(None, "arm64").endswith(":v0.10-linux-arm64")
    assert P.expand_reference("m.io/a:v1-linux-{arch}", "x86_64") == "m.io/a:v1-linux-amd64"
    assert P.expand_reference("m.io/a:v1", "arm64") == "m.io/a:v1"


def test_check_arch_refuses_other_arch_and_suggests_the_right_tag():
    with pytest.raises(P.PluginError) as info:
        P.check_arch(P.parse_reference(f"{REG}:v0.10-linux-arm64"), "amd64")
    msg = str(info.value)
    assert "built for linux/arm64" in msg and "this host is linux/amd64" in msg
    assert f"Use {REG}:v0.10-linux-amd64" in msg
    assert info.value.details == {"engine_arch": "amd64", "reference_arch": "arm64"}
    assert P.check_arch(P.parse_reference(f"{REG}:v0.10-linux-amd64"), "x86_64") is None
    assert "names no architecture" in (P.check_arch(P.parse_reference(f"{REG}:v0.10"), "amd64") or "")
    assert P.check_arch(P.parse_reference(f"{REG}@{digest(1)}"), "amd64") is None


# --------------------------------------------------------------------------------------
# privileges, args, settings, auth
# --------------------------------------------------------------------------------------
def test_parse_allowed_privileges_forms():
    allowed = P.parse_allowed_privileges(
        [
            "network=host",
            "mount=/etc/docker",
            {"name": "mount", "value": ["/srv/p"]},
            {"Name": "device", "Value": "/dev/x"},
            "host pid namespace=true",
        ]
    )
    assert allowed == {
        "network": {"host"},
        "mount": {"/etc/docker", "/srv/p"},
        "device": {"/dev/x"},
        "host pid namespace": {"true"},
    }
    for bad in (["network"], ["=host"], [{"name": "mount"}], [3]):
        with pytest.raises(P.PluginError, match="allowed_privileges item"):
            P.parse_allowed_privileges(bad)


def test_check_privileges_accepts_the_expected_set_and_refuses_more():
    allowed = P.parse_allowed_privileges(P.DEFAULT_ALLOWED_PRIVILEGES)
    P.check_privileges("x", OPA_PRIVS, allowed)
    P.check_privileges("x", [], allowed)
    asked = [
        *OPA_PRIVS,
        {"Name": "capabilities", "Value": ["CAP_SYS_ADMIN"]},
        {"Name": "mount", "Value": ["/"]},
    ]
    with pytest.raises(P.PluginError) as info:
        P.check_privileges("evil:1", asked, allowed)
    msg = str(info.value)
    assert "outside the expected set: capabilities=CAP_SYS_ADMIN, mount=/." in msg
    assert "It asks for: network=host, mount=/etc/docker, capabilities=CAP_SYS_ADMIN, mount=/;" in msg
    assert "grants: mount=/etc/docker, network=host" in msg
    assert info.value.details["refused"] == ["capabilities=CAP_SYS_ADMIN", "mount=/"]


def test_normalize_args_and_settings():
    assert P.normalize_args("-policy-file  /opa/p.rego  -quiet") == ["-policy-file", "/opa/p.rego", "-quiet"]
    assert P.normalize_args(["-policy-file /opa/p.rego", "-quiet"]) == [
        "-policy-file",
        "/opa/p.rego",
        "-quiet",
    ]
    assert P.normalize_args([]) == [] and P.normalize_args("") == [] and P.normalize_args(None) == []
    with pytest.raises(P.PluginError, match="not a string"):
        P.normalize_args([{"a": 1}])
    with pytest.raises(P.PluginError, match="string or a list"):
        P.normalize_args(5)
    assert P.parse_settings(["A=1", "policy.source=/x=y", "A=2"]) == [("A", "2"), ("policy.source", "/x=y")]
    with pytest.raises(P.PluginError, match="not KEY=VALUE"):
        P.parse_settings(["novalue"])


def test_registry_auth_header_is_base64url_json():
    enc = P.encode_registry_auth(
        {"username": "u", "password": "p?>>", "serveraddress": "m.io", "identitytoken": None}
    )
    assert enc is not None and "+" not in enc and "/" not in enc
    assert json.loads(base64.urlsafe_b64decode(enc)) == {
        "username": "u",
        "password": "p?>>",
        "serveraddress": "m.io",
    }
    assert P.encode_registry_auth(None) is None and P.encode_registry_auth({"username": None}) is None


def _state(**kw: Any) -> P.PluginState:
    obj = {
        "Id": "1" * 64,
        "Name": "opa-docker-authz:latest",
        "PluginReference": REF_AMD,
        "Enabled": True,
        "Config": copy.deepcopy(OPA_CONFIG),
        "Settings": {
            "Args": kw.pop("args", []),
            "Env": ["DEBUG=0", "FIXED=x"],
            "Mounts": copy.deepcopy(OPA_CONFIG["Mounts"]),
            "Devices": [],
        },
    }
    obj.update(kw)
    return P.PluginState.from_api(obj, digest(1))


def test_plugin_state_from_api_drops_trailing_empty_args_only():
    # an emptied setting ([""]) and a trailing empty word change nothing for the plugin
    assert _state(args=[""]).args == [] and _state(args=["-a", ""]).args == ["-a"]
    # an empty word inside (a double or leading space in opa-args=...) stops the plugin's flag
    # parsing there: it is a difference from the role's args, which the module then sets again
    assert _state(args=["-a", "", "b"]).args == ["-a", "", "b"]
    assert _state(args=["", "-a"]).args == ["", "-a"]
    st = _state()
    assert st.mounts == {"policy": "/etc/docker"} and st.env == {"DEBUG": "0", "FIXED": "x"}
    assert st.mounts_settable == {"policy": True} and st.env_settable == {"DEBUG": True, "FIXED": False}


def test_settings_changes_checks_every_key_first():
    allowed = P.parse_allowed_privileges(["mount=/etc/docker", "mount=/srv/p"])
    d = P.Desired(
        name="x",
        state="enabled",
        args=["-policy-file", "/p"],
        allowed=allowed,
        settings=[("DEBUG", "1"), ("policy.source", "/srv/p")],
    )
    assert P.settings_changes(_state(args=["-policy-file", "/p"]), d) == ["DEBUG=1", "policy.source=/srv/p"]
    assert P.settings_changes(_state(), d)[0] == "opa-args=-policy-file /p"
    same = P.Desired(
        name="x",
        state="enabled",
        args=[],
        settings=[("DEBUG", "0"), ("policy.source", "/etc/docker")],
        allowed=allowed,
    )
    assert P.settings_changes(_state(), same) == []
    cases = [
        (
            [("nope", "1")],
            "no setting 'nope'; settable: DEBUG, policy.source (args go in the args option: opa-args)",
        ),
        ([("FIXED", "y")], "does not let env FIXED be set"),
        ([("opa-args", "-x")], "with the args option"),
        ([("policy.source", "/")], "allowed_privileges does not grant (mount=/)"),
        ([("DEBUG", "1"), ("bad.path", "/dev/x")], "no setting 'bad.path'"),
    ]
    for settings, fragment in cases:
        with pytest.raises(P.PluginError) as info:
            P.settings_changes(
                _state(), P.Desired(name="x", state="enabled", settings=settings, allowed=allowed)
            )
        assert fragment in str(info.value)


# --------------------------------------------------------------------------------------
# plan
# --------------------------------------------------------------------------------------
def _desired(state: str = "enabled", ref: str = REF_AMD, **kw: Any) -> P.Desired:
    return P.Desired(name="opa-docker-authz:latest", state=state, reference=P.parse_reference(ref), **kw)


@pytest.mark.parametrize(
    ("current", "desired", "remote", "config", "steps"),
    [
        (None, _desired(args=["-x"]), digest(1), None, ["install", "configure", "enable"]),
        (None, _desired(args=[]), digest(1), None, ["install", "enable"]),
        (None, _desired("disabled", args=["-x"]), digest(1), None, ["install", "configure"]),
        (None, _desired("present", args=["-x"]), digest(1), None, ["install", "configure"]),
        (None, _desired("absent"), None, None, []),
        ("enabled", _desired(), digest(1), False, []),
        ("enabled", _desired(), digest(1), True, ["disable", "configure", "enable"]),
        ("enabled", _desired(), digest(2), False, ["disable", "upgrade", "enable"]),
        ("enabled", _desired(), digest(2), True, ["disable", "upgrade", "configure", "enable"]),
        (
            "enabled",
            _desired(ref=f"{REG}:v0.11-linux-amd64"),
            digest(1),
            False,
            ["disable", "upgrade", "enable"],
        ),
        ("enabled", _desired(force_upgrade=True), digest(1), False, ["disable", "upgrade", "enable"]),
        ("enabled", _desired(), None, False, []),  # digest not asked (digest_check false)
        ("enabled", _desired("disabled"), digest(1), False, ["disable"]),
        ("enabled", _desired("disabled"), digest(1), True, ["disable", "configure"]),
        ("enabled", _desired("present"), digest(1), True, ["disable", "configure", "enable"]),
        ("disabled", _desired("present"), digest(1), True, ["configure"]),
        ("disabled", _desired("enabled"), digest(1), False, ["enable"]),
        ("disabled", _desired("enabled"), digest(2), True, ["upgrade", "configure", "enable"]),
        ("enabled", _desired("absent"), None, None, ["disable", "remove"]),
        ("disabled", _desired("absent"), None, None, ["remove"]),
    ],
)
def test_plan_steps(current, desired, remote, config, steps):
    cur = None if current is None else _state(Enabled=current == "enabled")
    assert P.plan_steps(cur, desired, remote, config) == steps


def test_plan_does_not_upgrade_when_installed_digest_unknown():
    cur = _state()
    cur.digest = None
    assert P.plan_steps(cur, _desired(), digest(9), False) == []


def test_same_reference_normalises_both_sides():
    assert P.same_reference("docker.io/library/x:latest", P.parse_reference("x"))
    assert not P.same_reference("", P.parse_reference("x"))
    assert not P.same_reference("Bad/Ref", P.parse_reference("x"))


def test_registry_error_mapping():
    ref = P.parse_reference(REF_AMD)
    cases = [
        (
            404,
            "manifest unknown: manifest unknown",
            "image_not_found",
            "not found in registry 127.0.0.1:5000",
        ),
        (
            500,
            'Get "http://127.0.0.1:5999/v2/": dial tcp 127.0.0.1:5999: connect: connection refused',
            "registry_unreachable",
            "is unreachable from the Docker host",
        ),
        (500, "lookup nosuch.example: no such host", "registry_unreachable", "unreachable"),
        (500, "unauthorized: authentication required", "registry_unauthorized", "registry_auth"),
        (500, "http: server gave HTTP response to HTTPS client", "registry_insecure", "insecure-registries"),
        (500, "something odd", "registry_error", "cannot resolve"),
        # An authorization plugin already in the chain refuses the request (seen on 20.10 with
        # opa-docker-authz hooked: it cannot decode the JSON array body of POST /plugins/pull).
        (
            500,
            "plugin other-authz:latest failed with error: AuthZPlugin.AuthZReq: json: cannot unmarshal "
            "array into Go value of type map[string]interface {}",
            "authz_chain_refused",
            "the authorization plugin other-authz:latest, already in this engine's authorization-plugins",
        ),
        (
            403,
            "authorization denied by plugin corp-authz: plugin installs are not allowed",
            "authz_chain_refused",
            "take corp-authz out of authorization-plugins",
        ),
    ]
    from ansible_collections.hardening.docker_authz.plugins.module_utils.docker_api import DockerAPIError

    for status, message, reason, fragment in cases:
        err = P.registry_error(ref, DockerAPIError("GET", "/distribution", status, message))
        assert err.details["reason"] == reason, message
        assert fragment in str(err), message


# --------------------------------------------------------------------------------------
# request sequences against the fake engine
# --------------------------------------------------------------------------------------
def test_fresh_install_sequence_then_idempotent(engine):
    engine.push(REF_AMD, digest(1))
    plan = run(engine, check=True)
    assert plan["changed"] and plan["actions"] == ["installed", "configured", "enabled"]
    assert engine.mutations() == []  # check mode sends nothing that changes
    assert plan["plugin"]["enabled"] and plan["plugin"]["digest"] == digest(1)
    assert plan["plugin"]["args"] == ["-policy-file", "/opa/policies/authz.rego"]

    engine.requests.clear()
    res = run(engine)
    assert res["actions"] == ["installed", "configured", "enabled"]
    pid = res["plugin"]["id"]
    assert engine.mutations() == [
        "POST /plugins/pull",
        f"POST /plugins/{pid}/set",
        f"POST /plugins/{pid}/enable",
    ]
    pull = next(r for r in engine.requests if r[1] == "/plugins/pull")
    assert pull[3] == OPA_PRIVS
    gets = [p for m, p, _, _ in engine.requests if m == "GET"]
    assert gets.index(f"/distribution/{REF_AMD}/json") < gets.index("/plugins/privileges")
    assert res["plugin"] == {
        "id": pid,
        "name": "opa-docker-authz:latest",
        "reference": REF_AMD,
        "enabled": True,
        "args": ["-policy-file", "/opa/policies/authz.rego"],
        "digest": digest(1),
        "env": {"DEBUG": "0", "FIXED": "x"},
        "mounts": {"policy": "/etc/docker"},
    }
    assert res["privileges"] == OPA_PRIVS
    assert res["diff"]["before"] == {} and res["diff"]["after"] == res["plugin"]

    engine.requests.clear()
    again = run(engine)
    assert not again["changed"] and again["actions"] == [] and engine.mutations() == []
    assert again["privileges"] == []
    assert not run(engine, check=True)["changed"]


def test_args_change_on_enabled_plugin_disables_sets_enables(engine):
    engine.push(REF_AMD, digest(1))
    p = engine.add_installed(REF_AMD, args=["-policy-file", "/opa/policies/authz.rego"])
    res = run(engine, args=["-policy-file /opa/policies/authz.rego", "-quiet"])
    assert res["actions"] == ["disabled", "configured", "enabled"]
    assert engine.mutations() == [
        f"POST /plugins/{p['Id']}/disable",
        f"POST /plugins/{p['Id']}/set",
        f"POST /plugins/{p['Id']}/enable",
    ]
    set_body = next(r[3] for r in engine.requests if r[1].endswith("/set"))
    assert set_body == ["opa-args=-policy-file /opa/policies/authz.rego -quiet"]
    assert p["Enabled"] and p["Settings"]["Args"] == ["-policy-file", "/opa/policies/authz.rego", "-quiet"]
    assert res["diff"]["before"]["args"] == ["-policy-file", "/opa/policies/authz.rego"]


def test_present_keeps_enabled_state_and_disabled_disables(engine):
    engine.push(REF_AMD, digest(1))
    p = engine.add_installed(REF_AMD, enabled=False, args=["-policy-file", "/opa/policies/authz.rego"])
    assert run(engine, state="present")["actions"] == [] and not p["Enabled"]
    assert run(engine, state="enabled")["actions"] == ["enabled"] and p["Enabled"]
    assert run(engine, state="present")["actions"] == []
    assert run(engine, state="disabled")["actions"] == ["disabled"] and not p["Enabled"]


def test_upgrade_when_registry_digest_changed(engine):
    engine.push(REF_AMD, digest(1))
    p = engine.add_installed(REF_AMD, args=["-policy-file", "/opa/policies/authz.rego"])
    engine.push(REF_AMD, digest(2))
    plan = run(engine, check=True)
    assert plan["actions"] == ["disabled", "upgraded", "enabled"] and engine.mutations() == []
    assert plan["diff"]["before"]["digest"] == digest(1) and plan["plugin"]["digest"] == digest(2)
    res = run(engine)
    assert res["actions"] == ["disabled", "upgraded", "enabled"]
    assert engine.mutations() == [
        f"POST /plugins/{p['Id']}/disable",
        "POST /plugins/opa-docker-authz:latest/upgrade",
        f"POST /plugins/{p['Id']}/enable",
    ]
    assert res["plugin"]["digest"] == digest(2) and res["privileges"] == OPA_PRIVS
    assert not run(engine)["changed"]


def test_digest_check_false_needs_no_registry_once_installed(engine):
    engine.push(REF_AMD, digest(1))
    engine.add_installed(REF_AMD, args=["-policy-file", "/opa/policies/authz.rego"])
    engine.push(REF_AMD, digest(2))
    engine.unreachable.add("127.0.0.1:5000")
    err = refused(engine)
    assert err.details["reason"] == "registry_unreachable" and engine.mutations() == []
    engine.requests.clear()
    res = run(engine, digest_check=False)
    assert not res["changed"] and res["remote_digest"] is None
    assert engine.requests and not any(p.startswith("/distribution") for _, p, _, _ in engine.requests)


def test_reference_change_upgrades_and_keeps_settings(engine):
    engine.push(REF_AMD, digest(1))
    new = f"{REG}:v0.11-linux-amd64"
    engine.push(new, digest(5))
    p = engine.add_installed(REF_AMD, args=["-policy-file", "/opa/policies/authz.rego"])
    res = run(engine, reference=new)
    assert res["actions"] == ["disabled", "upgraded", "enabled"]
    assert (
        p["PluginReference"] == new
        and res["plugin"]["reference"] == new
        and res["plugin"]["digest"] == digest(5)
    )


def test_refusals_change_nothing(engine):
    engine.push(REF_AMD, digest(1))
    engine.push(
        f"{REG}:evil-linux-amd64",
        digest(7),
        privileges=[*OPA_PRIVS, {"Name": "capabilities", "Description": "", "Value": ["CAP_SYS_ADMIN"]}],
    )
    cases = [
        ({"reference": f"{REG}:v0.10-linux-arm64"}, "built for linux/arm64"),
        ({"reference": f"{REG}:nope"}, "not found in registry 127.0.0.1:5000"),
        ({"reference": "127.0.0.1:5999/opa-docker-authz:v0.10-linux-amd64"}, "127.0.0.1:5999 is unreachable"),
        ({"reference": f"{REG}:evil-linux-amd64"}, "outside the expected set: capabilities=CAP_SYS_ADMIN"),
        ({"allowed_privileges": ["network=host"]}, "outside the expected set: mount=/etc/docker"),
        ({"reference": "Bad/Ref"}, "must be lowercase"),
        ({"name": "x@" + digest(1)}, "cannot contain a digest"),
        ({"args": {"a": 1}}, "string or a list"),
        ({"allowed_privileges": ["nothing"]}, "not NAME=VALUE"),
        ({"state": "running"}, "not one of present, enabled, disabled, absent"),
    ]
    engine.unreachable.add("127.0.0.1:5999")
    for params, fragment in cases:
        for check in (True, False):
            err = refused(engine, check=check, **params)
            assert fragment in str(err), (params, str(err))
    assert engine.mutations() == [] and engine.plugins == {}
    # with a plugin installed, a refused upgrade leaves it as it was
    p = engine.add_installed(REF_AMD, args=["-policy-file", "/opa/policies/authz.rego"])
    before = copy.deepcopy(p)
    refused(engine, reference=f"{REG}:evil-linux-amd64")
    refused(engine, settings=["policy.source=/"])
    refused(engine, settings=["DEBUG=1", "nope=2"])  # checked before any set: DEBUG is not applied
    assert engine.mutations() == [] and p == before


@pytest.mark.parametrize("setting", ["policy.source=/", "gpu.path=/dev/mem"])
def test_a_settings_privilege_outside_the_allowed_set_is_refused_before_a_fresh_install(engine, setting):
    engine.push(REF_AMD, digest(1))
    for check in (True, False):
        err = refused(engine, check=check, settings=[setting])
        assert "allowed_privileges does not grant" in str(err) and "Nothing was installed" in str(err)
    assert engine.mutations() == [] and engine.plugins == {}


def test_check_mode_says_setting_names_wait_for_the_install(engine):
    engine.push(REF_AMD, digest(1))
    plan = run(engine, check=True, settings=["DEBUG=1"])
    assert any("checked against the plugin's config once it is installed" in w for w in plan["warnings"])
    assert engine.mutations() == []


def test_no_set_for_a_bad_key_after_install(engine):
    engine.push(REF_AMD, digest(1))
    err = refused(engine, settings=["nope=1"])
    assert "no setting 'nope'" in str(err)
    assert "Restored: removed the plugin this run installed" in str(err)
    assert err.details["actions"] == ["installed"] and err.details["before"] == {}
    assert engine.plugins == {}
    assert not any(r[1].endswith("/set") for r in engine.requests)


def test_enable_failure_after_fresh_install_removes_it(engine):
    engine.push(REF_AMD, digest(1))
    engine.fail_enable = (
        "dial unix /run/docker/plugins/x/opa-docker-authz.sock: connect: no such file or directory"
    )
    err = refused(engine)
    msg = str(err)
    assert "did not start: dial unix" in msg and "Done before the failure: installed, configured." in msg
    assert err.details["reason"] == "enable_failed" and err.details["restored"]
    assert err.details["planned"] == ["installed", "configured", "enabled"]
    assert engine.plugins == {}


def test_enable_failure_after_reconfigure_restores_previous_args(engine):
    engine.push(REF_AMD, digest(1))
    p = engine.add_installed(REF_AMD, args=["-policy-file", "/opa/policies/authz.rego"])
    engine.fail_enable = "plugin exited"
    err = refused(engine, args="-policy-file /opa/other.rego")
    assert err.details["before"]["args"] == ["-policy-file", "/opa/policies/authz.rego"]
    assert err.details["actions"] == ["disabled", "configured"]
    # the fake refuses enable while fail_enable is set, so the restore could only reset the args
    assert p["Settings"]["Args"] == ["-policy-file", "/opa/policies/authz.rego"]
    engine.fail_enable = None
    assert run(engine)["actions"] == ["enabled"]


def test_absent(engine):
    engine.push(REF_AMD, digest(1))
    p = engine.add_installed(REF_AMD)
    plan = run(engine, check=True, state="absent", reference="ignored:when-absent-linux-arm64")
    assert plan["actions"] == ["disabled", "removed"] and plan["plugin"] == {} and engine.mutations() == []
    res = run(engine, state="absent")
    assert res["actions"] == ["disabled", "removed"]
    assert engine.mutations() == [f"POST /plugins/{p['Id']}/disable", f"DELETE /plugins/{p['Id']}"]
    assert engine.plugins == {} and res["diff"]["before"]["id"] == p["Id"]
    assert not run(engine, state="absent")["changed"]


def test_force_passes_force_to_disable_and_remove(engine):
    engine.push(REF_AMD, digest(1))
    p = engine.add_installed(REF_AMD)
    run(engine, state="absent", force=True)
    assert engine.mutations() == [
        f"POST /plugins/{p['Id']}/disable?force=1",
        f"DELETE /plugins/{p['Id']}?force=1",
    ]


def test_registry_auth_reaches_the_engine(engine):
    engine.push(REF_AMD, digest(1))
    run(engine, registry_auth={"username": "u", "password": "s3cret", "serveraddress": "127.0.0.1:5000"})
    sent = {p: h.get("X-Registry-Auth") for m, p, h, _ in engine.requests}
    for path in (f"/distribution/{REF_AMD}/json", "/plugins/privileges", "/plugins/pull"):
        assert json.loads(base64.urlsafe_b64decode(sent[path]))["password"] == "s3cret"


def test_unreadable_digest_warns_and_does_not_upgrade(engine):
    engine.push(REF_AMD, digest(1))
    p = engine.add_installed(REF_AMD, args=["-policy-file", "/opa/policies/authz.rego"])
    os.remove(engine.root / "data" / "plugins" / p["Id"] / "config.json")
    engine.push(REF_AMD, digest(2))
    res = run(engine)
    assert not res["changed"]
    assert any("cannot read the installed plugin's manifest digest" in w for w in res["warnings"])


def test_fail_open_args_warn(engine):
    engine.push(REF_AMD, digest(1))
    res = run(engine, args=[], check=True)
    assert any("ALLOWS EVERY REQUEST" in w for w in res["warnings"])
    assert not any("ALLOWS" in w for w in run(engine, check=True)["warnings"])


def test_default_reference_follows_engine_arch(engine):
    engine.arch = "aarch64"
    err = refused(engine, reference=None, check=True)  # the official image is not in the fake registry
    assert "ghcr.io/open-policy-agent/opa-docker-authz:v0.10-linux-arm64 not found" in str(err)
    engine.push("127.0.0.1:5000/opa:v0.10-linux-arm64", digest(4))
    res = run(engine, reference="127.0.0.1:5000/opa:v0.10-linux-{arch}", check=True)
    assert res["reference"] == "127.0.0.1:5000/opa:v0.10-linux-arm64"


def test_podman_and_engines_without_plugins_are_refused(engine):
    engine.podman = True
    assert "Podman's Docker-compatible API" in str(refused(engine))
    engine.podman = False
    engine.plugins_api = False
    err = refused(engine)
    assert "no managed-plugin API" in str(err) and err.details["reason"] == "engine_unsupported"


def test_socket_missing_and_daemon_not_running(tmp_path):
    with pytest.raises(DockerUnavailable, match="does not exist"):
        P.ensure({"socket": str(tmp_path / "nope.sock"), "reference": REF_AMD})
    dead = tmp_path / "dead.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(dead))
    s.close()  # a socket file nobody listens on: what a stopped dockerd can leave behind
    with pytest.raises(DockerUnavailable, match="is dockerd running"):
        P.ensure({"socket": str(dead), "reference": REF_AMD})


def test_module_through_ansible_hides_registry_password(engine, tmp_path):
    """The real module file under ansible-playbook: arguments, diff, check mode, no_log."""
    engine.push(REF_AMD, digest(1))
    play = f"""
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Refused
      hardening.docker_authz.authz_plugin:
        socket: {engine.sock}
        reference: {REG}:v0.10-linux-arm64
      ignore_errors: true
    - name: Plan
      hardening.docker_authz.authz_plugin:
        socket: {engine.sock}
        alias: opa-docker-authz
        reference: {REF_AMD}
        registry_auth: {{username: u, password: TopSecret42, serveraddress: 127.0.0.1:5000}}
      check_mode: true
      diff: true
    - name: Install
      hardening.docker_authz.authz_plugin:
        socket: {engine.sock}
        reference: {REF_AMD}
        args: [-policy-file, /opa/policies/authz.rego, -quiet]
        registry_auth: {{username: u, password: TopSecret42, serveraddress: 127.0.0.1:5000}}
"""
    out = run_playbook(play, tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    plan = out.task("Plan")["result"]
    assert plan["changed"] and plan["actions"] == ["installed", "configured", "enabled"]
    assert plan["diff"]["before"] == {} and plan["diff"]["after"]["enabled"] is True
    inst = out.task("Install")["result"]
    assert inst["plugin"]["args"] == ["-policy-file", "/opa/policies/authz.rego", "-quiet"]
    assert "diff" not in inst
    bad = out.task("Refused")
    assert bad["status"] == "failed" and "built for linux/arm64" in bad["result"]["msg"]
    # (the Refused task comes first: Ansible's error report quotes the playbook lines around it)
    assert "TopSecret42" not in out.stdout + out.stderr + json.dumps(out.results)
    assert inst["invocation"]["module_args"]["registry_auth"]["username"] == "u"


def test_enable_retries_while_containerd_still_holds_the_old_container(engine):
    engine.push(REF_AMD, digest(1))
    p = engine.add_installed(REF_AMD, enabled=False, args=["-policy-file", "/opa/policies/authz.rego"])
    engine.enable_in_use = 2
    assert run(engine)["actions"] == ["enabled"] and p["Enabled"]
    assert engine.mutations() == [f"POST /plugins/{p['Id']}/enable"] * 3


def test_enable_gives_up_on_in_use_after_the_retry_window(engine, monkeypatch):
    monkeypatch.setattr(P, "ENABLE_RETRY_SECONDS", 0.2)
    engine.push(REF_AMD, digest(1))
    engine.add_installed(REF_AMD, enabled=False, args=["-policy-file", "/opa/policies/authz.rego"])
    engine.enable_in_use = 100
    err = refused(engine)
    assert "id already in use" in str(err) and err.details["reason"] == "enable_failed"


class _SlowStartClient:
    """A client whose engine answers 'dial unix ...' (the plugin's socket did not appear in the
    engine's window) for the first `failures` enables."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.enables = 0

    def post(self, path: str, body: object = None, query: object = None, timeout: float = 0) -> None:
        assert path == "/plugins/abc/enable"
        self.enables += 1
        if self.enables <= self.failures:
            sock = "/run/docker/plugins/abc/opa-docker-authz.sock"
            raise DockerAPIError("POST", path, 500, f"dial unix {sock}: connect: no such file or directory")


def test_enable_retries_a_plugin_slower_than_the_engines_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(P.time, "sleep", lambda s: None)
    client = _SlowStartClient(failures=2)
    P.PluginManager(client).enable("abc")  # type: ignore[arg-type]
    assert client.enables == 3


def test_enable_leaves_the_engine_alone_after_each_socket_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    # the engine's own restart of a plugin that exited at start runs its 12.5 s socket window
    # after the API call gave up: no next attempt (nor the caller's restore) inside it
    slept: list[tuple[float, int]] = []
    client = _SlowStartClient(failures=10)
    monkeypatch.setattr(P.time, "sleep", lambda s: slept.append((s, client.enables)))
    with pytest.raises(DockerAPIError):
        P.PluginManager(client).enable("abc")  # type: ignore[arg-type]
    settles = [n for s, n in slept if s == P.ENABLE_SETTLE_SECONDS]
    assert settles == list(range(1, client.enables + 1)), slept  # after every failure, the last too
    assert P.ENABLE_SETTLE_SECONDS > 12.5


class _Scripted:
    """A StartWatch scan that plays the plugin's processes over time: (seconds, shims, processes)."""

    def __init__(self, timeline: list[tuple[float, list[int], list[int]]]) -> None:
        self.timeline = timeline
        self.t0 = time.monotonic()

    def __call__(self) -> tuple[list[int], list[int]]:
        now = time.monotonic() - self.t0
        shims: list[int] = []
        processes: list[int] = []
        for at, s, p in self.timeline:
            if at <= now:
                shims, processes = s, p
        return shims, processes


def _watched_enable(
    monkeypatch: pytest.MonkeyPatch, timeline: list[tuple[float, list[int], list[int]]], window: float
) -> tuple[_SlowStartClient, DockerAPIError]:
    """Enable a plugin whose socket never appears; each enable lasts `window` seconds (the
    engine's dialling), while the scan plays `timeline` from the start of each attempt."""
    monkeypatch.setattr(P, "EXITED_QUIET_SECONDS", 0.3)
    monkeypatch.setattr(P, "START_WATCH_INTERVAL", 0.02)
    monkeypatch.setattr(P, "ENABLE_SETTLE_SECONDS", 0.0)
    client = _SlowStartClient(failures=10)
    post = client.post

    def slow_post(*args: object, **kw: object) -> None:
        time.sleep(window)
        post(*args, **kw)  # type: ignore[arg-type]

    client.post = slow_post  # type: ignore[method-assign]
    mgr = P.PluginManager(client, watch=lambda pid: P.StartWatch(_Scripted(timeline), 0.02))  # type: ignore[arg-type]
    with pytest.raises(DockerAPIError) as err:
        mgr.enable("abc")
    return client, err.value


def test_enable_does_not_retry_a_plugin_that_exited_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    # started twice within the window (the engine restarts it), gone after, the shim left behind
    client, err = _watched_enable(
        monkeypatch, [(0.0, [], []), (0.02, [7], [8]), (0.1, [7], []), (0.15, [9], [10]), (0.2, [9], [])], 0.8
    )
    assert client.enables == 1
    assert "exited at start" in err.message and "plugin=abc" in err.message
    assert "attempts to enable it failed" not in err.message


def test_enable_retries_a_plugin_alive_until_the_window_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    client, err = _watched_enable(monkeypatch, [(0.0, [], []), (0.05, [7], []), (0.1, [7], [8])], 0.6)
    assert client.enables == P.ENABLE_SLOW_START_RETRIES + 1
    assert "exited at start" not in err.message and "attempts to enable it failed" in err.message


def test_enable_retries_when_the_plugin_cannot_be_seen_from_here(monkeypatch: pytest.MonkeyPatch) -> None:
    # a remote engine or another pid namespace: no shim, no process - the old behaviour
    client, err = _watched_enable(monkeypatch, [(0.0, [], [])], 0.5)
    assert client.enables == P.ENABLE_SLOW_START_RETRIES + 1
    assert "exited at start" not in err.message


def test_a_plugin_that_exited_recently_is_not_counted_as_exited(monkeypatch: pytest.MonkeyPatch) -> None:
    # gone for less than EXITED_QUIET_SECONDS at the end: it may have been stopped by the engine
    client, err = _watched_enable(monkeypatch, [(0.0, [7], [8]), (0.45, [7], [])], 0.6)
    assert client.enables == P.ENABLE_SLOW_START_RETRIES + 1
    assert "exited at start" not in err.message


def test_enable_gives_up_after_the_slow_start_retries_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(P.time, "sleep", lambda s: None)
    client = _SlowStartClient(failures=10)
    with pytest.raises(DockerAPIError) as err:
        P.PluginManager(client).enable("abc")  # type: ignore[arg-type]
    assert client.enables == P.ENABLE_SLOW_START_RETRIES + 1
    assert "no such file or directory" in err.value.message
    assert f"{client.enables} attempts to enable it failed" in err.value.message
