"""Unit tests of module_utils/daemon_config.py: merge, parse, render, diff, classification,
refusals (each proves the file is byte-for-byte unchanged), atomic write, backup and lock.

Flag detection is in test_daemon_flags.py, the plugin check in test_daemon_plugins.py.
All file work happens in pytest's tmp_path; HostEnv points at an empty tree so the real
machine's units and processes never influence these tests.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ansible_collections.hardening.docker_authz.plugins.module_utils import daemon_config as dc

ROOT = Path(__file__).resolve().parents[2]

EXAMPLE = (
    b'{\n    "log-driver": "journald",\n    "storage-driver": "overlay2",\n'
    b'    "labels": ["site=lab"],\n    "log-opts": {"tag": "{{.Name}}"}\n}\n'
)


@pytest.fixture
def target(tmp_path: Path) -> Path:
    d = tmp_path / "etc-docker"
    d.mkdir()
    p = d / "daemon.json"
    p.write_bytes(EXAMPLE)
    return p


def listing(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


# ---------------------------------------------------------------------------------------
# merge
# ---------------------------------------------------------------------------------------
def test_union_keeps_existing_order_and_appends_only_new_items():
    doc = {"authorization-plugins": ["b", "a"], "x": 1}
    out = dc.merge(doc, {"authorization-plugins": ["a", "c", "c", "d"]})
    assert out["authorization-plugins"] == ["b", "a", "c", "d"]
    assert list(out) == ["authorization-plugins", "x"]
    assert doc["authorization-plugins"] == ["b", "a"], "input must not be mutated"


def test_replace_mode_replaces_lists():
    out = dc.merge(
        {"registry-mirrors": ["https://a", "https://b"]},
        {"registry-mirrors": ["https://c"]},
        list_merge="replace",
    )
    assert out == {"registry-mirrors": ["https://c"]}


def test_union_compares_structured_items_by_value_not_identity():
    pools = [{"base": "172.80.0.0/16", "size": 24}]
    out = dc.merge(
        {"default-address-pools": pools},
        {
            "default-address-pools": [
                {"size": 24, "base": "172.80.0.0/16"},
                {"base": "10.9.0.0/16", "size": 24},
            ]
        },
    )
    assert out["default-address-pools"] == [pools[0], {"base": "10.9.0.0/16", "size": 24}]


def test_objects_merge_recursively_keeping_member_order():
    doc = {"log-opts": {"max-size": "10m", "max-file": "3"}, "debug": False}
    out = dc.merge(doc, {"log-opts": {"max-file": "5", "compress": "true"}, "debug": True})
    assert out == {"log-opts": {"max-size": "10m", "max-file": "5", "compress": "true"}, "debug": True}
    assert list(out["log-opts"]) == ["max-size", "max-file", "compress"]


def test_unrelated_keys_values_and_order_are_kept():
    before = dc.parse_document(EXAMPLE, "x")
    out = dc.merge(before, {"authorization-plugins": ["opa"]})
    assert list(out) == ["log-driver", "storage-driver", "labels", "log-opts", "authorization-plugins"]
    assert {k: out[k] for k in before} == before


def test_null_existing_value_is_replaced_and_null_setting_is_written():
    assert dc.merge({"labels": None}, {"labels": ["a=b"]}) == {"labels": ["a=b"]}
    assert dc.merge({"labels": ["a=b"]}, {"labels": None}) == {"labels": None}


def test_remove_whole_keys_and_absent_keys_are_no_change():
    out = dc.merge({"a": 1, "b": [1], "c": {}}, remove=["b", "nope"])
    assert out == {"a": 1, "c": {}}


def test_remove_one_plugin_keeps_the_others_in_order():
    doc = {"authorization-plugins": ["first", "opa", "last"]}
    out = dc.merge(doc, remove=[{"authorization-plugins": ["opa", "not-there"]}])
    assert out == {"authorization-plugins": ["first", "last"]}
    assert dc.merge({"authorization-plugins": ["opa"]}, remove=[{"authorization-plugins": "opa"}]) == {
        "authorization-plugins": []
    }, "a single value is accepted and an emptied list stays []"


def test_remove_members_of_an_object():
    out = dc.merge({"log-opts": {"max-size": "1m", "tag": "x"}}, remove=[{"log-opts": ["tag"]}])
    assert out == {"log-opts": {"max-size": "1m"}}


def test_removed_and_set_key_is_replaced_in_place_without_clash():
    doc = {"a": 1, "authorization-plugins": "opa", "z": 2}
    out = dc.merge(doc, {"authorization-plugins": ["opa"]}, remove=["authorization-plugins"])
    assert list(out.items()) == [("a", 1), ("authorization-plugins", ["opa"]), ("z", 2)]


def test_swap_plugins_with_remove_and_settings():
    out = dc.merge(
        {"authorization-plugins": ["old", "keep"]},
        {"authorization-plugins": ["new"]},
        remove=[{"authorization-plugins": ["old"]}],
    )
    assert out == {"authorization-plugins": ["keep", "new"]}


@pytest.mark.parametrize(
    ("existing", "wanted", "where"),
    [
        ({"authorization-plugins": "opa"}, {"authorization-plugins": ["opa"]}, "authorization-plugins"),
        ({"debug": "true"}, {"debug": True}, "debug"),
        ({"debug": 1}, {"debug": True}, "debug"),
        ({"log-opts": {"max-size": 10}}, {"log-opts": {"max-size": "10m"}}, "log-opts.max-size"),
        ({"labels": ["a"]}, {"labels": {"a": "b"}}, "labels"),
    ],
)
def test_type_clash_is_refused_naming_the_path(existing, wanted, where):
    with pytest.raises(dc.DaemonConfigError) as ei:
        dc.merge(existing, wanted, path="/x/daemon.json")
    msg = str(ei.value)
    assert f"type clash at {where!r}" in msg and "/x/daemon.json" in msg and "remove" in msg


def test_contradictory_add_and_remove_is_refused():
    with pytest.raises(dc.DaemonConfigError, match="both added to and removed from"):
        dc.merge({}, {"authorization-plugins": ["opa"]}, remove=[{"authorization-plugins": ["opa"]}])


@pytest.mark.parametrize("item", [3, [], {}, "", {"labels": []}])
def test_malformed_remove_items_are_refused(item):
    with pytest.raises(dc.DaemonConfigError, match="remove item 1"):
        dc.parse_remove([item])


def test_removing_values_from_a_scalar_is_refused():
    with pytest.raises(dc.DaemonConfigError, match="cannot remove values from 'debug'"):
        dc.merge({"debug": True}, remove=[{"debug": [True]}])


def test_unknown_list_merge_mode_is_refused():
    with pytest.raises(dc.DaemonConfigError, match="list_merge"):
        dc.merge({}, {}, list_merge="append")


# ---------------------------------------------------------------------------------------
# equality, rendering, parsing
# ---------------------------------------------------------------------------------------
def test_json_equal_is_type_strict_and_ignores_key_order():
    assert dc.json_equal({"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1})
    assert not dc.json_equal({"a": 1}, {"a": True})
    assert not dc.json_equal({"a": 1}, {"a": 1.0})
    assert not dc.json_equal({"a": [1, 2]}, {"a": [2, 1]})
    assert not dc.json_equal({"a": None}, {})


def test_render_is_stable_pretty_json_with_trailing_newline():
    doc = {"z": 1, "a": {"ü": "日本"}, "l": []}
    text = dc.render(doc)
    assert text == '{\n  "z": 1,\n  "a": {\n    "ü": "日本"\n  },\n  "l": []\n}\n'
    assert dc.render(json.loads(text)) == text


@pytest.mark.parametrize("raw", [b"", b"  \n\t\n", b"\xef\xbb\xbf{}", b"\xef\xbb\xbf"])
def test_empty_whitespace_and_bom_only_files_are_empty_objects(raw):
    assert dc.parse_document(raw, "p") == {}


# ---------------------------------------------------------------------------------------
# apply: change detection, diff, classification
# ---------------------------------------------------------------------------------------
def test_first_run_changes_second_run_does_not(target, env):
    r1 = dc.apply(
        str(target), {"authorization-plugins": ["opa"], "insecure-registries": ["127.0.0.1:5000"]}, env=env
    )
    assert r1.changed and r1.changed_keys == ["authorization-plugins", "insecure-registries"]
    assert r1.reload_required and not r1.restart_required
    written = target.read_bytes()
    assert written == dc.render(r1.after).encode() and written.endswith(b"}\n")
    mtime = target.stat().st_mtime_ns
    r2 = dc.apply(str(target), {"authorization-plugins": ["opa"]}, env=env)
    assert not r2.changed and r2.changed_keys == [] and not r2.reload_required and not r2.restart_required
    assert target.read_bytes() == written and target.stat().st_mtime_ns == mtime


def test_formatting_only_difference_is_no_change_and_file_is_not_rewritten(target, env):
    # same content, different formatting and key order
    target.write_bytes(
        b'{"labels":["site=lab"],"log-opts":{"tag":"{{.Name}}"},'
        b'"storage-driver":"overlay2","log-driver":"journald"}'
    )
    before = target.read_bytes()
    ino = target.stat().st_ino
    res = dc.apply(str(target), {"log-driver": "journald", "labels": ["site=lab"]}, env=env)
    assert not res.changed and res.after_text == before.decode()
    assert target.read_bytes() == before and target.stat().st_ino == ino


def test_diff_shows_before_and_after(target, env):
    res = dc.apply(str(target), {"debug": True}, check_mode=True, env=env)
    d = res.diff()
    assert d["before"] == EXAMPLE.decode() and d["after"] == dc.render({**json.loads(EXAMPLE), "debug": True})
    assert d["before_header"] == d["after_header"] == str(target)


def test_missing_file_diff_header_says_absent(tmp_path, env):
    p = tmp_path / "none" / "daemon.json"
    res = dc.apply(str(p), {"debug": True}, check_mode=True, env=env)
    assert res.changed and res.diff()["before"] == "" and "(absent)" in res.diff()["before_header"]


@pytest.mark.parametrize(
    ("keys", "reload", "restart"),
    [
        (["authorization-plugins"], True, False),
        (["authorization-plugins", "insecure-registries", "labels", "debug", "live-restore"], True, False),
        (["registry-mirrors", "shutdown-timeout", "max-concurrent-downloads", "runtimes"], True, False),
        (["authorization-plugins", "data-root"], False, True),
        (["hosts"], False, True),
        (["log-driver"], False, True),
        ([], False, False),
    ],
)
def test_reload_or_restart_classification(keys, reload, restart):
    assert dc.classify(keys) == (reload, restart)


def test_removed_keys_count_as_changed_for_classification(target, env):
    res = dc.apply(str(target), remove=["storage-driver"], check_mode=True, env=env)
    assert res.changed_keys == ["storage-driver"] and res.restart_required and not res.reload_required


def test_check_mode_writes_nothing_and_predicts_changed(tmp_path, target, env):
    before = target.read_bytes()
    res = dc.apply(str(target), {"debug": True}, check_mode=True, env=env)
    assert res.changed and target.read_bytes() == before
    assert listing(target.parent) == ["daemon.json"], "check mode must not even create the lock file"
    missing = tmp_path / "newdir" / "sub" / "daemon.json"
    res = dc.apply(str(missing), {"debug": True}, check_mode=True, env=env)
    assert res.changed and not missing.parent.parent.exists()
    res = dc.apply(str(target), {"log-driver": "journald"}, check_mode=True, env=env)
    assert not res.changed


def test_missing_folder_and_file_are_created_0755_and_0644(tmp_path, env):
    old = os.umask(0o077)
    try:
        p = tmp_path / "etc" / "docker" / "daemon.json"
        res = dc.apply(str(p), {"authorization-plugins": ["opa"]}, env=env)
    finally:
        os.umask(old)
    assert res.changed and res.created_dir and not res.existed
    assert stat.S_IMODE(p.parent.stat().st_mode) == 0o755
    assert stat.S_IMODE(p.parent.parent.stat().st_mode) == 0o755
    assert stat.S_IMODE(p.stat().st_mode) == 0o644
    if os.geteuid() == 0:
        assert (p.stat().st_uid, p.stat().st_gid) == (0, 0)
    assert json.loads(p.read_text()) == {"authorization-plugins": ["opa"]}


def test_missing_file_with_nothing_to_set_is_not_created(tmp_path, env):
    p = tmp_path / "etc" / "docker" / "daemon.json"
    res = dc.apply(str(p), {}, remove=["x"], env=env)
    assert not res.changed and not p.parent.exists()


def test_empty_file_counts_as_empty_object(target, env):
    target.write_bytes(b"")
    res = dc.apply(str(target), {"debug": True}, env=env)
    assert res.changed and res.before == {} and json.loads(target.read_text()) == {"debug": True}


# ---------------------------------------------------------------------------------------
# refusals: each one leaves the file byte-for-byte unchanged and writes nothing
# ---------------------------------------------------------------------------------------
REFUSALS = [
    pytest.param(
        b'{\n  "debug": true,\n  "labels": ["a"\n}\n',
        {"debug": True},
        None,
        r"not valid JSON: .* at line 4 column 1",
        id="invalid-json",
    ),
    pytest.param(b'{"debug": true,}', {"debug": True}, None, r"line 1 column 16", id="trailing-comma"),
    pytest.param(
        b'["authorization-plugins"]',
        {"debug": True},
        None,
        r"JSON array at the top level",
        id="top-level-array",
    ),
    pytest.param(b'"x"', {"debug": True}, None, r"JSON string at the top level", id="top-level-string"),
    pytest.param(b"null", {"debug": True}, None, r"JSON null at the top level", id="top-level-null"),
    pytest.param(
        b'{"labels": ["caf\xe9"]}',
        {"debug": True},
        None,
        r"not valid UTF-8 \(byte 0xe9 at offset 16, line 1 column 17\)",
        id="latin1",
    ),
    pytest.param(
        b'{"debug": true, "debug": false}', {"debug": True}, None, r"key 'debug' twice", id="duplicate-key"
    ),
    pytest.param(b'{"max-concurrent-downloads": NaN}', {"debug": True}, None, r"contains NaN", id="nan"),
    pytest.param(b'{"mtu": 1e999}', {"debug": True}, None, r"out-of-range number", id="infinity"),
    pytest.param(
        b'{"authorization-plugins": "opa"}',
        {"authorization-plugins": ["opa"]},
        None,
        r"type clash at 'authorization-plugins'.*string",
        id="type-clash",
    ),
    pytest.param(
        b'{"log-opts": {"max-size": 10}}',
        {"log-opts": {"max-size": "10m"}},
        None,
        r"type clash at 'log-opts.max-size'",
        id="nested-type-clash",
    ),
    pytest.param(
        b'{"debug": true}',
        {},
        [{"debug": [True]}],
        r"cannot remove values from 'debug'",
        id="remove-from-scalar",
    ),
]


@pytest.mark.parametrize(("content", "settings", "remove", "pattern"), REFUSALS)
def test_refusals_leave_the_file_unchanged(target, env, content, settings, remove, pattern):
    target.write_bytes(content)
    os.chmod(target, 0o640)
    st = target.stat()
    for check_mode in (True, False):
        with pytest.raises(dc.DaemonConfigError, match=pattern) as ei:
            dc.apply(str(target), settings, remove, backup=True, check_mode=check_mode, env=env)
        assert "Nothing was changed" in str(ei.value) or "remove" in str(ei.value)
        assert target.read_bytes() == content
        after = target.stat()
        assert (after.st_ino, after.st_mtime_ns, stat.S_IMODE(after.st_mode)) == (
            st.st_ino,
            st.st_mtime_ns,
            0o640,
        )
        # no backup, no temporary file left; at most the (empty) lock file
        assert [n for n in listing(target.parent) if n != ".daemon.json.lock"] == ["daemon.json"]


def test_invalid_json_message_names_line_and_column(target, env):
    target.write_bytes(b'{\n  "a": 1\n  "b": 2\n}\n')
    with pytest.raises(dc.DaemonConfigError) as ei:
        dc.apply(str(target), {"debug": True}, env=env)
    assert "line 3 column 3" in str(ei.value) and str(target) in str(ei.value)


def test_directory_as_path_is_refused(tmp_path, env):
    d = tmp_path / "daemon.json"
    d.mkdir()
    with pytest.raises(dc.DaemonConfigError, match="is a directory"):
        dc.apply(str(d), {"debug": True}, env=env)


def test_relative_path_is_refused(env):
    with pytest.raises(dc.DaemonConfigError, match="absolute"):
        dc.apply("daemon.json", {"debug": True}, env=env)


def test_settings_that_are_not_json_are_refused(target, env):
    before = target.read_bytes()
    with pytest.raises(dc.DaemonConfigError, match="cannot be written as JSON"):
        dc.apply(str(target), {"labels": {1, 2}}, env=env)
    assert target.read_bytes() == before


# ---------------------------------------------------------------------------------------
# atomic write: owner, mode, SELinux context, links, crashes
# ---------------------------------------------------------------------------------------
def test_owner_and_mode_are_kept(target, env):
    os.chown(target, 1234, 2345)
    os.chmod(target, 0o600)
    dc.apply(str(target), {"debug": True}, env=env)
    st = target.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 2345, 0o600)
    assert json.loads(target.read_text())["debug"] is True


def test_selinux_context_is_copied_to_the_new_file(target, env, monkeypatch):
    # this machine has no SELinux: check the copy with recorded xattr calls
    calls = []

    def fake_get(path, name):
        assert name == "security.selinux"
        return b"system_u:object_r:container_config_t:s0\x00"

    def fake_set(path, name, value):
        calls.append((Path(path).name, name, value))

    monkeypatch.setattr(dc.os, "getxattr", fake_get)
    monkeypatch.setattr(dc.os, "setxattr", fake_set)
    dc.apply(str(target), {"debug": True}, env=env)
    assert len(calls) == 1
    name, attr, value = calls[0]
    assert name.startswith(".daemon.json.") and name.endswith(".tmp"), "set on the temp file before rename"
    assert (attr, value) == ("security.selinux", b"system_u:object_r:container_config_t:s0\x00")


def test_an_selinux_context_that_cannot_be_kept_is_a_warning(target, env, monkeypatch):
    def fake_get(path, name):
        return b"system_u:object_r:container_config_t:s0\x00"

    def fake_set(path, name, value):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(dc.os, "getxattr", fake_get)
    monkeypatch.setattr(dc.os, "setxattr", fake_set)
    res = dc.apply(str(target), {"debug": True}, env=env)
    assert res.changed and json.loads(target.read_text())["debug"] is True
    assert any(
        "SELinux context" in w and "container_config_t" in w and "restorecon" in w for w in res.warnings
    ), res.warnings


def test_symlink_is_kept_and_its_target_updated(tmp_path, target, env):
    link = tmp_path / "link.json"
    link.symlink_to(target)
    res = dc.apply(str(link), {"debug": True}, env=env)
    assert res.path == str(target) and link.is_symlink()
    assert json.loads(target.read_text())["debug"] is True


def test_failure_before_rename_leaves_the_old_file_and_no_temp(target, env):
    before = target.read_bytes()

    def boom(tmp):
        assert Path(tmp).read_bytes() != before, "the temp file holds the new content"
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        dc.apply(str(target), {"debug": True}, env=env, before_rename=boom)
    assert target.read_bytes() == before
    assert [n for n in listing(target.parent) if n != ".daemon.json.lock"] == ["daemon.json"]


CRASHER = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, {root!r})
    from ansible_collections.hardening.docker_authz.plugins.module_utils import daemon_config as dc
    env = dc.HostEnv(root={hostroot!r}, proc={hostproc!r}, systemctl=None)
    def stall(tmp):
        print("TMP", tmp, flush=True)
        time.sleep(60)
    dc.apply({path!r}, {{"debug": True, "labels": ["crash=1"]}}, env=env, before_rename=stall)
    """
)


