"""The role on a matrix of real engines: one Docker-in-Docker host per Debian release, each
with that release's own docker.io (docs/engines.md):

    bullseye (Debian 11)   docker.io 20.10.5   API 1.41
    bookworm (Debian 12)   docker.io 20.10.24  API 1.41
    trixie   (Debian 13)   docker.io 26.1.5    API 1.45

The three hosts share one inventory, so every playbook run hardens all three at once (one
run's cost, not three); each test is parametrised by release and judges its own host with the
host's own docker CLI. Covered per engine: check mode on a fresh host, converge (privileged
denied by the plugin, a compliant run allowed), ordinary docker CLI use not denied, a second
run with no change, check mode with no change, verify.yml with no change and the engine's
CVE warnings, and the cheap faults (verification failure and a plugin that fails to start,
both rolled back, the plugin staying up after the rollback; dockerd not running), then
remove.yml.
"""

from __future__ import annotations

import concurrent.futures
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from module_utils import probes
from tests.e2e.conftest import ALIAS, BUSYBOX, DENIED, PLAYBOOKS, TIMINGS, Fleet
from tests.images import build as images
from tests.lib import dind
from tests.lib.ansible_run import PlaybookRun, run_playbook

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SUITES = dind.SUITES
# What each release's docker.io reports (major.minor of the engine, its API version, the
# CLI's major.minor). A Debian point release may move the patch level, never these.
ENGINES = {
    "bullseye": ("20.10", "1.41", "20.10"),
    "bookworm": ("20.10", "1.41", "20.10"),
    "trixie": ("26.1", "1.45", "26.1"),
}
# The CVE warnings the role gives for each engine line (module_utils/probes.py CVES):
# 20.10 never got an upstream fix of either; 26.1.5 carries the CVE-2024-41110 fix, and Debian
# 13's package the CVE-2026-34040 one (it refuses the body-over-1mib probe itself: the role
# trusts what the engine does over its version).
CVE_WARNINGS: dict[str, set[str]] = {
    "20.10": {"CVE-2024-41110", "CVE-2026-34040"},
    "26.1": set(),
}
VERIFY_TASK = "Verify that the plugin enforces the policy"
LOG_WARNING_TASK = "Warn that long decision-log lines can hang this engine in policy-file mode"
# Engine facts seen by the tests, printed at the end of the session.
SEEN: dict[str, str] = {}


@dataclass
class Matrix:
    fleets: dict[str, Fleet]
    inventory: Path
    tmp: Path
    runs: dict[str, tuple[PlaybookRun, float]] = field(default_factory=dict)
    before: dict[str, dict[str, Any]] = field(default_factory=dict)

    def once(
        self,
        key: str,
        playbook: str,
        extra_vars: dict[str, Any] | None = None,
        args: list[str] | None = None,
        record_before: bool = True,
    ) -> PlaybookRun:
        """Run `playbook` on all three hosts the first time `key` is asked for; reuse it after.
        The state of every host just before the run is kept in self.before[key]."""
        if key not in self.runs:
            if record_before:
                self.before[key] = {s: f.state() for s, f in self.fleets.items()}
            # (a --limit run leaves the other hosts out)
            out = self.tmp / key
            out.mkdir()
            t0 = time.monotonic()
            run = run_playbook(
                PLAYBOOKS / playbook,
                out,
                inventory=self.inventory,
                extra_vars=extra_vars,
                args=args,
                timeout=900,
            )
            seconds = time.monotonic() - t0
            self.runs[key] = (run, seconds)
            TIMINGS[f"engine matrix: {key} (3 hosts)"] = seconds
        return self.runs[key][0]


@pytest.fixture(scope="module")
def matrix(
    tmp_path_factory: pytest.TempPathFactory, dind_image: str, dind_ssh_key: Path, plugin_double: str
) -> Iterator[Matrix]:
    t0 = time.monotonic()
    try:
        images.build([dind.builder(s) for s in SUITES if s != images.SUITE])
    except images.BuildError as e:
        pytest.fail(f"the engine matrix images could not be built: {e}", pytrace=False)
    TIMINGS["engine matrix: images (cached or built)"] = time.monotonic() - t0
    hosts: list[dind.DindHost] = []
    try:
        for suite in SUITES:
            name = f"{dind.PREFIX}{suite}-{uuid.uuid4().hex[:6]}"
            hosts.append(dind.start_host(dind_ssh_key, name=name, image=dind.suite_image(suite)))
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(hosts)) as pool:
            list(pool.map(lambda h: h.wait_ready(), hosts))
        TIMINGS["engine matrix: 3 hosts ready"] = time.monotonic() - t0
        tmp = tmp_path_factory.mktemp("e2e-engine-matrix")
        mirror = plugin_double.replace("-linux-amd64", "-linux-{arch}")
        inventory = dind.write_inventory(tmp / "inventory.yml", hosts, docker_authz_plugin_image=mirror)
        fleets = {s: Fleet(h, inventory, tmp, plugin_double) for s, h in zip(SUITES, hosts, strict=True)}
        yield Matrix(fleets, inventory, tmp)
    finally:
        for h in hosts:
            h.remove()


