"""Pure-logic tests of the opa-docker-authz test double (no Docker): flags, OPA's v1 parsing,
decisions, answers, decision logs, -check, the HTTP protocol on a real unix socket, and
config-file mode (local and remote bundles, signatures, blocking start, console decision logs)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import http.server
import io
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.opa_docker_authz_double import server

V1 = """package docker.authz

import rego.v1

default allow := false

allow if not input.Body.HostConfig.Privileged
"""


def req(method="POST", uri="/v1.41/containers/create", body=None):
    r = {"RequestMethod": method, "RequestUri": uri, "RequestHeaders": {"Content-Type": "application/json"}}
    if body is not None:
        r["RequestBody"] = base64.b64encode(json.dumps(body).encode()).decode()
    return r


@pytest.fixture
def policy(tmp_path):
    path = tmp_path / "authz.rego"
    path.write_text(V1)
    return path


def plugin(path, *extra):
    return server.Plugin(server.parse_flags(["-policy-file", str(path), *extra]))


# ------------------------------------------------------------------ flags


def test_flags_defaults_and_go_syntax():
    o = server.parse_flags([])
    assert (o.policy_file, o.allow_path, o.skip_ping, o.quiet, o.plugin_name) == (
        "",
        "data.docker.authz.allow",
        True,
        False,
        "opa-docker-authz",
    )
    o = server.parse_flags(["--policy-file=/p.rego", "-skip-ping=false", "-quiet", "-allowPath", "data.x.y"])
    assert (o.policy_file, o.skip_ping, o.quiet, o.allow_path) == ("/p.rego", False, True, "data.x.y")
    # Go's flag package stops at the first non-flag argument
    assert server.parse_flags(["-quiet", "stray", "-check"]).check is False


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-nope"], "flag provided but not defined: -nope"),
        (["-policy-file"], "flag needs an argument: -policy-file"),
        (["-quiet=maybe"], 'invalid boolean value "maybe" for -quiet: parse error'),
        (["-=x"], "bad flag syntax: -=x"),
    ],
)
def test_flag_errors(argv, message):
    with pytest.raises(server.FlagError, match=re.escape(message)):
        server.parse_flags(argv)


def test_main_exit_codes(tmp_path, capsys):
    assert server.main(["-nope"]) == 2
    assert server.main(["-version"]) == 0
    assert "TEST DOUBLE" in capsys.readouterr().out
    assert server.main(["-config-file", "/c.yaml"]) == 1
    assert "open /c.yaml: no such file or directory" in capsys.readouterr().err
    assert server.main(["-config-file", "/c.yaml", "-policy-file", "/p"]) == 1
    assert "Only one of config-file and policy-file" in capsys.readouterr().err


def test_check_compiles_and_exits(tmp_path, capsys):
    good = tmp_path / "good.rego"
    good.write_text(V1)
    bad = tmp_path / "bad.rego"
    bad.write_text("package docker.authz\n\nallow { true }\n")
    assert server.main(["-check", "-policy-file", str(good)]) == 0
    assert server.main(["-check", "-policy-file", str(bad)]) == 1
    # a parse error is the loader's error, printed whole; compile errors one per line
    assert capsys.readouterr().err == (
        f"1 error occurred: {bad}:3: rego_parse_error: `if` keyword is required before rule body\n"
    )
    bad.write_text("package docker.authz\n\nallow if { x := 1; x := 2 }\n")
    assert server.main(["-check", "-policy-file", str(bad)]) == 1
    assert capsys.readouterr().err == f"{bad}:3: rego_compile_error: var x assigned above\n"
    assert server.main(["-check", "-policy-file", str(tmp_path / "missing.rego")]) == 1
    assert "no such file or directory" in capsys.readouterr().err


# ------------------------------------------------------------------ v1 mode (OPA's own parser)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "package docker.authz\nallow { true }\n",
            "rego_parse_error: `if` keyword is required before rule body",
        ),
        (
            "package docker.authz\ndeny[msg] { msg := 1 }\n",
            "rego_parse_error: `contains` keyword is required for partial set rules",
        ),
        ("package docker.authz\nallow if { any([true]) }\n", "rego_type_error: deprecated built-in function"),
        ("package docker.authz\nallow if { x := 1; x := 2 }\n", "rego_compile_error: var x assigned above"),
        ("package docker.authz\nallow if { nope(1) }\n", "rego_type_error: undefined function nope"),
    ],
)
def test_opa_rejects_what_opa_1_rejects(tmp_path, source, message):
    path = tmp_path / "authz.rego"
    path.write_text(source)
    answer = plugin(path).authz_req(req())
    assert answer["Allow"] is False
    assert re.match(r"\d errors? occurred:", answer["Err"]), answer
    assert f"{path}:2: {message}" in answer["Err"], answer


def test_opa_accepts_v1_with_and_without_the_import(tmp_path):
    path = tmp_path / "authz.rego"
    path.write_text('package docker.authz\n\nallow if input.Method == "POST"\ndeny contains 1 if false\n')
    assert plugin(path).authz_req(req()) == {"Allow": True}
    path.write_text(V1)
    assert plugin(path).authz_req(req(body={})) == {"Allow": True}


# ------------------------------------------------------------------ decisions


def test_allow_and_deny(policy):
    p = plugin(policy)
    assert p.authz_req(req(body={"HostConfig": {"Privileged": False}})) == {"Allow": True}
    assert p.authz_req(req(body={"HostConfig": {"Privileged": True}})) == {
        "Allow": False,
        "Msg": "request rejected by administrative policy",
    }


def test_policy_reread_on_every_request(policy):
    p = plugin(policy)
    body = {"HostConfig": {"Privileged": True}}
    assert p.authz_req(req(body=body))["Allow"] is False
    policy.write_text("package docker.authz\n\nimport rego.v1\n\nallow := true\n")
    assert p.authz_req(req(body=body))["Allow"] is True


def test_fails_open_without_policy_or_args(tmp_path, capsys):
    body = {"HostConfig": {"Privileged": True}}
    assert plugin(tmp_path / "missing.rego").authz_req(req(body=body)) == {"Allow": True}
    assert server.Plugin(server.parse_flags([])).authz_req(req(body=body)) == {"Allow": True}
    assert "does not exist, failing open and allowing request" in capsys.readouterr().err


def test_undefined_denies_non_boolean_errors_v0_errors(policy):
    policy.write_text("package docker.authz\n\nimport rego.v1\n\nallow if input.nothing == 1\n")
    assert plugin(policy).authz_req(req())["Msg"] == "request rejected by administrative policy"
    policy.write_text('package docker.authz\n\nallow := "yes"\n')
    assert plugin(policy).authz_req(req()) == {
        "Allow": False,
        "Err": "administrative policy decision invalid",
    }
    policy.write_text("package docker.authz\n\nallow { true }\n")
    assert plugin(policy).authz_req(req()) == {
        "Allow": False,
        "Err": f"1 error occurred: {policy}:3: rego_parse_error: `if` keyword is required before rule body",
    }
    policy.write_text("package docker.authz\n\nallow if {\n")
    assert "rego_parse_error" in plugin(policy).authz_req(req())["Err"]


def test_allow_path_and_skip_ping(policy):
    policy.write_text("package docker.authz\n\nimport rego.v1\n\nallow := false\nother := true\n")
    assert plugin(policy, "-allowPath", "data.docker.authz.other").authz_req(req())["Allow"] is True
    ping = {"RequestMethod": "HEAD", "RequestUri": "/_ping"}
    assert plugin(policy).authz_req(ping)["Allow"] is True
    assert plugin(policy, "-skip-ping=false").authz_req(ping)["Allow"] is False


def test_bad_body_is_an_error_answer(policy):
    r = req()
    r["RequestBody"] = base64.b64encode(b"{not json").decode()
    answer = plugin(policy).authz_req(r)
    assert answer["Allow"] is False and answer["Err"]


def test_responses_always_allowed(policy):
    assert plugin(policy).authz_res({"ResponseStatusCode": 500}) == {"Allow": True}


# ------------------------------------------------------------------ decision logs


def decision_logs(err: str) -> list[dict]:
    """v0.10 logs a decision as ONE line: `Returning OPA policy decision: B: {json}`."""
    found = re.findall(
        r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d Returning OPA policy decision: (true|false): (\{.*\})$", err, re.M
    )
    for verdict, doc in found:
        assert json.loads(doc)["result"] is (verdict == "true")
    return [json.loads(doc) for _verdict, doc in found]


def test_decision_log_lines(policy, capsys):
    plugin(policy).authz_req(req(body={"HostConfig": {"Privileged": True}}))
    err = capsys.readouterr().err
    assert re.search(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d Returning OPA policy decision: false: \{", err, re.M)
    (log,) = decision_logs(err)
    assert set(log) == {"config_hash", "decision_id", "input", "labels", "result", "timestamp"}
    assert log["result"] is False and log["input"]["Body"]["HostConfig"]["Privileged"] is True
    assert log["labels"]["app"] == "opa-docker-authz" and log["labels"]["opa_version"] == "1.3.0"
    assert re.fullmatch(r"[0-9a-f]{64}", log["config_hash"])


def test_quiet_and_log_only_denied(policy, capsys):
    allowed, denied = req(body={}), req(body={"HostConfig": {"Privileged": True}})
    q = plugin(policy, "-quiet")
    q.authz_req(allowed)
    q.authz_req(denied)
    assert decision_logs(capsys.readouterr().err) == []
    d = plugin(policy, "-log-only-denied")
    d.authz_req(allowed)
    d.authz_req(denied)
    assert [log["result"] for log in decision_logs(capsys.readouterr().err)] == [False]


def test_errors_are_logged_even_when_quiet(policy, capsys):
    policy.write_text("package docker.authz\n\nallow { true }\n")
    plugin(policy, "-quiet").authz_req(req())
    err = capsys.readouterr().err
    assert "Returning OPA policy decision: false (error: '1 error occurred: " in err
    assert """; input: '{"AuthMethod":"","BindMounts":null,""" in err


