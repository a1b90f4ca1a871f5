"""check_plugins of module_utils/daemon_config.py: every authorization plugin named in the result
must be a ready legacy plugin (listening socket or spec file) or an installed, enabled managed
authz plugin. Managed-plugin states come from a recorded /plugins answer; one test asks the real
machine's dockerd (read-only GET /plugins) and expects the refusal, since it has no plugins.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ansible_collections.hardening.docker_authz.plugins.module_utils import daemon_config as dc
from ansible_collections.hardening.docker_authz.plugins.module_utils.docker_api import DockerClient


def plugin(name: str, enabled: bool = True, types: tuple[str, ...] = ("docker.authz/1.0",)) -> dict:
    return {
        "Id": "f" * 64,
        "Name": name,
        "Enabled": enabled,
        "Config": {"Interface": {"Types": list(types), "Socket": "plugin.sock"}},
    }


class FakeEngine:
    def __init__(self, plugins: list[dict]) -> None:
        self.plugins = plugins
        self.calls = 0

    def __call__(self) -> FakeEngine:  # the client factory
        return self

    def get(self, path: str):
        assert path == "/plugins"
        self.calls += 1
        return self.plugins


def no_engine():
    raise AssertionError("the engine must not be asked when every plugin is a legacy plugin")


@pytest.fixture
def env() -> Iterator[dc.HostEnv]:
    # short path: unix socket paths are limited to 107 bytes
    root = Path(tempfile.mkdtemp(prefix="dj", dir="/tmp"))
    (root / "proc").mkdir()
    try:
        yield dc.HostEnv(root=str(root), proc=str(root / "proc"), systemctl=None)
    finally:
        shutil.rmtree(root)


def legacy_socket(env: dc.HostEnv, rel: str, listen: bool = True) -> socket.socket:
    p = Path(env.path(rel))
    p.parent.mkdir(parents=True, exist_ok=True)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(p))
    if listen:
        s.listen(1)
    return s


# ---------------------------------------------------------------------------------------
# managed plugins
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("configured", "installed"),
    [
        ("opa-docker-authz", "opa-docker-authz:latest"),
        ("opa-docker-authz:latest", "opa-docker-authz:latest"),
        ("opa-docker-authz:latest", "opa-docker-authz"),
        ("openpolicyagent/opa-docker-authz-v2:0.8", "openpolicyagent/opa-docker-authz-v2:0.8"),
        ("docker.io/openpolicyagent/opa-docker-authz-v2:0.8", "openpolicyagent/opa-docker-authz-v2:0.8"),
        ("127.0.0.1:5000/opa-authz", "127.0.0.1:5000/opa-authz:latest"),
    ],
)
def test_installed_enabled_plugin_matches_with_and_without_latest(env, configured, installed):
    engine = FakeEngine(
        [plugin("other-volume:latest", types=("docker.volumedriver/1.0",)), plugin(installed)]
    )
    found = dc.check_authz_plugins([configured], engine, env)
    assert found == [f"{configured}: managed plugin {installed} (enabled)"] and engine.calls == 1


def test_other_tag_does_not_match(env):
    with pytest.raises(dc.DaemonConfigError, match=r"127.0.0.1:5000/opa-authz: not installed"):
        dc.check_authz_plugins(
            ["127.0.0.1:5000/opa-authz"], FakeEngine([plugin("127.0.0.1:5000/opa-authz:0.8")]), env
        )


def test_disabled_plugin_is_refused_with_the_fix(env):
    with pytest.raises(dc.DaemonConfigError) as ei:
        dc.check_authz_plugins(["opa"], FakeEngine([plugin("opa:latest", enabled=False)]), env)
    msg = str(ei.value)
    assert "opa: installed as opa:latest but disabled (docker plugin enable opa:latest)" in msg
    assert "exits after about 15 seconds" in msg


def test_plugin_that_is_not_an_authz_plugin_is_refused(env):
    with pytest.raises(dc.DaemonConfigError, match=r"not an authorization plugin.*docker\.volumedriver/1\.0"):
        dc.check_authz_plugins(
            ["vol"], FakeEngine([plugin("vol:latest", types=("docker.volumedriver/1.0",))]), env
        )


def test_missing_plugin_lists_what_is_installed(env):
    with pytest.raises(
        dc.DaemonConfigError, match=r"opa: not installed \(installed plugins: a:latest, b:1; no legacy socket"
    ):
        dc.check_authz_plugins(["opa"], FakeEngine([plugin("b:1"), plugin("a:latest")]), env)


def test_every_problem_is_reported_at_once(env):
    engine = FakeEngine([plugin("off:latest", enabled=False), plugin("ok:latest")])
    with pytest.raises(dc.DaemonConfigError) as ei:
        dc.check_authz_plugins(["ok", "off", "gone"], engine, env)
    msg = str(ei.value)
    assert "off: installed as off:latest but disabled" in msg and "gone: not installed" in msg
    assert "\n  - ok" not in msg, "the ready plugin is not a problem"


def test_unreachable_engine_is_a_refusal(env):
    factory = lambda: DockerClient(env.path("/run/no-such-docker.sock"), timeout=2)  # noqa: E731
    with pytest.raises(dc.DaemonConfigError, match="cannot list the engine's plugins to confirm opa"):
        dc.check_authz_plugins(["opa"], factory, env)


# ---------------------------------------------------------------------------------------
# legacy plugins
# ---------------------------------------------------------------------------------------
def test_listening_legacy_socket_counts_without_asking_the_engine(env):
    s1 = legacy_socket(env, "/run/docker/plugins/legacy-authz.sock")
    s2 = legacy_socket(env, "/run/docker/plugins/nested/nested.sock")
    try:
        found = dc.check_authz_plugins(["legacy-authz", "nested"], no_engine, env)
    finally:
        s1.close()
        s2.close()
    assert found == [
        "legacy-authz: legacy plugin socket /run/docker/plugins/legacy-authz.sock",
        "nested: legacy plugin socket /run/docker/plugins/nested/nested.sock",
    ]


def test_stale_legacy_socket_is_refused(env):
    s = legacy_socket(env, "/run/docker/plugins/dead.sock", listen=False)
    s.close()  # the socket file stays, nobody listens
    with pytest.raises(
        dc.DaemonConfigError, match=r"dead: /run/docker/plugins/dead.sock exists but nothing accepts"
    ):
        dc.check_authz_plugins(["dead"], no_engine, env)


def test_legacy_spec_files_count(env):
    for rel in ("/etc/docker/plugins/spec-authz.spec", "/usr/lib/docker/plugins/json-authz.json"):
        p = Path(env.path(rel))
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("unix:///run/somewhere.sock\n")
    found = dc.check_authz_plugins(["spec-authz", "json-authz"], no_engine, env)
    assert found == [
        "spec-authz: legacy plugin spec /etc/docker/plugins/spec-authz.spec",
        "json-authz: legacy plugin spec /usr/lib/docker/plugins/json-authz.json",
    ]


def test_mix_of_legacy_and_managed(env):
    s = legacy_socket(env, "/run/docker/plugins/legacy.sock")
    try:
        engine = FakeEngine([plugin("managed:latest")])
        found = dc.check_authz_plugins(["legacy", "managed"], engine, env)
    finally:
        s.close()
    assert len(found) == 2 and engine.calls == 1


# ---------------------------------------------------------------------------------------
# through apply(): before writing, only when changing, in check mode too
# ---------------------------------------------------------------------------------------
def test_apply_refuses_missing_plugin_and_leaves_the_file(env, tmp_path):
    p = tmp_path / "daemon.json"
    p.write_bytes(b'{"authorization-plugins": ["ok"]}\n')
    engine = FakeEngine([plugin("ok:latest")])
    for check_mode in (True, False):
        with pytest.raises(dc.DaemonConfigError, match="new-one: not installed"):
            dc.apply(
                str(p),
                {"authorization-plugins": ["new-one"]},
                check_plugins=True,
                check_mode=check_mode,
                env=env,
                client_factory=engine,
            )
        assert p.read_bytes() == b'{"authorization-plugins": ["ok"]}\n'
    res = dc.apply(
        str(p),
        {"insecure-registries": ["127.0.0.1:5000"]},
        check_plugins=True,
        env=env,
        client_factory=engine,
    )
    assert res.changed and res.plugins == ["ok: managed plugin ok:latest (enabled)"]


def test_apply_checks_plugins_only_when_the_file_changes(env, tmp_path):
    p = tmp_path / "daemon.json"
    p.write_bytes(b'{"authorization-plugins": ["gone"]}\n')
    engine = FakeEngine([])
    res = dc.apply(
        str(p), {"authorization-plugins": ["gone"]}, check_plugins=True, env=env, client_factory=engine
    )
    assert not res.changed and engine.calls == 0
    # removing the plugin that is gone: the remaining list is empty, nothing to confirm
    res = dc.apply(
        str(p),
        remove=[{"authorization-plugins": ["gone"]}],
        check_plugins=True,
        env=env,
        client_factory=engine,
    )
    assert res.changed and engine.calls == 0 and res.after == {"authorization-plugins": []}


@pytest.mark.docker
def test_real_engine_without_the_plugin_refuses(env, tmp_path):
    """Read-only GET /plugins on the machine's dockerd, which has no opa-docker-authz plugin."""
    p = tmp_path / "daemon.json"
    p.write_bytes(b'{"log-driver": "json-file"}\n')
    client = DockerClient("/var/run/docker.sock", timeout=10)
    assert isinstance(client.get("/plugins"), list), "the machine's dockerd must answer: run `make env`"
    with pytest.raises(dc.DaemonConfigError, match=r"opa-docker-authz-hardening-test: not installed"):
        dc.apply(
            str(p),
            {"authorization-plugins": ["opa-docker-authz-hardening-test"]},
            check_plugins=True,
            env=env,
            docker_socket="/var/run/docker.sock",
        )
    assert p.read_bytes() == b'{"log-driver": "json-file"}\n'
