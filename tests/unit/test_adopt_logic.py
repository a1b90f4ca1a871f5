"""module_utils/adopt.py: recognising opa-docker-authz by what it is, the plan, and the swap's
order, restore and measurement (the engine and the reload replaced by recorders; the real swap
on a real engine is tests/e2e/test_adopt.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import module_utils.adopt as adopt_mod
from module_utils.adopt import AdoptError, adopt, describe, plan, read_store, recognise
from module_utils.docker_api import DockerAPIError, DockerError, Response
from module_utils.plugin import PluginError

ALIAS = "opa-docker-authz"
HOWTO = "openpolicyagent/opa-docker-authz-v2:0.4"
AUTHZ_TYPES = [{"Capability": "authz", "Prefix": "docker", "Version": "1.0"}]


def _plugin(
    name: str,
    *,
    socket: str = "opa-docker-authz.sock",
    entry: str = "/opa-docker-authz",
    args_name: str = "opa-args",
    types: Any = None,
    enabled: bool = True,
) -> dict[str, Any]:
    return {
        "Id": f"id-{abs(hash(name)) % 10**8}",
        "Name": name,
        "PluginReference": f"docker.io/{name}",
        "Enabled": enabled,
        "Settings": {"Args": ["-policy-file", "/opa/policies/authz.rego"]},
        "Config": {
            "Entrypoint": [entry],
            "Interface": {"Socket": socket, "Types": AUTHZ_TYPES if types is None else types},
            "Args": {"Name": args_name},
        },
    }


# ------------------------------------------------------------------------------ recognition
def test_recognised_by_socket_entrypoint_or_args_never_by_name() -> None:
    assert "opa-docker-authz.sock" in (recognise(_plugin("anything:1")) or "")
    # renamed socket, real entrypoint
    assert "entrypoint" in (recognise(_plugin("x", socket="s.sock")) or "")
    # the test double: its entrypoint path names opa-docker-authz
    double = _plugin("x", socket="s.sock", entry="/opt/opa-docker-authz-double/server.py")
    assert "entrypoint" in (recognise(double) or "")
    assert "opa-args" in (recognise(_plugin("x", socket="s.sock", entry="/bin/p")) or "")
    # string types (the plugin's config.json on disk) work too
    assert recognise(_plugin("x", types=["docker.authz/1.0"]))


def test_other_plugins_are_not_recognised() -> None:
    # a volume plugin with opa-looking names is not an authorization plugin
    vol = _plugin(
        "opa-docker-authz", types=[{"Capability": "volumedriver", "Prefix": "docker", "Version": "1.0"}]
    )
    assert recognise(vol) is None
    # an authorization plugin of another kind, even named like ours
    other = _plugin("opa-docker-authz-v2:0.4", socket="twistlock.sock", entry="/authz-broker", args_name="x")
    assert recognise(other) is None
    assert recognise({"Name": "broken"}) is None


# ------------------------------------------------------------------------------ plan
def test_plan_swaps_the_old_plugin_in_place_and_keeps_others() -> None:
    plugins = [_plugin(HOWTO), _plugin("other-authz", socket="o.sock", entry="/o", args_name="")]
    p = plan(["first", HOWTO, "other-authz"], plugins, ALIAS)
    assert [f.name for f in p.adopt] == [HOWTO] and p.adopt[0].position == 1
    assert p.chain_unhooked == ["first", "other-authz"]
    assert p.chain_after == ["first", ALIAS, "other-authz"]
    assert p.others == ["first", "other-authz"] and p.stale == []


def test_plan_matches_names_with_and_without_latest() -> None:
    p = plan(["opa/authz"], [_plugin("opa/authz:latest")], ALIAS)
    assert [f.name for f in p.adopt] == ["opa/authz:latest"] and p.chain_after == [ALIAS]


def test_plan_nothing_to_do_on_our_own_plugin_and_idempotent() -> None:
    p = plan([ALIAS], [_plugin(f"{ALIAS}:latest")], ALIAS)
    assert not p.adopt and not p.stale and p.chain_after == [ALIAS]
    assert "nothing to adopt" in describe(p, "r", None, False)


def test_plan_two_old_plugins_and_ours_already_hooked() -> None:
    p = plan(["a:1", ALIAS, "b:2"], [_plugin("a:1"), _plugin("b:2"), _plugin(f"{ALIAS}:latest")], ALIAS)
    assert [f.name for f in p.adopt] == ["a:1", "b:2"]
    assert p.chain_after == [ALIAS]  # ours stays where it is, the old ones leave


def test_plan_unhooked_old_plugin_is_stale() -> None:
    p = plan([], [_plugin(HOWTO, enabled=False)], ALIAS)
    assert p.adopt == [] and [f.name for f in p.stale] == [HOWTO]
    msg = describe(p, "ref", None, True)
    assert "Installed but not hooked" in msg and f"remove the old plugin {HOWTO}" in msg


def test_describe_names_every_step_in_order() -> None:
    p = plan([HOWTO, "x"], [_plugin(HOWTO)], ALIAS)
    msg = describe(p, "ghcr.io/o/p:v0.10", "/etc/docker/policies/authz.rego", True)
    assert msg.startswith(f"Check mode: the run would adopt {HOWTO} (authorization plugin serving")
    order = [
        "(1) back up",
        "(2) install ghcr.io/o/p:v0.10 as opa-docker-authz, set its args and enable it while",
        f'(3) put opa-docker-authz in place of {HOWTO} in authorization-plugins (["opa-docker-authz", "x"])',
        "(4) remove the old plugin",
        "(5) write the role's compiled policy",
    ]
    positions = [msg.index(s) for s in order]
    assert positions == sorted(positions), msg
    assert "Other authorization plugins stay where they are: x" in msg


# ------------------------------------------------------------------------------ the swap
class FakeClient:
    """Answers like dockerd with the chain ``head`` (the first opa-docker-authz) in front: a plugin
    set with an array body fails in it, a privileged create is denied by it when ``denies``; a
    DELETE of a plugin is refused while ``refuse_delete`` says so."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.head = HOWTO
        self.denies = True
        self.refuse_delete: Any = lambda: False

    def raw_request(self, method: str, path: str, **kw: Any) -> Response:
        self.log.append(f"{method} {path}")
        if path.endswith("/set"):
            msg = f"plugin {self.head} failed with error: AuthZPlugin.AuthZReq: json: cannot unmarshal array"
            return Response(500, "Error", {}, json.dumps({"message": msg}).encode())
        if path == "/containers/create" and self.denies:
            msg = f"authorization denied by plugin {self.head}: no"
            return Response(403, "Forbidden", {}, json.dumps({"message": msg}).encode())
        if path == "/containers/create":
            return Response(404, "Not Found", {}, b'{"message": "No such image"}')
        return Response(200, "OK", {}, b"{}")

    def delete(self, path: str, **kw: Any) -> None:
        self.log.append(f"DELETE {path}")
        if self.refuse_delete():
            raise DockerAPIError(
                "DELETE", path, 403, f"authorization denied by plugin {self.head}: plugin changes"
            )

    def post(self, path: str, *a: Any, **kw: Any) -> None:
        self.log.append(f"POST {path}")


