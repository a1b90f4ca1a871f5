"""Pure-logic tests of the opa-docker-authz test double (no Docker): flags, v1 parsing, decisions,
answers, decision logs, -check, and the HTTP protocol on a real unix socket."""

from __future__ import annotations

import base64
import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.opa_docker_authz_double import server
from tests.opa_docker_authz_double.rego_v1 import v1_issues

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
    assert "not supported by opa-docker-authz-double" in capsys.readouterr().err
    assert server.main(["-config-file", "/c.yaml", "-policy-file", "/p"]) == 1
    assert "Only one of config-file and policy-file" in capsys.readouterr().err


def test_check_compiles_and_exits(tmp_path, capsys):
    good = tmp_path / "good.rego"
    good.write_text(V1)
    bad = tmp_path / "bad.rego"
    bad.write_text("package docker.authz\n\nallow { true }\n")
    assert server.main(["-check", "-policy-file", str(good)]) == 0
    assert server.main(["-check", "-policy-file", str(bad)]) == 1
    assert f"{bad}:3: rego_parse_error: `if` keyword is required before rule body" in capsys.readouterr().err
    assert server.main(["-check", "-policy-file", str(tmp_path / "missing.rego")]) == 1
    assert "no such file or directory" in capsys.readouterr().err


# ------------------------------------------------------------------ v1 mode


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("package p\nallow { true }\n", [(2, "`if` keyword is required before rule body")]),
        (
            "package p\ndeny[msg] { msg := 1 }\n",
            [(2, "`contains` keyword is required for partial set rules")],
        ),
        ("package p\nf(x) = y { y := x }\n", [(2, "`if` keyword is required before rule body")]),
        ("package p\nallow if { any([true]) }\n", [(2, "undefined function any")]),
        ("package p\nimport rego.v1\nallow if { true }\ndeny contains m if { m := 1 }\n", []),
        ('package p\nx := {"a": {"b": 1}}\ny = {1, 2}\nallow if x.a.b == 1\n', []),
        ('package p\n# allow { true }\ns := "allow { }"\n', []),
    ],
)
def test_v1_issues(source, expected):
    assert [(i.row, i.message) for i in v1_issues(source)] == expected


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
    return [json.loads(m) for m in re.findall(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (\{.*\})$", err, re.M)]


def test_decision_log_lines(policy, capsys):
    plugin(policy).authz_req(req(body={"HostConfig": {"Privileged": True}}))
    err = capsys.readouterr().err
    assert re.search(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d Returning OPA policy decision: false$", err, re.M)
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
    assert "Returning OPA policy decision: false (error: 1 error occurred:" in capsys.readouterr().err


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
