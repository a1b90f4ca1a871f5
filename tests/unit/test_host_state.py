"""Unit tests of module_utils/host_state.py's daemon.json check (``daemon_check``) and of
``daemon_config.apply(..., content=...)``, the check mode on a document the caller already read.

The host read reads daemon.json once: ``apply`` parses the bytes it was handed instead of
reading the file again, and that gives the same result, and the same refusal word for word, as
``apply`` reading the path. All file work happens in pytest's tmp_path; HostEnv points at an empty
tree so the real machine's units and processes never influence these tests.
"""

from __future__ import annotations

import builtins
import os
from pathlib import Path

import pytest

from ansible_collections.hardening.docker_authz.plugins.module_utils import daemon_config as dc
from ansible_collections.hardening.docker_authz.plugins.module_utils import host_state as hs

PLUGIN = "opa-docker-authz"
SETTINGS = {"authorization-plugins": [PLUGIN]}

# daemon.json contents: documents apply accepts and documents it refuses (each message differs)
CONTENTS = [
    pytest.param(b'{\n  "log-driver": "journald",\n  "labels": ["a"]\n}\n', id="plain"),
    pytest.param(b'{"authorization-plugins": ["other", "opa-docker-authz"]}', id="hooked-already"),
    pytest.param(b'{"authorization-plugins": ["other"], "debug": true}', id="another-plugin"),
    pytest.param(b"", id="empty"),
    pytest.param(b"\xef\xbb\xbf{}\n", id="bom"),
    pytest.param(b" \n\t", id="whitespace"),
    pytest.param(b'{\n  "debug": true,\n  "labels": ["a"\n}\n', id="invalid-json"),
    pytest.param(b'["authorization-plugins"]', id="top-level-array"),
    pytest.param(b'{"labels": ["caf\xe9"]}', id="latin1"),
    pytest.param(b'{"debug": true, "debug": false}', id="duplicate-key"),
    pytest.param(b'{"max-concurrent-downloads": NaN}', id="nan"),
    pytest.param(b'{"authorization-plugins": "opa"}', id="type-clash"),
]


@pytest.fixture
def empty_host(env: dc.HostEnv, monkeypatch: pytest.MonkeyPatch) -> dc.HostEnv:
    """host_state's apply (which takes no env) sees the empty host too."""
    monkeypatch.setattr(dc, "HostEnv", lambda: env)
    return env


def _outcome(call) -> tuple[str, object]:
    """The Result, or the refusal's type and exact message."""
    try:
        return "result", call()
    except (dc.DaemonConfigError, OSError) as exc:
        return type(exc).__name__, str(exc)


@pytest.mark.parametrize("raw", CONTENTS)
def test_apply_on_content_read_already_equals_apply_reading_the_path(tmp_path, env, raw):
    path = tmp_path / "etc-docker" / "daemon.json"
    path.parent.mkdir()
    path.write_bytes(raw)
    by_path = _outcome(lambda: dc.apply(str(path), SETTINGS, check_mode=True, env=env))
    given = _outcome(lambda: dc.apply(str(path), SETTINGS, check_mode=True, env=env, content=dc.Content(raw)))
    assert given == by_path
    assert path.read_bytes() == raw


def test_apply_on_content_of_an_absent_file_equals_apply_reading_the_path(tmp_path, env):
    for path in (tmp_path / "daemon.json", tmp_path / "no-such-folder" / "daemon.json"):
        by_path = dc.apply(str(path), SETTINGS, check_mode=True, env=env)
        given = dc.apply(str(path), SETTINGS, check_mode=True, env=env, content=dc.Content(None))
        assert given == by_path
        assert given.changed and not given.existed and given.after == SETTINGS
        assert not path.exists()


def test_apply_refuses_content_outside_check_mode(tmp_path, env):
    path = tmp_path / "daemon.json"
    path.write_bytes(b"{}")
    with pytest.raises(ValueError, match="check mode only"):
        dc.apply(str(path), SETTINGS, env=env, content=dc.Content(b"{}"))
    assert path.read_bytes() == b"{}"