def _reloader(host: dict[str, Any], client: FakeClient, log: list[str], chains: list[Any]) -> Any:
    def reload() -> None:
        chain = json.loads(host["dj"].read_text()).get("authorization-plugins")
        chains.append(chain)
        log.append(f"reload {chain}")
        client.head = ALIAS if ALIAS in chain else (HOWTO if HOWTO in chain else "other")

    return reload


def _ensure_ok(host: dict[str, Any], log: list[str], refusals: int = 0) -> Any:
    calls = {"n": 0}

    def ensure(params: dict[str, Any], check_mode: bool, client: Any) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] <= refusals:
            log.append("install refused")
            raise PluginError(
                f"authorization denied by plugin {HOWTO}: no plugins", reason="authz_chain_refused"
            )
        log.append("install")
        return {"plugin": {"reference": params["reference"], "args": params["args"].split()}}

    return ensure


NEW_POLICY_END = "allow := true\n"


@pytest.fixture
def host(tmp_path: Path) -> dict[str, Any]:
    root = tmp_path / "docker"
    store = root / "plugins" / "id-old"
    store.mkdir(parents=True)
    old = _plugin(HOWTO)
    old["Id"] = "id-old"
    (store / "config.json").write_text(json.dumps({"plugin": old}))
    dj = tmp_path / "daemon.json"
    dj.write_text(json.dumps({"data-root": str(root), "authorization-plugins": [HOWTO, "other"]}))
    pol = tmp_path / "authz.rego"
    pol.write_text("package docker.authz\nallow { true }\n")
    return {
        "params": {
            "alias": ALIAS,
            "reference": "127.0.0.1:5000/p:v0.10",
            "args": "-policy-file /opa/policies/authz.rego",
            "socket": str(tmp_path / "docker.sock"),
            "daemon_json_path": str(dj),
            "pidfile": str(tmp_path / "pid"),
            "policy_path": str(pol),
            "policy_text": "package docker.authz\n\nallow := true\n",
            "confirm_timeout": 1,
        },
        "dj": dj,
        "pol": pol,
    }


