"""Rolling out to a fleet with harden.yml, over SSH, on real Docker-in-Docker hosts.

- One run over five hosts in five starting states (no daemon.json; other settings and another
  authorization plugin; the same without the opt-in; an invalid daemon.json; no Docker), then a
  no-change re-run checked per task, with pipelining forced by the playbook.
- Batches: `serial` as a percentage and as a number with `max_fail_percentage`: a host that
  fails verification is rolled back to its previous state, a batch within the tolerance lets
  the rollout go on, one beyond it stops it, and later batches are never touched.
- The rollout variables from the command line (string list form, bad values), without Docker.

Every judgement about a host is made with the host's own docker CLI and files (tests.e2e.conftest.Fleet).
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ALIAS, BUSYBOX, DAEMON_JSON, PLAYBOOKS, POLICY, ROLE, TIMINGS, Fleet
from tests.lib import dind
from tests.lib.ansible_run import PlaybookRun, run_playbook

DOCKER = [pytest.mark.docker, pytest.mark.slow]

OTHER = "other-authz"
OTHER_POLICY = "/etc/docker/policies/other.rego"
ALLOW_ALL = "package docker.authz\n\nimport rego.v1\n\ndefault allow := true\n"
# Another team's settings (log options, a registry mirror on loopback, ...) and authorization
# plugin, already live on the host before the rollout.
OTHER_SETTINGS = {
    "log-opts": {"max-size": "10m", "max-file": "3"},
    "registry-mirrors": ["http://127.0.0.1:5000"],
    "max-concurrent-downloads": 4,
    "authorization-plugins": [OTHER],
    "labels": ["team=payments"],
}
# The same settings without any authorization plugin.
PLAIN_SETTINGS = {k: v for k, v in OTHER_SETTINGS.items() if k != "authorization-plugins"}
BROKEN_JSON = '{\n  "log-driver": "json-file",\n  "log-opts": {"max-size": "10m",}\n}\n'
# A host whose verification fails: its policy lets privileged containers through, while the
# verification insists on the denial.
FAILS_VERIFICATION = {
    "docker_authz_deny_privileged": False,
    "docker_authz_verify_rules": {"deny_privileged": True},
}
VERIFY_TASK = "Verify that the plugin enforces the policy"
READ_TASK = "Read the host's Docker socket, engine, plugin and files"


def _hook_other_plugin(host: dind.DindHost, ref: str) -> None:
    host.exec("install", "-d", "-m", "0755", "/etc/docker/policies")
    host.write_file(OTHER_POLICY, ALLOW_ALL)
    host.docker(
        "plugin", "install", "--alias", OTHER, "--grant-all-permissions", ref,
        f"opa-args=-policy-file /opa/policies/{Path(OTHER_POLICY).name} -quiet",
    )  # fmt: skip
    host.write_file(DAEMON_JSON, json.dumps(OTHER_SETTINGS, indent=2) + "\n")
    host.hup_dockerd()
    host.docker("run", "--rm", BUSYBOX, "true")  # the other plugin is live and allows


def _inventory(
    path: Path, hosts: list[dind.DindHost], per_host: dict[str, dict[str, Any]], **common: Any
) -> Path:
    """An inventory of the hosts (in this order) in group docker_hosts, with common and per-host variables."""
    dind.write_inventory(path, hosts, **common)
    doc = json.loads(path.read_text())
    for name, extra in per_host.items():
        doc["all"]["children"]["docker_hosts"]["hosts"][name].update(extra)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def _results(run: PlaybookRun, host: dind.DindHost) -> list[dict[str, Any]]:
    return [r for r in run.results if r["host"] == host.name]


def _gathered_facts(run: PlaybookRun) -> list[str]:
    return [
        r["host"] for r in run.results if r["action"] in ("ansible.builtin.setup", "setup", "gather_facts")
    ]


def _copied_over_ssh(run: PlaybookRun) -> list[str]:
    """Files ansible-playbook -vvv copied to the hosts (over SSH on 127.0.0.1, not the controller's
    own localhost): the AnsiballZ module files when pipelining is off."""
    return re.findall(r"^<127\.0\.0\.1> PUT .*$", run.stdout, re.M)


def _failed_msg(run: PlaybookRun, host: dind.DindHost) -> str:
    failed = [r for r in _results(run, host) if r["status"] == "failed"]
    assert failed, f"{host.name} did not fail:\n{run.stdout[-3000:]}"
    return str(failed[-1]["result"].get("msg", ""))


def _untouched(run: PlaybookRun, fleet: Fleet, before: Any) -> None:
    """Not one task ran on the host, and nothing on it changed."""
    assert _results(run, fleet.host) == [], f"{fleet.host.name} is in a later batch: no task may run on it"
    assert fleet.state() == before, fleet.host.name


def _rolled_back(run: PlaybookRun, fleet: Fleet, before: Any) -> None:
    """Failed at verification, rolled back to exactly the recorded state, and the API answers."""
    assert run.recap(fleet.host.name)["failed"] == 1
    verify = [r for r in _results(run, fleet.host) if r["task"] == ROLE + VERIFY_TASK]
    assert [r["status"] for r in verify] == ["failed"], verify
    # the plugin denied other probes, so it is live: no retry, the rollback starts at once
    assert verify[0]["result"].get("attempts", 1) == 1, verify[0]["result"].get("attempts")
    msg = _failed_msg(run, fleet.host)
    assert VERIFY_TASK in msg and "Rolled back" in msg, msg
    assert fleet.state() == before, fleet.host.name
    fleet.api_works()


def _fleets(hosts: list[dind.DindHost], tmp: Path, ref: str) -> list[Fleet]:
    return [Fleet(h, tmp / "inventory.yml", tmp, ref) for h in hosts]


# ====================================================================== one run, mixed states


@pytest.fixture(scope="class")
def mixed(
    tmp_path_factory: pytest.TempPathFactory, dind_image: str, dind_ssh_key: Path, plugin_double: str
) -> Iterator[dict[str, Any]]:
    """Five hosts prepared in five starting states, hardened by ONE harden.yml run."""
    hosts = dind.start_hosts(5, dind_ssh_key)
    try:
        _fresh, shared, strict, broken, nodocker = hosts
        # shared and strict: another authorization plugin (a second copy of the double, with its
        # own allow-all policy file) is installed, hooked into daemon.json next to other
        # settings, and live.
        for h in (shared, strict):
            _hook_other_plugin(h, plugin_double)
        # broken: a daemon.json with a trailing comma (dockerd itself would refuse it).
        broken.write_file(DAEMON_JSON, BROKEN_JSON)
        # nodocker: a host without Docker (no daemon, no CLI, no socket).
        nodocker.stop_dockerd()
        nodocker.sh("rm -f /usr/bin/docker /usr/sbin/dockerd /usr/bin/dockerd /var/run/docker.sock")

        tmp = tmp_path_factory.mktemp("fleet-mixed")
        # shared lets the role unhook the other plugin for the install; strict keeps the default.
        inventory = _inventory(
            tmp / "inventory.yml",
            hosts,
            {shared.name: {"docker_authz_unhook_other_plugins": True}},
            docker_authz_plugin_image=plugin_double,
        )
        before = {"strict": strict.read_file(DAEMON_JSON), "broken": broken.read_file(DAEMON_JSON)}
        t0 = time.monotonic()
        # two of five hosts fail (broken, nodocker); a max_fail_percentage of 60 lets the run go on.
        run = run_playbook(
            PLAYBOOKS / "harden.yml",
            tmp,
            inventory=inventory,
            extra_vars={"docker_authz_max_fail_percentage": 60},
        )
        TIMINGS["fleet: one run over 5 mixed hosts"] = time.monotonic() - t0
        fleets = _fleets(hosts, tmp, plugin_double)
        yield {
            "hosts": dict(zip(["fresh", "shared", "strict", "broken", "nodocker"], hosts, strict=True)),
            "fleets": dict(zip(["fresh", "shared", "strict", "broken", "nodocker"], fleets, strict=True)),
            "run": run,
            "before": before,
            "inventory": inventory,
            "tmp": tmp,
        }
    finally:
        for h in hosts:
            h.remove()


@pytest.mark.docker
@pytest.mark.slow
class TestMixedFleet:
    def test_good_hosts_are_hardened(self, mixed: dict[str, Any]) -> None:
        run, h, f = mixed["run"], mixed["hosts"], mixed["fleets"]
        assert run.returncode != 0, "two hosts must fail (broken, nodocker), so the run fails"
        for name in ("fresh", "shared"):
            recap = run.recap(h[name].name)
            assert recap["failed"] == 0 and recap["unreachable"] == 0, (name, recap, run.stdout[-3000:])
            f[name].assert_enforced()
        assert json.loads(h["fresh"].read_file(DAEMON_JSON)) == {"authorization-plugins": [ALIAS]}
        # no facts gathered: the role reads what it needs from the Engine API
        assert _gathered_facts(run) == []

    def test_another_opa_docker_authz_is_adopted_and_other_settings_kept(self, mixed: dict[str, Any]) -> None:
        """The other plugin on `shared` and `strict` is a second copy of opa-docker-authz (under
        another alias, reading its own policy file): the role recognises it by what it is and
        adopts it (tasks/adopt.yml): ours in its place in the chain, it removed, every other
        daemon.json setting and the key order kept, with or without
        docker_authz_unhook_other_plugins. (Authorization plugins of another kind stay: test_adopt.)"""
        run, h, f = mixed["run"], mixed["hosts"], mixed["fleets"]
        for name in ("shared", "strict"):
            host = h[name]
            assert run.recap(host.name)["failed"] == 0, (name, run.recap(host.name))
            doc = json.loads(host.read_file(DAEMON_JSON))
            assert doc["authorization-plugins"] == [ALIAS], (name, doc)
            assert {k: v for k, v in doc.items() if k != "authorization-plugins"} == PLAIN_SETTINGS
            assert list(doc) == list(OTHER_SETTINGS), "key order kept"
            names = host.docker("plugin", "ls", "--format", "{{.Name}}").stdout.split()
            assert names == [f"{ALIAS}:latest"], (name, names)
            f[name].assert_enforced()

    def test_invalid_daemon_json_fails_that_host_only(self, mixed: dict[str, Any]) -> None:
        run, host = mixed["run"], mixed["hosts"]["broken"]
        assert run.recap(host.name)["failed"] == 1
        msg = _failed_msg(run, host)
        assert f"{DAEMON_JSON} is not valid JSON" in msg and "line 3" in msg, msg
        assert "is not valid JSON" in run.stdout, "the operator sees the reason"
        assert host.read_file(DAEMON_JSON) == mixed["before"]["broken"], "the broken file must stay as it was"
        assert host.exec("test", "-e", POLICY, check=False).returncode != 0, "policy written"
        assert host.docker("plugin", "ls", "-q").stdout.strip() == "", "plugin installed"
        host.docker("ps")  # dockerd still runs (it read no new configuration)

    def test_host_without_docker_fails_clearly(self, mixed: dict[str, Any]) -> None:
        run, host = mixed["run"], mixed["hosts"]["nodocker"]
        assert run.recap(host.name)["failed"] == 1
        failed = [r for r in _results(run, host) if r["status"] == "failed"]
        # the diagnosis (tasks/repair.yml, module_utils/diagnose.py) names the cause and changes nothing
        assert failed[0]["task"] == ROLE + "Fail with the cause when the role cannot repair the host"
        msg = failed[0]["result"]["msg"]
        assert "Docker is not installed (no dockerd binary on this host" in msg, msg
        assert "Nothing was changed" in msg and "not running" not in msg
        assert "Docker is not installed" in run.stdout
        assert host.exec("test", "-e", "/etc/docker/policies", check=False).returncode != 0
        assert "Traceback" not in run.stdout + run.stderr

    def test_old_engines_are_warned_about(self, mixed: dict[str, Any]) -> None:
        """Docker 20.10.24 predates the fixes for both authz bypass CVEs: each hardened host says so."""
        run, h = mixed["run"], mixed["hosts"]
        assert h["fresh"].docker("version", "--format", "{{.Server.Version}}").stdout.startswith("20.10.24")
        for name in ("fresh", "shared"):
            verify = run.task(ROLE + VERIFY_TASK, h[name].name)["result"]
            joined = " ".join(verify.get("warnings", []))
            assert "CVE-2024-41110" in joined and "CVE-2026-34040" in joined, verify.get("warnings")
        # and the operator sees it (Ansible prints identical warnings of several hosts once)
        assert "[WARNING]: Docker Engine 20.10.24" in run.stderr and "CVE-2024-41110" in run.stderr

    def test_second_run_changes_no_task_and_pipelines(self, mixed: dict[str, Any]) -> None:
        """A re-run on the hardened hosts: no single task reports a change, no facts are
        gathered, and no module file is copied over SSH although the (operator's) configuration
        turns pipelining off: the playbook turns it on."""
        h = mixed["hosts"]
        names = [h["fresh"].name, h["shared"].name]
        tmp = mixed["tmp"] / "rerun"
        tmp.mkdir()
        t0 = time.monotonic()
        run = run_playbook(
            PLAYBOOKS / "harden.yml",
            tmp,
            inventory=mixed["inventory"],
            args=["--limit", ",".join(names), "-vvv"],
            env={"ANSIBLE_PIPELINING": "False"},
        )
        TIMINGS["fleet: no-change re-run over 2 hosts (-vvv)"] = time.monotonic() - t0
        assert run.returncode == 0, run.stdout[-3000:]
        assert {r["host"] for r in run.results} == set(names)
        changed = [(r["host"], r["task"]) for r in run.results if r["result"].get("changed")]
        assert changed == [], changed
        # the role ran on both hosts, from the host read to its last call: the quick proof
        for name in names:
            assert run.task(ROLE + READ_TASK, name)["status"] == "ok", name
            assert run.task(ROLE + VERIFY_TASK, name)["status"] == "ok", name
        assert _gathered_facts(run) == []
        assert _copied_over_ssh(run) == [], "modules were copied to the hosts: pipelining is off"

    def test_pipelining_can_be_turned_off(self, mixed: dict[str, Any]) -> None:
        """The control of the test above: with docker_authz_pipelining=false every module is
        copied to the host first (and verify.yml still changes nothing)."""
        tmp = mixed["tmp"] / "no-pipelining"
        tmp.mkdir()
        run = run_playbook(
            PLAYBOOKS / "verify.yml",
            tmp,
            inventory=mixed["inventory"],
            args=["--limit", mixed["hosts"]["fresh"].name, "-vvv", "-e", "docker_authz_pipelining=false"],
        )
        assert run.returncode == 0, run.stdout[-3000:]
        # verify.yml runs two modules on the host (one host read, which also checks daemon.json,
        # and the verification)
        assert len(_copied_over_ssh(run)) >= 2, "modules must be copied without pipelining"
        assert not [r for r in run.results if r["result"].get("changed")]


# ====================================================================== batches


@dataclass
class Batches:
    """Five hosts a-e (order of the first run). a starts with a daemon.json of other settings."""

    hosts: list[dind.DindHost]
    fleets: dict[str, Fleet]
    tmp: Path
    ref: str
    runs: dict[str, tuple[PlaybookRun, dict[str, Any], dict[str, Any]]] = field(default_factory=dict)

    def run(
        self,
        label: str,
        order: str,
        failing: str,
        extra_vars: dict[str, Any] | None = None,
        args: list[str] | None = None,
    ) -> tuple[PlaybookRun, dict[str, Any], dict[str, Any]]:
        """harden.yml over the hosts in `order` (letters); hosts in `failing` fail verification.
        Returns the run and the host states before and after it."""
        if label in self.runs:
            return self.runs[label]
        by = dict(zip("abcde", self.hosts, strict=True))
        out = self.tmp / label
        out.mkdir()
        inventory = _inventory(
            out / "inventory.yml",
            [by[x] for x in order],
            {by[x].name: FAILS_VERIFICATION for x in failing},
            docker_authz_plugin_image=self.ref,
        )
        before = self.states()
        t0 = time.monotonic()
        run = run_playbook(
            PLAYBOOKS / "harden.yml", out, inventory=inventory, extra_vars=extra_vars, args=args
        )
        TIMINGS[f"batches: {label}"] = time.monotonic() - t0
        after = self.states()
        self.runs[label] = (run, before, after)
        return self.runs[label]

    def states(self) -> dict[str, Any]:
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(self.fleets)) as pool:
            return dict(zip(self.fleets, pool.map(lambda f: f.state(), self.fleets.values()), strict=True))

    def percentage_run(self) -> tuple[PlaybookRun, dict[str, Any], dict[str, Any]]:
        # 40% of 5 hosts: batches [a, b] [c, d] [e]. Passed the way an operator types it.
        return self.run(
            "percentage",
            "abcde",
            "a",
            args=["-e", "docker_authz_serial=40%", "-e", "docker_authz_max_fail_percentage=0"],
        )

    def number_run(self) -> tuple[PlaybookRun, dict[str, Any], dict[str, Any]]:
        self.percentage_run()  # b is hardened and a rolled back by it
        # serial 2: batches [b, c] [d, a] [e]
        return self.run(
            "number",
            "bcdae",
            "bda",
            extra_vars={"docker_authz_serial": 2, "docker_authz_max_fail_percentage": 50},
        )


@pytest.fixture(scope="class")
def batches(
    tmp_path_factory: pytest.TempPathFactory, dind_image: str, dind_ssh_key: Path, plugin_double: str
) -> Iterator[Batches]:
    hosts = dind.start_hosts(5, dind_ssh_key)
    try:
        # a: another team's daemon.json (no authorization plugin), live.
        hosts[0].write_file(DAEMON_JSON, json.dumps(PLAIN_SETTINGS, indent=2) + "\n")
        hosts[0].hup_dockerd()
        tmp = tmp_path_factory.mktemp("fleet-batches")
        fleets = dict(zip("abcde", _fleets(hosts, tmp, plugin_double), strict=True))
        yield Batches(hosts, fleets, tmp, plugin_double)
    finally:
        for h in hosts:
            h.remove()


def _first_and_last(run: PlaybookRun, *hosts: dind.DindHost) -> tuple[float, float]:
    times = [r["time"] for r in run.results if r["host"] in {h.name for h in hosts}]
    return min(times), max(times)


@pytest.mark.docker
@pytest.mark.slow
class TestBatches:
    def test_percentage_batches_stop_after_a_batch_with_a_failed_host(self, batches: Batches) -> None:
        """serial 40%, max_fail_percentage 0 (from the command line). In the first batch [a, b]
        a fails verification: it is rolled back to its daemon.json of other settings (byte for
        byte, reloaded, no plugin, no policy), b is hardened, and [c, d] [e] never start."""
        run, before, after = batches.percentage_run()
        f = batches.fleets
        assert run.returncode != 0
        _rolled_back(run, f["a"], before["a"])
        assert after["a"].daemon_json == json.dumps(PLAIN_SETTINGS, indent=2) + "\n"
        f["a"].assert_not_enforced()
        assert run.recap(f["b"].host.name)["failed"] == 0
        f["b"].assert_enforced()
        for x in "cde":
            _untouched(run, f[x], before[x])

    def test_numeric_batches_go_on_within_max_fail_percentage_then_stop(self, batches: Batches) -> None:
        """serial 2, max_fail_percentage 50, batches [b, c] [d, a] [e]. b (hardened) gets a policy
        that fails verification: rolled back to its previous policy, still enforcing. One of two
        failed is not more than 50%: the second batch starts after the first ended; there both
        fail (rolled back), which is more than 50%: e is never touched."""
        run, before, after = batches.number_run()
        f = batches.fleets
        assert run.returncode != 0
        assert before["b"].policy is not None and before["b"].plugins, "b was hardened by the first run"
        _rolled_back(run, f["b"], before["b"])
        assert run.task(ROLE + "Restore the previous policy file", f["b"].host.name)["result"]["changed"]
        f["b"].assert_enforced()
        assert run.recap(f["c"].host.name)["failed"] == 0
        f["c"].assert_enforced()
        # the second batch ran, after the first one had finished
        assert (
            _first_and_last(run, f["b"].host, f["c"].host)[1]
            < _first_and_last(run, f["d"].host, f["a"].host)[0]
        )
        for x in "da":
            _rolled_back(run, f[x], before[x])
            f[x].assert_not_enforced()
        assert after["a"].daemon_json == json.dumps(PLAIN_SETTINGS, indent=2) + "\n"
        _untouched(run, f["e"], before["e"])


# ====================================================================== the variables, no Docker


def _local_inventory(tmp_path: Path, n: int) -> Path:
    """n hosts reached with the local connection, whose Docker socket does not exist: each
    fails at the preflight, having changed nothing."""
    hosts = {
        f"h{i}": {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "docker_authz_docker_socket": str(tmp_path / "no-docker.sock"),
        }
        for i in range(1, n + 1)
    }
    path = tmp_path / "inventory.yml"
    path.write_text(json.dumps({"all": {"children": {"docker_hosts": {"hosts": hosts}}}}) + "\n")
    return path


def test_serial_list_typed_on_the_command_line(tmp_path: Path) -> None:
    """-e docker_authz_serial='[1,"50%"]' arrives as a string; the playbook reads it as the
    list: the first batch is one host (which fails, so the run stops there)."""
    run = run_playbook(
        PLAYBOOKS / "harden.yml",
        tmp_path,
        inventory=_local_inventory(tmp_path, 4),
        args=["-e", 'docker_authz_serial=[1,"50%"]', "-e", "docker_authz_max_fail_percentage=0"],
    )
    assert run.returncode != 0
    assert {r["host"] for r in run.results} == {"h1"}, run.stdout[-2000:] + run.stderr[-2000:]
    # the socket is missing on a controller whose own dockerd may run: the diagnosis names it
    msg = _failed_msg_local(run)
    assert "does not answer GET /version" in msg and "Nothing was changed" in msg, msg


def _failed_msg_local(run: PlaybookRun) -> str:
    return " ".join(str(r["result"].get("msg", "")) for r in run.results if r["status"] == "failed")


@pytest.mark.parametrize("value", ["abc", "-1", "[1,x]", "[1,", "[1, 50%]"])
def test_bad_serial_is_refused_before_any_host(tmp_path: Path, value: str) -> None:
    run = run_playbook(
        PLAYBOOKS / "harden.yml",
        tmp_path,
        inventory=_local_inventory(tmp_path, 2),
        args=["-e", f"docker_authz_serial={value}"],
    )
    out = run.stdout + run.stderr
    assert run.returncode != 0 and run.results == []
    assert (
        "docker_authz_serial must be a number of hosts, a percentage such as 25%, or a list of them" in out
    ), out
    assert "Traceback" not in out and "probably a bug" not in out, out