def _ok(fleet: Fleet, run: PlaybookRun) -> dict[str, int]:
    recap = fleet.recap(run)
    assert recap["failed"] == 0 and recap["unreachable"] == 0, (
        f"{fleet.host.name}: {recap}\n{run.stdout[-6000:]}{run.stderr[-2000:]}"
    )
    return recap


def _failed(fleet: Fleet, run: PlaybookRun, task: str) -> None:
    recap = fleet.recap(run)
    assert recap["failed"] == 1, f"{fleet.host.name} should have failed: {recap}\n{run.stdout[-4000:]}"
    failed = [r["task"] for r in run.results if r["host"] == fleet.host.name and r["status"] == "failed"]
    assert any(task in t for t in failed), (failed, run.stdout[-4000:])


# ------------------------------------------------------------------ the engines themselves


@pytest.mark.parametrize("suite", SUITES)
def test_each_release_runs_its_own_engine(matrix: Matrix, suite: str) -> None:
    h = matrix.fleets[suite].host
    fmt = "{{.Server.Version}} {{.Server.APIVersion}} {{.Client.Version}} {{.Client.APIVersion}}"
    engine, api, cli, cli_api = h.docker("version", "--format", fmt).stdout.split()
    release = h.exec("cat", "/etc/debian_version").stdout.strip()
    SEEN[suite] = f"Debian {release}: engine {engine} (API {api}), CLI {cli} (API {cli_api})"
    major_minor, api_version, cli_line = ENGINES[suite]
    assert engine.startswith(major_minor + "."), SEEN[suite]
    assert api == api_version and cli.startswith(cli_line + "."), SEEN[suite]
    # The role reads the package's version string (e.g. 20.10.5+dfsg1) as the upstream release.
    parsed = probes.parse_engine_version(engine)
    assert parsed is not None and engine.startswith(".".join(map(str, parsed))), (engine, parsed)
    assert not probes.is_prerelease(engine), engine


# ------------------------------------------------------------------ life cycle on each engine


@pytest.mark.parametrize("suite", SUITES)
def test_check_mode_on_a_fresh_host_changes_nothing(matrix: Matrix, suite: str) -> None:
    run = matrix.once("check mode, fresh", "harden.yml", args=["--check", "--diff"])
    fleet = matrix.fleets[suite]
    assert _ok(fleet, run)["changed"] > 0
    assert fleet.state() == matrix.before["check mode, fresh"][suite]
    fleet.assert_not_enforced()


@pytest.mark.parametrize("suite", SUITES)
def test_converge_enforces_the_policy(matrix: Matrix, suite: str) -> None:
    fleet = matrix.fleets[suite]
    pid = fleet.host.dockerd_pid()
    run = matrix.once("converge", "harden.yml")
    _ok(fleet, run)
    fleet.assert_enforced()  # privileged denied by the plugin, a compliant run allowed, docker ps
    if pid is not None:
        assert fleet.host.dockerd_pid() == pid, "dockerd was restarted; a reload (SIGHUP) is enough"
    state = fleet.state()
    assert [(p["name"], p["enabled"], p["reference"]) for p in state.plugins] == [
        (f"{ALIAS}:latest", True, fleet.plugin_ref)
    ]
    assert state.daemon_json is not None and f'"{ALIAS}"' in state.daemon_json
    verify = fleet.task(run, VERIFY_TASK)["result"]
    assert verify["counts"]["failed"] == 0, verify
    assert any(p["name"] == "privileged" and p["outcome"] == "denied" for p in verify["probes"])
    # policy-file mode without -quiet: every engine here stalls on a log line over 64 KiB (20.10's
    # logrus 1.7.0; Debian 13's own build of 26.1.5 too), so the role warns on each
    warning = fleet.task(run, LOG_WARNING_TASK)["result"]
    assert "stops reading a plugin's log at a line over 64 KiB" in warning.get("msg", ""), warning