def test_read_store_reads_dockerd_plugin_store(host: dict[str, Any]) -> None:
    root = json.loads(host["dj"].read_text())["data-root"]
    assert [p["Name"] for p in read_store(root)] == [HOWTO]


def test_check_mode_changes_nothing_and_diffs(host: dict[str, Any]) -> None:
    before = host["dj"].read_text(), host["pol"].read_text()
    res = adopt(host["params"], check_mode=True)
    assert res["changed"] and res["adopted"] == [HOWTO]
    assert (host["dj"].read_text(), host["pol"].read_text()) == before
    assert '"opa-docker-authz"' in res["diff"][0]["after"] and res["diff"][1]["after"].endswith(
        "allow := true\n"
    )


def test_handover_without_a_window(host: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The old policy allows the install: ours is installed under the old plugin, swapped in by
    one reload, the old plugin removed under the old policy, then the role's policy written."""
    log: list[str] = []
    chains: list[Any] = []
    client = FakeClient(log)
    monkeypatch.setattr(adopt_mod, "ensure", _ensure_ok(host, log))
    policies: list[str] = []
    client.refuse_delete = lambda: policies.append(host["pol"].read_text()) and False
    res = adopt(host["params"], client=client, reloader=_reloader(host, client, log, chains))  # type: ignore[arg-type]
    assert res["mode"] == "handover" and chains == [[ALIAS, "other"]]
    assert res["unenforced_seconds"] == 0.0 and res["enforcement_confirmed"] is True
    i = log.index
    assert i("install") < i(f"reload {[ALIAS, 'other']}") < i("DELETE /plugins/id-old")
    assert policies == ["package docker.authz\nallow { true }\n"], (
        "the old plugin is removed under the old policy"
    )
    assert host["pol"].read_text().endswith(NEW_POLICY_END)
    assert Path(res["policy_backup"]).read_text() == "package docker.authz\nallow { true }\n"
    assert res["message"].startswith(f"Adopted {HOWTO}: {ALIAS}") and "in one reload" in res["message"]
    assert "Without this enforcement for 0.0 s." in res["message"] and res["policy_backup"] in res["message"]
    assert res["removed"] == [HOWTO]
    # idempotent: the store no longer holds the old plugin
    (Path(json.loads(host["dj"].read_text())["data-root"]) / "plugins" / "id-old" / "config.json").unlink()
    assert adopt(host["params"], check_mode=True)["changed"] is False


def test_handover_removal_denied_gets_a_short_window(
    host: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old policy is unusable by ours (a v0 policy): the role's policy goes in at once, and the
    old plugin's removal, which it denies, happens between an unhook and a hook."""
    log: list[str] = []
    chains: list[Any] = []
    client = FakeClient(log)
    monkeypatch.setattr(adopt_mod, "ensure", _ensure_ok(host, log))
    client.refuse_delete = lambda: client.head == ALIAS
    orig = client.raw_request

    def locked_until_policy(method: str, path: str, **kw: Any) -> Response:
        locked = client.head == ALIAS and not host["pol"].read_text().endswith(NEW_POLICY_END)
        if locked and path == "/version":
            return Response(
                500,
                "Error",
                {},
                json.dumps({"message": f"plugin {ALIAS} failed with error: rego_parse_error"}).encode(),
            )
        if locked:
            # the real client pings first: every request fails in ours, the /_ping included
            raise DockerError(
                f"unix:///var/run/docker.sock answered /_ping with HTTP 500: plugin {ALIAS}:latest "
                "failed with error: AuthZPlugin.AuthZReq: 1 error occurred: rego_parse_error"
            )
        return orig(method, path, **kw)

    client.raw_request = locked_until_policy  # type: ignore[method-assign]
    res = adopt(host["params"], client=client, reloader=_reloader(host, client, log, chains))  # type: ignore[arg-type]
    assert chains == [[ALIAS, "other"], ["other"], [ALIAS, "other"]]
    assert res["old_policy_unusable"] and "rego_parse_error" in res["message"]
    # the swap is seen at once although every request fails in ours (not after confirm_timeout)
    assert res["swap_seconds"] < 0.5, res
    assert res["removal_window"] and 0 <= res["unenforced_seconds"] < 5 and res["removed"] == [HOWTO]
    assert "between an unhook and a hook" in res["message"]
    assert log.index("reload ['other']") < log.index("DELETE /plugins/id-old", log.index("reload ['other']"))


def test_window_when_the_old_plugin_refuses_the_install(
    host: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    log: list[str] = []
    chains: list[Any] = []
    client = FakeClient(log)
    monkeypatch.setattr(adopt_mod, "ensure", _ensure_ok(host, log, refusals=1))
    res = adopt(host["params"], client=client, reloader=_reloader(host, client, log, chains))  # type: ignore[arg-type]
    assert res["mode"] == "window" and chains == [["other"], [ALIAS, "other"]]
    i = log.index
    assert i("install refused") < i("reload ['other']") < i("install") < i("DELETE /plugins/id-old")
    assert "refused the install while hooked" in res["message"] and res["unenforced_seconds"] >= 0


def test_registry_failure_changes_nothing(host: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    before = host["dj"].read_text(), host["pol"].read_text()

    def ensure(*a: Any, **kw: Any) -> dict[str, Any]:
        raise PluginError("cannot install 127.0.0.1:5000/p:v0.10: manifest unknown", reason="install_failed")

    monkeypatch.setattr(adopt_mod, "ensure", ensure)
    log: list[str] = []
    with pytest.raises(AdoptError) as err:
        adopt(host["params"], client=FakeClient(log), reloader=lambda: log.append("reload"))  # type: ignore[arg-type]
    assert "manifest unknown" in str(err.value) and "Nothing was changed" in str(err.value)
    assert (host["dj"].read_text(), host["pol"].read_text()) == before and "reload" not in log


def test_failed_install_puts_everything_back(host: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    log: list[str] = []
    before = host["dj"].read_text(), host["pol"].read_text()
    calls = {"n": 0}

    def ensure(*a: Any, **kw: Any) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise PluginError(f"authorization denied by plugin {HOWTO}", reason="authz_chain_refused")
        raise PluginError("cannot install 127.0.0.1:5000/p:v0.10: registry down", reason="install_failed")

    monkeypatch.setattr(adopt_mod, "ensure", ensure)
    with pytest.raises(AdoptError) as err:
        adopt(host["params"], client=FakeClient(log), reloader=lambda: log.append("reload"))  # type: ignore[arg-type]
    msg = str(err.value)
    assert "registry down" in msg and "The host is as before, enforced by the old plugin" in msg, msg
    assert (host["dj"].read_text(), host["pol"].read_text()) == before
    assert log.count("reload") == 2 and "DELETE /plugins/id-old" not in log


@pytest.mark.parametrize("which", ["daemon_config", "adopt"])
def test_backup_on_a_full_disk_leaves_no_truncated_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, which: str
) -> None:
    import errno
    import shutil

    from module_utils import daemon_config

    src = tmp_path / "daemon.json"
    src.write_text('{"a": 1}\n')

    def full(a: str, b: str) -> None:
        Path(b).write_text("")  # created, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copy2", full)
    backup = daemon_config.backup_file if which == "daemon_config" else adopt_mod._backup
    with pytest.raises(OSError, match="No space left"):
        backup(str(src))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["daemon.json"]
