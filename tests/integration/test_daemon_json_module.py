"""hardening.docker_authz.daemon_json through real ansible-playbook runs on temporary files.

Several module calls share one playbook (each ansible-playbook start costs about 2 s).
The last test starts a private dockerd (own config file, data root, exec root, pid file and
socket; no iptables, no bridge) to check flag-conflict refusal against a live daemon's command
line, and that the keys reported as reload-only really take effect on SIGHUP.
The machine's own dockerd is only asked GET /plugins (read-only).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ansible_collections.hardening.docker_authz.plugins.module_utils.docker_api import DockerClient
from tests.lib.ansible_run import run_playbook

EXAMPLE = """{
    "log-driver": "json-file",
    "log-opts": {"max-size": "10m", "max-file": "3"},
    "storage-driver": "overlay2",
    "authorization-plugins": ["legacy-authz"]
}
"""


def play(tasks: str) -> str:
    return "- hosts: localhost\n  gather_facts: false\n  tasks:\n" + tasks


def test_changed_idempotent_check_mode_diff_backup_remove(tmp_path: Path) -> None:
    d = tmp_path / "docker"
    d.mkdir()
    f = d / "daemon.json"
    f.write_text(EXAMPLE)
    new = tmp_path / "new" / "etc" / "docker" / "daemon.json"
    tasks = f"""
    - name: Add in check mode
      hardening.docker_authz.daemon_json:
        path: {f}
        settings:
          authorization-plugins: [opa-docker-authz]
          insecure-registries: ["127.0.0.1:5000"]
      check_mode: true
    - name: Read after check mode
      ansible.builtin.slurp:
        src: {f}
    - name: Add
      hardening.docker_authz.daemon_json:
        path: {f}
        settings:
          authorization-plugins: [opa-docker-authz]
          insecure-registries: ["127.0.0.1:5000"]
        backup: true
    - name: Add again
      hardening.docker_authz.daemon_json:
        path: {f}
        settings:
          authorization-plugins: [opa-docker-authz]
          insecure-registries: ["127.0.0.1:5000"]
        backup: true
    - name: Remove one plugin in check mode
      hardening.docker_authz.daemon_json:
        path: {f}
        remove:
          - authorization-plugins: [opa-docker-authz]
      check_mode: true
    - name: Remove one plugin
      hardening.docker_authz.daemon_json:
        path: {f}
        remove:
          - authorization-plugins: [opa-docker-authz]
    - name: Remove one plugin again
      hardening.docker_authz.daemon_json:
        path: {f}
        remove:
          - authorization-plugins: [opa-docker-authz]
    - name: Change a key that needs a restart
      hardening.docker_authz.daemon_json:
        path: {f}
        settings:
          log-opts: {{max-file: "5"}}
    - name: Mode only
      hardening.docker_authz.daemon_json:
        path: {f}
        mode: "0600"
    - name: New file in check mode
      hardening.docker_authz.daemon_json:
        path: {new}
        settings: {{debug: true}}
      check_mode: true
    - name: Stat new folder after check mode
      ansible.builtin.stat:
        path: {new.parent}
    - name: New file
      hardening.docker_authz.daemon_json:
        path: {new}
        settings: {{debug: true}}