# ------------------------------------------------------------------ HTTP on the unix socket


def test_plugin_protocol_over_unix_socket(tmp_path, policy):
    srv = server.serve(server.parse_flags(["-policy-file", str(policy), "-quiet"]), socket_dir=str(tmp_path))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:

        def post(path, doc):
            conn = http.client.HTTPConnection("localhost")
            conn.sock = socket.socket(socket.AF_UNIX)
            conn.sock.connect(str(tmp_path / "opa-docker-authz.sock"))
            conn.request(
                "POST", path, json.dumps(doc), {"Content-Type": "application/vnd.docker.plugins.v1.2+json"}
            )
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())

        assert post("/Plugin.Activate", {}) == (200, {"Implements": ["authz"]})
        assert post("/AuthZPlugin.AuthZReq", req(body={})) == (200, {"Allow": True})
        status, answer = post("/AuthZPlugin.AuthZReq", req(body={"HostConfig": {"Privileged": True}}))
        assert (status, answer["Msg"]) == (200, "request rejected by administrative policy")
        policy.write_text('package docker.authz\n\nallow := "x"\n')
        assert post("/AuthZPlugin.AuthZReq", req(body={})) == (
            500,
            {"Allow": False, "Err": "administrative policy decision invalid"},
        )
        assert post("/AuthZPlugin.AuthZRes", req())[1] == {"Allow": True}
        assert post("/Nope", {})[0] == 404
    finally:
        srv.shutdown()
        srv.server_close()


