"""Bundle mode helpers without Docker: plugin tags, the bundle folder sync, OPA signatures
(checked with the test double's verifier, which follows OPA's), finding a plugin's process."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.hashes import SHA256

from module_utils.bundle import (
    BundleFilesError,
    bundle_mode_problem,
    bundle_support_problem,
    read_bundle_dir,
    signatures_document,
    signing_input,
    sync_files,
    write_tarball,
)
from module_utils.plugin_restart import find_plugin_pids, plugin_processes
from tests.opa_docker_authz_double import server


@pytest.mark.parametrize(
    ("image", "problem"),
    [
        ("ghcr.io/open-policy-agent/opa-docker-authz:v0.10-linux-amd64", ""),
        ("openpolicyagent/opa-docker-authz-v2:0.9", ""),
        ("ghcr.io/open-policy-agent/opa-docker-authz:edge", ""),
        ("registry.example.com/opa-docker-authz", ""),
        ("registry.example.com/opa@sha256:" + "a" * 64, ""),
        ("openpolicyagent/opa-docker-authz-v2:0.4", "has no -config-file"),
        ("127.0.0.1:5000/opa-docker-authz-v2:0.4@sha256:" + "a" * 64, "has no -config-file"),
        ("127.0.0.1:5000/opa-docker-authz", ""),
        ("openpolicyagent/opa-docker-authz-v2:0.8", "cannot load a bundle directory"),
        ("registry.example.com/opa:stable", "cannot tell from the plugin image tag 'stable'"),
    ],
)
def test_bundle_support_by_tag(image: str, problem: str) -> None:
    got = bundle_support_problem(image)
    assert (problem in got) if problem else got == ""


def test_sync_files_writes_removes_and_is_idempotent(tmp_path: Path) -> None:
    d = str(tmp_path / "bundle")
    files = {
        ".manifest": '{"roots": ["docker/authz"]}\n',
        "docker/authz/rules/a.rego": "package docker.authz\n",
    }
    r = sync_files(d, files, check_mode=True)
    assert r["changed"] and r["written"] == sorted(files) and not os.path.exists(d)
    r = sync_files(d, files)
    assert r["changed"] and read_bundle_dir(d) == {k: v.encode() for k, v in files.items()}
    assert os.stat(d).st_mode & 0o777 == 0o750
    assert os.stat(f"{d}/docker/authz/rules/a.rego").st_mode & 0o777 == 0o640
    assert not sync_files(d, files)["changed"]
    smaller = {".manifest": files[".manifest"]}
    r = sync_files(d, smaller, read=True)
    assert r["removed"] == ["docker/authz/rules/a.rego"] and r["files"] == files
    assert sorted(read_bundle_dir(d)) == [".manifest"]
    assert sync_files(d, None, absent=True)["removed"] == [".manifest"] and not os.path.exists(d)


def test_sync_files_refuses_paths_outside_and_foreign_folders(tmp_path: Path) -> None:
    with pytest.raises(BundleFilesError, match="relative path"):
        sync_files(str(tmp_path / "b"), {"../x": ""})
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("mine")
    with pytest.raises(BundleFilesError, match="holds no bundle"):
        sync_files(str(home), {".manifest": "{}"}, only_bundles=True)
    assert (home / "notes.txt").read_text() == "mine"


def _keys() -> tuple[rsa.RSAPrivateKey, str]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public.decode()


def _signed(files: dict[str, bytes], private: rsa.RSAPrivateKey) -> bytes:
    signed = signing_input(files, "authz")
    return signatures_document(signed, private.sign(signed.encode(), padding.PKCS1v15(), SHA256())).encode()


def test_signatures_verify_with_the_right_key_only(tmp_path: Path) -> None:
    files = {
        ".manifest": b'{"revision": "r1", "roots": ["docker/authz"]}\n',
        "docker/authz/data.json": b'{"config": {"max": 1073741824, "b": [1, 2], "a": "<&>"}}\n',
        "docker/authz/lib.rego": b"package docker.authz\n",
    }
    private, public = _keys()
    doc = _signed(files, private)
    keys = {"authz": {"algorithm": "RS256", "key": public}}
    server.verify_signatures({**files, ".signatures.json": doc}, {"keyid": "authz"}, keys)
    _, other = _keys()
    with pytest.raises(server.BundleError, match="verify the JWT signature"):
        wrong = {"authz": {"algorithm": "RS256", "key": other}}
        server.verify_signatures({**files, ".signatures.json": doc}, {"keyid": "authz"}, wrong)
    tampered = {**files, "docker/authz/lib.rego": b"package docker.authz\nallow := true\n"}
    with pytest.raises(server.BundleError, match="digest mismatch"):
        server.verify_signatures({**tampered, ".signatures.json": doc}, {"keyid": "authz"}, keys)
    # the tarball for a bundle server: `opa build` member names, readable by the double
    dest = tmp_path / "authz.tar.gz"
    write_tarball({**files, ".signatures.json": doc}, str(dest))
    with tarfile.open(fileobj=io.BytesIO(dest.read_bytes()), mode="r:gz") as tar:
        assert sorted(tar.getnames())[0] == "/.manifest"
    server.verify_signatures(server.read_bundle_tar(dest.read_bytes()), {"keyid": "authz"}, keys)
    assert json.loads(doc)["signatures"][0].count(".") == 2


def test_find_plugin_pids_follows_the_shim(tmp_path: Path) -> None:
    plugin_id = "0a749fc0fe17c0dfb0bd4aabae7eedb277add54b6a074b616dd9fcfde5e0db13"

    def proc(pid: int, ppid: int, cmdline: list[str], cgroup: str = "") -> None:
        d = tmp_path / str(pid)
        d.mkdir()
        (d / "cmdline").write_bytes(b"\0".join(c.encode() for c in cmdline) + b"\0")
        (d / "stat").write_text(f"{pid} (x y) S {ppid} 1 1 0")
        (d / "cgroup").write_text(cgroup)

    proc(67, 1, ["/usr/sbin/dockerd"])
    proc(168, 1, ["containerd-shim-runc-v2", "-namespace", "plugins.moby", "-id", plugin_id, "-address", "x"])
    proc(188, 168, ["python3", "server.py"], f"0::/{plugin_id}\n")
    proc(170, 1, ["containerd-shim-runc-v2", "-namespace", "moby", "-id", "other"])
    proc(190, 170, ["sleep"], "0::/other\n")
    assert find_plugin_pids(plugin_id, str(tmp_path)) == [188]
    assert find_plugin_pids("f" * 64, str(tmp_path)) == []
    assert plugin_processes(plugin_id, str(tmp_path)) == ([168], [188])
    # the plugin exited: its shim stays until the engine deletes the task
    (tmp_path / "188" / "stat").write_text("188 (x) Z 1 1 1 0")
    assert plugin_processes(plugin_id, str(tmp_path)) == ([168], [])


@pytest.mark.parametrize(
    ("image", "dialect", "text"),
    [
        ("ghcr.io/open-policy-agent/opa-docker-authz:v0.10-linux-amd64", "v1", ""),
        ("registry.example.com/mirror/opa-docker-authz:latest", "v1", ""),
        ("openpolicyagent/opa-docker-authz-v2:0.4", "v0", "opa-docker-authz 0.4 has no -config-file"),
        ("openpolicyagent/opa-docker-authz-v2:0.8", "v0", "cannot load a bundle directory"),
        ("ghcr.io/open-policy-agent/opa-docker-authz:v0.10-linux-amd64", "v0", "a bundle is Rego v1 only"),
        ("registry.example.com/opa-docker-authz:site", "v1", "cannot tell from the plugin image tag 'site'"),
    ],
)
def test_bundle_mode_problem_names_the_cause_and_the_fix(image: str, dialect: str, text: str) -> None:
    problem = bundle_mode_problem(image, dialect)
    if not text:
        assert problem == ""
    else:
        assert problem.startswith("docker_authz_policy_mode is bundle, but ") and text in problem, problem
        assert problem.endswith("Nothing was changed."), problem