"""
    run = run_playbook(play(tasks), tmp_path, args=["--diff"])
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.recap()["failed"] == 0

    check = run.task("Add in check mode")["result"]
    assert check["changed"] is True and check["changed_keys"] == [
        "authorization-plugins",
        "insecure-registries",
    ]
    assert check["config"]["authorization-plugins"] == ["legacy-authz", "opa-docker-authz"]
    assert "backup_file" not in check
    slurped = base64.b64decode(run.task("Read after check mode")["result"]["content"]).decode()
    assert slurped == EXAMPLE, "check mode wrote to the file"

    add = run.task("Add")["result"]
    assert add["changed"] is True and add["reload_required"] is True and add["restart_required"] is False
    assert add["diff"]["before"] == EXAMPLE and add["diff"]["before_header"] == str(f)
    assert json.loads(add["diff"]["after"]) == add["config"]
    assert add["diff"]["after"] == check["diff"]["after"], "check mode predicted the same result"
    backup = Path(add["backup_file"])
    assert backup.parent == d and backup.read_text() == EXAMPLE
    assert '+    "opa-docker-authz"' in run.stdout or '+    "opa-docker-authz"' in run.stdout, "diff printed"

    again = run.task("Add again")["result"]
    assert again["changed"] is False and "backup_file" not in again and again["changed_keys"] == []
    assert not again["reload_required"] and not again["restart_required"]

    rm_check = run.task("Remove one plugin in check mode")["result"]
    rm = run.task("Remove one plugin")["result"]
    assert rm_check["changed"] is True and rm["changed"] is True
    assert rm["config"]["authorization-plugins"] == ["legacy-authz"] and rm["reload_required"] is True
    assert run.task("Remove one plugin again")["result"]["changed"] is False

    restart = run.task("Change a key that needs a restart")["result"]
    assert restart["changed_keys"] == ["log-opts"] and restart["restart_required"] is True
    assert restart["config"]["log-opts"] == {"max-size": "10m", "max-file": "5"}

    mode = run.task("Mode only")["result"]
    assert mode["changed"] is True and mode["changed_keys"] == [] and not mode["reload_required"]
    assert stat.S_IMODE(f.stat().st_mode) == 0o600

    assert run.task("New file in check mode")["result"]["changed"] is True
    assert run.task("Stat new folder after check mode")["result"]["stat"]["exists"] is False
    assert run.task("New file")["result"]["changed"] is True
    assert stat.S_IMODE(new.parent.stat().st_mode) == 0o755 and stat.S_IMODE(new.stat().st_mode) == 0o644

    final = json.loads(f.read_text())
    assert final == {
        "log-driver": "json-file",
        "log-opts": {"max-size": "10m", "max-file": "5"},
        "storage-driver": "overlay2",
        "authorization-plugins": ["legacy-authz"],
        "insecure-registries": ["127.0.0.1:5000"],
    }
    assert list(final) == [
        "log-driver",
        "log-opts",
        "storage-driver",
        "authorization-plugins",
        "insecure-registries",
    ], "unrelated keys keep their order"
    assert f.read_text().endswith("}\n") and json.loads(new.read_text()) == {"debug": True}

    # a second ansible-playbook run: the steady-state tasks change nothing
    # ("Add" and "Remove one plugin" undo each other within the playbook, so they change again)
    rerun = run_playbook(play(tasks.replace("backup: true", "backup: false")), tmp_path)
    assert rerun.returncode == 0, rerun.stdout
    assert rerun.task("Add")["result"]["changed"] is True
    assert rerun.task("Remove one plugin")["result"]["changed"] is True
    for name in (
        "Add again",
        "Remove one plugin again",
        "Change a key that needs a restart",
        "Mode only",
        "New file",
    ):
        assert rerun.task(name)["result"]["changed"] is False, name
    assert json.loads(f.read_text()) == final


REFUSALS = {
    "invalid": ('{\n  "debug": true\n  "labels": []\n}\n', {"debug": True}, "line 3 column 3"),
    "toplevel": ('["debug"]\n', {"debug": True}, "JSON array at the top level"),
    "clash": (
        '{"authorization-plugins": "opa"}\n',
        {"authorization-plugins": ["opa"]},
        "type clash at 'authorization-plugins'",
    ),
    "duplicate": ('{"debug": true, "debug": false}\n', {"debug": True}, "key 'debug' twice"),
    "plugin": (
        '{"log-driver": "json-file"}\n',
        {"authorization-plugins": ["opa-docker-authz-hardening-test"]},
        "opa-docker-authz-hardening-test: not installed",
    ),
}


@pytest.mark.docker
def test_refusals_fail_the_task_and_leave_the_file(tmp_path: Path) -> None:
    files = {}
    tasks = ""
    for name, (content, settings, _msg) in REFUSALS.items():
        p = tmp_path / name / "daemon.json"
        p.parent.mkdir()
        p.write_text(content)
        files[name] = p
        tasks += f"""
    - name: Refuse {name}
      hardening.docker_authz.daemon_json:
        path: {p}
        settings: {json.dumps(settings)}
        backup: true
        check_plugins: {str(name == "plugin").lower()}
        docker_socket: /var/run/docker.sock
      ignore_errors: true
"""
    latin1 = tmp_path / "latin1" / "daemon.json"
    latin1.parent.mkdir()
    latin1.write_bytes(b'{"labels": ["caf\xe9"]}\n')
    tasks += f"""
    - name: Refuse latin1
      hardening.docker_authz.daemon_json:
        path: {latin1}
        settings: {{debug: true}}
      ignore_errors: true