def test_process_killed_mid_write_leaves_the_old_file(target, env):
    before = target.read_bytes()
    code = CRASHER.format(root=str(ROOT), hostroot=env.root, hostproc=env.proc, path=str(target))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("TMP "), line
        tmp = Path(line.split(" ", 1)[1].strip())
        assert tmp.exists() and json.loads(tmp.read_text())["labels"] == ["site=lab", "crash=1"]
        os.kill(proc.pid, signal.SIGKILL)  # the crash: no cleanup handlers run
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert target.read_bytes() == before, "a crash mid-write must leave the old file"
    assert tmp.exists(), "the crash left its temp file behind"
    # the next run takes the (released) lock, removes the stale temp and succeeds
    res = dc.apply(str(target), {"debug": True}, env=env)
    assert res.changed and not tmp.exists()
    assert [n for n in listing(target.parent) if n != ".daemon.json.lock"] == ["daemon.json"]


# ---------------------------------------------------------------------------------------
# backup
# ---------------------------------------------------------------------------------------
def test_backup_copies_the_old_file_only_when_changing(target, env):
    os.chmod(target, 0o600)
    res = dc.apply(str(target), {"debug": True}, backup=True, env=env)
    assert res.backup_file and Path(res.backup_file).read_bytes() == EXAMPLE
    assert Path(res.backup_file).name.startswith("daemon.json.") and res.backup_file.endswith("~")
    assert stat.S_IMODE(Path(res.backup_file).stat().st_mode) == 0o600
    res2 = dc.apply(str(target), {"debug": True}, backup=True, env=env)
    assert res2.backup_file is None
    assert len([n for n in listing(target.parent) if n.endswith("~")]) == 1