def test_sigterm_stops_the_server_at_once(tmp_path, policy):
    """Like the Go binary (which exits on SIGTERM even as a container's PID 1), the double must
    not ignore SIGTERM: `docker plugin disable` would otherwise wait 10 s for its SIGKILL."""
    code = (
        "import sys; from tests.opa_docker_authz_double import server; "
        "server.serve.__defaults__ = (sys.argv[1],); sys.exit(server.main(sys.argv[2:]))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path), "-policy-file", str(policy), "-quiet"],
        cwd=Path(__file__).resolve().parents[2],
        stderr=subprocess.PIPE,
    )
    try:
        sock = tmp_path / "opa-docker-authz.sock"
        deadline = time.monotonic() + 10
        while not sock.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sock.exists(), proc.stderr.read() if proc.poll() is not None else "no socket after 10 s"
        proc.send_signal(signal.SIGTERM)
        # A Python process without the handler dies by the signal (returncode -15).
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------ config-file mode

BUNDLE_POLICY = """package docker.authz

import data.docker.config

default allow := false

allow if not input.Body.HostConfig.Privileged
allow if input.Method == config.open_method
"""


def write_bundle(root: Path, revision: str = "r1", policy: str = BUNDLE_POLICY) -> Path:
    (root / "docker" / "authz").mkdir(parents=True, exist_ok=True)
    (root / "docker" / "config").mkdir(parents=True, exist_ok=True)
    (root / ".manifest").write_text(json.dumps({"revision": revision, "roots": ["docker"]}))
    (root / "docker" / "authz" / "authz.rego").write_text(policy)
    (root / "docker" / "config" / "data.json").write_text(json.dumps({"open_method": "GET"}))
    return root