# Ordinary docker CLI use under the default (baseline) profile: none of it may be denied.
SLEEP = ["-l", "x=y", BUSYBOX, "sleep", "300"]
ORDINARY = [
    ["version"],
    ["info"],
    ["ps", "-a"],
    ["images"],
    ["run", "--rm", BUSYBOX, "true"],
    # --network none: these hosts run dockerd with --bridge=none (engine 26 then cannot rename
    # a container on the missing default bridge: "network bridge not found", no plugin involved)
    ["run", "-d", "--name", "ordinary", "--network", "none", "-e", "A=1", "--memory", "64m", *SLEEP],
    ["exec", "ordinary", "echo", "exec-ok"],
    ["exec", "-u", "1000", "ordinary", "id"],
    ["logs", "ordinary"],
    ["inspect", "ordinary"],
    ["top", "ordinary"],
    ["stats", "--no-stream", "ordinary"],
    ["cp", "ordinary:/etc/passwd", "/tmp/ordinary-passwd"],
    ["update", "--cpus", "0.5", "ordinary"],
    ["pause", "ordinary"],
    ["unpause", "ordinary"],
    ["rename", "ordinary", "ordinary2"],
    ["restart", "-t", "1", "ordinary2"],
    ["stop", "-t", "1", "ordinary2"],
    ["commit", "ordinary2", "local/ordinary:1"],
    ["rm", "ordinary2"],
    ["volume", "create", "ordinary-vol"],
    ["run", "--rm", "-v", "ordinary-vol:/data", "--tmpfs", "/scratch", BUSYBOX, "ls", "/data"],
    ["volume", "ls"],
    ["volume", "rm", "ordinary-vol"],
    # (no `network create`: the hosts share the machine's network namespace, --network host)
    ["network", "ls"],
    ["network", "inspect", "none"],
    ["run", "--rm", "--network", "none", BUSYBOX, "true"],
    ["tag", "local/ordinary:1", "local/ordinary:2"],
    ["image", "inspect", "local/ordinary:2"],
    ["history", "local/ordinary:1"],
    ["rmi", "local/ordinary:1", "local/ordinary:2"],
    ["system", "df"],
    ["plugin", "ls"],
    ["container", "prune", "-f"],
]


@pytest.mark.parametrize("suite", SUITES)
def test_ordinary_docker_cli_use_is_not_denied(matrix: Matrix, suite: str) -> None:
    matrix.once("converge", "harden.yml")
    h = matrix.fleets[suite].host
    problems = []
    for args in ORDINARY:
        r = h.docker(*args, check=False)
        if r.returncode != 0 or DENIED in r.stderr:
            problems.append(f"docker {' '.join(args)}: exit {r.returncode}: {r.stderr.strip()[-300:]}")
    # A build with the legacy builder (no buildx on these hosts), and docker events (streams).
    h.write_file("/tmp/ctx/Dockerfile", f"FROM {BUSYBOX}\nRUN echo built > /built\n")
    r = h.sh("DOCKER_BUILDKIT=0 docker build -q -t local/ordinary-build:1 /tmp/ctx", check=False)
    if r.returncode != 0 or DENIED in r.stderr:
        problems.append(f"docker build: exit {r.returncode}: {r.stderr.strip()[-300:]}")
    h.docker("rmi", "-f", "local/ordinary-build:1", check=False)
    r = h.sh("timeout 2 docker events --since 1m >/dev/null; echo rc=$?", check=False)
    if "rc=124" not in r.stdout:
        problems.append(f"docker events: {r.stdout.strip()} {r.stderr.strip()[-300:]}")
    assert not problems, f"{SEEN.get(suite, suite)}:\n" + "\n".join(problems)


@pytest.mark.parametrize("suite", SUITES)
def test_second_converge_changes_nothing(matrix: Matrix, suite: str) -> None:
    run = matrix.once("second converge", "harden.yml")
    fleet = matrix.fleets[suite]
    changed = [r["task"] for r in run.results if r["host"] == fleet.host.name and r["result"].get("changed")]
    assert _ok(fleet, run)["changed"] == 0, changed
    assert fleet.state() == matrix.before["second converge"][suite]
    fleet.assert_enforced()


@pytest.mark.parametrize("suite", SUITES)
def test_check_mode_on_the_hardened_host_reports_no_change(matrix: Matrix, suite: str) -> None:
    run = matrix.once("check mode, hardened", "harden.yml", args=["--check", "--diff"])
    fleet = matrix.fleets[suite]
    assert _ok(fleet, run)["changed"] == 0
    assert fleet.state() == matrix.before["check mode, hardened"][suite]