def test_no_backup_of_a_file_that_did_not_exist(tmp_path, env):
    p = tmp_path / "daemon.json"
    res = dc.apply(str(p), {"debug": True}, backup=True, env=env)
    assert res.changed and res.backup_file is None


# ---------------------------------------------------------------------------------------
# lock: two processes on the same file
# ---------------------------------------------------------------------------------------
HOLDER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {root!r})
    from ansible_collections.hardening.docker_authz.plugins.module_utils import daemon_config as dc
    with dc.file_lock({path!r}):
        print("LOCKED", flush=True)
        sys.stdin.readline()
    """
)

SLOW_WRITER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {root!r})
    from ansible_collections.hardening.docker_authz.plugins.module_utils import daemon_config as dc
    env = dc.HostEnv(root={hostroot!r}, proc={hostproc!r}, systemctl=None)
    def slow(tmp):
        print("WRITING", flush=True)
        time.sleep(1.0)
    dc.apply({path!r}, {{"labels": ["writer=slow"]}}, env=env, before_rename=slow)
    print("DONE", flush=True)
    """
)


def test_second_run_times_out_while_another_holds_the_lock(target, env):
    before = target.read_bytes()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER.format(root=str(ROOT), path=str(target))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "LOCKED"
        with pytest.raises(dc.DaemonConfigError, match="another run holds the lock"):
            dc.apply(str(target), {"debug": True}, env=env, lock_timeout=0.3)
        assert target.read_bytes() == before
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(10) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert dc.apply(str(target), {"debug": True}, env=env, lock_timeout=5).changed