def bundle_tar(root: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                tar.add(path, arcname="/" + str(path.relative_to(root)))
    return buf.getvalue()


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def sign(root: Path, alg: str, key, kid: str = "k1", scope: str | None = None, tamper: bool = False) -> None:
    """Write root/.signatures.json as `opa sign` does: a JWT listing every file's SHA-256."""
    files = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name != ".signatures.json":
            name = str(path.relative_to(root))
            files.append(
                {"name": name, "hash": server._file_hash(name, path.read_bytes()), "algorithm": "SHA-256"}
            )
    if tamper:
        files[0]["hash"] = "0" * 64
    payload = {"files": files, **({"scope": scope} if scope else {})}
    signing_input = (
        f"{b64url(json.dumps({'alg': alg, 'kid': kid}).encode())}.{b64url(json.dumps(payload).encode())}"
    )
    if alg == "HS256":
        sig = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    else:
        sig = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    (root / ".signatures.json").write_text(json.dumps({"signatures": [f"{signing_input}.{b64url(sig)}"]}))


def config_plugin(tmp_path: Path, config: dict, *extra: str) -> server.Plugin:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(config))
    opts = server.parse_flags(["-config-file", str(cfg), *extra])
    manager = server.BundleManager(server.parse_config(cfg.read_text()))
    manager.start()
    assert manager.ready.wait(20), "the bundles never activated"
    return server.Plugin(opts, manager)


def console_lines(err: str) -> list[dict]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def test_local_directory_bundle_compiled_once_with_data_and_console_logs(tmp_path, capsys):
    root = write_bundle(tmp_path / "bundle")
    config = {
        "bundles": {"authz": {"resource": f"file://{root}"}},
        "decision_logs": {"console": True},
    }
    p = config_plugin(tmp_path, config)
    engine = p.bundles.active.engine
    assert p.authz_req(req(body={"HostConfig": {"Privileged": False, "Memory": 67108864}})) == {"Allow": True}
    assert p.authz_req(req(body={"HostConfig": {"Privileged": True}}))["Msg"] == server.DENY_MSG
    assert p.authz_req(req(method="GET", uri="/v1.41/containers/json")) == {"Allow": True}  # data.json
    assert p.bundles.active.engine is engine  # compiled once, not per request
    # read ONCE: a change on disk is not seen
    (root / "docker" / "authz" / "authz.rego").write_text("package docker.authz\n\nallow := true\n")
    assert p.authz_req(req(body={"HostConfig": {"Privileged": True}}))["Msg"] == server.DENY_MSG
    err = capsys.readouterr().err
    logs = console_lines(err)
    assert [d["result"] for d in logs] == [True, False, True, False]
    first = logs[0]
    assert first["msg"] == "Decision Log" and first["path"] == "/docker/authz/allow"
    assert first["bundles"] == {"authz": {"revision": "r1"}}
    assert first["labels"]["version"] == "1.3.0" and first["labels"]["id"]
    assert "timer_rego_query_eval_ns" in first["metrics"] and first["decision_id"]
    assert first["input"]["Body"]["HostConfig"]["Privileged"] is False
    assert '"Memory":6.7108864e+07' in err  # numbers printed as Go floats, as the real plugin does
    assert "Returning OPA policy decision" not in err  # -quiet/-log-only-denied: policy-file mode only


def test_undefined_is_an_error_and_non_boolean_a_deny(tmp_path):
    root = write_bundle(tmp_path / "b", policy="package docker.authz\n\nallow := input.Body.Answer\n")
    p = config_plugin(tmp_path, {"bundles": {"authz": {"resource": f"file://{root}"}}})
    assert p.authz_req(req(body={"Answer": "yes"})) == {"Allow": False, "Msg": server.DENY_MSG}
    assert p.authz_req(req(body={"Answer": True})) == {"Allow": True}
    assert p.authz_req(req(body={})) == {
        "Allow": False,
        "Err": "opa_undefined_error: /docker/authz/allow decision was undefined",
    }


