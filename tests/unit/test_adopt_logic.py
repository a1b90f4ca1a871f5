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
from module_utils.docker_api import Response
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
        "(2) unhook",
        "(3) write the role's compiled policy",
        "(4) install ghcr.io/o/p:v0.10",
        "(5) remove the old plugin",
        "(6) hook opa-docker-authz at the old plugin's place",
    ]
    positions = [msg.index(s) for s in order]
    assert positions == sorted(positions), msg
    assert "Other authorization plugins stay where they are: x" in msg


# ------------------------------------------------------------------------------ the swap
class FakeClient:
    """Records calls; a privileged create is denied by ``denier`` once ``hooked`` says so."""

    def __init__(self, log: list[str], alias: str = ALIAS) -> None:
        self.log = log
        self.alias = alias
        self.enforced = False

    def raw_request(self, method: str, path: str, **kw: Any) -> Response:
        self.log.append(f"{method} {path}")
        if self.enforced:
            body = json.dumps({"message": f"authorization denied by plugin {self.alias}: no"}).encode()
            return Response(403, "Forbidden", {}, body)
        return Response(404, "Not Found", {}, b'{"message": "No such image"}')

    def delete(self, path: str, **kw: Any) -> None:
        self.log.append(f"DELETE {path}")

    def post(self, path: str, *a: Any, **kw: Any) -> None:
        self.log.append(f"POST {path}")


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


def test_swap_order_backup_and_window(host: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    log: list[str] = []
    client = FakeClient(log)
    chains: list[list[str]] = []

    def reload() -> None:
        chain = json.loads(host["dj"].read_text()).get("authorization-plugins")
        chains.append(chain)
        log.append(f"reload {chain}")
        client.enforced = ALIAS in chain

    def ensure(params: dict[str, Any], check_mode: bool, client: Any) -> dict[str, Any]:
        log.append("install")
        assert host["pol"].read_text().endswith("allow := true\n"), "the policy is written before the install"
        return {"plugin": {"reference": params["reference"], "args": params["args"].split()}}

    monkeypatch.setattr(adopt_mod, "ensure", ensure)
    res = adopt(host["params"], client=client, reloader=reload)  # type: ignore[arg-type]
    assert chains == [["other"], [ALIAS, "other"]]
    i = log.index
    assert (
        i("reload ['other']") < i("install") < i("DELETE /plugins/id-old") < i(f"reload {[ALIAS, 'other']}")
    )
    assert res["enforcement_confirmed"] is True and res["unenforced_seconds"] >= 0
    assert Path(res["policy_backup"]).read_text() == "package docker.authz\nallow { true }\n"
    assert res["message"].startswith(f"Adopted {HOWTO}: {ALIAS}") and res["policy_backup"] in res["message"]
    # idempotent: the store no longer holds the old plugin
    (Path(json.loads(host["dj"].read_text())["data-root"]) / "plugins" / "id-old" / "config.json").unlink()
    assert adopt(host["params"], check_mode=True)["changed"] is False


def test_failed_install_puts_everything_back(host: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    log: list[str] = []
    before = host["dj"].read_text(), host["pol"].read_text()

    def ensure(*a: Any, **kw: Any) -> dict[str, Any]:
        raise PluginError("cannot install 127.0.0.1:5000/p:v0.10: registry down", reason="install_failed")

    monkeypatch.setattr(adopt_mod, "ensure", ensure)
    with pytest.raises(AdoptError) as err:
        adopt(host["params"], client=FakeClient(log), reloader=lambda: log.append("reload"))  # type: ignore[arg-type]
    msg = str(err.value)
    assert "registry down" in msg and "The host is as before, enforced by the old plugin" in msg, msg
    assert (host["dj"].read_text(), host["pol"].read_text()) == before
    assert log.count("reload") == 2 and "DELETE /plugins/id-old" not in log