def test_contending_runs_serialize_and_lose_no_update(target, env):
    """A slow writer holds the lock between read and rename; a concurrent run must wait for it
    and then merge into the slow writer's result (without the lock it would overwrite it)."""
    code = SLOW_WRITER.format(root=str(ROOT), hostroot=env.root, hostproc=env.proc, path=str(target))
    slow = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert slow.stdout.readline().strip() == "WRITING"  # slow writer is inside the lock
        t0 = time.monotonic()
        res = dc.apply(str(target), {"labels": ["writer=fast"]}, env=env, lock_timeout=30)
        waited = time.monotonic() - t0
        assert slow.wait(30) == 0 and slow.stdout.read().strip() == "DONE"
    finally:
        if slow.poll() is None:
            slow.kill()
            slow.wait()
    assert waited > 0.3, f"the second run did not wait for the lock ({waited:.2f}s)"
    assert res.before["labels"] == ["site=lab", "writer=slow"], "second run must read the first run's result"
    assert json.loads(target.read_text())["labels"] == ["site=lab", "writer=slow", "writer=fast"]


# ---------------------------------------------------------------------------------------
# file attributes resolved before the write
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("owner", "group", "mode"),
    [
        (None, None, None),
        ("root", "root", "0644"),
        ("0", "0", "644"),
        (None, None, 0o640),
        (None, None, "u=rw,go=r"),
        (None, None, "preserve"),
        (None, None, "0o600"),
    ],
)
def test_applicable_file_attributes_pass(owner, group, mode) -> None:
    dc.check_file_attributes(owner, group, mode)