def test_tar_gz_bundle_and_allow_path(tmp_path):
    root = write_bundle(tmp_path / "b")
    tar = tmp_path / "bundle.tar.gz"
    tar.write_bytes(bundle_tar(root))
    p = config_plugin(
        tmp_path,
        {"bundles": {"authz": {"resource": f"file://{tar}"}}},
        "-allowPath",
        "data.docker.config.open_method",
    )
    assert p.allow_path == "/docker/config/open_method"
    assert p.authz_req(req()) == {"Allow": False, "Msg": server.DENY_MSG}  # "GET" is not true


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (
            lambda r: (r / "docker" / "authz" / "authz.rego").write_text(
                "package docker.authz\nallow { true }\n"
            ),
            "v0",
        ),
        (
            lambda r: (r / "docker" / "authz" / "x.rego").write_text("package other\nx := 1\n"),
            "outside the roots",
        ),
        (lambda r: shutil.rmtree(r), "missing"),
    ],
)
def test_a_local_bundle_that_never_loads_never_serves(tmp_path, mutate, reason):
    root = write_bundle(tmp_path / "b")
    mutate(root)
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"bundles": {"authz": {"resource": f"file://{root}"}}}))
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE_IN, str(tmp_path), "-config-file", str(cfg)],
        cwd=Path(__file__).resolve().parents[2],
        stderr=subprocess.PIPE,
    )
    try:
        time.sleep(1.5)
        assert proc.poll() is None, proc.stderr.read()
        assert not (tmp_path / "opa-docker-authz.sock").exists(), reason
    finally:
        proc.kill()
        proc.wait()


SERVE_IN = (
    "import sys; from tests.opa_docker_authz_double import server; "
    "server.serve.__defaults__ = (sys.argv[1],); sys.exit(server.main(sys.argv[2:]))"
)


def test_config_errors_are_fatal(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("bundles:\n  authz:\n    service: nope\n    resource: bundles/authz.tar.gz\n")
    assert server.main(["-config-file", str(cfg)]) == 1
    assert 'unknown service name "nope"' in capsys.readouterr().err


class BundleServer:
    """A bundle server on loopback: serves /bundles/authz.tar.gz with an ETag, counts requests."""

    def __init__(self) -> None:
        self.body = b""
        self.requests = 0
        self.not_modified = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.requests += 1
                etag = '"' + hashlib.sha256(outer.body).hexdigest() + '"'
                if self.path != "/bundles/authz.tar.gz" or self.headers.get("Authorization") != "Bearer t0k":
                    self.send_response(404)
                    self.end_headers()
                    return
                if self.headers.get("If-None-Match") == etag:
                    outer.not_modified += 1
                    self.send_response(304)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def bundle_server():
    srv = BundleServer()
    yield srv
    srv.close()


def remote_config(url: str, signing: dict | None = None, keys: dict | None = None) -> dict:
    bundle = {
        "service": "authz-server",
        "resource": "bundles/authz.tar.gz",
        "polling": {"min_delay_seconds": 0.2, "max_delay_seconds": 0.3},
    }
    if signing is not None:
        bundle["signing"] = signing
    return {
        "services": {"authz-server": {"url": url, "credentials": {"bearer": {"token": "t0k"}}}},
        "bundles": {"authz": bundle},
        "keys": keys or {},
        "decision_logs": {"console": True},
    }


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_remote_bundle_polls_activates_new_revisions_and_keeps_the_old_on_failure(tmp_path, bundle_server):
    root = write_bundle(tmp_path / "b", revision="r1")
    bundle_server.body = bundle_tar(root)
    p = config_plugin(tmp_path, remote_config(bundle_server.url))
    priv = req(body={"HostConfig": {"Privileged": True}})
    assert p.authz_req(priv)["Msg"] == server.DENY_MSG
    assert wait_for(lambda: bundle_server.not_modified >= 1)  # polls with If-None-Match
    # a new revision activates without a restart
    write_bundle(root, revision="r2", policy="package docker.authz\n\nallow := true\n")
    bundle_server.body = bundle_tar(root)
    assert wait_for(lambda: p.bundles.active.revisions == {"authz": "r2"})
    assert p.authz_req(priv) == {"Allow": True}
    # a revision that does not compile is not activated: the old one stays
    write_bundle(root, revision="r3", policy="package docker.authz\n\nallow { true }\n")
    bundle_server.body = bundle_tar(root)
    seen = bundle_server.requests
    assert wait_for(lambda: bundle_server.requests >= seen + 3)
    assert p.bundles.active.revisions == {"authz": "r2"} and p.authz_req(priv) == {"Allow": True}
    # a broken download (not a tar.gz) neither
    bundle_server.body = b"not a bundle"
    seen = bundle_server.requests
    assert wait_for(lambda: bundle_server.requests >= seen + 3)
    assert p.bundles.active.revisions == {"authz": "r2"}
    p.bundles.stop()


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(private) -> str:
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.mark.parametrize("alg", ["RS256", "HS256"])
def test_signed_bundles_activate_only_with_a_good_signature(tmp_path, bundle_server, rsa_key, alg):
    secret = "s3cret-shared"
    key = rsa_key if alg == "RS256" else secret
    keys = {"k1": {"algorithm": alg, "key": _pem(rsa_key) if alg == "RS256" else secret}}
    root = write_bundle(tmp_path / "b", revision="good")
    sign(root, alg, key, scope="docker")
    bundle_server.body = bundle_tar(root)
    p = config_plugin(tmp_path, remote_config(bundle_server.url, {"keyid": "k1", "scope": "docker"}, keys))
    assert p.bundles.active.revisions == {"authz": "good"}
    bad_cases = [
        ("tampered", lambda: sign(root, alg, key, scope="docker", tamper=True)),
        ("wrong scope", lambda: sign(root, alg, key, scope="other")),
        (
            "unsigned file",
            lambda: (
                sign(root, alg, key, scope="docker"),
                (root / "extra.rego").write_text("package docker.x\n"),
            ),
        ),
        ("no signature", lambda: (root / ".signatures.json").unlink()),
    ]
    other = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048) if alg == "RS256" else "other-secret"
    )
    bad_cases.append(("wrong key", lambda: sign(root, alg, other, scope="docker")))
    for label, make_bad in bad_cases:
        if (root / "extra.rego").exists():
            (root / "extra.rego").unlink()
        write_bundle(root, revision=label, policy="package docker.authz\n\nallow := true\n")
        make_bad()
        bundle_server.body = bundle_tar(root)
        seen = bundle_server.requests
        assert wait_for(lambda seen=seen: bundle_server.requests >= seen + 2)
        assert p.bundles.active.revisions == {"authz": "good"}, label
    # and a correctly signed new revision activates
    write_bundle(root, revision="good2", policy="package docker.authz\n\nallow := true\n")
    sign(root, alg, key, scope="docker")
    bundle_server.body = bundle_tar(root)
    assert wait_for(lambda: p.bundles.active.revisions == {"authz": "good2"})
    assert p.authz_req(req(body={"HostConfig": {"Privileged": True}})) == {"Allow": True}
    p.bundles.stop()


