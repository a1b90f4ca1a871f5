"""Unit tests for tests/opa_docker_authz_double/opa_input.py (pure logic, a temp dir as fs root)."""

from __future__ import annotations

import base64
import json
import os

import pytest

from tests.opa_docker_authz_double.opa_input import (
    InputError,
    build_input,
    canonical_header_key,
    daemon_headers,
    go_clean,
    make_authz_request,
    skips_evaluation,
)


def req(
    uri: str,
    body: object = None,
    *,
    method: str = "POST",
    ctype: str | None = "application/json",
    raw: bytes | None = None,
    headers: dict | None = None,
) -> dict:
    r: dict = {"RequestMethod": method, "RequestUri": uri}
    hdrs = dict(headers or {})
    if ctype is not None:
        hdrs["Content-Type"] = ctype
    if hdrs:
        r["RequestHeaders"] = hdrs
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    if data:
        r["RequestBody"] = base64.b64encode(data).decode()
    return r


@pytest.fixture
def fsroot(tmp_path):
    """A small filesystem: /run/docker.sock, /var/run -> /run, /etc, /home/u/root -> /, rel link."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "docker.sock").write_text("")
    (tmp_path / "var").mkdir()
    os.symlink("/run", tmp_path / "var" / "run")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("")
    (tmp_path / "home" / "u").mkdir(parents=True)
    os.symlink("/", tmp_path / "home" / "u" / "root")
    os.symlink("../../etc", tmp_path / "home" / "u" / "etclink")
    os.symlink("loop2", tmp_path / "loop1")
    os.symlink("loop1", tmp_path / "loop2")
    return str(tmp_path)


def test_fields_of_a_container_create():
    body = {"Image": "busybox", "HostConfig": {"Privileged": True, "Binds": ["/etc:/h:ro"]}}
    inp = build_input(
        req("/v1.41/containers/create?name=x", body, headers={"User-Agent": "Docker-Client/20.10"})
    )
    assert inp["Path"] == "/v1.41/containers/create?name=x"
    assert inp["PathPlain"] == "/v1.41/containers/create"
    assert inp["PathArr"] == ["", "v1.41", "containers", "create"]
    assert inp["Query"] == {"name": ["x"]}
    assert inp["Method"] == "POST"
    assert inp["Body"] == body
    assert inp["User"] == "" and inp["AuthMethod"] == ""
    assert inp["Headers"] == {"User-Agent": "Docker-Client/20.10", "Content-Type": "application/json"}
    assert inp["BindMounts"] == [{"Source": "/etc", "ReadOnly": True, "Resolved": "/etc"}]
    assert set(inp) == {
        "Headers",
        "Path",
        "PathPlain",
        "PathArr",
        "Query",
        "Method",
        "Body",
        "User",
        "AuthMethod",
        "BindMounts",
    }


def test_body_invisible_unless_content_type_is_exactly_json():
    body = {"HostConfig": {"Privileged": True, "Binds": ["/:/host"]}}
    for ctype in ("application/json; charset=utf-8", "Application/JSON", "text/plain", None):
        inp = build_input(req("/containers/create", body, ctype=ctype))
        assert inp["Body"] is None, ctype
        assert inp["BindMounts"] is None
    # Go map lookup: a header map keyed "content-type" (never sent by the daemon) hides the body too.
    r = req("/containers/create", body, ctype=None, headers={"content-type": "application/json"})
    assert build_input(r)["Body"] is None


def test_body_edge_cases():
    assert build_input(req("/containers/create", raw=b"null"))["Body"] is None
    assert build_input(req("/containers/create"))["Body"] is None  # empty body
    assert build_input(req("/containers/create", raw=b' {"a": 1} \n'))["Body"] == {"a": 1}
    for bad in (b"[1,2]", b'"str"', b"12", b"{", b"{}{}", b'{"a": NaN}', b"\xef\xbb\xbf{}"):
        with pytest.raises(InputError):
            build_input(req("/containers/create", raw=bad))
    # The same bytes are harmless when the body is invisible.
    assert build_input(req("/containers/create", raw=b"[1]", ctype="text/plain"))["Body"] is None


def test_duplicate_keys_last_wins_and_numbers_like_go():
    raw = b'{"HostConfig": {"Privileged": true}, "HostConfig": {"Memory": 1}}'
    assert build_input(req("/containers/create", raw=raw))["Body"] == {"HostConfig": {"Memory": 1}}
    raw = b'{"a": 9007199254740993, "b": 1.0, "c": 0.5, "d": -1}'
    body = build_input(req("/x", raw=raw))["Body"]
    assert body == {"a": 9007199254740992, "b": 1, "c": 0.5, "d": -1}
    assert isinstance(body["b"], int)
    with pytest.raises(InputError):
        build_input(req("/x", raw=b'{"a": 1e400}'))


def test_paths_and_queries():
    inp = build_input(req("/v1.41/containers%2Fcreate?x=1", {}))
    assert inp["Path"] == "/v1.41/containers%2Fcreate?x=1"
    assert inp["PathPlain"] == "/v1.41/containers/create"
    assert inp["PathArr"] == ["", "v1.41", "containers", "create"]
    inp = build_input(req("/containers/create", {}))
    assert inp["PathArr"] == ["", "containers", "create"] and inp["Query"] == {}
    inp = build_input(
        req(
            "/build?networkmode=host&t=a+b&t=c%20d&bad=%zz&semi=1;x=2&&=e&f",
            method="POST",
            ctype="application/x-tar",
        )
    )
    assert inp["Query"] == {"networkmode": ["host"], "t": ["a b", "c d"], "": ["e"], "f": [""]}
    inp = build_input(req("/v1.41/containers/json?all=1#frag%41", method="GET", ctype=None))
    assert inp["PathPlain"] == "/v1.41/containers/json" and inp["Query"] == {"all": ["1"]}
    assert build_input(req("/_ping?", method="GET", ctype=None))["Query"] == {}
    assert build_input(req("/a+b%2Bc", method="GET", ctype=None))["PathPlain"] == "/a+b+c"
    # "//host/path" is an authority in Go's url.Parse; "///x" is not.
    assert build_input(req("//containers/create", {}))["PathPlain"] == "/create"
    assert build_input(req("///containers/create", {}))["PathPlain"] == "///containers/create"


def test_unparsable_uris_are_errors():
    for uri in ("/v1.41/containers%zzcreate", "/x%4", "/a\x01b", ":x", "1a:b/c", "//h:port/x", "/x#%zz"):
        with pytest.raises(InputError) as err:
            build_input(req(uri, {}))
        assert str(err.value)
    with pytest.raises(InputError, match='invalid URL escape "%zz"'):
        build_input(req("/containers%zz", {}))


def test_bind_mount_rules(fsroot):
    body = {
        "HostConfig": {
            "Binds": ["/etc:/a:ro", "/etc:/b:rw", "/etc:/c:ro,z", "/etc:/d", "vol:/e", "/etc:/f:ro:x", 7],
            "Mounts": [
                {"Type": "bind", "Source": "/etc", "Target": "/g", "ReadOnly": True},
                {"Type": "BIND", "Source": "/etc/", "Target": "/h"},
                {"Type": "volume", "Source": "v", "Target": "/i"},
                {"Type": "bind", "Source": "relative", "Target": "/j"},
                {"Source": "/etc", "Target": "/k"},
                "junk",
            ],
        }
    }
    mounts = build_input(req("/containers/create", body), fs_root=fsroot)["BindMounts"]
    assert [(m["Source"], m["ReadOnly"]) for m in mounts] == [
        ("/etc", True),
        ("/etc", False),
        ("/etc", False),
        ("/etc", False),
        ("/etc", False),
        ("/etc", True),
        ("/etc/", False),
    ]
    assert all(m["Resolved"] == "/etc" for m in mounts)
    # Go map lookup of HostConfig is case-sensitive: the daemon honours "hostconfig", the input does not.
    assert build_input(req("/containers/create", {"hostconfig": {"Binds": ["/:/h"]}}))["BindMounts"] is None
    assert build_input(req("/containers/create", {"HostConfig": {"binds": ["/:/h"]}}))["BindMounts"] is None
    assert build_input(req("/containers/create", {"HostConfig": None}))["BindMounts"] is None


@pytest.mark.parametrize(
    ("source", "resolved"),
    [
        ("/", "/"),
        ("//etc", "/etc"),
        ("/etc/", "/etc"),
        ("/etc/.", "/etc"),
        ("/var/run/docker.sock", "/run/docker.sock"),
        ("/var/run/../run/docker.sock", "/run/docker.sock"),
        ("/var/run/..", "/"),
        ("/home/u/root", "/"),
        ("/home/u/root/etc/passwd", "/etc/passwd"),
        ("/home/u/etclink/passwd", "/etc/passwd"),
        ("/../../etc", "/etc"),
        ("/nonexistent", ""),
        ("/etc/passwd/x", ""),
        ("/loop1", ""),
    ],
)
def test_resolved_follows_symlinks_inside_fs_root(fsroot, source, resolved):
    body = {"HostConfig": {"Binds": [f"{source}:/m"]}}
    (mount,) = build_input(req("/containers/create", body), fs_root=fsroot)["BindMounts"]
    assert mount == {"Source": source, "ReadOnly": False, "Resolved": resolved}


def test_authz_request_decoding_like_go():
    r = {
        "requestmethod": "GET",
        "REQUESTURI": "/info",
        "RequestHeaders": {"A": "1"},
        "Unknown": 5,
        "User": None,
    }
    inp = build_input(r)
    assert inp["Method"] == "GET" and inp["Path"] == "/info" and inp["User"] == ""
    assert build_input({"RequestUri": "/info"})["Headers"] is None
    for bad in (
        {"RequestUri": 5},
        {"RequestUri": "/x", "RequestBody": "!!!"},
        {"RequestUri": "/x", "RequestHeaders": {"A": 1}},
        {"RequestUri": "/x", "RequestHeaders": []},
        [],
    ):
        with pytest.raises(InputError):
            build_input(bad)
    assert (
        build_input(
            {
                "RequestUri": "/x",
                "RequestBody": "e30=\n",
                "RequestHeaders": {"Content-Type": "application/json"},
            }
        )["Body"]
        == {}
    )


def test_skips_ping_only_for_head():
    assert skips_evaluation({"RequestMethod": "HEAD", "RequestUri": "/_ping"})
    assert not skips_evaluation({"RequestMethod": "HEAD", "RequestUri": "/_ping"}, skip_ping=False)
    assert not skips_evaluation({"RequestMethod": "GET", "RequestUri": "/_ping"})
    assert not skips_evaluation({"RequestMethod": "HEAD", "RequestUri": "/v1.41/_ping"})


def test_daemon_side_headers():
    assert canonical_header_key("content-type") == "Content-Type"
    assert canonical_header_key("X-REGISTRY-AUTH") == "X-Registry-Auth"
    assert canonical_header_key("bad header") == "bad header"
    hdrs = daemon_headers(
        [
            ("content-type", "text/plain"),
            ("Content-Type", "application/json"),
            ("authorization", "x"),
            ("X-Registry-Auth", "y"),
            ("x-registry-config", "z"),
            ("X-Registry-Other", "kept"),
        ]
    )
    assert hdrs == {"Content-Type": "application/json", "X-Registry-Other": "kept"}


def test_make_authz_request_matches_daemon_body_rules():
    body = json.dumps({"HostConfig": {"Privileged": True}}).encode()
    r = make_authz_request(
        "POST", "/v1.41/containers/create", [("content-type", "application/json; charset=utf-8")], body
    )
    assert base64.b64decode(r["RequestBody"]) == body
    assert build_input(r)["Body"] is None  # forwarded by the daemon, invisible to the policy
    r = make_authz_request("POST", "/v1.41/auth", {"Content-Type": "application/json"}, b'{"password": "p"}')
    assert "RequestBody" not in r
    r = make_authz_request("POST", "/build", {"Content-Type": "application/x-tar"}, b"tar")
    assert "RequestBody" not in r and r["RequestHeaders"] == {"Content-Type": "application/x-tar"}
    r = make_authz_request("GET", "/info", {}, user="alice", auth_method="TLS")
    assert build_input(r)["User"] == "alice" and build_input(r)["AuthMethod"] == "TLS"


@pytest.mark.parametrize(
    ("path", "clean"),
    [
        ("", "."),
        ("/", "/"),
        ("//etc", "/etc"),
        ("/etc/", "/etc"),
        ("/a/../..", "/"),
        ("a/../..", ".."),
        ("/var/run/../run/docker.sock", "/var/run/docker.sock"),
        ("./a//b/.", "a/b"),
    ],
)
def test_go_clean(path, clean):
    assert go_clean(path) == clean
