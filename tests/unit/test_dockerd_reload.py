"""module_utils/dockerd_reload.py: method choice, pid file checks, systemctl and the API wait.

The host's side effects (systemctl, kill, /_ping, dockerd's reload event, sleep, clocks) are
fakes; the /proc and /run trees are temporary folders. The real SIGHUP to a real dockerd is in
tests/integration/test_daemon_json_module.py, systemd's reload on the QEMU VMs (tests/vm).
"""

from __future__ import annotations

import re
import signal
from collections.abc import Sequence
from pathlib import Path

import pytest

from ansible_collections.hardening.docker_authz.plugins.module_utils.dockerd_reload import (
    NO_RELOAD_EVENT,
    Host,
    Plan,
    ReloadError,
    execute,
    plan,
    reload,
)


class Fake:
    def __init__(
        self,
        tmp_path: Path,
        *,
        systemd: bool,
        pings: Sequence[str] = ("",),
        events: Sequence[str] = ("",),
        rc: int = 0,
    ) -> None:
        self.root = tmp_path / "root"
        self.proc = tmp_path / "proc"
        self.root.mkdir()
        self.proc.mkdir()
        if systemd:
            (self.root / "run/systemd/system").mkdir(parents=True)
        self.pings = list(pings)
        self.events = list(events)
        self.asked: list[tuple[str, float]] = []  # ("ping" | "event", when), in order
        self.since: list[float] = []
        self.wall = 1_000.0  # the host's wall clock; the signal moves it on
        self.gone_after_signal = False
        self.rc = rc
        self.sent: list[tuple[int, int]] = []
        self.commands: list[list[str]] = []
        self.now = 0.0

    def process(self, pid: int, comm: str, argv0: str = "") -> None:
        d = self.proc / str(pid)
        d.mkdir()
        (d / "comm").write_text(comm + "\n")
        (d / "cmdline").write_bytes((argv0 or comm).encode() + b"\0--flag\0")

    def pidfile(self, text: str, path: str = "var/run/docker.pid") -> None:
        f = self.root / path
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)

    def run(self, argv: Sequence[str], timeout: float) -> tuple[int, str]:
        self.commands.append(list(argv))
        return self.rc, "" if self.rc == 0 else "Job for docker.service failed.\n"

    def kill(self, pid: int, sig: int) -> None:
        self.sent.append((pid, sig))
        self.wall += 1.0
        if self.gone_after_signal:
            for f in (self.proc / str(pid)).iterdir():
                f.unlink()
            (self.proc / str(pid)).rmdir()

    def ping(self, socket_path: str) -> str:
        self.asked.append(("ping", self.now))
        return self.pings.pop(0) if len(self.pings) > 1 else self.pings[0]

    def reload_event(self, socket_path: str, since: float) -> str:
        self.asked.append(("event", self.now))
        self.since.append(since)
        return self.events.pop(0) if len(self.events) > 1 else self.events[0]

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def host(self) -> Host:
        return Host(
            root=str(self.root),
            proc=str(self.proc),
            run=self.run,
            kill=self.kill,
            ping=self.ping,
            reload_event=self.reload_event,
            sleep=self.sleep,
            clock=lambda: self.now,
            wall_clock=lambda: self.wall,
        )


def test_auto_uses_systemd_where_it_runs(tmp_path: Path) -> None:
    fake = Fake(tmp_path, systemd=True)
    result = reload("auto", host=fake.host())
    assert fake.commands == [["systemctl", "reload", "docker"]]
    assert fake.sent == []
    assert result == {
        "changed": True,
        "method": "systemd",
        "restarted": False,
        "pid": None,
        "seconds": 0,
        "reload_event": True,
    }
    # the reload event was asked for since the wall clock before the reload, then /_ping
    assert fake.since == [1_000.0] and [what for what, _ in fake.asked] == ["event", "ping"]


def test_a_restart_goes_through_systemd(tmp_path: Path) -> None:
    fake = Fake(tmp_path, systemd=True)
    result = reload("auto", restart=True, host=fake.host())
    assert fake.commands == [["systemctl", "restart", "docker"]]
    assert result["restarted"] is True
    # a restarted dockerd logs no reload event: /_ping alone proves the new daemon answers
    assert result["reload_event"] is None and [what for what, _ in fake.asked] == ["ping"]