def test_a_remote_bundle_blocks_start_until_it_loads(tmp_path, bundle_server):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(remote_config(bundle_server.url)))
    bundle_server.body = b""
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE_IN, str(tmp_path), "-config-file", str(cfg)],
        cwd=Path(__file__).resolve().parents[2],
        stderr=subprocess.PIPE,
    )
    sock = tmp_path / "opa-docker-authz.sock"
    try:
        assert wait_for(lambda: bundle_server.requests >= 3)
        assert not sock.exists() and proc.poll() is None
        bundle_server.body = bundle_tar(write_bundle(tmp_path / "b"))
        assert wait_for(sock.exists), "the socket is served once the bundle activated"
    finally:
        proc.terminate()
        assert proc.wait(timeout=5) == 0


def test_the_roles_bundle_loads_and_enforces_in_config_file_mode(tmp_path, capsys):
    """The bundle the role ships (policy_bundle filter: .manifest, data.json, lib.rego, rules/)
    as a file:/// directory bundle: compiled once, a privileged create denied, docker ps allowed."""
    from tests.policy.harness import bundle_files

    root = tmp_path / "bundle"
    for rel, text in bundle_files(profile="restricted").items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    manifest = json.loads((root / ".manifest").read_text())
    p = config_plugin(
        tmp_path, {"bundles": {"authz": {"resource": f"file://{root}"}}, "decision_logs": {"console": True}}
    )
    assert p.authz_req(req(method="GET", uri="/v1.41/containers/json")) == {"Allow": True}
    assert (
        p.authz_req(req(body={"Image": "busybox", "HostConfig": {"Privileged": True}}))["Msg"]
        == server.DENY_MSG
    )
    logs = console_lines(capsys.readouterr().err)
    # the bundle's system/log.rego drops allowed decisions no rule in audit flags (pure enforce)
    assert [d["result"] for d in logs] == [False]
    assert logs[0]["bundles"] == {"authz": {"revision": manifest["revision"]}}