@pytest.mark.parametrize(
    ("owner", "group", "mode", "msg"),
    [
        ("no-such-user-hda", None, None, "owner 'no-such-user-hda' is not a user"),
        (None, "no-such-group-hda", None, "group 'no-such-group-hda' is not a group"),
        (None, None, "0999", "mode '0999' is not a file mode"),
        (None, None, "rw-r--r--", "is not a file mode"),
        (None, None, 0o17777, "is not a file mode"),
    ],
)
def test_inapplicable_file_attributes_are_refused(owner, group, mode, msg) -> None:
    with pytest.raises(dc.DaemonConfigError, match=msg):
        dc.check_file_attributes(owner, group, mode)


def test_approve_sees_the_planned_change_before_the_write_and_can_refuse_it(tmp_path: Path) -> None:
    """daemon_json's reload check: called with the plan of a change (check mode too), before the
    write; what it raises leaves the file as it was; not called when nothing changes."""
    f = tmp_path / "daemon.json"
    f.write_text('{"debug": false}\n')
    seen: list[tuple[list[str], bool, bool]] = []

    def note(res: dc.Result) -> None:
        seen.append((res.changed_keys, res.reload_required, res.restart_required))

    dc.apply(str(f), {"mtu": 1400}, check_mode=True, check_flags=False, approve=note)
    assert seen == [(["mtu"], False, True)] and f.read_text() == '{"debug": false}\n'

    def refuse(res: dc.Result) -> None:
        raise dc.DaemonConfigError("no reload possible")

    with pytest.raises(dc.DaemonConfigError, match="no reload possible"):
        dc.apply(str(f), {"debug": True}, check_flags=False, approve=refuse)
    assert f.read_text() == '{"debug": false}\n'
    assert not list(tmp_path.glob(".daemon.json.*tmp*")), "no temporary file left"

    seen.clear()
    dc.apply(str(f), {"debug": True}, check_flags=False, approve=note)
    assert seen == [(["debug"], True, False)] and json.loads(f.read_text()) == {"debug": True}
    seen.clear()
    assert not dc.apply(str(f), {"debug": True}, check_flags=False, approve=note).changed
    assert seen == []


