"""Every scenario the corpus holds: CLI (both CLIs), Python SDK and raw HTTP requests.

A scenario's ``rules`` are the rule variables of rule-catalog.md that must DENY it when that
rule is enabled with the parameters of the strictest profile enabling it (restricted's
capability set; ``docker_authz_trusted_registries: ["127.0.0.1:5000"]``). ``compliant`` lists
the profiles (default parameters) under which every request of the scenario must be allowed;
by default it is derived from ``rules``. Rule scenarios start from a container that complies
with the restricted profile (``RESTRICTED``) and change one thing, so each lists exactly the
rules it breaks.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .env import STATE

REGISTRY = "127.0.0.1:5000"
IMG = f"{REGISTRY}/hardening-capture/busybox:latest"
OTHER_REGISTRY_IMG = "localhost:5000/hardening-capture/busybox:latest"  # same registry, another name
QUAY_IMG = "quay.io/evil/busybox:latest"  # tagged locally only: never pulled
HUB_IMG = "busybox:latest"  # Docker Hub short name, tagged locally only: never pulled
PLUGIN_REF_1 = f"{REGISTRY}/hardening-capture/authz-plugin:1"
PLUGIN_REF_2 = f"{REGISTRY}/hardening-capture/authz-plugin:2"
EXEC_C = "cap-exec"  # running fixture container (user 1000, restricted-compliant)
UPDATE_C = "cap-update"  # fixture container with limits, for docker update
SHARED = str(STATE / "shared")  # an ordinary host folder
LINK_TO_ROOT = str(STATE / "link-to-root")  # a symlink to /
BUILD_CTX = str(STATE / "build-ctx")
IMPORT_TAR = str(STATE / "import.tar")  # a tiny root filesystem archive for docker import

PRIV = "docker_authz_deny_privileged"
SECCOMP = "docker_authz_deny_seccomp_unconfined"
NNP = "docker_authz_require_no_new_privileges"
LIMITS = "docker_authz_require_resource_limits"
PORTS = "docker_authz_restrict_ports"
ROOT = "docker_authz_deny_root_user"
ENV = "docker_authz_deny_sensitive_env"
NS = "docker_authz_deny_host_namespaces"
CAPS = "docker_authz_deny_added_capabilities"
AA = "docker_authz_deny_apparmor_unconfined"
SEL = "docker_authz_deny_selinux_disabled"
UNMASK = "docker_authz_deny_unmasked_paths"
MOUNTS = "docker_authz_deny_sensitive_mounts"
DEV = "docker_authz_deny_devices"
PLUG = "docker_authz_deny_plugin_changes"
SWARM = "docker_authz_deny_swarm_changes"
FAKE_TOKEN = "SWMTKN-1-" + "0" * 50 + "-" + "0" * 25  # well formed, valid for no swarm
RUNTIMES = "docker_authz_restrict_runtimes"
LOGDRV = "docker_authz_restrict_log_drivers"
FETCH = "docker_authz_deny_remote_fetch"
RO = "docker_authz_require_readonly_rootfs"
REG = "docker_authz_trusted_registries"

ALL_RULES = (
    PRIV,
    SECCOMP,
    NNP,
    LIMITS,
    PORTS,
    ROOT,
    ENV,
    NS,
    CAPS,
    AA,
    SEL,
    UNMASK,
    MOUNTS,
    DEV,
    PLUG,
    SWARM,
    RUNTIMES,
    LOGDRV,
    FETCH,
    RO,
    REG,
)
BASELINE_ON = {PRIV, SECCOMP, NS, CAPS, AA, SEL, UNMASK, MOUNTS, DEV, PLUG, SWARM, RUNTIMES}
RESTRICTED_ON = BASELINE_ON | {NNP, LIMITS, PORTS, ROOT, ENV, LOGDRV, FETCH}

# client id -> binary. HARDENING_CAPTURE_CLIS (a JSON object of the same form) replaces it: the
# engine matrix captures each Debian release's own CLI against that release's own dockerd
# inside its DinD host (tests/policy/capture/in_host.py).
CLIS: dict[str, str] = json.loads(
    os.environ.get("HARDENING_CAPTURE_CLIS")
    or '{"cli-28": "/usr/local/bin/docker", "cli-20.10": "/usr/bin/docker"}'
)


@dataclass
class Scenario:
    id: str
    description: str
    client: str
    command: str
    rules: list[str]
    action: Callable[[Any], str]  # runs the scenario, returns the daemon outcome
    compliant: list[str] | None = None
    crafted: bool = False
    bypass_class: str | None = None
    policy_can_stop: bool = True
    always_deny: bool = False
    fs_links: dict[str, str] = field(default_factory=dict)

    def profiles(self) -> list[str]:
        if self.compliant is not None:
            return self.compliant
        out = []
        if not set(self.rules) & BASELINE_ON and not self.always_deny:
            out.append("baseline")
        if not set(self.rules) & RESTRICTED_ON and not self.always_deny:
            out.append("restricted")
        return out


# --------------------------------------------------------------------------- CLI scenarios

RESTRICTED = [
    "--user",
    "1000:1000",
    "--memory",
    "64m",
    "--cpus",
    "0.5",
    "--pids-limit",
    "100",
    "--security-opt",
    "no-new-privileges",
    "--cap-drop",
    "ALL",
    "--read-only",
]


def restricted(drop: tuple[str, ...] = (), **replace: str) -> list[str]:
    """RESTRICTED without the flags in ``drop`` and with ``--user`` etc. replaced."""
    out: list[str] = []
    i = 0
    while i < len(RESTRICTED):
        flag = RESTRICTED[i]
        takes_value = flag != "--read-only"
        value = RESTRICTED[i + 1] if takes_value else None
        i += 2 if takes_value else 1
        key = flag.lstrip("-").replace("-", "_")
        if flag in drop:
            continue
        if key in replace:
            value = replace[key]
        out.append(flag)
        if value is not None:
            out.append(value)
    return out


@dataclass
class CliSpec:
    base_id: str
    description: str
    args: list[str]
    rules: list[str]
    compliant: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    bypass_class: str | None = None
    fs_links: dict[str, str] = field(default_factory=dict)
    only: str | None = None  # restrict to one CLI


def _create(extra: list[str], image: str = IMG, cmd: tuple[str, ...] = ("sleep", "60")) -> list[str]:
    return ["create", *extra, image, *cmd]


CLI_SPECS: list[CliSpec] = [
    # ---- ordinary use that must stay allowed
    CliSpec("version", "docker version", ["version"], []),
    CliSpec("info", "docker info", ["info"], []),
    CliSpec("ps", "docker ps -a", ["ps", "-a"], []),
    CliSpec("images", "docker images", ["images"], []),
    CliSpec("inspect", "docker inspect of a container", ["inspect", EXEC_C], []),
    CliSpec("logs", "docker logs of a container", ["logs", EXEC_C], []),
    CliSpec("pull-local-registry", "pull from the trusted local registry", ["pull", IMG], []),
    CliSpec("push-local-registry", "push to the local registry", ["push", IMG], []),
    CliSpec(
        "build-classic",
        "classic builder (DOCKER_BUILDKIT=0), tiny Dockerfile FROM the local busybox",
        ["build", "-t", "capture-build:classic", BUILD_CTX],
        [],
        env={"DOCKER_BUILDKIT": "0"},
    ),
    CliSpec(
        "build-default",
        "docker build with the CLI's default builder (legacy here: no buildx plugin)",
        ["build", "-t", "capture-build:default", BUILD_CTX],
        [],
    ),
    CliSpec(
        "build-buildkit",
        "BuildKit through the CLI's built-in client (DOCKER_BUILDKIT=1)",
        ["build", "-t", "capture-build:buildkit", BUILD_CTX],
        [],
        env={"DOCKER_BUILDKIT": "1"},
        only="cli-20.10",
    ),
    CliSpec(
        "exec-default-user", "docker exec as the container's (non-root) user", ["exec", EXEC_C, "true"], []
    ),
    CliSpec("exec-user-1000", "docker exec -u 1000", ["exec", "-u", "1000", EXEC_C, "id"], []),
    # CLI 20.10 sends the JSON document `null` as the body (a nil *container.Config), newer CLIs
    # send no body: both must pass the invisible-body rule (engine matrix, docs/engines.md).
    CliSpec("commit-default", "docker commit of a running container", ["commit", EXEC_C, "capture-commit:1"], []),  # noqa: E501
    CliSpec("volume-create-ls-rm", "named volume create", ["volume", "create", "capture-vol"], []),
    CliSpec("volume-ls", "docker volume ls", ["volume", "ls"], []),
    CliSpec("network-create", "user network create", ["network", "create", "capture-net"], []),
    CliSpec("network-ls", "docker network ls", ["network", "ls"], []),
    CliSpec("plugin-ls", "docker plugin ls", ["plugin", "ls"], []),
    CliSpec(
        "run-restricted-compliant",
        "fully compliant run for the restricted profile",
        ["run", "--rm", *RESTRICTED, IMG, "true"],
        [],
    ),
    CliSpec(
        "create-restricted-compliant",
        "fully compliant create for the restricted profile",
        _create(RESTRICTED),
        [],
    ),
    CliSpec(
        "run-plain",
        "plain docker run: image user (root), no limits, writable root",
        ["run", "--rm", IMG, "true"],
        [NNP, LIMITS, ROOT, RO],
    ),
    CliSpec(
        "run-detached-named-volume",
        "plain run with a named volume and a tmpfs",
        ["run", "-d", "-v", "capture-data:/data", "--tmpfs", "/tmp", IMG, "sleep", "30"],
        [NNP, LIMITS, ROOT, RO],
    ),
    CliSpec(
        "create-bind-ordinary",
        "bind of an ordinary host folder",
        _create([*RESTRICTED, "-v", f"{SHARED}:/data"]),
        [],
    ),
    CliSpec("create-named-volume", "named volume", _create([*RESTRICTED, "-v", "capture-data:/data"]), []),
    CliSpec(
        "create-privileged-false", "--privileged=false", _create([*RESTRICTED, "--privileged=false"]), []
    ),
    CliSpec(
        "create-cap-add-net-bind-service",
        "--cap-add NET_BIND_SERVICE (allowed in both profiles)",
        _create([*RESTRICTED, "--cap-add", "NET_BIND_SERVICE"]),
        [],
    ),
    CliSpec(
        "create-nnp-true-equals",
        "--security-opt no-new-privileges=true",
        _create(restricted(security_opt="no-new-privileges=true")),
        [],
    ),
    CliSpec(
        "create-nnp-true-colon",
        "--security-opt no-new-privileges:true",
        _create(restricted(security_opt="no-new-privileges:true")),
        [],
    ),
    CliSpec("create-user-1000", "--user 1000", _create(restricted(user="1000")), []),
    CliSpec(
        "create-env-file-suffix",
        "-e TOKEN_FILE=/run/x (allowed pattern *_FILE)",
        _create([*RESTRICTED, "-e", "TOKEN_FILE=/run/x", "-e", "LOG_LEVEL=debug"]),
        [],
    ),
    CliSpec(
        "create-port-8080",
        "-p 8080:80 (allowed range, any host IP)",
        _create([*RESTRICTED, "-p", "8080:80"]),
        [],
    ),
    CliSpec(
        "create-port-any-ip-8080",
        "-p 0.0.0.0:8080:80 (denied only when docker_authz_allowed_host_ips is set)",
        _create([*RESTRICTED, "-p", "0.0.0.0:8080:80"]),
        [],
    ),
    CliSpec(
        "create-port-loopback-8080",
        "-p 127.0.0.1:8080:80",
        _create([*RESTRICTED, "-p", "127.0.0.1:8080:80"]),
        [],
    ),
    # ---- deny_privileged
    CliSpec("create-privileged", "--privileged", _create([*RESTRICTED, "--privileged"]), [PRIV]),
    CliSpec(
        "run-privileged",
        "docker run --privileged (runc fails on this VM after authorization)",
        ["run", "--rm", "--privileged", IMG, "true"],
        [PRIV, NNP, LIMITS, ROOT, RO],
    ),
    CliSpec("exec-privileged", "docker exec --privileged", ["exec", "--privileged", EXEC_C, "true"], [PRIV]),
    # ---- deny_seccomp_unconfined
    CliSpec(
        "create-seccomp-unconfined-equals",
        "--security-opt seccomp=unconfined",
        _create([*RESTRICTED, "--security-opt", "seccomp=unconfined"]),
        [SECCOMP],
    ),
    CliSpec(
        "create-seccomp-unconfined-colon",
        "--security-opt seccomp:unconfined",
        _create([*RESTRICTED, "--security-opt", "seccomp:unconfined"]),
        [SECCOMP],
    ),
    # ---- require_no_new_privileges
    CliSpec(
        "create-no-nnp",
        "no --security-opt no-new-privileges",
        _create(restricted(drop=("--security-opt",))),
        [NNP],
    ),
    CliSpec(
        "create-nnp-false",
        "--security-opt no-new-privileges=false",
        _create(restricted(security_opt="no-new-privileges=false")),
        [NNP],
    ),
    # ---- require_resource_limits
    CliSpec("create-no-memory", "no --memory", _create(restricted(drop=("--memory",))), [LIMITS]),
    CliSpec("create-no-cpus", "no --cpus", _create(restricted(drop=("--cpus",))), [LIMITS]),
    CliSpec("create-no-pids-limit", "no --pids-limit", _create(restricted(drop=("--pids-limit",))), [LIMITS]),
    CliSpec("create-pids-limit-unlimited", "--pids-limit -1", _create(restricted(pids_limit="-1")), [LIMITS]),
    CliSpec(
        "update-memory-unlimited",
        "docker update --memory -1: both CLIs refuse the value, only the ping reaches the daemon",
        ["update", "--memory", "-1", UPDATE_C],
        [],
    ),
    CliSpec(
        "update-memory-swap-unlimited",
        "docker update --memory-swap -1",
        ["update", "--memory-swap", "-1", UPDATE_C],
        [LIMITS],
    ),
    CliSpec(
        "update-pids-unlimited",
        "docker update --pids-limit -1",
        ["update", "--pids-limit", "-1", UPDATE_C],
        [LIMITS],
    ),
    CliSpec(
        "update-restart-policy",
        "docker update --restart unless-stopped (keeps limits)",
        ["update", "--restart", "unless-stopped", UPDATE_C],
        [],
    ),
    # ---- restrict_ports
    CliSpec(
        "create-port-80", "-p 80:80 (host port below 1024)", _create([*RESTRICTED, "-p", "80:80"]), [PORTS]
    ),
    CliSpec(
        "create-port-range-low",
        "-p 1000-1030:1000-1030",
        _create([*RESTRICTED, "-p", "1000-1030:1000-1030"]),
        [PORTS],
    ),
    CliSpec("create-publish-all", "-P --expose 80", _create([*RESTRICTED, "-P", "--expose", "80"]), [PORTS]),
    # ---- deny_root_user
    CliSpec("create-user-root", "--user root", _create(restricted(user="root")), [ROOT]),
    CliSpec("create-user-0", "--user 0", _create(restricted(user="0")), [ROOT]),
    CliSpec("create-user-0-0", "--user 0:0", _create(restricted(user="0:0")), [ROOT]),
    CliSpec("create-user-root-root", "--user root:root", _create(restricted(user="root:root")), [ROOT]),
    CliSpec(
        "create-user-empty",
        "no --user (the image's default user: root)",
        _create(restricted(drop=("--user",))),
        [ROOT],
    ),
    CliSpec("exec-user-root", "docker exec -u root", ["exec", "-u", "root", EXEC_C, "id"], [ROOT]),
    CliSpec("exec-user-0", "docker exec -u 0", ["exec", "-u", "0", EXEC_C, "id"], [ROOT]),
    # ---- deny_sensitive_env
    CliSpec("create-env-password", "-e DB_PASSWORD=x", _create([*RESTRICTED, "-e", "DB_PASSWORD=x"]), [ENV]),
    CliSpec("create-env-api-key-lower", "-e api_key=1", _create([*RESTRICTED, "-e", "api_key=1"]), [ENV]),
    CliSpec(
        "exec-env-token", "docker exec -e API_TOKEN=x", ["exec", "-e", "API_TOKEN=x", EXEC_C, "true"], [ENV]
    ),
    # ---- deny_host_namespaces
    CliSpec("create-network-host", "--network host", _create([*RESTRICTED, "--network", "host"]), [NS]),
    CliSpec("create-pid-host", "--pid host", _create([*RESTRICTED, "--pid", "host"]), [NS]),
    CliSpec("create-ipc-host", "--ipc host", _create([*RESTRICTED, "--ipc", "host"]), [NS]),
    CliSpec("create-uts-host", "--uts host", _create([*RESTRICTED, "--uts", "host"]), [NS]),
    CliSpec("create-userns-host", "--userns host", _create([*RESTRICTED, "--userns", "host"]), [NS]),
    CliSpec("create-cgroupns-host", "--cgroupns host", _create([*RESTRICTED, "--cgroupns", "host"]), [NS]),
    CliSpec(
        "build-network-host",
        "docker build --network host (classic builder)",
        ["build", "--network", "host", "-t", "capture-build:hostnet", BUILD_CTX],
        [NS],
        env={"DOCKER_BUILDKIT": "0"},
    ),
    # ---- deny_added_capabilities
    CliSpec(
        "create-cap-add-sys-admin",
        "--cap-add SYS_ADMIN",
        _create([*RESTRICTED, "--cap-add", "SYS_ADMIN"]),
        [CAPS],
    ),
    CliSpec(
        "create-cap-add-sys-admin-lower",
        "--cap-add sys_admin",
        _create([*RESTRICTED, "--cap-add", "sys_admin"]),
        [CAPS],
    ),
    CliSpec(
        "create-cap-add-cap-sys-admin",
        "--cap-add CAP_SYS_ADMIN",
        _create([*RESTRICTED, "--cap-add", "CAP_SYS_ADMIN"]),
        [CAPS],
    ),
    CliSpec("create-cap-add-all", "--cap-add ALL", _create([*RESTRICTED, "--cap-add", "ALL"]), [CAPS]),
    CliSpec("create-cap-add-all-lower", "--cap-add all", _create([*RESTRICTED, "--cap-add", "all"]), [CAPS]),
    CliSpec(
        "create-cap-add-net-raw",
        "--cap-add NET_RAW (in Docker's default set: baseline allows it)",
        _create([*RESTRICTED, "--cap-add", "NET_RAW"]),
        [CAPS],
        compliant=["baseline"],
    ),
    # ---- deny_apparmor_unconfined / deny_selinux_disabled / deny_unmasked_paths
    CliSpec(
        "create-apparmor-unconfined",
        "--security-opt apparmor=unconfined",
        _create([*RESTRICTED, "--security-opt", "apparmor=unconfined"]),
        [AA],
    ),
    CliSpec(
        "create-apparmor-unconfined-colon",
        "--security-opt apparmor:unconfined",
        _create([*RESTRICTED, "--security-opt", "apparmor:unconfined"]),
        [AA],
    ),
    CliSpec(
        "create-label-disable",
        "--security-opt label=disable",
        _create([*RESTRICTED, "--security-opt", "label=disable"]),
        [SEL],
    ),
    CliSpec(
        "create-label-disable-colon",
        "--security-opt label:disable",
        _create([*RESTRICTED, "--security-opt", "label:disable"]),
        [SEL],
    ),
    CliSpec(
        "create-systempaths-unconfined",
        "--security-opt systempaths=unconfined",
        _create([*RESTRICTED, "--security-opt", "systempaths=unconfined"]),
        [UNMASK],
    ),
    # ---- deny_sensitive_mounts
    CliSpec("create-bind-root", "-v /:/host", _create([*RESTRICTED, "-v", "/:/host"]), [MOUNTS]),
    CliSpec(
        "create-bind-docker-sock",
        "-v /var/run/docker.sock:/s",
        _create([*RESTRICTED, "-v", "/var/run/docker.sock:/s"]),
        [MOUNTS],
    ),
    CliSpec(
        "create-bind-docker-sock-dotdot",
        "-v /var/run/../run/docker.sock:/s",
        _create([*RESTRICTED, "-v", "/var/run/../run/docker.sock:/s"]),
        [MOUNTS],
    ),
    CliSpec(
        "create-bind-etc-double-slash", "-v //etc:/h", _create([*RESTRICTED, "-v", "//etc:/h"]), [MOUNTS]
    ),
    CliSpec(
        "create-bind-etc-trailing-slash", "-v /etc/:/h", _create([*RESTRICTED, "-v", "/etc/:/h"]), [MOUNTS]
    ),
    CliSpec(
        "create-bind-etc-ro",
        "-v /etc:/h:ro (read-only is still sensitive)",
        _create([*RESTRICTED, "-v", "/etc:/h:ro"]),
        [MOUNTS],
    ),
    CliSpec(
        "create-mount-bind-etc",
        "--mount type=bind,src=/etc,dst=/h",
        _create([*RESTRICTED, "--mount", "type=bind,src=/etc,dst=/h"]),
        [MOUNTS],
    ),
    CliSpec(
        "create-mount-bind-docker-sock-ro",
        "--mount type=bind,source=/var/run/docker.sock,target=/s,readonly",
        _create([*RESTRICTED, "--mount", "type=bind,source=/var/run/docker.sock,target=/s,readonly"]),
        [MOUNTS],
    ),
    CliSpec(
        "create-mount-volume-bind-opts",
        "--mount type=volume with volume-opt type=none,o=bind,device=/etc (creates a host-path volume)",
        _create(
            [
                *RESTRICTED,
                "--mount",
                "type=volume,src=capture-etcvol,dst=/h,volume-opt=type=none,volume-opt=o=bind,"
                "volume-opt=device=/etc",
            ]
        ),
        [MOUNTS],
    ),
    CliSpec(
        "create-bind-symlink-to-root",
        f"-v {LINK_TO_ROOT}:/h where {LINK_TO_ROOT} -> / (Resolved is /)",
        _create([*RESTRICTED, "-v", f"{LINK_TO_ROOT}:/h"]),
        [MOUNTS],
        fs_links={LINK_TO_ROOT: "/"},
    ),
    CliSpec(
        "volume-create-bind-etc",
        "docker volume create -o type=none -o o=bind -o device=/etc",
        ["volume", "create", "-o", "type=none", "-o", "o=bind", "-o", "device=/etc", "capture-bindvol"],
        [MOUNTS],
    ),
    # ---- deny_devices
    CliSpec(
        "create-device",
        "--device /dev/null:/dev/xnull",
        _create([*RESTRICTED, "--device", "/dev/null:/dev/xnull"]),
        [DEV],
    ),
    CliSpec(
        "create-device-cgroup-rule",
        "--device-cgroup-rule 'c 1:3 rmw'",
        _create([*RESTRICTED, "--device-cgroup-rule", "c 1:3 rmw"]),
        [DEV],
    ),
    # ---- require_readonly_rootfs (off in both profiles)
    CliSpec("create-no-read-only", "no --read-only", _create(restricted(drop=("--read-only",))), [RO]),
    # ---- trusted_registries (enabled as ["127.0.0.1:5000"])
    CliSpec(
        "create-image-docker-hub",
        "image from Docker Hub (busybox, tagged locally, --pull never)",
        _create(["--pull", "never", *RESTRICTED], image=HUB_IMG),
        [REG],
    ),
    CliSpec(
        "create-image-quay",
        "image from quay.io (tagged locally, --pull never)",
        _create(["--pull", "never", *RESTRICTED], image=QUAY_IMG),
        [REG],
    ),
    CliSpec(
        "pull-other-registry-name",
        "pull from localhost:5000 (not in the trusted list)",
        ["pull", OTHER_REGISTRY_IMG],
        [REG],
    ),
]

# docker plugin life cycle, in order, per CLI (alias differs per CLI).
PLUGIN_SPECS: list[CliSpec] = [
    CliSpec(
        "plugin-install",
        "docker plugin install (disabled)",
        ["plugin", "install", "--grant-all-permissions", "--disable", "--alias", "{alias}", PLUGIN_REF_1],
        [PLUG],
    ),
    CliSpec("plugin-inspect", "docker plugin inspect", ["plugin", "inspect", "{alias}"], []),
    CliSpec("plugin-set", "docker plugin set", ["plugin", "set", "{alias}", "DEBUG=1"], [PLUG]),
    CliSpec(
        "plugin-enable",
        "docker plugin enable (the plugin never answers: enable times out)",
        ["plugin", "enable", "--timeout", "3", "{alias}"],
        [PLUG],
    ),
    CliSpec("plugin-disable", "docker plugin disable", ["plugin", "disable", "-f", "{alias}"], [PLUG]),
    CliSpec(
        "plugin-upgrade",
        "docker plugin upgrade",
        ["plugin", "upgrade", "--grant-all-permissions", "--skip-remote-check", "{alias}", PLUGIN_REF_2],
        [PLUG],
    ),
    CliSpec("plugin-rm", "docker plugin rm", ["plugin", "rm", "-f", "{alias}"], [PLUG]),
    CliSpec(
        "plugin-create",
        "docker plugin create from a folder",
        ["plugin", "create", "{alias}-made", str(STATE / "plugin-src")],
        [PLUG],
    ),
]

SERVICE_BASE = ["service", "create", "--detach", "--no-resolve-image"]
# A service's tasks are containers too: without --user, --limit-* and NoNewPrivileges (API 1.46,
# which this Docker 20.10 daemon does not have) they break these restricted rules.
SERVICE_RESTRICTED = [ROOT, LIMITS, NNP]
SERVICE_SPECS: list[CliSpec] = [
    CliSpec(
        "service-create-plain",
        "docker service create (ordinary)",
        [*SERVICE_BASE, "--name", "{svc}-plain", "--read-only", IMG, "sleep", "60"],
        SERVICE_RESTRICTED,
    ),
    CliSpec(
        "service-create-writable",
        "docker service create without --read-only",
        [*SERVICE_BASE, "--name", "{svc}-rw", IMG, "sleep", "60"],
        [RO, *SERVICE_RESTRICTED],
    ),
    CliSpec(
        "service-create-cap-add",
        "docker service create --cap-add SYS_ADMIN",
        [*SERVICE_BASE, "--name", "{svc}-cap", "--read-only", "--cap-add", "SYS_ADMIN", IMG, "sleep", "60"],
        [CAPS, *SERVICE_RESTRICTED],
    ),
    CliSpec(
        "service-create-cap-add-all",
        "docker service create --cap-add ALL",
        [*SERVICE_BASE, "--name", "{svc}-capall", "--read-only", "--cap-add", "ALL", IMG, "sleep", "60"],
        [CAPS, *SERVICE_RESTRICTED],
    ),
    CliSpec(
        "service-create-bind-etc",
        "docker service create --mount type=bind,src=/etc,dst=/h",
        [
            *SERVICE_BASE,
            "--name",
            "{svc}-bind",
            "--read-only",
            "--mount",
            "type=bind,src=/etc,dst=/h",
            IMG,
            "sleep",
            "60",
        ],
        [MOUNTS, *SERVICE_RESTRICTED],
    ),
    CliSpec(
        "service-create-network-host",
        "docker service create --network host",
        [*SERVICE_BASE, "--name", "{svc}-hostnet", "--read-only", "--network", "host", IMG, "sleep", "60"],
        [NS, *SERVICE_RESTRICTED],
    ),
    CliSpec(
        "service-create-env-secret",
        "docker service create -e DB_PASSWORD=x",
        [*SERVICE_BASE, "--name", "{svc}-env", "--read-only", "-e", "DB_PASSWORD=x", IMG, "sleep", "60"],
        [ENV, *SERVICE_RESTRICTED],
    ),
    CliSpec(
        "service-create-image-quay",
        "docker service create with a quay.io image",
        [*SERVICE_BASE, "--name", "{svc}-quay", "--read-only", QUAY_IMG, "sleep", "60"],
        [REG, *SERVICE_RESTRICTED],
    ),
    CliSpec(
        "service-update-cap-add",
        "docker service update --cap-add SYS_ADMIN of an ordinary service",
        ["service", "update", "--detach", "--no-resolve-image", "--cap-add", "SYS_ADMIN", "{svc}-plain"],
        [CAPS, *SERVICE_RESTRICTED],
    ),
    CliSpec(
        "service-create-restricted-but-nnp",
        "docker service create with --user and --limit-* (NoNewPrivileges needs API 1.46)",
        [
            *SERVICE_BASE, "--name", "{svc}-limited", "--read-only", "--user", "1000:1000",
            "--limit-memory", "64m", "--limit-cpu", "0.5", "--limit-pids", "100", IMG, "sleep", "60",
        ],
        [NNP],
    ),
    CliSpec("service-ls", "docker service ls", ["service", "ls"], []),
    # runtimes, log drivers, downloads by the daemon
    CliSpec(
        "create-runtime-runc",
        "docker create --runtime runc",
        _create([*restricted(), "--runtime", "runc"]),
        [],
    ),
    CliSpec(
        "create-runtime-shim",
        "docker create --runtime io.containerd.hardening.v1 (a containerd shim by name)",
        _create([*restricted(), "--runtime", "io.containerd.hardening.v1"]),
        [RUNTIMES],
    ),
    CliSpec(
        "create-log-driver-json-file",
        "docker create --log-driver json-file --log-opt max-size=1m",
        _create([*restricted(), "--log-driver", "json-file", "--log-opt", "max-size=1m"]),
        [],
    ),
    CliSpec(
        "create-log-driver-syslog",
        "docker create --log-driver syslog to a closed loopback port",
        _create([*restricted(), "--log-driver", "syslog", "--log-opt", "syslog-address=udp://127.0.0.1:9"]),
        [LOGDRV],
    ),
    CliSpec(
        "import-file",
        "docker import of a local archive (sent in the body)",
        ["import", IMPORT_TAR, "capture-import:file"],
        [],
    ),
    CliSpec(
        "import-url",
        "docker import of a URL (the daemon downloads it; a closed loopback port)",
        ["import", "http://127.0.0.1:9/rootfs.tar", "capture-import:url"],
        [FETCH],
    ),
    # swarm membership and configuration (the private daemon is a one-node swarm here)
    CliSpec("swarm-node-ls", "docker node ls", ["node", "ls"], []),
    CliSpec(
        "swarm-update-history",
        "docker swarm update --task-history-limit 4",
        ["swarm", "update", "--task-history-limit", "4"],
        [SWARM],
    ),
    CliSpec(
        "swarm-rotate-join-token",
        "docker swarm join-token --rotate worker",
        ["swarm", "join-token", "--rotate", "-q", "worker"],
        [SWARM],
    ),
    CliSpec(
        "swarm-join",
        "docker swarm join to a manager (refused: already in a swarm; nothing is contacted)",
        ["swarm", "join", "--token", FAKE_TOKEN, "127.0.0.1:9"],
        [SWARM],
    ),
    CliSpec(
        "swarm-node-update",
        "docker node update --label-add of this node",
        ["node", "update", "--label-add", "capture=1", socket.gethostname()],  # the node's name
        [SWARM],
    ),
]


# --------------------------------------------------------------------------- SDK scenarios

SDK_RESTRICTED = (
    "user='1000:1000', mem_limit='64m', nano_cpus=500_000_000, pids_limit=100, "
    "security_opt=['no-new-privileges'], cap_drop=['ALL'], read_only=True"
)

SDK_SPECS: list[tuple[str, str, str, list[str], list[str] | None]] = [
    # (id, description, code, rules, compliant)
    (
        "sdk-ping-version-info",
        "ping, version, info",
        "client.ping(); client.version(); client.info()",
        [],
        None,
    ),
    ("sdk-containers-list", "containers.list(all=True)", "client.containers.list(all=True)", [], None),
    ("sdk-images-list", "images.list()", "client.images.list()", [], None),
    ("sdk-logs", "logs of a container", f"client.containers.get('{EXEC_C}').logs()", [], None),
    (
        "sdk-pull",
        "images.pull from the local registry",
        f"client.images.pull('{REGISTRY}/hardening-capture/busybox', tag='latest')",
        [],
        None,
    ),
    (
        "sdk-build",
        "images.build of a tiny Dockerfile",
        f"client.images.build(path='{BUILD_CTX}', tag='capture-sdk:1')",
        [],
        None,
    ),
    (
        "sdk-run-restricted",
        "containers.run fully compliant with the restricted profile",
        f"client.containers.run('{IMG}', 'true', remove=True, {SDK_RESTRICTED})",
        [],
        None,
    ),
    (
        "sdk-create-plain",
        "containers.create with no options",
        f"client.containers.create('{IMG}', 'true')",
        [NNP, LIMITS, ROOT, RO],
        None,
    ),
    (
        "sdk-create-privileged",
        "containers.create(privileged=True)",
        f"client.containers.create('{IMG}', 'true', privileged=True, {SDK_RESTRICTED})",
        [PRIV],
        None,
    ),
    (
        "sdk-create-log-driver-gelf",
        "log_config=LogConfig(type='gelf') to a closed loopback port",
        f"client.containers.create('{IMG}', 'true', log_config=docker.types.LogConfig(type='gelf', "
        f"config={{'gelf-address': 'udp://127.0.0.1:9'}}), {SDK_RESTRICTED})",
        [LOGDRV],
        None,
    ),
    (
        "sdk-create-bind-etc",
        "volumes={'/etc': {'bind': '/h', 'mode': 'ro'}}",
        f"client.containers.create('{IMG}', 'true', volumes={{'/etc': {{'bind': '/h', 'mode': 'ro'}}}}, "
        f"{SDK_RESTRICTED})",
        [MOUNTS],
        None,
    ),
    (
        "sdk-create-mount-docker-sock",
        "mounts=[Mount('/s', '/var/run/docker.sock', type='bind')]",
        f"client.containers.create('{IMG}', 'true', mounts=[docker.types.Mount('/s', '/var/run/docker.sock', "
        f"type='bind')], {SDK_RESTRICTED})",
        [MOUNTS],
        None,
    ),
    (
        "sdk-create-cap-add",
        "cap_add=['SYS_ADMIN']",
        f"client.containers.create('{IMG}', 'true', cap_add=['SYS_ADMIN'], {SDK_RESTRICTED})",
        [CAPS],
        None,
    ),
    (
        "sdk-create-network-host",
        "network_mode='host'",
        f"client.containers.create('{IMG}', 'true', network_mode='host', {SDK_RESTRICTED})",
        [NS],
        None,
    ),
    (
        "sdk-create-env-secret",
        "environment={'DB_PASSWORD': 'x'}",
        f"client.containers.create('{IMG}', 'true', environment={{'DB_PASSWORD': 'x'}}, {SDK_RESTRICTED})",
        [ENV],
        None,
    ),
    (
        "sdk-create-port-80",
        "ports={'80/tcp': 80}",
        f"client.containers.create('{IMG}', 'true', ports={{'80/tcp': 80}}, {SDK_RESTRICTED})",
        [PORTS],
        None,
    ),
    (
        "sdk-exec-root",
        "exec_run('id', user='root')",
        f"client.containers.get('{EXEC_C}').exec_run('id', user='root')",
        [ROOT],
        None,
    ),
    ("sdk-exec-default", "exec_run('true')", f"client.containers.get('{EXEC_C}').exec_run('true')", [], None),
    (
        "sdk-update-unlimited",
        "container.update(mem_limit=-1, memswap_limit=-1)",
        f"client.containers.get('{UPDATE_C}').update(mem_limit=-1, memswap_limit=-1)",
        [LIMITS],
        None,
    ),
    (
        "sdk-volume-bind-opts",
        "volumes.create(driver_opts={'type': 'none', 'o': 'bind', 'device': '/etc'})",
        "client.volumes.create('capture-sdk-bindvol',"
        " driver_opts={'type': 'none', 'o': 'bind', 'device': '/etc'})",
        [MOUNTS],
        None,
    ),
    (
        "sdk-volume-network-ordinary",
        "volume and network create, list, remove",
        "v = client.volumes.create('capture-sdk-vol'); client.volumes.list(); v.remove(); "
        "n = client.networks.create('capture-sdk-net'); client.networks.list(); n.remove()",
        [],
        None,
    ),
]

# A compose-like sequence: what `docker compose up` sends, written with the SDK's low-level API.
COMPOSE_CODE = """\
api = client.api
labels = {'com.docker.compose.project': 'capture', 'com.docker.compose.version': '2.29.1'}
api.create_network('capture_default', driver='bridge',
                   labels={**labels, 'com.docker.compose.network': 'default'})