# ------------------------------------------------------------------ old-tag mode (0.8, Rego v0)

V0 = """package docker.authz

default allow = false

allow {
    not deny
}

deny {
    input.Body.HostConfig.Privileged == true
}
"""


@pytest.fixture
def old(monkeypatch, tmp_path):
    """OPA_DOUBLE_TAG=0.8 (what the :0.8 image's config.json sets) and a v0 policy."""
    monkeypatch.setenv("OPA_DOUBLE_TAG", "0.8")
    path = tmp_path / "authz.rego"
    path.write_text(V0)
    return path


def old_plugin(path, *extra):
    return server.Plugin(server.parse_flags(["-policy-file", str(path), *extra], "0.8"))


def test_old_tag_evaluates_v0_and_logs_two_lines(old, capsys):
    p = old_plugin(old)
    assert p.authz_req(req(body={"HostConfig": {"Privileged": False}})) == {"Allow": True}
    assert p.authz_req(req(body={"HostConfig": {"Privileged": True}})) == {
        "Allow": False,
        "Msg": "request rejected by administrative policy",
    }
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4, lines
    assert re.fullmatch(r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d Returning OPA policy decision: true", lines[0])
    assert lines[2].endswith("Returning OPA policy decision: false")
    logged = json.loads(lines[3].split(" ", 2)[2])
    assert logged["labels"]["plugin_version"] == "0.8" and logged["labels"]["opa_version"] == "0.30.0"
    assert logged["result"] is False and "BindMounts" not in logged["input"]


def test_old_tag_rejects_v1_syntax_as_a_parse_error(old, capsys):
    old.write_text(V1)
    answer = old_plugin(old).authz_req(req(body={"HostConfig": {"Privileged": False}}))
    assert answer["Allow"] is False and "rego_parse_error" in answer["Err"], answer
    assert answer["Err"].startswith("2 errors occurred: ") or answer["Err"].startswith("1 error occurred: ")
    err = capsys.readouterr().err
    # 0.8 prints the input as Go prints a []byte: decimal numbers
    assert "Returning OPA policy decision: false (error: " in err and "; input: [123 34 " in err, err


def test_old_tag_takes_array_bodies_and_has_no_log_only_denied(old, monkeypatch):
    # 0.8's makeInput unmarshals into interface{}: a JSON array body (plugin install's privileges)
    # is evaluated, where v0.10 answers "json: cannot unmarshal array ..."
    body = [{"Name": "network", "Value": ["host"]}]
    assert old_plugin(old).authz_req(req(uri="/v1.41/plugins/pull?remote=x", body=body)) == {"Allow": True}
    monkeypatch.delenv("OPA_DOUBLE_TAG")  # v0.10, unchanged
    assert (
        server.Plugin(server.parse_flags(["-policy-file", str(old)]))
        .authz_req(req(uri="/v1.41/plugins/pull?remote=x", body=body))["Err"]
        .startswith("json: cannot unmarshal array")
    )
    with pytest.raises(server.FlagError, match="flag provided but not defined: -log-only-denied"):
        server.parse_flags(["-log-only-denied"], "0.8")


def test_old_tag_non_boolean_errors_undefined_denies(old):
    old.write_text('package docker.authz\n\nallow = "yes" { true }\n')
    invalid = {"Allow": False, "Err": "administrative policy decision invalid"}
    assert old_plugin(old).authz_req(req()) == invalid
    old.write_text("package docker.authz\n\nallow { input.nothing == 1 }\n")
    assert old_plugin(old).authz_req(req())["Msg"] == "request rejected by administrative policy"


def test_old_tag_main_version_check_and_config_file(old, tmp_path, capsys, monkeypatch):
    assert server.main(["-version"]) == 0
    assert "Version: 0.8 " in capsys.readouterr().out
    assert server.main(["-check", "-policy-file", str(old)]) == 0
    old.write_text(V1)
    assert server.main(["-check", "-policy-file", str(old)]) == 1
    assert "rego_parse_error" in capsys.readouterr().err
    assert server.main(["-config-file", str(tmp_path / "c.yaml")]) == 1
    monkeypatch.setenv("OPA_DOUBLE_TAG", "0.3")
    with pytest.raises(SystemExit, match=r"emulates v0\.10"):
        server.emulated_tag()
