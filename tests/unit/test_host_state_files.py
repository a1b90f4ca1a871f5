"""The host read's file part (module_utils/host_state.py): what policy.yml compares to skip the
bundle and OPA config writes in bundle mode. The role skips a write only when the read shows the
exact content AND the mode the write would give, so every field here must tell drift apart."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from module_utils.host_state import host_state


def read(tmp_path: Path) -> dict:
    return host_state(
        socket=str(tmp_path / "no-docker.sock"),  # no engine: the file part does not need one
        plugin="opa-docker-authz",
        daemon_json_path=str(tmp_path / "daemon.json"),
        policy_path=str(tmp_path / "policies" / "authz.rego"),
        bundle_dir=str(tmp_path / "policies" / "bundle"),
        opa_config_path=str(tmp_path / "policies" / "opa-config.yaml"),
    )


def test_bundle_files_come_with_their_modes(tmp_path: Path) -> None:
    bundle = tmp_path / "policies" / "bundle"
    (bundle / "docker" / "authz").mkdir(parents=True)
    (bundle / ".manifest").write_text("{}")
    (bundle / "docker" / "authz" / "lib.rego").write_text("package docker.authz\n")
    os.chmod(bundle / ".manifest", 0o640)
    os.chmod(bundle / "docker" / "authz" / "lib.rego", 0o644)
    got = read(tmp_path)["bundle"]
    assert got["exists"] is True
    assert got["files"] == {".manifest": "{}", "docker/authz/lib.rego": "package docker.authz\n"}
    assert got["modes"] == {".manifest": "0640", "docker/authz/lib.rego": "0644"}


def test_a_missing_bundle_has_no_files_and_no_modes(tmp_path: Path) -> None:
    got = read(tmp_path)["bundle"]
    assert got["exists"] is False and got["files"] == {} and got["modes"] == {}


def test_the_opa_config_comes_with_owner_group_and_mode(tmp_path: Path) -> None:
    config = tmp_path / "policies" / "opa-config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("bundles: {}\n")
    os.chmod(config, 0o640)
    got = read(tmp_path)["opa_config"]
    assert got["exists"] is True and base64.b64decode(got["content"]) == b"bundles: {}\n"
    assert got["mode"] == "0640" and got["islink"] is False
    assert got["owner"] and got["group"]
    os.chmod(config, 0o600)
    assert read(tmp_path)["opa_config"]["mode"] == "0600"
    config.unlink()
    config.symlink_to(tmp_path / "elsewhere.yaml")
    (tmp_path / "elsewhere.yaml").write_text("bundles: {}\n")
    assert read(tmp_path)["opa_config"]["islink"] is True
