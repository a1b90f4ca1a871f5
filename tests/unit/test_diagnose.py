"""module_utils/diagnose.py: the cause named from what the host shows (files, /proc, a socket).

The host is simulated with real files (a fake /proc, a plugin store, daemon.json) and a real
unix socket served by a thread that answers like dockerd with an authorization plugin in front.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from module_utils.diagnose import (
    PluginOnDisk,
    classify,
    diagnose,
    dockerd_pid,
    hooked_plugins,
    plugins_on_disk,
    same_plugin,
)

ALIAS = "opa-docker-authz"


def _proc(tmp: Path, procs: dict[int, str]) -> Path:
    root = tmp / "proc"
    for pid, comm in procs.items():
        d = root / str(pid)
        d.mkdir(parents=True)
        (d / "comm").write_text(comm + "\n")
        (d / "cmdline").write_bytes(f"/usr/bin/{comm}\0--flag\0".encode())
    root.mkdir(exist_ok=True)
    return root


def _kw(**over: object) -> dict[str, object]:
    kw: dict[str, object] = {
        "status": None,
        "message": "",
        "unavailable": None,
        "timed_out": False,
        "pid": 42,
        "hooked": [ALIAS],
        "plugins": [PluginOnDisk(f"{ALIAS}:latest", "ref", True, "abc")],
        "alias": ALIAS,
        "socket_path": "/var/run/docker.sock",
        "timeout": 15.0,
    }
    kw.update(over)
    return kw


def test_dockerd_pid_from_the_pid_file_or_proc(tmp_path: Path) -> None:
    proc = _proc(tmp_path, {7: "sshd", 99: "dockerd", 120: "containerd"})
    pidfile = tmp_path / "docker.pid"
    pidfile.write_text("99\n")
    assert dockerd_pid(str(pidfile), str(proc)) == 99
    pidfile.write_text("7\n")  # stale: another process has that pid now
    assert dockerd_pid(str(pidfile), str(proc)) == 99, "found in /proc"
    assert dockerd_pid(str(tmp_path / "none.pid"), str(_proc(tmp_path / "b", {7: "sshd"}))) is None


def test_dockerd_down_says_not_running_only_without_a_process() -> None:
    d = classify(**_kw(unavailable="cannot connect (Connection refused)", pid=None))
    assert d.cause == "dockerd_down" and "dockerd is not running" in d.message
    assert "start it" in d.message
    disabled = [PluginOnDisk(f"{ALIAS}:latest", "ref", False, "abc")]
    d = classify(**_kw(unavailable="refused", pid=None, plugins=disabled))
    assert d.cause == "dockerd_down" and f"hooks {ALIAS}, which is disabled" in d.message, d.message
    assert "remove opa-docker-authz from authorization-plugins first" in d.message
    d = classify(**_kw(unavailable="cannot connect (Connection refused)", pid=42))
    assert d.cause == "dockerd_unreachable"
    assert "not running" not in d.message and "dockerd is running (pid 42)" in d.message


def test_no_dockerd_binary_says_docker_is_not_installed() -> None:
    d = classify(**_kw(unavailable="no such socket", pid=None, installed=False))
    assert d.cause == "dockerd_down" and "Docker is not installed" in d.message, d.message
    assert "install Docker" in d.message and "not running" not in d.message
    d = classify(**_kw(unavailable="no such socket", pid=None, installed=True))
    assert "Docker is not installed" not in d.message


def test_dockerd_installed_looks_on_path_and_usual_places(tmp_path, monkeypatch) -> None:
    from module_utils.diagnose import dockerd_installed

    monkeypatch.setenv("PATH", str(tmp_path))
    assert not dockerd_installed(paths=(str(tmp_path / "dockerd"),))
    binary = tmp_path / "dockerd"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert dockerd_installed(paths=())


def test_plugin_error_quotes_the_error_and_blames_ours() -> None:
    msg = (
        f"plugin {ALIAS}:latest failed with error: AuthZPlugin.AuthZReq: 1 error occurred: "
        "authz.rego:4: rego_parse_error: unexpected eof token"
    )
    d = classify(**_kw(status=500, message=msg))
    assert d.cause == "plugin_error" and d.ours and d.plugin == f"{ALIAS}:latest"
    assert "rego_parse_error: unexpected eof token" in d.message
    assert "dockerd is running (pid 42)" in d.message and "harden.yml" in d.message


def test_a_policy_denying_the_roles_calls() -> None:
    msg = f"authorization denied by plugin {ALIAS}:latest: request rejected by administrative policy"
    d = classify(**_kw(status=403, message=msg))
    assert d.cause == "plugin_denies" and d.ours
    assert "denies the role's own calls" in d.message


def test_another_teams_plugin_is_not_ours() -> None:
    msg = "authorization denied by plugin other-authz: nope"
    d = classify(**_kw(status=403, message=msg, hooked=["other-authz", ALIAS]))
    assert d.cause == "plugin_denies" and not d.ours and d.plugin == "other-authz"
    assert "other-authz" in d.message


def test_timeouts_the_clients_and_dockerds() -> None:
    d = classify(**_kw(unavailable="did not answer GET /version within 15s", timed_out=True))
    assert d.cause == "plugin_timeout" and d.ours and "does not answer in time" in d.message
    msg = (
        f"plugin {ALIAS}:latest failed with error: Post http://%2Frun%2Fdocker%2Fplugins%2Fx%2Fsock/"
        "AuthZPlugin.AuthZReq: net/http: request canceled (Client.Timeout exceeded)"
    )
    d = classify(**_kw(status=500, message=msg))
    assert d.cause == "plugin_timeout" and "Client.Timeout exceeded" in d.message
    d = classify(**_kw(unavailable="did not answer", timed_out=True, hooked=[]))
    assert d.cause == "dockerd_stuck" and not d.ours


def test_hooked_plugin_missing_or_disabled() -> None:
    msg = (
        f"plugin {ALIAS}:latest failed with error: dial unix /run/docker/plugins/x/sock: "
        "connect: connection refused"
    )
    disabled = [PluginOnDisk(f"{ALIAS}:latest", "ref", False, "abc")]
    d = classify(**_kw(status=500, message=msg, plugins=disabled))
    assert d.cause == "plugin_disabled" and d.ours and "is installed but disabled" in d.message
    d = classify(**_kw(status=500, message=msg, plugins=[]))
    assert d.cause == "plugin_missing" and "is not installed" in d.message
    d = classify(**_kw(status=500, message=msg))
    assert d.cause == "plugin_down" and "cannot connect to its process" in d.message


def test_names_and_store(tmp_path: Path) -> None:
    assert same_plugin(ALIAS, f"{ALIAS}:latest") and not same_plugin(ALIAS, f"{ALIAS}:v1")
    assert hooked_plugins({"authorization-plugins": ["a", "b"]}) == ["a", "b"]
    assert hooked_plugins({"authorization-plugins": "a"}) == []
    d = tmp_path / "plugins" / "abc"
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"Id": "abc", "Name": "x:latest", "Enabled": False}))
    (tmp_path / "plugins" / "tmp").mkdir()
    assert plugins_on_disk(str(tmp_path)) == [PluginOnDisk("x:latest", "", False, "abc")]


class _FakeDockerd:
    """A unix socket answering every request with one fixed HTTP response (or never)."""

    def __init__(self, path: str, status: int, body: dict[str, str] | None, hang: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(4)
        self.status, self.body, self.hang = status, body, hang
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.recv(65536)
            if self.hang:
                continue
            data = json.dumps(self.body or {}).encode()
            conn.sendall(
                f"HTTP/1.1 {self.status} X\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                + data
            )
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def host(tmp_path: Path) -> Iterator[dict[str, str]]:
    proc = _proc(tmp_path, {os.getpid(): "dockerd"})
    dj = tmp_path / "daemon.json"
    dj.write_text(json.dumps({"authorization-plugins": [ALIAS], "data-root": str(tmp_path / "lib")}))
    store = tmp_path / "lib" / "plugins" / "abc"
    store.mkdir(parents=True)
    doc = {"plugin": {"Id": "abc", "Name": f"{ALIAS}:latest", "Enabled": True}, "Rootfs": "x"}
    (store / "config.json").write_text(json.dumps(doc))  # as dockerd 20.10 writes it
    yield {"proc": str(proc), "daemon_json": str(dj), "sock": str(tmp_path / "d.sock"), "tmp": str(tmp_path)}


def test_diagnose_over_a_real_socket(host: dict[str, str]) -> None:
    err = f"plugin {ALIAS}:latest failed with error: AuthZPlugin.AuthZReq: rego_parse_error: x"
    srv = _FakeDockerd(host["sock"], 500, {"message": err})
    try:
        d = diagnose(host["sock"], ALIAS, host["daemon_json"], "/nonexistent.pid", 5, proc=host["proc"])
    finally:
        srv.close()
    assert d.cause == "plugin_error" and d.ours and d.dockerd_pid == os.getpid() and d.status == 500
    assert d.hooked == [ALIAS] and d.plugin_state == "enabled"
    assert "rego_parse_error: x" in d.message


def test_diagnose_a_hanging_socket_and_a_missing_one(host: dict[str, str]) -> None:
    srv = _FakeDockerd(host["sock"], 200, None, hang=True)
    try:
        d = diagnose(host["sock"], ALIAS, host["daemon_json"], "/nonexistent.pid", 1, proc=host["proc"])
    finally:
        srv.close()
    assert d.cause == "plugin_timeout" and d.ours and "within 1s" in d.message
    empty_proc = _proc(Path(host["tmp"]) / "p2", {1: "init"})
    d = diagnose(
        host["sock"] + ".gone", ALIAS, host["daemon_json"], "/nonexistent.pid", 1, proc=str(empty_proc)
    )
    assert d.cause == "dockerd_down" and "dockerd is not running" in d.message
    assert d.dockerd_pid is None


def test_diagnose_ok(host: dict[str, str]) -> None:
    srv = _FakeDockerd(host["sock"], 200, {"ApiVersion": "1.41"})
    try:
        d = diagnose(host["sock"], ALIAS, host["daemon_json"], "/nonexistent.pid", 5, proc=host["proc"])
    finally:
        srv.close()
    assert d.cause == "ok" and d.api_answers


# ---------------------------------------------------------------------------- revive_plugin
def _revive_host(tmp_path: Path, enabled: bool, with_process: bool) -> tuple[str, str]:
    root = tmp_path / "docker"
    store = root / "plugins" / "abc123"
    store.mkdir(parents=True)
    doc = {"plugin": {"Id": "abc123", "Name": f"{ALIAS}:latest", "Enabled": enabled}}
    (store / "config.json").write_text(json.dumps(doc))
    dj = tmp_path / "daemon.json"
    dj.write_text(json.dumps({"data-root": str(root), "authorization-plugins": [ALIAS]}))
    proc = tmp_path / "proc"
    if with_process:
        shim = proc / "100"
        shim.mkdir(parents=True)
        (shim / "cmdline").write_bytes(b"containerd-shim-runc-v2\0-namespace\0plugins.moby\0-id\0abc123\0")
        (shim / "stat").write_text("100 (containerd-shim) S 1 100")
        child = proc / "101"
        child.mkdir()
        (child / "cmdline").write_bytes(b"/usr/bin/python3\0server.py\0")
        (child / "stat").write_text("101 (python3) T 100 101")
        (child / "cgroup").write_text("0::/plugins/abc123\n")
    else:
        proc.mkdir()
    return str(dj), str(proc)


def test_revive_names_the_process_in_check_mode_and_kills_nothing(tmp_path: Path) -> None:
    from module_utils.diagnose import revive_plugin

    dj, proc = _revive_host(tmp_path, enabled=True, with_process=True)
    res = revive_plugin(ALIAS, str(tmp_path / "none.sock"), dj, check_mode=True, proc=proc)
    assert res["changed"] and res["pids"] == [101] and not res["revived"]
    assert f"would kill {ALIAS}:latest's process [101]" in res["message"]


def test_revive_refuses_a_disabled_or_missing_plugin(tmp_path: Path) -> None:
    from module_utils.diagnose import revive_plugin

    dj, proc = _revive_host(tmp_path, enabled=False, with_process=False)
    res = revive_plugin(ALIAS, str(tmp_path / "none.sock"), dj, proc=proc)
    assert not res["changed"] and "is disabled: there is no process to restart" in res["message"]
    res = revive_plugin("other", str(tmp_path / "none.sock"), dj, proc=proc)
    assert not res["changed"] and "other is not installed" in res["message"]