@pytest.mark.parametrize("suite", SUITES)
def test_verify_playbook_changes_nothing_and_warns_of_the_engines_cves(matrix: Matrix, suite: str) -> None:
    run = matrix.once("verify.yml", "verify.yml")
    fleet = matrix.fleets[suite]
    assert _ok(fleet, run)["changed"] == 0
    assert fleet.state() == matrix.before["verify.yml"][suite]
    result = fleet.task(run, VERIFY_TASK)["result"]
    assert result["counts"]["failed"] == 0, result["counts"]
    engine = result["engine"]
    reported = fleet.host.docker("version", "--format", "{{.Server.Version}}").stdout.strip()
    assert engine["version"] == reported and engine["kind"] == "docker", engine
    assert engine["api_version"] == ENGINES[suite][1], engine
    warned = {c["id"] for c in engine["cves"] if c["vulnerable"]}
    assert warned == CVE_WARNINGS[ENGINES[suite][0]], engine["cves"]
    assert None not in {c["vulnerable"] for c in engine["cves"]}, "the version string was not read"
    for cve in warned:
        assert any(cve in w and reported in w for w in result.get("warnings", [])), result.get("warnings")
    body_probe = next(p for p in result["probes"] if p["name"] == "body-over-1mib")
    if ENGINES[suite][0] == "26.1":
        assert body_probe["outcome"] == "engine-refused", body_probe
    else:
        assert body_probe["outcome"] == "denied", body_probe


# ------------------------------------------------------------------ faults on each engine


@pytest.mark.parametrize("suite", SUITES)
def test_fault_verification_failure_rolls_back(matrix: Matrix, suite: str) -> None:
    run = matrix.once(
        "fault: verification failure",
        "harden.yml",
        {"docker_authz_deny_privileged": False, "docker_authz_verify_rules": {"deny_privileged": True}},
    )
    fleet = matrix.fleets[suite]
    _failed(fleet, run, VERIFY_TASK)
    assert fleet.task(run, "Restore the previous policy file")["result"]["changed"]
    assert fleet.state() == matrix.before["fault: verification failure"][suite]
    fleet.assert_enforced()


# On Debian 13 this fault once left the authz plugin in an endless ~1 s kill/restart loop
# (requests meeting its dead socket were retried with an emptied body and denied, even
# GET /plugins, until dockerd restarted): the role enabled again inside the window in which the
# engine was still restarting the plugin that had exited at start (docs/engines.md). The role
# now waits that window out (module_utils/plugin.py ENABLE_SETTLE_SECONDS); the test runs the
# fault on all three engines and checks that the plugin stays up after the rollback.
START_LINE = "Starting server."  # the plugin double's line at each start of its process


@pytest.mark.parametrize("suite", SUITES)
def test_fault_plugin_that_fails_to_start_rolls_back(matrix: Matrix, suite: str) -> None:
    # edge names no release: the role leaves a flag it does not know to the plugin, which exits
    # at start on it (on a tag that names one, the role refuses the flag before any change)
    run = matrix.once(
        "fault: plugin fails to start",
        "harden.yml",
        {
            "docker_authz_plugin_image": matrix.fleets[suite].plugin_ref.rsplit(":", 1)[0] + ":edge",
            "docker_authz_plugin_args": "-policy-file /opa/policies/authz.rego -no-such-flag",
        },
    )
    fleet = matrix.fleets[suite]
    _failed(fleet, run, "Install, configure and enable the plugin")
    assert "Rolled back" in run.stdout + run.stderr
    assert "exited at start" in run.stdout, run.stdout[-3000:]
    assert fleet.state() == matrix.before["fault: plugin fails to start"][suite]
    fleet.assert_enforced()
    # the re-enabled plugin is not being killed and restarted by the engine behind the API
    starts = fleet.host.dockerd_log().count(START_LINE)
    for _ in range(5):
        time.sleep(1)
        fleet.host.docker("plugin", "ls")  # each call passes the plugin; none may be refused
    assert fleet.host.dockerd_log().count(START_LINE) == starts, "the plugin restarts in a loop"