"""
    # File attributes that cannot be applied are refused before the write, in check mode too
    # (Ansible sets them after the write: the new content would already be in place).
    attrs = tmp_path / "attrs" / "daemon.json"
    attrs.parent.mkdir()
    attrs.write_text('{"debug": false}\n')
    bad_attrs = {
        "owner": ({"owner": "no-such-user-hda"}, "owner 'no-such-user-hda' is not a user on this host"),
        "group": ({"group": "no-such-group-hda"}, "group 'no-such-group-hda' is not a group on this host"),
        "mode": ({"mode": "0999"}, "mode '0999' is not a file mode"),
    }
    for name, (extra, _msg) in bad_attrs.items():
        for check in (False, True):
            tasks += f"""
    - name: Refuse {name} (check {check})
      hardening.docker_authz.daemon_json:
        path: {attrs}
        settings: {{debug: true}}
        {next(iter(extra))}: "{next(iter(extra.values()))}"
      check_mode: {str(check).lower()}
      ignore_errors: true
"""
    run = run_playbook(play(tasks), tmp_path, args=["--diff"])
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.recap()["ignored"] == len(REFUSALS) + 1 + 2 * len(bad_attrs), "every refusal is a failed task"
    for name, (_extra, msg) in bad_attrs.items():
        for check in (False, True):
            res = run.task(f"Refuse {name} (check {check})")
            assert res["status"] == "failed" and msg in res["result"]["msg"], res["result"].get("msg")
            assert res["result"]["changed"] is False
    assert attrs.read_text() == '{"debug": false}\n', "a refused attribute still wrote the file"
    for name, (content, _settings, msg) in REFUSALS.items():
        res = run.task(f"Refuse {name}")
        assert res["status"] == "failed" and msg in res["result"]["msg"], (name, res["result"].get("msg"))
        assert res["result"]["changed"] is False
        assert files[name].read_text() == content, f"{name}: file changed"
        assert sorted(os.listdir(files[name].parent)) in (
            ["daemon.json"],
            [".daemon.json.lock", "daemon.json"],
        )
    res = run.task("Refuse latin1")
    assert res["status"] == "failed" and "not valid UTF-8" in res["result"]["msg"]
    assert latin1.read_bytes() == b'{"labels": ["caf\xe9"]}\n'


# ---------------------------------------------------------------------------------------
# a private dockerd: flags on its command line, reload of reloadable keys
# ---------------------------------------------------------------------------------------
@pytest.fixture
def private_dockerd() -> Iterator[dict]:
    """A throwaway dockerd with its own files; never the machine's daemon."""
    assert shutil.which("dockerd"), "dockerd not installed: run `make env`"
    base = Path(tempfile.mkdtemp(prefix="djd", dir="/tmp"))  # short: socket paths are limited
    cfg = base / "daemon.json"
    cfg.write_text('{\n  "log-level": "warn"\n}\n')
    sock = base / "d.sock"
    log = open(base / "dockerd.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            "dockerd",
            "--config-file",
            str(cfg),
            "--data-root",
            str(base / "data"),
            "--exec-root",
            str(base / "x"),
            "--pidfile",
            str(base / "d.pid"),
            "--host",
            f"unix://{sock}",
            "--iptables=false",
            "--bridge=none",
            "--label",
            "site=private-test",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    client = DockerClient(str(sock), timeout=10)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                client.ping()
                break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        "private dockerd did not start:\n" + (base / "dockerd.log").read_text()[-3000:]
                    ) from None
                time.sleep(0.2)
        yield {"proc": proc, "config": cfg, "client": client, "base": base}
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        subprocess.run(["umount", "-R", str(base / "x")], capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.docker
def test_private_dockerd_flags_are_refused_and_reloadable_keys_reload(
    tmp_path: Path, private_dockerd
) -> None:
    cfg: Path = private_dockerd["config"]
    before = cfg.read_text()
    tasks = f"""
    - name: Labels repeat the --label flag
      hardening.docker_authz.daemon_json:
        path: {cfg}
        settings:
          labels: ["site=file"]
      ignore_errors: true
    - name: Hosts repeat the --host flag
      hardening.docker_authz.daemon_json:
        path: {cfg}
        settings:
          hosts: ["unix:///tmp/other.sock"]
      ignore_errors: true
      check_mode: true
    - name: Trust the local registry
      hardening.docker_authz.daemon_json:
        path: {cfg}
        settings:
          insecure-registries: ["127.0.0.1:5000"]
"""
    run = run_playbook(play(tasks), tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    pid = private_dockerd["proc"].pid
    labels = run.task("Labels repeat the --label flag")
    assert labels["status"] == "failed"
    assert f"--label=site=private-test in running dockerd (pid {pid})" in labels["result"]["msg"]
    hosts = run.task("Hosts repeat the --host flag")
    assert hosts["status"] == "failed" and "'hosts' is also a dockerd flag" in hosts["result"]["msg"]
    trust = run.task("Trust the local registry")["result"]
    assert trust["changed"] and trust["reload_required"] and not trust["restart_required"]
    assert json.loads(cfg.read_text()) == {**json.loads(before), "insecure-registries": ["127.0.0.1:5000"]}

    # the daemon accepts the file on SIGHUP (no flag conflict) and applies the reloadable key;
    # the SIGHUP is sent by the role's reload module, after a check-mode run that sends nothing
    client: DockerClient = private_dockerd["client"]
    assert "127.0.0.1:5000" not in client.info()["RegistryConfig"]["IndexConfigs"]
    base: Path = private_dockerd["base"]
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        (base / "stale.pid").write_text(f"{bystander.pid}\n")
        reload_tasks = f"""
    - name: Reload in check mode
      hardening.docker_authz.dockerd_reload:
        method: signal
        pidfile: {base / "d.pid"}
        socket: {base / "d.sock"}
        timeout: 20
      check_mode: true
    - name: Reload with a stale pid file
      hardening.docker_authz.dockerd_reload:
        method: signal
        pidfile: {base / "stale.pid"}
        socket: {base / "d.sock"}
      ignore_errors: true
    - name: Restart without systemd
      hardening.docker_authz.dockerd_reload:
        method: signal
        restart: true
        pidfile: {base / "d.pid"}
        socket: {base / "d.sock"}
      ignore_errors: true
"""
        run = run_playbook(play(reload_tasks), tmp_path)
        assert run.returncode == 0, run.stdout + run.stderr
        checked = run.task("Reload in check mode")["result"]
        assert checked["changed"] and checked["method"] == "signal" and checked["pid"] == pid, checked
        assert "127.0.0.1:5000" not in client.info()["RegistryConfig"]["IndexConfigs"], (
            "check mode sent SIGHUP"
        )
        stale = run.task("Reload with a stale pid file")
        assert stale["status"] == "failed", stale
        assert f"names process {bystander.pid}, which is not a running dockerd" in stale["result"]["msg"]
        assert "docker_authz_docker_pidfile" in stale["result"]["msg"]
        restart = run.task("Restart without systemd")
        assert restart["status"] == "failed" and "no systemd to restart it" in restart["result"]["msg"], (
            restart
        )
        assert bystander.poll() is None, "the process of a stale pid file was signalled"
    finally:
        bystander.kill()
        bystander.wait()
    assert "127.0.0.1:5000" not in client.info()["RegistryConfig"]["IndexConfigs"], (
        "a refused reload sent SIGHUP"
    )
    tasks = f"""
    - name: Reload dockerd
      hardening.docker_authz.dockerd_reload:
        method: signal
        pidfile: {base / "d.pid"}
        socket: {base / "d.sock"}
        timeout: 20
"""
    run = run_playbook(play(tasks), tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    reloaded = run.task("Reload dockerd")["result"]
    assert reloaded["changed"] and reloaded["pid"] == pid and reloaded["seconds"] >= 0, reloaded
    # the module returns once dockerd has logged its reload: the new configuration is live at once
    # (SIGHUP returns before dockerd has read the file; before the wait for the reload event, this
    # test had to poll /info for it)
    assert reloaded["reload_event"] is True, reloaded
    indexes = client.info()["RegistryConfig"]["IndexConfigs"]
    assert "127.0.0.1:5000" in indexes, (private_dockerd["base"] / "dockerd.log").read_text()[-2000:]
    assert indexes["127.0.0.1:5000"]["Secure"] is False
    assert private_dockerd["proc"].poll() is None, "dockerd must survive the reload"

    # daemon_json's own reload (the role's hook): what the reload needs is checked before the
    # write - a stale pid file and a restart without systemd change nothing - then one call
    # writes, sends SIGHUP and waits for the API; a second run changes and reloads nothing
    assert client.info()["Debug"] is False
    written = cfg.read_text()
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        (base / "stale.pid").write_text(f"{bystander.pid}\n")
        common = f"path: {cfg}\n        pidfile: {base / 'd.pid'}\n        docker_socket: {base / 'd.sock'}"
        tasks = f"""
    - name: Debug with a stale pid file
      hardening.docker_authz.daemon_json:
        path: {cfg}
        settings: {{debug: true}}
        reload: signal
        pidfile: {base / "stale.pid"}
        docker_socket: {base / "d.sock"}
      ignore_errors: true
    - name: A key that needs a restart, without systemd
      hardening.docker_authz.daemon_json:
        {common}
        settings: {{mtu: 1400}}
        reload: signal
      ignore_errors: true
    - name: Debug in check mode
      hardening.docker_authz.daemon_json:
        {common}
        settings: {{debug: true}}
        reload: signal
      check_mode: true
    - name: Debug and reload
      hardening.docker_authz.daemon_json:
        {common}
        settings: {{debug: true}}
        reload: signal
        reload_timeout: 20
    - name: Debug again
      hardening.docker_authz.daemon_json:
        {common}
        settings: {{debug: true}}
        reload: signal
"""
        run = run_playbook(play(tasks), tmp_path)
        assert run.returncode == 0, run.stdout + run.stderr
        stale = run.task("Debug with a stale pid file")
        assert stale["status"] == "failed" and not stale["result"]["changed"], stale
        msg = stale["result"]["msg"]
        assert f"names process {bystander.pid}, which is not a running dockerd" in msg, msg
        assert msg.endswith("Nothing was changed."), msg
        restart = run.task("A key that needs a restart, without systemd")
        assert restart["status"] == "failed" and not restart["result"]["changed"], restart
        assert "no systemd to restart it" in restart["result"]["msg"], restart
        assert bystander.poll() is None, "the process of a stale pid file was signalled"
    finally:
        bystander.kill()
        bystander.wait()
    checked = run.task("Debug in check mode")["result"]
    would = checked["reloaded"]
    assert checked["changed"] and (would["pid"], would["method"]) == (pid, "signal"), checked
    done = run.task("Debug and reload")["result"]
    assert done["changed"] and done["changed_keys"] == ["debug"], done
    assert (done["reloaded"]["method"], done["reloaded"]["pid"], done["reloaded"]["restarted"]) == (
        "signal",
        pid,
        False,
    ), done
    again = run.task("Debug again")["result"]
    assert not again["changed"] and again["reloaded"] is None, again
    assert json.loads(cfg.read_text()) == {**json.loads(written), "debug": True}
    assert done["reloaded"]["reload_event"] is True, done
    assert client.info()["Debug"] is True, (base / "dockerd.log").read_text()[-2000:]
    assert private_dockerd["proc"].poll() is None, "dockerd must survive the reload"

    # a daemon.json dockerd refuses on a reload (an invalid value): it keeps its configuration and
    # logs no reload event, though its API answers at once; the reload fails, saying so, after 10 s
    # of such answers (a reload takes milliseconds), not at the end of its 60 s timeout
    kept = cfg.read_text()
    cfg.write_text(json.dumps({**json.loads(kept), "debug": False, "max-concurrent-downloads": -1}))
    tasks = f"""
    - name: Reload a configuration dockerd refuses
      hardening.docker_authz.dockerd_reload:
        method: signal
        pidfile: {base / "d.pid"}
        socket: {base / "d.sock"}
        timeout: 60
      ignore_errors: true
"""
    try:
        run = run_playbook(play(tasks), tmp_path)
    finally:
        cfg.write_text(kept)
    assert run.returncode == 0, run.stdout + run.stderr
    refused = run.task("Reload a configuration dockerd refuses")
    msg = refused["result"]["msg"]
    assert refused["status"] == "failed", refused
    quiet = re.search(r"dockerd did not reload its configuration: its API answered for ([0-9.]+) s", msg)
    assert quiet and 10.0 <= float(quiet.group(1)) < 12.0, msg
    assert "without logging a reload event" in msg, msg
    assert 9.5 < refused["time"] - refused["task_start"] < 30, refused
    assert "invalid max concurrent downloads: -1" in (base / "dockerd.log").read_text()
    assert client.info()["Debug"] is True, "dockerd applied part of a configuration it refused"
    assert private_dockerd["proc"].poll() is None, "dockerd must survive the refused reload"

    # a reload whose API does not answer in time: the file stays written and the failure is the
    # reload's, not its file attributes' (the module's guard for those ends with them)
    tasks = f"""
    - name: A reload whose API does not answer
      hardening.docker_authz.daemon_json:
        path: {cfg}
        settings: {{debug: false}}
        reload: signal
        pidfile: {base / "d.pid"}
        docker_socket: {base / "absent.sock"}
        reload_timeout: 1
      ignore_errors: true
"""
    run = run_playbook(play(tasks), tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    failed = run.task("A reload whose API does not answer")
    msg = failed["result"]["msg"]
    assert failed["status"] == "failed" and failed["result"]["changed"], failed
    assert msg.startswith(f"{cfg} was written, but dockerd was not reloaded: "), msg
    assert "did not answer /_ping within 1 s" in msg and "file attributes" not in msg, msg
    assert json.loads(cfg.read_text())["debug"] is False
    assert private_dockerd["proc"].poll() is None, "dockerd must survive the reload"
