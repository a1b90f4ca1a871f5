"""End-to-end fixtures: disposable Docker-in-Docker hosts hardened by the real playbooks over SSH.

Hosts are module-scoped (a test file reuses its hosts: each start costs seconds, a converge
more), and every playbook run goes through ansible-playbook with an inventory that points
the role at the opa-docker-authz test double, exactly as an operator would for a mirror.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.lib import dind
from tests.lib import timings as _timings
from tests.lib.ansible_run import PlaybookRun, run_playbook

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOKS = ROOT / "playbooks"
DENIED = "authorization denied by plugin"
ALIAS = "opa-docker-authz"
POLICY = "/etc/docker/policies/authz.rego"
DAEMON_JSON = "/etc/docker/daemon.json"
BUSYBOX = "local/busybox:latest"
ROLE = "hardening.docker_authz.opa_authz : "
HOOK = "Add the plugin to authorization-plugins in daemon.json and reload dockerd"
UNHOOK = "Remove the plugins from authorization-plugins before changing ours, and reload dockerd"
# Wall time of notable playbook runs, printed at the end of the session by tests/conftest.py.
TIMINGS = _timings.TIMINGS


@dataclass
class HostState:
    """What the role may change on a host, read with the host's own tools (not the role's)."""

    daemon_json: str | None
    policy: str | None
    policy_dir: bool
    plugins: list[dict[str, Any]]


@dataclass
class Fleet:
    """One DinD host plus a way to run the project's playbooks against it."""

    host: dind.DindHost
    inventory: Path
    tmp: Path
    plugin_ref: str
    runs: int = 0

    def play(
        self,
        playbook: str,
        extra_vars: dict[str, Any] | None = None,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> tuple[PlaybookRun, float]:
        self.runs += 1
        out = self.tmp / f"run-{self.runs}"
        out.mkdir()
        t0 = time.monotonic()
        run = run_playbook(
            PLAYBOOKS / playbook,
            out,
            inventory=self.inventory,
            extra_vars=extra_vars,
            args=args,
            env=env,
            timeout=600,
        )
        return run, time.monotonic() - t0

    def recap(self, run: PlaybookRun) -> dict[str, int]:
        return run.recap(self.host.name)

    def task(self, run: PlaybookRun, name: str) -> dict[str, Any]:
        """The last result of the role's task `name` on this host."""
        return run.task(ROLE + name, self.host.name)

    def reloads(self, run: PlaybookRun) -> list[str]:
        """The role's tasks that reloaded dockerd on this host: reload.yml's, and the hook's and
        the unhook's daemon_json calls when they reloaded (their `reloaded` result)."""
        return [
            r["task"][len(ROLE) :]
            for r in run.results
            if r["host"] == self.host.name
            and r["task"].startswith(ROLE)
            and r["status"] != "skipped"
            and (
                r["task"].startswith(ROLE + "Reload dockerd and wait")
                or (r["task"] in (ROLE + HOOK, ROLE + UNHOOK) and r["result"].get("reloaded") is not None)
            )
        ]

    def ran(self, run: PlaybookRun, prefix: str) -> list[str]:
        """The role's tasks starting with `prefix` that ran (not skipped) on this host."""
        return [
            r["task"][len(ROLE) :]
            for r in run.results
            if r["host"] == self.host.name
            and r["task"].startswith(ROLE + prefix)
            and r["status"] != "skipped"
        ]

    # ---------------------------------------------------------------- reading the host
    def state(self) -> HostState:
        h = self.host
        dj = h.exec("cat", DAEMON_JSON, check=False)
        pol = h.exec("cat", POLICY, check=False)
        pdir = h.exec("test", "-d", "/etc/docker/policies", check=False).returncode == 0
        ids = h.docker("plugin", "ls", "-q", "--no-trunc").stdout.split()
        plugins = []
        if ids:
            doc = json.loads(h.docker("plugin", "inspect", *ids).stdout)
            plugins = [
                {
                    "name": p["Name"],
                    "enabled": p["Enabled"],
                    "reference": p.get("PluginReference"),
                    "args": p["Settings"]["Args"],
                }
                for p in doc
            ]
        return HostState(
            dj.stdout if dj.returncode == 0 else None,
            pol.stdout if pol.returncode == 0 else None,
            pdir,
            plugins,
        )

    def api_works(self) -> None:
        """`docker ps` and `docker version` on the host answer (dockerd is up, not wedged)."""
        assert self.host.dockerd_pid() is not None, self.host.dockerd_log()[-3000:]
        self.host.docker("ps")
        self.host.docker("version", "--format", "{{.Server.Version}}")

    def privileged_run(self) -> str:
        """stderr of the real `docker run --privileged` (it fails on this VM anyway: judge by text)."""
        r = self.host.docker("run", "--rm", "--privileged", BUSYBOX, "true", check=False)
        return r.stderr

    def compliant_run(self, *extra: str) -> str:
        r = self.host.docker("run", "--rm", *extra, BUSYBOX, "echo", "compliant-run-ok", check=False)
        assert r.returncode == 0 and "compliant-run-ok" in r.stdout, f"compliant run refused:\n{r.stderr}"
        return r.stdout

    def assert_enforced(self) -> None:
        err = self.privileged_run()
        assert f"{DENIED} {ALIAS}" in err, f"privileged run not denied by the plugin:\n{err}"
        self.compliant_run()
        self.api_works()

    def assert_not_enforced(self) -> None:
        err = self.privileged_run()
        assert DENIED not in err, err
        self.api_works()


def _fleet(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, key: Path, ref: str
) -> Iterator[Fleet]:
    host = dind.start_hosts(1, key)[0]
    try:
        tmp = tmp_path_factory.mktemp(f"e2e-{request.module.__name__.rsplit('.', 1)[-1]}")
        # The inventory an operator would write for a mirror of the official image ({arch} is
        # the engine's architecture, as in the role's default reference).
        mirror = ref.replace("-linux-amd64", "-linux-{arch}")
        inventory = host.inventory(tmp / "inventory.yml", docker_authz_plugin_image=mirror)
        yield Fleet(host, inventory, tmp, ref)
    finally:
        host.remove()


@pytest.fixture(scope="module")
def fleet(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    dind_image: str,
    dind_ssh_key: Path,
    plugin_double: str,
) -> Iterator[Fleet]:
    """A fresh host for the life-cycle tests of a module (they run in file order)."""
    yield from _fleet(request, tmp_path_factory, dind_ssh_key, plugin_double)


@pytest.fixture(scope="module")
def fresh_fleet(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    dind_image: str,
    dind_ssh_key: Path,
    plugin_double: str,
) -> Iterator[Fleet]:
    """A second host that is never hardened successfully (faults before the first converge)."""
    yield from _fleet(request, tmp_path_factory, dind_ssh_key, plugin_double)
