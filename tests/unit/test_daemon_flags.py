"""dockerd flag detection of module_utils/daemon_config.py.

Each source (systemctl show, unit file and drop-ins, /etc/default/docker, /etc/sysconfig/docker,
/proc/<pid>/cmdline) is built in a temporary host tree and read through HostEnv; one test reads
the real machine's /proc (read-only) to prove the process scan works on a live dockerd.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ansible_collections.hardening.docker_authz.plugins.module_utils import daemon_config as dc

SYSTEMCTL_SHOW = (
    "ExecStart={ path=/usr/bin/dockerd ; argv[]=/usr/bin/dockerd -H fd:// "
    "--containerd=/run/containerd/containerd.sock --authorization-plugin=opa-docker-authz ; "
    "ignore_errors=no ; start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }\n"
)


class Host:
    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "root"
        self.proc = tmp_path / "proc"
        self.root.mkdir()
        self.proc.mkdir()
        self.systemctl_calls: list[list[str]] = []
        self.systemctl_out = ""
        self.env = dc.HostEnv(root=str(self.root), proc=str(self.proc), systemctl=self._systemctl)
        self.target = self.root / "etc" / "docker" / "daemon.json"
        self.target.parent.mkdir(parents=True)

    def _systemctl(self, args):
        self.systemctl_calls.append(list(args))
        return 0, self.systemctl_out

    def write(self, rel: str, text: str) -> Path:
        p = self.root / rel.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        return p

    def process(self, pid: int, argv: list[str], root: Path | None = None, cwd: str | None = None) -> None:
        d = self.proc / str(pid)
        d.mkdir()
        (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
        if root is not None:
            (d / "root").symlink_to(root)
        if cwd is not None:
            (d / "cwd").symlink_to(cwd)

    def keys(self, target: Path | None = None) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for f in dc.flags_for(str(target or self.target), self.env):
            out.setdefault(f.key, []).append(f"{f.value}@{f.source}")
        return out


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path)


# ---------------------------------------------------------------------------------------
# parsing and the flag -> key table
# ---------------------------------------------------------------------------------------
def test_parse_forms_of_flags():
    flags = dc.parse_dockerd_args(
        [
            "-H",
            "fd://",
            "-Hunix:///x.sock",
            "--host=tcp://127.0.0.1:2375",
            "--containerd",
            "/run/c.sock",
            "-D",
            "--iptables=false",
            "--selinux-enabled",
            "--oom-score-adjust",
            "-500",
            "--label",
            "a=b",
            "-l",
            "warn",
            "--storage-opt=dm.basesize=20G",
            "--unknown-bool",
            "--authorization-plugin",
            "opa",
        ]
    )
    got = [(f.flag, f.key, f.value) for f in flags]
    assert got == [
        ("-H", "hosts", "fd://"),
        ("-H", "hosts", "unix:///x.sock"),
        ("--host", "hosts", "tcp://127.0.0.1:2375"),
        ("--containerd", "containerd", "/run/c.sock"),
        ("-D", "debug", None),
        ("--iptables", "iptables", "false"),
        ("--selinux-enabled", "selinux-enabled", None),
        ("--oom-score-adjust", "oom-score-adjust", "-500"),
        ("--label", "labels", "a=b"),
        ("-l", "log-level", "warn"),
        ("--storage-opt", "storage-opts", "dm.basesize=20G"),
        ("--unknown-bool", "unknown-bool", None),
        ("--authorization-plugin", "authorization-plugins", "opa"),
    ]


@pytest.mark.parametrize(("flag", "key"), sorted(dc.NAMED_FLAG_KEYS.items()))
def test_every_repeatable_flag_maps_to_its_plural_key(flag, key):
    (f,) = dc.parse_dockerd_args([f"--{flag}", "v"])
    assert f.key == key and f.value == "v"


@pytest.mark.parametrize(
    ("argv", "key"),
    [
        (["-H", "fd://"], "hosts"),
        (["-D"], "debug"),
        (["-l", "debug"], "log-level"),
        (["-p", "/run/d.pid"], "pidfile"),
        (["-s", "overlay2"], "storage-driver"),
        (["-b", "none"], "bridge"),
        (["-G", "docker"], "group"),
        (["-g", "/var/lib/docker"], "graph"),
        (["--data-root", "/srv/docker"], "data-root"),
        (["--dns", "1.1.1.1"], "dns"),
        (["--dns-search", "lab"], "dns-search"),
        (["--allow-nondistributable-artifacts", "r:5000"], "allow-nondistributable-artifacts"),
        (["--tlsverify"], "tlsverify"),
        (["--live-restore"], "live-restore"),
        (["--http-proxy", "http://p:3128"], "http-proxy"),
    ],
)
def test_short_and_same_name_flags(argv, key):
    (f,) = dc.parse_dockerd_args(argv)
    assert f.key == key


@pytest.mark.parametrize("argv", [["--config-file", "/x.json"], ["--validate"], ["--help"], ["-v"]])
def test_flags_without_a_daemon_json_key(argv):
    (f,) = dc.parse_dockerd_args(argv)
    assert f.key is None


def test_config_file_flag_selects_the_file():
    assert dc.config_file_of(dc.parse_dockerd_args(["--config-file", "/a.json"])) == "/a.json"
    assert dc.config_file_of(dc.parse_dockerd_args(["--config-file=/b.json"])) == "/b.json"
    assert dc.config_file_of(dc.parse_dockerd_args(["-D"])) == "/etc/docker/daemon.json"


# ---------------------------------------------------------------------------------------
# sources
# ---------------------------------------------------------------------------------------
def test_systemctl_show_where_systemd_runs(host):
    (host.root / "run" / "systemd" / "system").mkdir(parents=True)
    host.systemctl_out = SYSTEMCTL_SHOW
    keys = host.keys()
    assert host.systemctl_calls == [["show", "docker.service", "--property=ExecStart", "--no-pager"]]
    assert keys["authorization-plugins"] == ["opa-docker-authz@systemctl show docker.service (ExecStart)"]
    assert keys["hosts"] == ["fd://@systemctl show docker.service (ExecStart)"]
    assert host.keys(host.root / "srv" / "daemon.json") == {}, "flags apply to the default file only"


def test_systemctl_is_not_run_without_systemd(host):
    host.systemctl_out = SYSTEMCTL_SHOW
    assert host.keys() == {} and host.systemctl_calls == []


def test_unit_file_dropin_resets_execstart_and_environment_expands(host):
    host.write(
        "/lib/systemd/system/docker.service",
        (
            "[Unit]\nDescription=Docker\n[Service]\nEnvironmentFile=-/etc/default/docker-env\n"
            "ExecStart=/usr/sbin/dockerd -H fd:// $DOCKER_OPTS\nExecReload=/bin/kill -s HUP $MAINPID\n"
        ),
    )
    assert set(host.keys()) == {"hosts"}
    host.write(
        "/etc/systemd/system/docker.service.d/10-flags.conf",
        (
            "# override\n[Service]\nExecStart=\n"
            "ExecStart=/usr/bin/dockerd --label site=lab \\\n    --storage-opt dm.basesize=20G $DOCKER_OPTS\n"
        ),
    )
    host.write("/etc/default/docker-env", 'DOCKER_OPTS="--insecure-registry 10.0.0.1:5000"\n')
    keys = host.keys()
    src = "systemd unit /etc/systemd/system/docker.service.d/10-flags.conf (ExecStart)"
    assert keys == {
        "labels": [f"site=lab@{src}"],
        "storage-opts": [f"dm.basesize=20G@{src}"],
        "insecure-registries": [f"10.0.0.1:5000@{src}"],
    }, "ExecStart= in the drop-in resets the unit's -H fd://"


def test_unit_in_etc_overrides_lib_and_inline_environment(host):
    host.write("/lib/systemd/system/docker.service", "[Service]\nExecStart=/usr/sbin/dockerd -H fd://\n")
    host.write(
        "/etc/systemd/system/docker.service",
        (
            '[Service]\nEnvironment="OPTS=--registry-mirror https://m.lab" OTHER=1\n'
            "ExecStart=-/usr/bin/dockerd $OPTS --dns=${DNS1}\nEnvironment=DNS1=10.0.0.53\n"
        ),
    )
    keys = host.keys()
    assert keys["registry-mirrors"] == [
        "https://m.lab@systemd unit /etc/systemd/system/docker.service (ExecStart)"
    ]
    assert keys["dns"][0].startswith("10.0.0.53@")
    assert "hosts" not in keys


def test_unit_with_a_private_config_file_applies_to_that_file_only(host):
    host.write(
        "/etc/systemd/system/docker.service",
        "[Service]\nExecStart=/usr/bin/dockerd --config-file /srv/d.json --label a=b\n",
    )
    assert host.keys() == {}
    assert set(host.keys(host.root / "srv" / "d.json")) == {"labels"}


def test_etc_default_docker(host):
    host.write(
        "/etc/default/docker",
        (
            "# Docker Upstart and SysVinit configuration file\n"
            '#DOCKER_OPTS="--dns 8.8.8.8 --dns 8.8.4.4"\n'
            'export DOCKER_OPTS="--dns 10.0.0.2 -H tcp://127.0.0.1:2375 --log-opt max-size=1m"  # lab\n'
            'export TMPDIR="/mnt/bigdrive/docker-tmp"\n'
        ),
    )
    keys = host.keys()
    src = "/etc/default/docker (DOCKER_OPTS)"
    assert keys == {
        "dns": [f"10.0.0.2@{src}"],
        "hosts": [f"tcp://127.0.0.1:2375@{src}"],
        "log-opts": [f"max-size=1m@{src}"],
    }


def test_etc_sysconfig_docker(host):
    host.write(
        "/etc/sysconfig/docker",
        (
            "# /etc/sysconfig/docker\nOPTIONS='--selinux-enabled --log-driver=journald "
            "--signature-verification=false'\nDOCKER_CERT_PATH=/etc/docker\n"
        ),
    )
    host.write("/etc/sysconfig/docker-storage", "DOCKER_STORAGE_OPTIONS=--storage-driver overlay2\n")
    keys = host.keys()
    assert set(keys) == {"selinux-enabled", "log-driver", "signature-verification", "storage-driver"}
    assert keys["storage-driver"] == ["overlay2@/etc/sysconfig/docker-storage (DOCKER_STORAGE_OPTIONS)"]


def test_running_dockerd_processes(host, tmp_path):
    other_root = tmp_path / "container-root"
    (other_root / "etc" / "docker").mkdir(parents=True)
    host.process(
        100,
        ["/usr/bin/dockerd", "--host", "unix:///run/d.sock", "--authorization-plugin", "opa"],
        root=host.root,
    )
    host.process(200, ["dockerd", "--config-file", "/srv/other.json", "--label", "z=1"], root=host.root)
    host.process(300, ["dockerd", "--iptables=false", "--bridge=none"], root=other_root)  # in a container
    host.process(400, ["python3", "fake.py", "--label", "x=1"], root=host.root)
    host.process(
        500, ["dockerd", "--config-file=conf/daemon.json", "--mtu", "1400"], root=host.root, cwd="/srv"
    )
    host.process(600, ["dockerd", "-D"])  # no root link readable: path seen through HostEnv.root
    (host.root / "srv" / "conf").mkdir(parents=True)
    assert host.keys() == {
        "hosts": ["unix:///run/d.sock@running dockerd (pid 100)"],
        "authorization-plugins": ["opa@running dockerd (pid 100)"],
        "debug": ["None@running dockerd (pid 600)"],
    }
    assert host.keys(host.root / "srv" / "other.json") == {"labels": ["z=1@running dockerd (pid 200)"]}
    assert host.keys(host.root / "srv" / "conf" / "daemon.json") == {
        "mtu": ["1400@running dockerd (pid 500)"]
    }
    assert host.keys(other_root / "etc" / "docker" / "daemon.json") == {
        "iptables": ["false@running dockerd (pid 300)"],
        "bridge": ["none@running dockerd (pid 300)"],
    }


def test_real_machine_dockerd_is_found_in_proc():
    """Read-only look at this machine's dockerd (started by scripts/testenv.sh with --host)."""
    pidfile = Path("/var/run/docker.pid")
    assert pidfile.exists(), "the machine's dockerd is not running: run `make env`"
    pid = pidfile.read_text().strip()
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    cfg = dc.config_file_of(dc.parse_dockerd_args([a.decode() for a in argv[1:] if a]))
    flags = [
        f for f in dc.flags_for(cfg, dc.HostEnv(systemctl=None)) if f.source == f"running dockerd (pid {pid})"
    ]
    assert "hosts" in {f.key for f in flags}, f"testenv starts dockerd with --host; saw {argv}"
    assert not [
        f
        for f in dc.flags_for("/nonexistent-dir/daemon.json", dc.HostEnv(systemctl=None))
        if f.source == f"running dockerd (pid {pid})"
    ]


