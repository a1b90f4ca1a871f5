"""module_utils/policy_files.py: the policy folder and its files in one call (runs as root)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from module_utils.policy_files import PolicyFilesError, write_files


def _attrs(path: Path) -> tuple[int, int, str]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid, f"{stat.S_IMODE(st.st_mode):04o}"


def test_creates_the_folder_and_file_root_owned_then_changes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "etc" / "docker" / "policies"
    policy = folder / "authz.rego"
    result = write_files(str(folder), {str(policy): "package docker.authz\n"})
    assert result["changed"] and result["directory_changed"] and result["written"] == [str(policy)]
    assert policy.read_text() == "package docker.authz\n"
    assert _attrs(folder) == (0, 0, "0750") and _attrs(policy) == (0, 0, "0640")
    assert [d["before"] for d in result["diff"]] == ["(absent)\n", ""]
    again = write_files(str(folder), {str(policy): "package docker.authz\n"})
    assert not again["changed"] and again["written"] == [] and again["diff"] == []
    assert sorted(os.listdir(folder)) == ["authz.rego"], "no temporary file is left"


def test_check_mode_predicts_and_writes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    target = str(folder / "opa-config.yaml")
    result = write_files(str(folder), {target: "services: {}\n"}, check_mode=True)
    assert result["changed"] and result["written"] == [target] and not folder.exists()
    write_files(str(folder), {target: "services: {}\n"})
    changed = write_files(str(folder), {target: "bundles: {}\n"}, check_mode=True)
    assert changed["written"] == [target] and not changed["directory_changed"]
    assert changed["diff"] == [{"before_header": target, "after_header": target,
                                "before": "services: {}\n", "after": "bundles: {}\n"}]  # fmt: skip
    assert Path(target).read_text() == "services: {}\n"


def test_mode_drift_alone_is_repaired_without_a_content_diff(tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    policy = folder / "authz.rego"
    write_files(str(folder), {str(policy): "x\n"})
    os.chmod(policy, 0o644)
    os.chmod(folder, 0o755)
    result = write_files(str(folder), {str(policy): "x\n"})
    assert result["directory_changed"] and result["written"] == [str(policy)]
    assert [d["before_header"] for d in result["diff"]] == [str(folder)], "the content did not change"
    assert _attrs(folder) == (0, 0, "0750") and _attrs(policy) == (0, 0, "0640")


def test_a_symlink_at_the_file_is_replaced_not_followed(tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    folder.mkdir(mode=0o750)
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me\n")
    policy = folder / "authz.rego"
    policy.symlink_to(outside)
    write_files(str(folder), {str(policy): "package docker.authz\n"})
    assert not policy.is_symlink() and policy.read_text() == "package docker.authz\n"
    assert outside.read_text() == "keep me\n"


@pytest.mark.parametrize(
    ("setup", "files", "message"),
    [
        ("file", {"{dir}/authz.rego": "x"}, r"is not a folder \(nothing was changed\)"),
        (None, {"/elsewhere/authz.rego": "x"}, r"is not a file directly in"),
        (None, {"{dir}/sub/authz.rego": "x"}, r"is not a file directly in"),
        ("dir-at-file", {"{dir}/authz.rego": "x"}, r"is a folder, not a file"),
    ],
)
def test_bad_paths_change_nothing(
    tmp_path: Path, setup: str | None, files: dict[str, str], message: str
) -> None:
    folder = tmp_path / "policies"
    if setup == "file":
        folder.write_text("a file\n")
    if setup == "dir-at-file":
        (folder / "authz.rego").mkdir(parents=True)
    wanted = {k.replace("{dir}", str(folder)): v for k, v in files.items()}
    with pytest.raises(PolicyFilesError, match=message):
        write_files(str(folder), wanted)
    if setup is None:
        assert not folder.exists()


def test_bad_modes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyFilesError, match=r"mode must be an octal mode such as 0640, got 'rw-r-----'"):
        write_files(str(tmp_path / "p"), {str(tmp_path / "p" / "a"): "x"}, mode="rw-r-----")
    with pytest.raises(PolicyFilesError, match=r"directory_mode must be an octal mode"):
        write_files(str(tmp_path / "p"), {str(tmp_path / "p" / "a"): "x"}, directory_mode="99999")
    assert not (tmp_path / "p").exists()


def test_the_opa_config_and_its_bundle_in_one_call(tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    config = str(folder / "opa-config.yaml")
    files = {".manifest": "{}\n", "docker/authz/lib.rego": "package x\n"}
    bundle = {"path": str(folder / "bundle"), "files": files}
    checked = write_files(str(folder), {config: "a: 1\n"}, bundle=bundle, check_mode=True)
    assert checked["changed"] and checked["bundle"]["written"] == [".manifest", "docker/authz/lib.rego"]
    assert not folder.exists(), "check mode wrote something"
    done = write_files(str(folder), {config: "a: 1\n"}, bundle=bundle)
    assert done["written"] == [config] and done["bundle"]["changed"]
    lib = folder / "bundle" / "docker" / "authz" / "lib.rego"
    assert lib.read_text() == "package x\n" and stat.S_IMODE(lib.stat().st_mode) == 0o640
    assert stat.S_IMODE((folder / "bundle").stat().st_mode) == 0o750
    again = write_files(str(folder), {config: "a: 1\n"}, bundle=bundle)
    assert not again["changed"] and not again["bundle"]["changed"]
    # a rule now off: its file goes; the OPA config is not written again
    fewer = {**bundle, "files": {".manifest": "{}\n"}}
    dropped = write_files(str(folder), {config: "a: 1\n"}, bundle=fewer)
    assert dropped["written"] == [] and dropped["bundle"]["removed"] == ["docker/authz/lib.rego"]


def test_a_bundle_the_call_must_not_touch_changes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    (folder / "bundle").mkdir(parents=True)
    (folder / "bundle" / "notes.txt").write_text("someone's\n")
    config = str(folder / "opa-config.yaml")
    with pytest.raises(PolicyFilesError, match=r"holds no bundle \(.manifest\).*Nothing was changed"):
        write_files(str(folder), {config: "a: 1\n"}, bundle={"path": str(folder / "bundle"), "files": {}})
    assert not os.path.exists(config), "the OPA config was written before the bundle was refused"
    with pytest.raises(PolicyFilesError, match="not a folder directly in"):
        outside = {"path": str(tmp_path / "elsewhere"), "files": {}}
        write_files(str(folder), {config: "a: 1\n"}, bundle=outside)
    assert not os.path.exists(config)


def test_module_passes_no_deprecated_result_keys_to_ansible(tmp_path: Path) -> None:
    """The module file under ansible-playbook (a folder in tmp_path): its warnings go through
    module.warn; a `warnings` key in the result is deprecated in ansible-core 2.19."""
    from tests.lib.ansible_run import run_playbook

    folder = tmp_path / "policies"
    play = f"""
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Write
      hardening.docker_authz.policy_files:
        path: {folder}
        files: {{"{folder}/authz.rego": "package docker.authz\\n"}}
"""
    run = run_playbook(play, tmp_path)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    assert run.task("Write")["result"]["written"] == [str(folder / "authz.rego")]
    assert "Passing `warnings`" not in out and "DEPRECATION" not in out, out[-3000:]