# ---------------------------------------------------------------------------------------
# check_with_dockerd: dockerd --validate of the new content (Docker 23.0 and later)
# ---------------------------------------------------------------------------------------
class Validator:
    """Stands in for `dockerd --validate --config-file /dev/stdin`: refuses a negative
    max-concurrent-downloads as dockerd 26 does, or answers as an engine before 23.0."""

    def __init__(self, supported: bool = True) -> None:
        self.supported = supported
        self.seen: list[dict] = []

    def __call__(self, text: str) -> tuple[int, str]:
        self.seen.append(json.loads(text))
        if not self.supported:
            return 1, "Status: unknown flag: --validate\nSee 'dockerd --help'., Code: 125"
        if self.seen[-1].get("max-concurrent-downloads", 0) < 0:
            return 1, (
                "unable to configure the Docker daemon with file /dev/stdin: merged configuration "
                "validation from file and command line flags failed: invalid max concurrent downloads: -1"
            )
        return 0, "configuration OK"


def test_dockerd_validate_passes_the_new_content(target, env):
    env.dockerd_validate = Validator()
    res = dc.apply(str(target), {"debug": True}, env=env, check_with_dockerd=True)
    assert res.changed and res.validated is True
    assert env.dockerd_validate.seen == [json.loads(target.read_text())]


