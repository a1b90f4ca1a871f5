"""Every rule on hand-made requests: denied when on, allowed when off, profile defaults,
parameters; both dialects (regopy evaluates v0 and v1)."""

from __future__ import annotations

import base64
import json

import pytest

from module_utils.policy import RULES, PolicyConfigError, build_policy_config
from tests.policy.harness import compiled
from tests.policy.requests import (
    create,
    exec_create,
    read,
    service,
    update,
    volume,
    write,
)

DIALECTS = ("v1", "v0")
ALL_OFF = {var: False for var, _b, _r in RULES.values()}
ALLOW_ALL_SECCOMP = json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []})
STRICT_SECCOMP = json.dumps({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": []})


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# rule id -> requests it must deny (each breaks only that rule), requests it must allow.
DENY: dict[str, list[dict]] = {
    "privileged": [create(host_config={"Privileged": True}), exec_create({"Privileged": True})],
    "seccomp_unconfined": [
        create(host_config={"SecurityOpt": ["no-new-privileges", "seccomp=unconfined"]}),
        create(host_config={"SecurityOpt": ["no-new-privileges", "seccomp:unconfined"]}),
        create(host_config={"SecurityOpt": ["no-new-privileges", "seccomp=UNCONFINED"]}),
        create(host_config={"SecurityOpt": ["no-new-privileges", f"seccomp={ALLOW_ALL_SECCOMP}"]}),
        # profiles with neither a default action nor system calls switch seccomp off (moby)
        *(
            create(host_config={"SecurityOpt": ["no-new-privileges", f"seccomp={text}"]})
            for text in ("{}", "null", '{"syscalls": []}', '{"defaultAction": ""}', "/etc/p.json")
        ),
        create(host_config={"SecurityOpt": ["no-new-privileges", "seccomp:{}"]}),
        service({"Privileges": {"Seccomp": {"Mode": "unconfined"}}}),
        *(
            service({"Privileges": {"Seccomp": {"Mode": "custom", "Profile": profile}}})
            for profile in (b64("{}"), b64(ALLOW_ALL_SECCOMP), None)
        ),
    ],
    "no_new_privileges": [
        create(host_config={"SecurityOpt": None}),
        create(host_config={"SecurityOpt": ["no-new-privileges=false"]}),
        create(host_config={"SecurityOpt": ["no-new-privileges", "no-new-privileges:false"]}),
        service({"Privileges": {"NoNewPrivileges": False}}),
        service({"Privileges": {"NoNewPrivileges": None}}),
        # the daemon clears NoNewPrivileges below API 1.44
        service(uri="/v1.43/services/create"),
        service(uri="/v1.41/services/s1/update?version=3"),
    ],
    "resource_limits": [
        create(host_config={"Memory": 0}),
        create(host_config={"NanoCpus": 0}),
        create(host_config={"PidsLimit": -1}),
        create(host_config={"PidsLimit": None}),
        update({"Memory": -1}),
        update({"MemorySwap": -1}),
        update({"PidsLimit": 0}),
        update({"CpuQuota": -1}),
        service(task_template={"Resources": {"Limits": {"MemoryBytes": 64 << 20, "NanoCPUs": 500_000_000}}}),
        service(task_template={"Resources": {}}),
        create(host_config={"MemorySwap": -1}),  # unlimited swap on create, as on update
        create(host_config={"OomScoreAdj": -1000}),
        create(host_config={"OomKillDisable": True}),
        create(host_config={"CgroupParent": "/"}),  # CIS 5.25
        write("POST", "/v1.41/build?cgroupparent=/&t=x", None),
        service({"OomScoreAdj": -500}, uri="/v1.46/services/create"),
        service(uri="/v1.40/services/create"),  # the daemon drops Pids below 1.41
    ],
    "ports": [
        create(host_config={"PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "80"}]}}),
        create(host_config={"PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "1000-1100"}]}}),
        create(host_config={"PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "http"}]}}),
        create(host_config={"PublishAllPorts": True}),
        service(endpoint_spec={"Ports": [{"TargetPort": 80, "PublishedPort": 80}]}),
        service(endpoint_spec={"Ports": [{"TargetPort": 80, "PublishedPort": 443, "PublishMode": "host"}]}),
    ],
    "root_user": [
        create({"User": ""}),
        create({"User": "root"}),
        create({"User": "0"}),
        create({"User": "0:0"}),
        create({"User": "root:root"}),
        create({"User": "00"}),
        create({"User": "+0:1000"}),
        exec_create({"User": "root"}),
        exec_create({"User": "0:0"}),
        service({"User": "0"}),
        service({"User": None}),
    ],
    "sensitive_env": [
        create({"Env": ["DB_PASSWORD=x"]}),
        create({"Env": ["github_token=x"]}),
        create({"Env": ["My_Api_Key=1"]}),
        exec_create({"Env": ["SECRET=1"]}),
        service({"Env": ["AWS_ACCESS_KEY=1"]}),
    ],
    "host_namespaces": [
        create(host_config={"NetworkMode": "host"}),
        create(host_config={"PidMode": "host"}),
        create(host_config={"IpcMode": "host"}),
        create(host_config={"UTSMode": "host"}),
        create(host_config={"UsernsMode": "host"}),
        create(host_config={"CgroupnsMode": "host"}),
        create(uri="/v1.40/containers/create"),  # host cgroupns by default below 1.41 (cgroup v1)
        create(uri="/v1.40.0/containers/create"),
        write("POST", "/v1.41/build?networkmode=host&t=x", None),
        write("POST", "/v1.41/networks/create", {"Driver": "macvlan", "Options": {"parent": "eth0"}}),
        write("POST", "/v1.41/networks/create", {"Name": "i", "Driver": "IPVLAN"}),
        write("POST", "/v1.41/networks/create",
              {"Name": "r", "Options": {"com.docker.network.bridge.gateway_mode_ipv4": "routed"}}),
        write("POST", "/v1.41/networks/create",
              {"Name": "u", "Options": {"com.docker.network.bridge.gateway_mode_ipv6": "nat-unprotected"}}),
        service(task_template={"Networks": [{"Target": "host"}]}),
    ],
    "capabilities": [
        create(host_config={"CapAdd": ["CAP_SYS_ADMIN"]}),
        create(host_config={"CapAdd": ["sys_admin"]}),
        create(host_config={"CapAdd": "SYS_ADMIN"}),  # a string is a one-element list to the daemon
        create(host_config={"CapAdd": ["all"]}),
        create(host_config={"CapAdd": ["NET_RAW"]}),  # in Docker's default set, not in restricted's
        service({"CapabilityAdd": ["CAP_NET_ADMIN"]}),
        create(host_config={"Capabilities": ["CAP_SYS_ADMIN", "CAP_CHOWN"]}),  # API 1.40: the whole set
    ],
    "apparmor_unconfined": [
        create(host_config={"SecurityOpt": ["no-new-privileges", "apparmor=unconfined"]}),
        create(host_config={"SecurityOpt": ["no-new-privileges", "apparmor:unconfined"]}),
        service({"Privileges": {"AppArmor": {"Mode": "disabled"}}}),
    ],
    "selinux_disabled": [
        create(host_config={"SecurityOpt": ["no-new-privileges", "label=disable"]}),
        create(host_config={"SecurityOpt": ["no-new-privileges", "label:disable"]}),
        create(host_config={"SecurityOpt": ["no-new-privileges", "disable"]}),
        service({"Privileges": {"SELinuxContext": {"Disable": True}}}),
    ],
    "unmasked_paths": [
        create(host_config={"MaskedPaths": [], "ReadonlyPaths": []}),
        create(host_config={"MaskedPaths": ["/nothing"]}),
        # a writable /sys/fs/cgroup (Docker 28), bare or with a ParseBool true
        create(host_config={"SecurityOpt": ["no-new-privileges", "writable-cgroups"]}),
        create(host_config={"SecurityOpt": ["no-new-privileges", "writable-cgroups=true"]}),
        create(host_config={"SecurityOpt": ["no-new-privileges", "writable-cgroups:1"]}),
    ],
    "sensitive_mounts": [
        create(host_config={"Binds": ["/etc:/host-etc"]}),
        create(host_config={"Binds": ["//etc:/host-etc:ro"]}),
        create(host_config={"Binds": ["/etc/:/host-etc"]}),
        create(host_config={"Binds": ["/etc/.:/host-etc"]}),
        create(host_config={"Binds": ["/var/run/../run/docker.sock:/docker.sock"]}),
        create(host_config={"Binds": ["/srv/../../etc:/x"]}),
        create(host_config={"Binds": ["/:/host"]}),
        create(host_config={"Binds": ["/var/lib/docker/volumes:/v"]}),
        create(host_config={"Mounts": [{"Type": "bind", "Source": "/proc", "Target": "/p"}]}),
        create(
            host_config={
                "Mounts": [
                    {
                        "Type": "volume",
                        "Target": "/x",
                        "VolumeOptions": {
                            "DriverConfig": {
                                "Name": "local",
                                "Options": {"type": "none", "o": "bind", "device": "/etc"},
                            }
                        },
                    }
                ]
            }
        ),
        volume({"type": "none", "o": "bind", "device": "/etc"}),
        volume({"type": "none", "o": "bind", "device": "/run/containerd/"}),
        volume({"type": "proc", "device": "x"}),  # the host's /proc, whatever the device
        service({"Mounts": [{"Type": "bind", "Source": "/", "Target": "/host"}]}),
        # shared propagation (CIS 5.20): any case, Binds options, BindOptions, services
        create(host_config={"Binds": ["/srv/x:/x:rshared"]}),
        create(host_config={"Binds": ["/srv/x:/x:ro,Shared"]}),
        create(host_config={"Mounts": [{"Type": "bind", "Source": "/srv/x", "Target": "/x",
                                        "BindOptions": {"Propagation": "shared"}}]}),
        service({"Mounts": [{"Type": "bind", "Source": "/srv/x", "Target": "/x",
                             "BindOptions": {"Propagation": "rshared"}}]}),
    ],
    "devices": [
        create(
            host_config={
                "Devices": [
                    {"PathOnHost": "/dev/sda", "PathInContainer": "/dev/sda", "CgroupPermissions": "rwm"}
                ]
            }
        ),
        create(host_config={"DeviceCgroupRules": ["b 8:* rmw"]}),
        create(host_config={"DeviceRequests": [{"Driver": "cdi", "DeviceIDs": ["vendor.com/gpu=all"]}]}),
        create(host_config={"DeviceRequests": [{"Driver": "", "Count": -1, "Capabilities": [["gpu"]]}]}),
    ],
    "plugin_changes": [
        write("POST", "/v1.41/plugins/pull?remote=127.0.0.1:5000/p:1&name=p", None),
        write("POST", "/v1.41/plugins/opa-docker-authz:latest/disable", None),
        write("POST", "/v1.41/plugins/127.0.0.1:5000/opa:v0.10/disable", None),
        write("POST", "/v1.41/plugins/p/enable?timeout=0", None),
        write("DELETE", "/v1.41/plugins/p?force=1", None),
        write("POST", "/v1.41/plugins/p/upgrade?remote=x", None),
        write("POST", "/v1.41/plugins/create?name=p", None),
        service(task_template={"Runtime": "plugin", "PluginSpec": {"Name": "p", "Remote": "x"}}),
    ],
    "swarm_changes": [
        write("POST", "/v1.41/swarm/init", {"ListenAddr": "0.0.0.0:2377"}),
        write("POST", "/v1.41/swarm/join", {"RemoteAddrs": ["198.51.100.7:2377"], "JoinToken": "SWMTKN-1-x"}),
        write("POST", "/v1.41/swarm/leave?force=1", None),
        write("POST", "/v1.41/swarm/update?version=3&rotateManagerToken=true", {}),
        write("POST", "/v1.41/swarm/unlock", {"UnlockKey": "SWMKEY-1-x"}),
        write("POST", "/v1.41/nodes/n1/update?version=5", {"Role": "manager"}),
        write("DELETE", "/v1.41/nodes/n1?force=1", None),
        write("POST", "/swarm/join", {"RemoteAddrs": ["198.51.100.7:2377"], "JoinToken": "SWMTKN-1-x"}),
    ],
    "runtimes": [
        create(host_config={"Runtime": "nvidia"}),
        create(host_config={"Runtime": "io.containerd.runsc.v1"}),
        create(host_config={"Runtime": "RUNC"}),
        create({"Runtime": "crun"}, {}),
        create(host_config={"runtime": "kata"}),
        create(host_config={"Annotations": {"org.systemd.property.DeviceAllow": "/dev/mem rwm"}}),
        create(host_config={"Annotations": {"Run.OCI.Handler": "krun"}}),
        create(host_config={"Annotations": {"cdi.k8s.io/gpu": "nvidia.com/gpu=all"}}),
        create(host_config={"Annotations": {"io.katacontainers.config.hypervisor.path": "/x"}}),
    ],
    "log_drivers": [
        create(host_config={"LogConfig": {"Type": "syslog", "Config": {"syslog-address": "unix:///x"}}}),
        create(host_config={"LogConfig": {"Type": "awslogs", "Config": {"awslogs-group": "g"}}}),
        create(host_config={"logconfig": {"type": "gelf"}}),
        create({"LogConfig": {"Type": "fluentd"}}, {}),
        create(host_config={"LogConfig": {"Type": "JSON-FILE"}}),
        service(task_template={"LogDriver": {"Name": "splunk", "Options": {"splunk-url": "https://x"}}}),
    ],
    "remote_fetch": [
        write("POST", "/v1.41/images/create?fromSrc=http://169.254.169.254/latest&repo=x", None),
        write("POST", "/v1.41/images/create?fromSrc=169.254.169.254/x.tar&repo=x&tag=1", None),
        write("POST", "/v1.41/images/create?fromSrc=-&fromSrc=http://x/y.tar&repo=x", None),
        write("POST", "/v1.41/build?remote=https://github.com/x/y.git&t=x", None),
        write("POST", "/v1.41/build?remote=git@github.com:x/y.git", None),
        write("POST", "/v1.41/build?remote=http%3A%2F%2F127.0.0.1%3A2375%2F&t=x", None),
        write("POST", "/build?remote=github.com/x/y&version=2", None),
    ],
    "readonly_rootfs": [
        create(host_config={"ReadonlyRootfs": False}),
        service({"ReadOnly": False}),
    ],
}

ALLOW: dict[str, list[dict]] = {
    "privileged": [create(host_config={"Privileged": False}), exec_create({"Privileged": False})],
    "seccomp_unconfined": [
        create(host_config={"SecurityOpt": ["no-new-privileges", f"seccomp={STRICT_SECCOMP}"]}),
        create(host_config={"SecurityOpt": ["no-new-privileges", "seccomp=builtin"]}),
        service({"Privileges": {"Seccomp": {"Mode": "custom", "Profile": b64(STRICT_SECCOMP)}}}),
        service({"Privileges": {"Seccomp": {"Mode": "default"}}}),
    ],
    "no_new_privileges": [
        create(host_config={"SecurityOpt": ["no-new-privileges:true"]}),
        create(host_config={"SecurityOpt": ["no-new-privileges=false", "no-new-privileges=1"]}),
    ],
    "resource_limits": [
        create(host_config={"NanoCpus": 0, "CpuQuota": 50000, "CpuPeriod": 100000}),
        update({"Memory": 134217728, "MemorySwap": 268435456}),
        update({"RestartPolicy": {"Name": "always"}}),
        create(host_config={"OomScoreAdj": 500, "OomKillDisable": False, "CgroupParent": ""}),
        create(host_config={"MemorySwap": 0}),
        service(uri="/v1.44/services/create"),
        service(uri="/services/create"),
    ],
    "ports": [
        create(host_config={"PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}}),
        create(host_config={"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}}),
        create(host_config={"PortBindings": {"80/tcp": [{"HostPort": "8000-8010"}]}}),
        service(endpoint_spec={"Ports": [{"TargetPort": 80, "PublishedPort": 8080}]}),
        service(endpoint_spec={"Ports": [{"TargetPort": 80}]}),  # swarm picks from 30000-32767
    ],
    "root_user": [
        create({"User": "1000"}),
        create({"User": "nobody:nogroup"}),
        exec_create({"User": ""}),
        exec_create({"User": "1000"}),
        service({"User": "1000:1000"}),
    ],
    "sensitive_env": [
        create({"Env": ["DB_PASSWORD_FILE=/run/secrets/db", "PATH=/bin"]}),
        exec_create({"Env": ["A=1"]}),
    ],
    "host_namespaces": [
        create(host_config={"NetworkMode": "bridge", "PidMode": "", "IpcMode": "private"}),
        write("POST", "/v1.41/build?networkmode=default&t=x", None),
        create(host_config={"CgroupnsMode": "private"}, uri="/v1.40/containers/create"),
        create(uri="/containers/create"),  # no version: the daemon's own
        write("POST", "/v1.41/networks/create", {"Name": "n", "Driver": "bridge", "Labels": {}}),
        write("POST", "/v1.41/networks/create",
              {"Name": "n", "Options": {"com.docker.network.bridge.gateway_mode_ipv4": "nat"}}),
        write("POST", "/v1.41/networks/create", {"Name": "o", "Driver": "overlay", "Attachable": True}),
    ],
    "capabilities": [
        create(host_config={"CapAdd": ["NET_BIND_SERVICE"]}),
        create(host_config={"CapAdd": None}),
    ],
    "apparmor_unconfined": [
        create(host_config={"SecurityOpt": ["no-new-privileges", "apparmor=docker-default"]})
    ],
    "selinux_disabled": [
        create(host_config={"SecurityOpt": ["no-new-privileges", "label=level:s0:c100,c200"]})
    ],
    "unmasked_paths": [
        create(host_config={"MaskedPaths": None, "ReadonlyPaths": None}),
        create(host_config={"SecurityOpt": ["no-new-privileges", "writable-cgroups=false"]}),
    ],
    "sensitive_mounts": [
        create(host_config={"Binds": ["/srv/data:/data", "named:/named", "/etcetera:/x"]}),
        create(host_config={"Mounts": [{"Type": "volume", "Source": "data", "Target": "/data"}]}),
        volume({"type": "tmpfs", "device": "tmpfs", "o": "size=10m"}),
        volume({"type": "none", "o": "bind", "device": "/srv/shared"}),
        create(host_config={"Binds": ["/srv/data:/data:ro,rslave", "/srv/b:/b:z"]}),
        create(host_config={"Mounts": [{"Type": "bind", "Source": "/srv/x", "Target": "/x",
                                        "BindOptions": {"Propagation": "rprivate"}}]}),
    ],
    "devices": [create(host_config={"Devices": [], "DeviceCgroupRules": None, "DeviceRequests": []})],
    "plugin_changes": [read("/v1.41/plugins"), read("/v1.41/plugins/p/json")],
    "swarm_changes": [read("/v1.41/swarm"), read("/v1.41/nodes"), read("/v1.41/swarm/unlockkey")],
    "runtimes": [
        create(host_config={"Runtime": "runc"}),
        create(host_config={"Runtime": ""}),
        create(host_config={"Runtime": "io.containerd.runc.v2"}),
        create(host_config={"Annotations": {"org.opencontainers.image.title": "x", "com.example.a": ""}}),
    ],
    "log_drivers": [
        create(host_config={"LogConfig": {"Type": "json-file", "Config": {"max-size": "1m"}}}),
        create(host_config={"LogConfig": {"Type": "local"}}),
        create(host_config={"LogConfig": {"Type": "journald", "Config": {"tag": "x"}}}),
        create(host_config={"LogConfig": {"Type": "", "Config": {}}}),
        create(host_config={"LogConfig": {"Type": "none"}}),
        service(task_template={"LogDriver": {"Name": "json-file"}}),
    ],
    "remote_fetch": [
        write("POST", "/v1.41/images/create?fromSrc=-&repo=x&tag=1", None),
        write("POST", "/v1.41/images/create?fromImage=busybox&tag=latest", None),
        write("POST", "/v1.41/build?t=x&dockerfile=Dockerfile", None),
        write("POST", "/v1.41/build?remote=client-session&session=s1&version=2", None),
        write("POST", "/v1.41/build?remote=&t=x", None),
    ],
    "readonly_rootfs": [create(host_config={"ReadonlyRootfs": True})],
}

CASES = [(rule, i, req) for rule, reqs in DENY.items() for i, req in enumerate(reqs)]
GOOD = [(rule, i, req) for rule, reqs in ALLOW.items() for i, req in enumerate(reqs)]


def only(rule_id: str, dialect: str, value: bool = True, **params):
    var = RULES[rule_id][0]
    return compiled(dialect, profile="restricted", **{**ALL_OFF, var: value}, **params)


def test_every_rule_has_cases():
    assert set(DENY) == set(RULES) == set(ALLOW)


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(("rule", "index", "req"), CASES, ids=[f"{r}-{i}" for r, i, _ in CASES])
def test_rule_on_denies(rule, index, req, dialect):
    allow, deny = only(rule, dialect).decide(req)
    assert not allow
    assert any(reason.startswith(rule + ":") for reason in deny), deny
    assert all(reason.startswith(rule + ":") for reason in deny), f"other reasons too: {deny}"


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(("rule", "index", "req"), CASES, ids=[f"{r}-{i}" for r, i, _ in CASES])
def test_rule_off_allows(rule, index, req, dialect):
    allow, deny = only(rule, dialect, value=False).decide(req)
    assert allow, deny


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(("rule", "index", "req"), GOOD, ids=[f"{r}-{i}" for r, i, _ in GOOD])
def test_rule_on_allows_ordinary_requests(rule, index, req, dialect):
    """The restricted profile (every rule of it on, plus this one) allows them."""
    var = RULES[rule][0]
    allow, deny = compiled(dialect, profile="restricted", **{var: True}).decide(req)
    assert allow, deny


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("profile", ["baseline", "restricted"])
@pytest.mark.parametrize("rule", sorted(RULES))
def test_profile_defaults(rule, profile, dialect):
    on = RULES[rule][1] if profile == "baseline" else RULES[rule][2]
    req = DENY[rule][0]
    _allow, deny = compiled(dialect, profile=profile).decide(req)
    assert any(r.startswith(rule + ":") for r in deny) == on, deny


@pytest.mark.parametrize("dialect", DIALECTS)
def test_user_value_wins_over_profile(dialect):
    privileged = DENY["privileged"][0]
    assert compiled(dialect, profile="restricted").decide(privileged)[0] is False
    allow, reasons = compiled(dialect, profile="restricted", deny_privileged=False).decide(privileged)
    assert allow, reasons
    no_nnp = DENY["no_new_privileges"][0]
    assert compiled(dialect, profile="baseline").decide(no_nnp)[0] is True
    allow, deny = compiled(dialect, profile="baseline", require_no_new_privileges=True).decide(no_nnp)
    assert not allow and any(r.startswith("no_new_privileges:") for r in deny)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_baseline_allows_dockers_default_capabilities(dialect):
    net_raw = create(host_config={"CapAdd": ["NET_RAW", "cap_chown"]})
    assert compiled(dialect, profile="baseline").decide(net_raw)[0] is True
    allow, deny = compiled(dialect, profile="baseline").decide(create(host_config={"CapAdd": ["SYS_ADMIN"]}))
    assert not allow and deny == {"capabilities: adding capability SYS_ADMIN is not allowed"}


@pytest.mark.parametrize("dialect", DIALECTS)
def test_allowed_bind_sources(dialect):
    """docker_authz_allowed_bind_sources (empty = off): every host path a request binds must be
    under one of them; named volumes and tmpfs/nfs volumes bind no host path."""
    policy = only("sensitive_mounts", dialect, allowed_bind_sources=("/srv/data", "/home/"))
    inside = [
        create(host_config={"Binds": ["/srv/data/x:/x", "/home/u:/h:ro", "named:/n"]}),
        create(host_config={"Mounts": [{"Type": "bind", "Source": "/srv/data", "Target": "/x"}]}),
        volume({"type": "none", "o": "bind", "device": "srv/data/v"}),
        volume({"type": "tmpfs", "device": "tmpfs"}),
        volume({"type": "nfs", "o": "addr=192.0.2.1", "device": ":/export"}),
        service({"Mounts": [{"Type": "bind", "Source": "/srv/data/s", "Target": "/s"}]}),
    ]
    for req in inside:
        assert policy.decide(req)[0], req
    outside = [
        create(host_config={"Binds": ["/srv/other:/x"]}),
        create(host_config={"Binds": ["/srv/data/../other:/x"]}),
        create(host_config={"Binds": ["/srv/database:/x"]}),
        create(host_config={"Mounts": [{"Type": "bind", "Source": "/opt", "Target": "/x"}]}),
        volume({"type": "none", "o": "bind", "device": "/opt"}),
        volume({"type": "overlay", "device": "overlay", "o": "lowerdir=/srv/data/l,upperdir=/opt/u"}),
        service({"Mounts": [{"Type": "bind", "Source": "/opt", "Target": "/s"}]}),
    ]
    for req in outside:
        allow, deny = policy.decide(req)
        assert not allow and any("docker_authz_allowed_bind_sources" in r for r in deny), req
    # off by default: a path on neither list is allowed
    assert only("sensitive_mounts", dialect).decide(create(host_config={"Binds": ["/opt:/x"]}))[0]


def test_allowed_bind_sources_refuses_the_root():
    with pytest.raises(PolicyConfigError, match="/ would allow every host path"):
        build_policy_config({"docker_authz_allowed_bind_sources": ["/srv", "//"]})
    with pytest.raises(PolicyConfigError, match="not an absolute path"):
        build_policy_config({"docker_authz_allowed_bind_sources": ["srv"]})
    config = build_policy_config({"docker_authz_allowed_bind_sources": ["/srv/data/", "/srv//data"]})
    assert config["allowed_bind_sources"] == ["/srv/data"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_parameters(dialect):
    caps = only("capabilities", dialect, allowed_capabilities=("sys_ptrace",))
    assert caps.decide(create(host_config={"CapAdd": ["CAP_SYS_PTRACE"]}))[0] is True
    assert caps.decide(create(host_config={"CapAdd": ["ALL"]}))[0] is False
    ports = only("ports", dialect, allowed_host_ports=("80", "8000-8100"), allowed_host_ips=("127.0.0.1",))
    assert ports.decide(
        create(host_config={"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "80"}]}})
    )[0]
    allow, deny = ports.decide(
        create(host_config={"PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "80"}]}})
    )
    assert not allow and any("host IP 0.0.0.0" in r for r in deny)
    assert not ports.decide(create(host_config={"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1"}]}}))[
        0
    ]  # dynamic
    limits = only(
        "resource_limits",
        dialect,
        required_limits=("memory",),
        max_memory_bytes=100000000,
        max_nano_cpus=1000000000,
    )
    assert limits.decide(create(host_config={"NanoCpus": 0, "PidsLimit": 0}))[0] is True
    allow, deny = limits.decide(create(host_config={"Memory": 200000000}))
    assert not allow and deny == {
        "resource_limits: a memory limit of 200000000 bytes is above the ceiling of 100000000"
    }
    assert not limits.decide(create(host_config={"NanoCpus": 2000000000}))[0]
    assert not limits.decide(create(host_config={"NanoCpus": 0, "CpuQuota": 400000, "CpuPeriod": 100000}))[0]
    assert not limits.decide(update({"Memory": 999999999}))[0]
    env = only(
        "sensitive_env", dialect, sensitive_env_keywords=("hunter",), sensitive_env_allowed=("HUNTER_OK",)
    )
    assert env.decide(create({"Env": ["DB_PASSWORD=x", "HUNTER_OK=1"]}))[0] is True
    assert env.decide(create({"Env": ["hunter2=x"]}))[0] is False
    mounts = only("sensitive_mounts", dialect, sensitive_host_paths=("/srv/secret/",))
    assert mounts.decide(create(host_config={"Binds": ["/etc:/etc"]}))[0] is True
    assert mounts.decide(create(host_config={"Binds": ["/srv/secret/x:/x"]}))[0] is False


@pytest.mark.parametrize("dialect", DIALECTS)
def test_trusted_registries(dialect):
    policy = compiled(
        dialect, profile="baseline", trusted_registries=("127.0.0.1:5000", "ghcr.io/my-org", "docker.io")
    )
    allowed = [
        "127.0.0.1:5000/x/busybox:1",
        "busybox",
        "library/busybox:latest",
        "docker.io/library/busybox",
        "index.docker.io/library/busybox",
        "ghcr.io/my-org/app@sha256:" + "a" * 64,
        "ghcr.io/my-org/team/app:1",
    ]
    denied = [
        "quay.io/evil/busybox:latest",
        "ghcr.io/my-org-evil/app",
        "ghcr.io/other/app",
        "localhost:5000/x",
        "127.0.0.1:5001/x",
    ]
    for image in allowed:
        assert policy.decide(create({"Image": image}))[0] is True, image
    for image in denied:
        allow, deny = policy.decide(create({"Image": image}))
        assert not allow and any(r.startswith("trusted_registries:") for r in deny), image
    assert policy.decide(write("POST", "/v1.41/images/create?fromImage=quay.io%2Fevil%2Fx&tag=1"))[0] is False
    assert policy.decide(write("POST", "/v1.41/images/create?fromImage=busybox&tag=latest"))[0] is True
    assert policy.decide(service({"Image": "quay.io/evil/x:1"}))[0] is False
    hub_only_off = compiled(dialect, profile="baseline", trusted_registries=("127.0.0.1:5000",))
    assert hub_only_off.decide(create({"Image": "busybox"}))[0] is False