api.create_volume('capture_data', labels={**labels, 'com.docker.compose.volume': 'data'})
for service in ('web', 'worker'):
    host_config = api.create_host_config(binds=['capture_data:/data:rw'], network_mode='capture_default',
                                         restart_policy={'Name': 'unless-stopped'}{extra_host})
    c = api.create_container(IMG, ['sleep', '60'], name=f'capture-{service}-1', host_config=host_config,
                             labels={**labels, 'com.docker.compose.service': service,
                                     'com.docker.compose.container-number': '1',
                                     'com.docker.compose.oneoff': 'False'}{extra_create},
                             networking_config=api.create_networking_config(
                                 {'capture_default': api.create_endpoint_config(aliases=[service])}))
    api.start(c['Id'])
"""


# --------------------------------------------------------------------------- raw HTTP scenarios

API = "/v1.41"
RAW_BASE_CREATE: dict[str, Any] = {
    "Image": IMG,
    "Cmd": ["sleep", "60"],
    "User": "1000:1000",
    "HostConfig": {
        "Memory": 67108864,
        "NanoCpus": 500000000,
        "PidsLimit": 100,
        "SecurityOpt": ["no-new-privileges"],
        "CapDrop": ["ALL"],
        "ReadonlyRootfs": True,
    },
}


def raw_create(
    host_config: dict[str, Any] | None = None,
    *,
    hc_key: str = "HostConfig",
    top: dict[str, Any] | None = None,
    drop_top: tuple[str, ...] = (),
) -> dict[str, Any]:
    body = {k: v for k, v in RAW_BASE_CREATE.items() if k not in drop_top and k != "HostConfig"}
    body.update(top or {})
    hc = dict(RAW_BASE_CREATE["HostConfig"])
    hc.update(host_config or {})
    body[hc_key] = hc
    return body


def jbytes(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


@dataclass
class RawSpec:
    id: str
    description: str
    method: str
    path: str
    body: bytes | None
    rules: list[str]
    content_type: str | None = "application/json"
    extra_headers: list[tuple[str, str]] = field(default_factory=list)
    chunked: bool = False
    bypass_class: str | None = None
    policy_can_stop: bool = True
    always_deny: bool = False
    compliant: list[str] | None = None
    crafted: bool = False
    command_body: str | None = None  # how the body is shown in "command" when it is too long


DUP_KEYS = (
    b'{"Image":"' + IMG.encode() + b'","Cmd":["sleep","60"],"User":"1000:1000",'
    b'"HostConfig":{"Privileged":true},'
    b'"HostConfig":{"Memory":67108864,"NanoCpus":500000000,"PidsLimit":100,'
    b'"SecurityOpt":["no-new-privileges"],"CapDrop":["ALL"],"ReadonlyRootfs":true}}'
)

PRIV_BODY = jbytes(raw_create({"Privileged": True}))
BIG_BODY = PRIV_BODY[:-1] + b"," + b'"Labels":{"pad":"' + b"x" * (1024 * 1024 + 100) + b'"}}'

RAW_SPECS: list[RawSpec] = [
    RawSpec(
        "raw-create-restricted-compliant",
        "raw create that complies with the restricted profile",
        "POST",
        f"{API}/containers/create",
        jbytes(raw_create()),
        [],
    ),
    # key case
    RawSpec(
        "raw-keycase-hostconfig-privileged-lower",
        "lower-case hostconfig/privileged",
        "POST",
        f"{API}/containers/create",
        jbytes(raw_create({"privileged": True}, hc_key="hostconfig")),
        [PRIV],
        bypass_class="key case",
    ),
    RawSpec(
        "raw-keycase-privileged-upper",
        "PRIVILEGED",
        "POST",
        f"{API}/containers/create",
        jbytes(raw_create({"PRIVILEGED": True})),
        [PRIV],
        bypass_class="key case",
    ),
    RawSpec(
        "raw-keycase-capadd",
        "capadd: [SYS_ADMIN]",
        "POST",
        f"{API}/containers/create",
        jbytes(raw_create({"capadd": ["SYS_ADMIN"]})),
        [CAPS],
        bypass_class="key case",
    ),
    RawSpec(
        "raw-keycase-binds",
        "binds: [/:/host]",
        "POST",
        f"{API}/containers/create",
        jbytes(raw_create({"binds": ["/:/host"]})),
        [MOUNTS],
        bypass_class="key case",
    ),
    RawSpec(
        "raw-keycase-mounts",
        "mounts: [{type: bind, source: /etc}]",
        "POST",
        f"{API}/containers/create",
        jbytes(raw_create({"mounts": [{"type": "bind", "source": "/etc", "target": "/h"}]})),
        [MOUNTS],
        bypass_class="key case",
    ),
    RawSpec(
        "raw-keycase-networkmode",
        "networkmode: host",
        "POST",
        f"{API}/containers/create",
        jbytes(raw_create({"networkmode": "host"})),
        [NS],
        bypass_class="key case",
    ),
    RawSpec(
        "raw-keycase-securityopt",
        "securityopt: [seccomp=unconfined, no-new-privileges] replaces SecurityOpt",
        "POST",
        f"{API}/containers/create",
        jbytes(
            {
                **{k: v for k, v in raw_create().items() if k != "HostConfig"},
                "HostConfig": {
                    **{k: v for k, v in RAW_BASE_CREATE["HostConfig"].items() if k != "SecurityOpt"},
                    "securityopt": ["seccomp=unconfined", "no-new-privileges"],
                },
            }
        ),
        [SECCOMP],
        bypass_class="key case",
    ),
    RawSpec(
        "raw-keycase-user",
        "top-level user: root (no User)",
        "POST",
        f"{API}/containers/create",
        jbytes(raw_create(top={"user": "root"}, drop_top=("User",))),
        [ROOT],
        bypass_class="key case",
    ),
    RawSpec(
        "raw-keycase-env",
        "env: [DB_PASSWORD=x]",
        "POST",
        f"{API}/containers/create",
        jbytes(raw_create(top={"env": ["DB_PASSWORD=x"]})),
        [ENV],
        bypass_class="key case",
    ),
    RawSpec(
        "raw-keycase-devices",
        "devices (lower case) mapping /dev/null",
        "POST",
        f"{API}/containers/create",
        jbytes(
            raw_create(
                {
                    "devices": [
                        {
                            "pathonhost": "/dev/null",
                            "pathincontainer": "/dev/xnull",
                            "cgrouppermissions": "rwm",
                        }
                    ]
                }
            )
        ),
        [DEV],
        bypass_class="key case",
    ),
    RawSpec(
        "raw-unmasked-paths-empty",
        "MaskedPaths [] and ReadonlyPaths [] (what systempaths=unconfined sends)",
        "POST",
        f"{API}/containers/create",
        jbytes(raw_create({"MaskedPaths": [], "ReadonlyPaths": []})),
        [UNMASK],
    ),
    RawSpec(
        "raw-keycase-maskedpaths",
        "maskedpaths [] and readonlypaths [] (lower case)",
        "POST",
        f"{API}/containers/create",
        jbytes(raw_create({"maskedpaths": [], "readonlypaths": []})),
        [UNMASK],
        bypass_class="key case",
    ),
    # duplicate keys
    RawSpec(
        "raw-duplicate-hostconfig",
        "two HostConfig objects: the daemon merges them (Privileged from the first), a "
        "map keeps only the second",
        "POST",
        f"{API}/containers/create",
        DUP_KEYS,
        [],
        bypass_class="duplicate keys",
        policy_can_stop=False,
        compliant=[],
    ),
    # path spelling
    RawSpec(
        "raw-path-no-version",
        "POST /containers/create without /vX.Y",
        "POST",
        "/containers/create",
        PRIV_BODY,
        [PRIV],
        bypass_class="path spelling",
    ),
    RawSpec(
        "raw-path-percent-encoded-slash",
        "POST /v1.41/containers%2Fcreate",
        "POST",
        f"{API}/containers%2Fcreate",
        PRIV_BODY,
        [PRIV],
        bypass_class="path spelling",
    ),
    RawSpec(
        "raw-path-percent-encoded-letter",
        "POST /v1.41/containers/%63reate",
        "POST",
        f"{API}/containers/%63reate",
        PRIV_BODY,
        [PRIV],
        bypass_class="path spelling",
    ),
    RawSpec(
        "raw-path-query-string",
        "POST /v1.41/containers/create?name=...&x=y",
        "POST",
        f"{API}/containers/create?name=capture-raw-q&x=y",
        PRIV_BODY,
        [PRIV],
        bypass_class="path spelling",
    ),
    RawSpec(
        "raw-path-double-slash",
        "POST //v1.41/containers/create: the daemon's router answers 301 before authorization, nothing runs",
        "POST",
        f"/{API}/containers/create",
        PRIV_BODY,
        [],
        compliant=[],
        bypass_class="path spelling",
    ),
    # invisible body
    RawSpec(
        "raw-invisible-body-charset",
        "Content-Type: application/json; charset=utf-8",
        "POST",
        f"{API}/containers/create",
        PRIV_BODY,
        [PRIV],
        content_type="application/json; charset=utf-8",
        bypass_class="invisible body",
        always_deny=True,
    ),
    RawSpec(
        "raw-invisible-body-no-content-type",
        "no Content-Type header",
        "POST",
        f"{API}/containers/create",
        PRIV_BODY,
        [PRIV],
        content_type=None,
        bypass_class="invisible body",
        always_deny=True,
    ),
    RawSpec(
        "raw-invisible-body-uppercase-type",
        "Content-Type: Application/JSON",
        "POST",
        f"{API}/containers/create",
        PRIV_BODY,
        [PRIV],
        content_type="Application/JSON",
        bypass_class="invisible body",
        always_deny=True,
    ),
    # other endpoints
    RawSpec(
        "raw-exec-privileged",
        "POST /containers/{id}/exec with Privileged",
        "POST",
        f"{API}/containers/{EXEC_C}/exec",
        jbytes({"Cmd": ["id"], "Privileged": True}),
        [PRIV],
        bypass_class="other endpoints",
    ),
    RawSpec(
        "raw-exec-privileged-lower",
        "exec with privileged (lower case)",
        "POST",
        f"{API}/containers/{EXEC_C}/exec",
        jbytes({"Cmd": ["id"], "privileged": True}),
        [PRIV],
        bypass_class="key case",
    ),
    RawSpec(
        "raw-exec-user-0",
        "exec with User 0",
        "POST",
        f"{API}/containers/{EXEC_C}/exec",
        jbytes({"Cmd": ["id"], "User": "0"}),
        [ROOT],
        bypass_class="other endpoints",
    ),
    RawSpec(
        "raw-exec-ordinary",
        "exec with no user",
        "POST",
        f"{API}/containers/{EXEC_C}/exec",
        jbytes({"Cmd": ["id"], "AttachStdout": True}),
        [],
    ),
    RawSpec(
        "raw-update-memory-unlimited",
        "POST /containers/{id}/update Memory -1, MemorySwap -1",
        "POST",
        f"{API}/containers/{UPDATE_C}/update",
        jbytes({"Memory": -1, "MemorySwap": -1}),
        [LIMITS],
        bypass_class="other endpoints",
    ),
    RawSpec(
        "raw-update-pids-zero",
        "update PidsLimit 0",
        "POST",
        f"{API}/containers/{UPDATE_C}/update",
        jbytes({"PidsLimit": 0}),
        [LIMITS],
        bypass_class="other endpoints",
    ),
    RawSpec(
        "raw-update-pids-lower",
        "update pidslimit -1 (lower case)",
        "POST",
        f"{API}/containers/{UPDATE_C}/update",
        jbytes({"pidslimit": -1}),
        [LIMITS],
        bypass_class="key case",
    ),
    RawSpec(
        "raw-update-ordinary",
        "update CpuShares only",
        "POST",
        f"{API}/containers/{UPDATE_C}/update",
        jbytes({"CpuShares": 512}),
        [],
    ),
    RawSpec(
        "raw-volume-bind-etc",
        "POST /volumes/create with local driver opts type=none,o=bind,device=/etc",
        "POST",
        f"{API}/volumes/create",
        jbytes(
            {
                "Name": "capture-raw-bindvol",
                "Driver": "local",
                "DriverOpts": {"type": "none", "o": "bind", "device": "/etc"},
            }
        ),
        [MOUNTS],
        bypass_class="other endpoints",
    ),
    RawSpec(
        "raw-volume-bind-lower",
        "volume create with driveropts (lower case) and device //etc/",
        "POST",
        f"{API}/volumes/create",
        jbytes(
            {"name": "capture-raw-bindvol2", "driveropts": {"type": "none", "o": "bind", "device": "//etc/"}}
        ),
        [MOUNTS],
        bypass_class="key case",
    ),
    RawSpec(
        "raw-volume-ordinary",
        "volume create with no options",
        "POST",
        f"{API}/volumes/create",
        jbytes({"Name": "capture-raw-vol"}),
        [],
    ),
    RawSpec(
        "raw-build-remote-url",
        "POST /build?remote=<URL> (the daemon downloads the context; a closed loopback port)",
        "POST",
        f"{API}/build?remote=http%3A%2F%2F127.0.0.1%3A9%2FDockerfile&t=x",
        None,
        [FETCH],
        content_type=None,
    ),
    RawSpec(
        "raw-create-annotation-systemd",
        "create with HostConfig.Annotations org.systemd.property.* (runc reads it with systemd cgroups)",
        "POST",
        f"{API}/containers/create",
        jbytes(raw_create({"Annotations": {"org.systemd.property.TimeoutStopUSec": "uint64 1000000"}})),
        [RUNTIMES],
    ),
    RawSpec(
        "raw-build-networkmode-host",
        "POST /build?networkmode=host",
        "POST",
        f"{API}/build?networkmode=host&t=x",
        None,
        [NS],
        content_type="application/x-tar",
        bypass_class="other endpoints",
        command_body="<tar of the build context>",
    ),
    RawSpec(
        "raw-swarm-join-no-version",
        "POST /swarm/join without /vX.Y (a manager elsewhere would schedule tasks the plugin never sees)",
        "POST",
        "/swarm/join",
        jbytes({"ListenAddr": "127.0.0.1:2377", "RemoteAddrs": ["127.0.0.1:9"], "JoinToken": FAKE_TOKEN}),
        [SWARM],
        bypass_class="other endpoints",
    ),
    RawSpec(
        "raw-plugin-pull",
        "POST /plugins/pull with the privileges array",
        "POST",
        f"{API}/plugins/pull?remote={PLUGIN_REF_1}&name=capture-raw-plugin:latest",
        jbytes(
            [
                {"Name": "network", "Description": "", "Value": ["host"]},
                {"Name": "mount", "Description": "", "Value": ["/etc/docker"]},
            ]
        ),
        [PLUG],
        bypass_class="other endpoints",
    ),
    RawSpec(
        "raw-plugin-set",
        "POST /plugins/{name}/set",
        "POST",
        f"{API}/plugins/capture-raw-plugin:latest/set",
        jbytes(["DEBUG=1"]),
        [PLUG],
        bypass_class="other endpoints",
    ),
    RawSpec(
        "raw-plugin-disable-no-version",
        "POST /plugins/{name}/disable without /vX.Y",
        "POST",
        "/plugins/capture-raw-plugin:latest/disable?force=1",
        None,
        [PLUG],
        content_type=None,
        bypass_class="other endpoints",
    ),
    RawSpec(
        "raw-plugin-remove",
        "DELETE /plugins/{name}",
        "DELETE",
        f"{API}/plugins/capture-raw-plugin:latest?force=1",
        None,
        [PLUG],
        content_type=None,
        bypass_class="other endpoints",
    ),
    # value and host path spelling
    RawSpec(
        "raw-binds-dotdot",
        "Binds /usr/../etc:/h",
        "POST",
        f"{API}/containers/create",
        jbytes(raw_create({"Binds": ["/usr/../etc:/h"]})),
        [MOUNTS],
        bypass_class="host path spelling",
    ),
    RawSpec(
        "raw-cap-lower-prefixed",
        "CapAdd cap_sys_admin",
        "POST",
        f"{API}/containers/create",
        jbytes(raw_create({"CapAdd": ["cap_sys_admin"]})),
        [CAPS],
        bypass_class="value spelling",
    ),
    RawSpec(
        "raw-user-root-gid",
        "User root:0",
        "POST",
        f"{API}/containers/create",
        jbytes(raw_create(top={"User": "root:0"})),
        [ROOT],
        bypass_class="value spelling",
    ),
    # engine bugs
    RawSpec(
        "raw-engine-chunked-body",
        "chunked body (CVE-2024-41110; Debian's 20.10.24 forwards it: the fix is backported)",
        "POST",
        f"{API}/containers/create",
        PRIV_BODY,
        [PRIV],
        chunked=True,
        bypass_class="engine bugs",
    ),
    RawSpec(
        "raw-engine-body-over-1mib",
        "body over 1 MiB (not forwarded to the plugin)",
        "POST",
        f"{API}/containers/create",
        BIG_BODY,
        [PRIV],
        bypass_class="engine bugs",
        always_deny=True,
        command_body="<the privileged create body with a 1 MiB label>",
    ),
    # identity
    RawSpec(
        "raw-identity-header",
        "a client-set identity header does not exempt anyone",
        "POST",
        f"{API}/containers/create",
        PRIV_BODY,
        [PRIV],
        extra_headers=[("Authz-User", "admin")],
        bypass_class="identity",
    ),
    # services (swarm) the CLI cannot express
    RawSpec(
        "raw-service-privileges",
        "service with seccomp unconfined, AppArmor disabled, SELinux disabled",
        "POST",
        f"{API}/services/create",
        jbytes(
            {
                "Name": "capture-raw-svc-priv",
                "TaskTemplate": {
                    "ContainerSpec": {
                        "Image": IMG,
                        "Command": ["sleep", "60"],
                        "ReadOnly": True,
                        "Privileges": {
                            "Seccomp": {"Mode": "unconfined"},
                            "AppArmor": {"Mode": "disabled"},
                            "SELinuxContext": {"Disable": True},
                        },
                    }
                },
            }
        ),
        [SECCOMP, AA, SEL, *SERVICE_RESTRICTED],
        bypass_class="other endpoints",
        crafted=True,
    ),
    RawSpec(
        "raw-service-capability-add-lower",
        "service capabilityadd [CAP_SYS_ADMIN] (lower-case keys)",
        "POST",
        f"{API}/services/create",
        jbytes(
            {
                "Name": "capture-raw-svc-cap",
                "tasktemplate": {
                    "containerspec": {
                        "image": IMG,
                        "command": ["sleep", "60"],
                        "readonly": True,
                        "capabilityadd": ["CAP_SYS_ADMIN"],
                    }
                },
            }
        ),
        [CAPS, *SERVICE_RESTRICTED],
        bypass_class="key case",
        crafted=True,
    ),
]