def test_a_failing_systemctl_is_an_error_with_its_output(tmp_path: Path) -> None:
    fake = Fake(tmp_path, systemd=True, rc=1)
    with pytest.raises(
        ReloadError, match=r"systemctl reload docker failed \(exit 1\): Job for docker.service failed"
    ):
        reload("systemd", host=fake.host())


def test_auto_sends_sighup_to_the_dockerd_of_the_pid_file(tmp_path: Path) -> None:
    fake = Fake(tmp_path, systemd=False)
    fake.process(412, "dockerd")
    fake.pidfile("412\n")
    result = reload("auto", host=fake.host())
    assert fake.sent == [(412, signal.SIGHUP)]
    assert fake.commands == []
    assert (result["method"], result["pid"]) == ("signal", 412)


def test_dockerd_is_also_found_by_its_command_line(tmp_path: Path) -> None:
    fake = Fake(tmp_path, systemd=False)
    fake.process(77, "exe", argv0="/usr/bin/dockerd")
    fake.pidfile("77", path="run/d.pid")
    reload("signal", pidfile="/run/d.pid", host=fake.host())
    assert fake.sent == [(77, signal.SIGHUP)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, r"cannot read dockerd's pid file /var/run/docker.pid"),
        ("", r"holds '', not a process id"),
        ("abc\n", r"holds 'abc', not a process id"),
        ("1\n", r"holds '1', not a process id"),
        ("999\n", r"names process 999, which is not a running dockerd"),
        ("500\n", r"names process 500, which is not a running dockerd"),
    ],
)
def test_a_bad_pid_file_signals_nothing(tmp_path: Path, content: str | None, message: str) -> None:
    fake = Fake(tmp_path, systemd=False)
    fake.process(500, "containerd")
    if content is not None:
        fake.pidfile(content)
    with pytest.raises(ReloadError, match=message) as err:
        reload("signal", host=fake.host())
    assert "docker_authz_docker_pidfile" in str(err.value)
    assert fake.sent == []


def test_a_restart_without_systemd_is_refused_before_anything(tmp_path: Path) -> None:
    fake = Fake(tmp_path, systemd=False)
    fake.process(412, "dockerd")
    fake.pidfile("412")
    with pytest.raises(ReloadError, match=r"no systemd to restart it: restart dockerd yourself"):
        reload("auto", restart=True, host=fake.host())
    assert fake.sent == [] and fake.commands == []


def test_check_mode_sends_nothing_but_checks_the_pid_file_and_asks_the_api(tmp_path: Path) -> None:
    fake = Fake(tmp_path, systemd=False, pings=("connection refused", ""))
    fake.process(412, "dockerd")
    fake.pidfile("412")
    result = reload("signal", check_mode=True, host=fake.host())
    assert fake.sent == [] and result["changed"] and result["pid"] == 412
    assert result["seconds"] == 0.05 and result["reload_event"] is None
    assert [what for what, _ in fake.asked] == ["ping", "ping"]
    (tmp_path / "s").mkdir()
    sysd = Fake(tmp_path / "s", systemd=True)
    reload("systemd", check_mode=True, host=sysd.host())
    assert sysd.commands == []
    fake.pidfile("999")
    with pytest.raises(ReloadError, match="not a running dockerd"):
        reload("signal", check_mode=True, host=fake.host())


def test_the_wait_polls_until_the_api_answers(tmp_path: Path) -> None:
    fake = Fake(tmp_path, systemd=True, pings=("refused", "refused", "HTTP 500: starting", ""))
    result = reload("systemd", timeout=10, host=fake.host())
    # polled at 0.05 s, then twice as long each time up to every second
    assert result["seconds"] == 0.35
    assert [round(when, 3) for what, when in fake.asked if what == "ping"] == [0.0, 0.05, 0.15, 0.35]


def test_an_api_that_never_answers_fails_after_the_timeout(tmp_path: Path) -> None:
    fake = Fake(tmp_path, systemd=True, pings=("dial unix /var/run/docker.sock: connection refused",))
    with pytest.raises(
        ReloadError, match=r"did not answer /_ping within 5 s after the reload \(last: dial unix"
    ) as err:
        reload("systemd", timeout=5, host=fake.host())
    assert err.value.details["last_error"].startswith("dial unix")
    assert 5.0 <= fake.now < 6.0