def _read_host(tmp_path: Path, daemon_json: Path) -> dict:
    return hs.host_state(
        socket=str(tmp_path / "no-docker.sock"),
        plugin=PLUGIN,
        daemon_json_path=str(daemon_json),
        policy_path=str(tmp_path / "policies" / "authz.rego"),
        bundle_dir=str(tmp_path / "bundle"),
        opa_config_path=str(tmp_path / "opa.yaml"),
        daemon_check=True,
    )


def _expected_check(tmp_path: Path, path: Path) -> dict:
    """What _daemon_check answers when apply reads the file itself (no content given), with the
    socket the host read passes."""
    return hs._daemon_check(str(path), PLUGIN, str(tmp_path / "no-docker.sock"))


@pytest.mark.parametrize("link", [False, True], ids=["file", "symlink"])
@pytest.mark.parametrize("raw", CONTENTS)
def test_host_read_reads_daemon_json_once(tmp_path, empty_host, monkeypatch, raw, link):
    target = tmp_path / "etc-docker" / "daemon.json"
    target.parent.mkdir()
    target.write_bytes(raw)
    path = target
    if link:
        path = tmp_path / "daemon.json"
        path.symlink_to(target)
    expected = _expected_check(tmp_path, path)
    opened: list[str] = []
    real_open = builtins.open

    def counting_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and os.path.realpath(file) == str(target):
            opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    state = _read_host(tmp_path, path)
    monkeypatch.setattr(builtins, "open", real_open)
    assert opened == [str(path)], f"daemon.json opened {len(opened)} times: {opened}"
    assert state["daemon_json"]["exists"] and state["daemon_check"] == expected
    assert target.read_bytes() == raw


def test_host_read_of_an_absent_daemon_json(tmp_path, empty_host):
    path = tmp_path / "etc-docker" / "daemon.json"
    state = _read_host(tmp_path, path)
    assert state["daemon_json"] == {"path": str(path), "exists": False}
    assert state["daemon_check"] == _expected_check(tmp_path, path)
    assert state["daemon_check"]["config"] == SETTINGS
    assert not path.parent.exists()


def test_host_read_of_a_directory_keeps_applys_message(tmp_path, empty_host):
    """The host read cannot tell what a directory holds: apply reads the path itself and names it."""
    path = tmp_path / "daemon.json"
    path.mkdir()
    state = _read_host(tmp_path, path)
    assert state["daemon_json"]["exists"] is False
    assert state["daemon_check"] == _expected_check(tmp_path, path)
    assert state["daemon_check"]["msg"] == (
        f"{path} is a directory, not a file; give the path of daemon.json"
    )


def test_host_read_refuses_what_dockerd_would_refuse(tmp_path, empty_host):
    """On Docker 23.0 and later the host read's check hands the file it would write to
    `dockerd --validate`: a value dockerd refuses fails the run before anything changes."""
    seen: list[str] = []

    def dockerd_26(text: str) -> tuple[int, str]:
        seen.append(text)
        refused = "invalid max concurrent downloads: -1"
        return 1, f"unable to configure the Docker daemon with file /dev/stdin: {refused}"

    empty_host.dockerd_validate = dockerd_26
    path = tmp_path / "daemon.json"
    path.write_text('{"max-concurrent-downloads": -1}\n')
    state = _read_host(tmp_path, path)
    check = state["daemon_check"]
    assert check["failed"], check
    assert check["msg"].startswith(f"{path} already holds a configuration dockerd refuses"), check["msg"]
    assert f"with file {path}: invalid max concurrent downloads: -1" in check["msg"], check["msg"]
    assert len(seen) == 2 and '"authorization-plugins"' in seen[0]
    assert path.read_text() == '{"max-concurrent-downloads": -1}\n'