def test_a_value_dockerd_refuses_is_refused_before_writing(target, env):
    env.dockerd_validate = Validator()
    for check_mode in (True, False):
        with pytest.raises(dc.DaemonConfigError) as err:
            dc.apply(
                str(target),
                {"max-concurrent-downloads": -1},
                env=env,
                check_with_dockerd=True,
                check_mode=check_mode,
            )
        msg = str(err.value)
        assert msg.startswith(f"dockerd would refuse {target} with this change (dockerd --validate: "), msg
        assert f"with file {target}:" in msg and "invalid max concurrent downloads: -1" in msg, msg
        assert "changed keys: max-concurrent-downloads. Nothing was changed." in msg, msg
        assert target.read_bytes() == EXAMPLE


def test_a_file_that_already_holds_a_refused_value_says_so(target, env):
    env.dockerd_validate = Validator()
    target.write_text('{"max-concurrent-downloads": -1}\n')
    with pytest.raises(dc.DaemonConfigError) as err:
        dc.apply(str(target), {"debug": True}, env=env, check_with_dockerd=True)
    msg = str(err.value)
    assert msg.startswith(f"{target} already holds a configuration dockerd refuses (dockerd --validate: "), (
        msg
    )
    assert "would refuse this file on its next reload or start" in msg
    assert msg.endswith("Nothing was changed.")
    assert target.read_text() == '{"max-concurrent-downloads": -1}\n'


def test_engines_before_23_cannot_validate_and_nothing_is_refused(target, env):
    env.dockerd_validate = Validator(supported=False)
    res = dc.apply(str(target), {"max-concurrent-downloads": -1}, env=env, check_with_dockerd=True)
    assert res.changed and res.validated is None


def test_dockerd_is_not_asked_without_a_change_or_when_off(target, env):
    env.dockerd_validate = Validator()
    same = dc.apply(str(target), {"storage-driver": "overlay2"}, env=env, check_with_dockerd=True)
    assert not same.changed and same.validated is None
    assert dc.apply(str(target), {"max-concurrent-downloads": -1}, env=env).validated is None
    assert env.dockerd_validate.seen == []