# ---------------------------------------------------------------------------------------
# conflicts
# ---------------------------------------------------------------------------------------
def _flags(*argv: str) -> list[dc.FlagUse]:
    return dc.parse_dockerd_args(list(argv), "test")


def test_conflicts_are_found_by_daemon_json_key():
    flags = _flags("-H", "fd://", "--authorization-plugin", "opa", "--label", "a=b")
    found = {c.key for c in dc.find_conflicts({"hosts": [], "labels": ["x"], "debug": True}, flags)}
    assert found == {"hosts", "labels"}


def test_runtimes_are_merged_by_dockerd_not_a_conflict():
    assert dc.find_conflicts({"runtimes": {"x": {"path": "/x"}}}, _flags("--add-runtime", "y=/y")) == []


def test_nested_members_are_flattened_like_dockerd_does():
    (c,) = dc.find_conflicts({"proxies": {"http-proxy": "http://p:3128"}}, _flags("--http-proxy", "http://q"))
    assert (c.key, c.name) == ("proxies", "http-proxy") and "member 'http-proxy'" in c.describe()
    # log-opts is not flattened: its member max-size is no flag name
    assert dc.find_conflicts({"log-opts": {"debug": "1"}}, _flags("-D")) == []


def test_apply_refuses_a_key_that_is_also_a_flag_and_writes_nothing(host):
    host.write("/etc/default/docker", 'DOCKER_OPTS="--authorization-plugin=legacy-authz --label a=b"\n')
    host.target.write_bytes(b'{"debug": true}')
    for check_mode in (True, False):
        with pytest.raises(dc.DaemonConfigError) as ei:
            dc.apply(
                str(host.target),
                {"authorization-plugins": ["opa"], "debug": True},
                check_mode=check_mode,
                env=host.env,
            )
        msg = str(ei.value)
        assert "'authorization-plugins' is also a dockerd flag" in msg
        assert "--authorization-plugin=legacy-authz in /etc/default/docker (DOCKER_OPTS)" in msg
        assert "Nothing was changed" in msg
        assert host.target.read_bytes() == b'{"debug": true}'
        assert sorted(os.listdir(host.target.parent)) == ["daemon.json"]
    res = dc.apply(str(host.target), {"authorization-plugins": ["opa"]}, check_flags=False, env=host.env)
    assert res.changed, "check_flags=false skips the detection"


def test_existing_conflicting_key_outside_settings_is_a_warning(host):
    host.process(100, ["dockerd", "--label", "a=b"], root=host.root)
    host.target.write_bytes(b'{"labels": ["c=d"]}')
    res = dc.apply(str(host.target), {"insecure-registries": ["127.0.0.1:5000"]}, env=host.env)
    assert res.changed and len(res.warnings) == 1 and "'labels' is also a dockerd flag" in res.warnings[0]
    assert json.loads(host.target.read_text())["insecure-registries"] == ["127.0.0.1:5000"]