PARSE_ERROR = (
    "HTTP 500: plugin opa-docker-authz:latest failed with error: AuthZPlugin.AuthZReq: 2 errors occurred:\n"
    "/opa/policies/authz.rego:3: rego_parse_error: `if` keyword is required before rule body"
)


def test_a_policy_that_does_not_compile_stops_the_wait_early(tmp_path: Path) -> None:
    """A plugin whose policy does not compile fails every request until the policy changes: the
    wait stops after three such answers in a row instead of keeping the API down for the whole
    timeout before the caller's rollback."""
    fake = Fake(tmp_path, systemd=True, pings=(PARSE_ERROR,))
    with pytest.raises(ReloadError, match=r"policy does not compile \(7 answers in a row over 2.5 s") as err:
        reload("systemd", timeout=60, host=fake.host())
    assert "rego_parse_error" in str(err.value)
    assert err.value.details["last_error"] == PARSE_ERROR
    # three answers are not enough when they came within 2 s (the first polls are 0.05 s apart)
    assert fake.now == 2.55


def test_a_policy_error_from_the_events_query_also_ends_the_wait(tmp_path: Path) -> None:
    """The new chain answers GET /events too: a plugin whose policy does not compile fails it,
    and the reload can never be proven, so the wait stops as it does for /_ping."""
    fake = Fake(tmp_path, systemd=True, events=(PARSE_ERROR,), pings=("",))
    with pytest.raises(ReloadError, match=r"policy does not compile"):
        reload("systemd", timeout=60, host=fake.host())
    assert fake.now == 2.55 and {what for what, _ in fake.asked} == {"event"}


@pytest.mark.parametrize(
    "pings",
    [
        # a policy read while it was being replaced: the next answers are fine
        (PARSE_ERROR, PARSE_ERROR, ""),
        # other answers between them restart the count
        (PARSE_ERROR, PARSE_ERROR, "refused", PARSE_ERROR, PARSE_ERROR, ""),
    ],
)
def test_policy_errors_that_do_not_persist_are_waited_out(tmp_path: Path, pings: tuple[str, ...]) -> None:
    fake = Fake(tmp_path, systemd=True, pings=pings)
    result = reload("systemd", timeout=60, host=fake.host())
    polls = [0.0, 0.05, 0.15, 0.35, 0.75, 1.55]
    assert result["seconds"] == polls[pings.index("")]


def test_other_plugin_errors_wait_for_the_whole_timeout(tmp_path: Path) -> None:
    """A plugin error without a Rego error code (a plugin still starting, a bundle not loaded
    yet) may pass: the wait runs its whole timeout."""
    starting = (
        "HTTP 500: plugin opa-docker-authz:latest failed with error: "
        'Post "http://plugin/AuthZPlugin.AuthZReq": EOF'
    )
    fake = Fake(tmp_path, systemd=True, pings=(starting,))
    with pytest.raises(ReloadError, match="did not answer /_ping within 8 s"):
        reload("systemd", timeout=8, host=fake.host())
    assert 8.0 <= fake.now < 9.0


def test_the_api_is_not_trusted_before_dockerd_logged_its_reload(tmp_path: Path) -> None:
    """A SIGHUP returns before dockerd has read daemon.json: /_ping may answer with the old
    authorization chain. The wait asks for the reload event until it is there, then /_ping."""
    fake = Fake(tmp_path, systemd=False, events=(NO_RELOAD_EVENT, NO_RELOAD_EVENT, ""), pings=("",))
    fake.process(412, "dockerd")
    fake.pidfile("412")
    result = reload("signal", timeout=10, host=fake.host())
    assert fake.sent == [(412, signal.SIGHUP)]
    assert [what for what, _ in fake.asked] == ["event", "event", "event", "ping"]
    assert result["seconds"] == 0.15 and result["reload_event"] is True
    # since: the wall clock read before the signal (the fake's signal moves it on by 1 s)
    assert fake.since == [1_000.0] * 3