@pytest.mark.parametrize("suite", SUITES)
def test_fault_dockerd_not_running(matrix: Matrix, suite: str) -> None:
    if "fault: dockerd not running" not in matrix.runs:
        matrix.before["fault: dockerd not running"] = {s: f.state() for s, f in matrix.fleets.items()}
        for f in matrix.fleets.values():
            f.host.stop_dockerd()
        try:
            matrix.once("fault: dockerd not running", "harden.yml", record_before=False)
        finally:
            for f in matrix.fleets.values():
                f.host.start_dockerd()
    run = matrix.runs["fault: dockerd not running"][0]
    fleet = matrix.fleets[suite]
    _failed(fleet, run, "")
    assert "dockerd is not running" in run.stdout + run.stderr
    # dockerd started again with the plugin hooked: nothing was changed, it is still enforced
    assert fleet.state() == matrix.before["fault: dockerd not running"][suite]
    fleet.assert_enforced()


DOCKERD_CHECK = """
- name: daemon_json asks the host's dockerd to check the file it would write
  hosts: all
  gather_facts: false
  become: true
  tasks:
    - name: Scratch folder
      ansible.builtin.file:
        path: /tmp/dockerd-check
        state: directory
        mode: "0755"
    - name: A value dockerd refuses
      hardening.docker_authz.daemon_json:
        path: /tmp/dockerd-check/daemon.json
        settings: {max-concurrent-downloads: -1}
        check_flags: false
      ignore_errors: true
    - name: A value dockerd accepts
      hardening.docker_authz.daemon_json:
        path: /tmp/dockerd-check/daemon.json
        settings: {debug: true}
        check_flags: false
    - name: A refused value written by hand
      ansible.builtin.copy:
        dest: /tmp/dockerd-check/daemon.json
        content: '{"debug": true, "max-concurrent-uploads": -2}'
        mode: "0644"
    - name: A valid change to a file that already holds a refused value
      hardening.docker_authz.daemon_json:
        path: /tmp/dockerd-check/daemon.json
        settings: {log-level: warn}
        check_flags: false
      ignore_errors: true
"""


@pytest.mark.parametrize("suite", SUITES)
def test_daemon_json_is_checked_by_the_hosts_dockerd(matrix: Matrix, suite: str) -> None:
    """Engines from 23.0 on check a daemon.json themselves (dockerd --validate): daemon_json refuses
    a file that dockerd would refuse on its next reload or start, and says when the file already
    held the refused value. Engines before 23.0 cannot: the change is written, `validated` null."""
    if "dockerd check" not in matrix.runs:
        playbook = matrix.tmp / "dockerd-check.yml"
        playbook.write_text(DOCKERD_CHECK)
        out = matrix.tmp / "dockerd-check"
        out.mkdir()
        t0 = time.monotonic()
        run = run_playbook(playbook, out, inventory=matrix.inventory, timeout=300)
        matrix.runs["dockerd check"] = (run, time.monotonic() - t0)
    run = matrix.runs["dockerd check"][0]
    fleet = matrix.fleets[suite]
    refused = run.task("A value dockerd refuses", fleet.host.name)
    accepted = run.task("A value dockerd accepts", fleet.host.name)
    held = run.task("A valid change to a file that already holds a refused value", fleet.host.name)
    assert accepted["status"] == "ok" and accepted["result"]["changed"], accepted
    if ENGINES[suite][0] == "20.10":
        assert refused["status"] == "ok" and refused["result"]["validated"] is None, refused
        assert held["status"] == "ok" and held["result"]["validated"] is None, held
        return
    msg = refused["result"]["msg"]
    assert refused["status"] == "failed" and not refused["result"]["changed"], refused
    assert msg.startswith("dockerd would refuse /tmp/dockerd-check/daemon.json with this change"), msg
    assert "invalid max concurrent downloads: -1" in msg, msg
    assert accepted["result"]["validated"] is True, accepted
    msg = held["result"]["msg"]
    assert held["status"] == "failed" and not held["result"]["changed"], held
    assert msg.startswith("/tmp/dockerd-check/daemon.json already holds a configuration dockerd refuses"), msg
    assert "invalid max concurrent uploads: -2" in msg, msg
    text = fleet.host.exec("cat", "/tmp/dockerd-check/daemon.json").stdout
    assert json.loads(text) == {"debug": True, "max-concurrent-uploads": -2}, text


@pytest.mark.parametrize("suite", SUITES)
def test_remove_playbook_leaves_a_daemon_without_authorization(matrix: Matrix, suite: str) -> None:
    run = matrix.once("remove.yml", "remove.yml")
    fleet = matrix.fleets[suite]
    _ok(fleet, run)
    state = fleet.state()
    assert state.plugins == [] and ALIAS not in (state.daemon_json or "")
    fleet.assert_not_enforced()
    fleet.compliant_run()