@pytest.mark.parametrize(("timeout", "ends"), [(4, 4.55), (60, 10.55)])
def test_a_configuration_dockerd_refuses_fails(tmp_path: Path, timeout: float, ends: float) -> None:
    """dockerd refuses a daemon.json it cannot apply on a reload (a key also given as a flag, an
    invalid value) and keeps the old configuration: its API answers, it logs no reload event. A
    reload takes milliseconds, so the wait ends after 10 s of such answers, or at the timeout."""
    fake = Fake(tmp_path, systemd=True, events=(NO_RELOAD_EVENT,), pings=("",))
    with pytest.raises(ReloadError, match=r"did not reload its configuration: its API answered") as err:
        reload("systemd", timeout=timeout, host=fake.host())
    quiet = re.search(r"answered for ([0-9.]+) s after the reload without logging a reload", str(err.value))
    assert quiet and abs(float(quiet.group(1)) - ends) < 0.1, str(err.value)
    assert "so it still runs the configuration it had" in str(err.value)
    assert err.value.details["refused"] is True
    assert "journalctl -u docker" in str(err.value)
    assert {what for what, _ in fake.asked} == {"event"}
    assert round(fake.now, 2) == ends


def test_the_api_must_answer_without_the_event_for_ten_seconds_in_a_row(tmp_path: Path) -> None:
    """An answer that is not 'no reload event yet' (the API down, say) restarts the 10 s."""
    down = "cannot connect to the Docker daemon"
    # answers at 0, 0.05, 0.15, 0.35, 0.75, 1.55 s, then every second: the API is down at 6.55 s
    events = (NO_RELOAD_EVENT,) * 10 + (down,) + (NO_RELOAD_EVENT,) * 9 + ("",)
    fake = Fake(tmp_path, systemd=True, events=events, pings=("",))
    result = reload("systemd", timeout=60, host=fake.host())
    assert result["reload_event"] is True and result["seconds"] == 16.55


def test_a_plugin_that_denies_the_events_leaves_the_ping_with_a_warning(tmp_path: Path) -> None:
    denied = "HTTP 403: authorization denied by plugin casbin-authz: GET /events is not allowed"
    fake = Fake(tmp_path, systemd=True, events=(denied,), pings=("refused", ""))
    result = reload("systemd", timeout=10, host=fake.host())
    assert result["reload_event"] is False and result["seconds"] == 0.05
    assert len(result["warnings"]) == 1 and "denies GET /events" in result["warnings"][0]
    assert "casbin-authz" in result["warnings"][0]


def test_a_dockerd_gone_after_the_signal_ends_the_wait(tmp_path: Path) -> None:
    """dockerd ends itself on a reload that names a missing or disabled authorization plugin."""
    fake = Fake(tmp_path, systemd=False, events=("cannot connect to the Docker daemon",))
    fake.process(412, "dockerd")
    fake.pidfile("412")
    fake.gone_after_signal = True
    with pytest.raises(ReloadError, match=r"dockerd \(pid 412\) is gone after the reload"):
        reload("signal", timeout=60, host=fake.host())
    assert fake.now == 0.0


@pytest.mark.parametrize(
    ("method", "timeout", "message"),
    [("hup", 60, "method must be one of auto, systemd, signal"), ("auto", 0, "timeout must be a positive")],
)
def test_bad_arguments_are_refused_before_anything(
    tmp_path: Path, method: str, timeout: float, message: str
) -> None:
    fake = Fake(tmp_path, systemd=True)
    with pytest.raises(ReloadError, match=message):
        reload(method, timeout=timeout, host=fake.host())
    assert fake.commands == [] and fake.sent == []


def test_plan_checks_everything_before_execute_sends_anything(tmp_path: Path) -> None:
    """daemon_json plans the reload before it writes the file, and executes the plan after."""
    fake = Fake(tmp_path, systemd=False)
    fake.process(412, "dockerd")
    fake.pidfile("999")
    with pytest.raises(ReloadError, match="not a running dockerd"):
        plan("auto", host=fake.host())
    with pytest.raises(ReloadError, match="no systemd to restart it"):
        plan("auto", restart=True, host=fake.host())
    fake.pidfile("412")
    planned = plan("auto", host=fake.host())
    assert planned == Plan("signal", False, 412) and fake.sent == []
    result = execute(planned, host=fake.host())
    assert fake.sent == [(412, signal.SIGHUP)] and result["pid"] == 412 and result["method"] == "signal"
    (tmp_path / "s").mkdir()
    sysd = Fake(tmp_path / "s", systemd=True)
    assert plan("auto", restart=True, host=sysd.host()) == Plan("systemd", True, None)
    execute(plan("auto", restart=True, host=sysd.host()), host=sysd.host())
    assert sysd.commands == [["systemctl", "restart", "docker"]]
    with pytest.raises(ReloadError, match="positive number"):
        execute(planned, timeout=0, host=fake.host())
