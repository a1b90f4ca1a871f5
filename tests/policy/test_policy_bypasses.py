"""Every class of ../shared/reference/bypass-classes.md that a policy can stop, on crafted
requests, both dialects and both profiles; the ones no policy can stop are pinned down as
documented limits (docs/policy.md)."""

from __future__ import annotations

import json

import pytest

from tests.opa_docker_authz_double.opa_input import build_input
from tests.policy.harness import Policy, compiled, render
from tests.policy.requests import COMPLIANT_HOST_CONFIG, IMAGE, body_create, create, raw, service, write

DIALECTS = ("v1", "v0")
PROFILES = ("baseline", "restricted")
matrix = pytest.mark.parametrize(("dialect", "profile"), [(d, p) for d in DIALECTS for p in PROFILES])


def denied(policy, req, prefix: str | None = None) -> bool:
    allow, deny = policy.decide(req)
    if prefix is None:
        return not allow
    return not allow and any(r.startswith(prefix) for r in deny)


def compliant_body(**host_config) -> dict:
    return body_create(None, host_config)


# ---- key case ----------------------------------------------------------------------------
KEY_CASE = {
    "hostconfig-privileged": '{"Image": "%s", "User": "1000", "hostconfig": {"privileged": true}}',
    "PRIVILEGED": '{"Image": "%s", "User": "1000", "HostConfig": {"PRIVILEGED": true}}',
    "capadd": '{"Image": "%s", "User": "1000", "HostConfig": {"capadd": ["SYS_ADMIN"]}}',
    "binds": '{"Image": "%s", "User": "1000", "HostConfig": {"binds": ["/etc:/x"]}}',
    "mounts-type": '{"Image": "%s", "HostConfig": {"MOUNTS": [{"TYPE": "bind", "source": "/etc"}]}}',
    "networkmode": '{"Image": "%s", "User": "1000", "HostConfig": {"networkmode": "host"}}',
    "securityopt": '{"Image": "%s", "User": "1000", "HostConfig": {"securityopt": ["seccomp=unconfined"]}}',
    # Go's encoding/json folds U+017F (long s) to "s" and U+212A (Kelvin) to "k".
    "long-s": '{"Image": "%s", "User": "1000", "HostConfig": {"Bind\u017f": ["/etc:/x"]}}',
    "kelvin": '{"Image": "%s", "User": "1000", "HostConfig": {"Networ\u212amode": "host"}}',
    "toplevel-hostconfig-field": '{"Image": "%s", "User": "1000", "Privileged": true}',
}


@matrix
@pytest.mark.parametrize("name", sorted(KEY_CASE))
def test_key_case_at_every_depth(name, dialect, profile):
    req = raw("POST", "/v1.41/containers/create", KEY_CASE[name] % IMAGE)
    assert denied(compiled(dialect, profile=profile), req)


@matrix
def test_user_key_case_counts_for_restricted(dialect, profile):
    req = raw("POST", "/v1.41/containers/create", json.dumps({**compliant_body(), "User": None, "user": "0"}))
    assert denied(compiled(dialect, profile=profile), req, "root_user:") == (profile == "restricted")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_keys_differing_only_in_case_with_different_values_are_ambiguous(dialect):
    text = '{"Image": "%s", "HostConfig": {"Privileged": false}, "hostconfig": {"Privileged": true}}'
    allow, deny = compiled(dialect, profile="baseline").decide(
        raw("POST", "/containers/create", text % IMAGE)
    )
    assert not allow and any(r.startswith("body: keys that differ only in case") for r in deny), deny
    same = '{"Image": "%s", "Labels": {"a": "1", "A": "1"}, "HostConfig": {}}'
    assert compiled(dialect, profile="baseline").decide(raw("POST", "/containers/create", same % IMAGE))[0]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_duplicate_keys_are_a_documented_limit(dialect):
    """The daemon merges repeated objects; a JSON parser (the plugin's, Python's) keeps the last
    one. The policy sees only the last HostConfig: no policy can stop this (docs/policy.md)."""
    hc1, hc2 = '"HostConfig": {"Privileged": true}', '"HostConfig": {"Memory": 67108864}'
    text = f'{{"Image": "{IMAGE}", {hc1}, {hc2}}}'
    doc = build_input(raw("POST", "/v1.41/containers/create", text))
    assert doc["Body"]["HostConfig"] == {"Memory": 67108864}
    assert compiled(dialect, profile="baseline").evaluate(doc)[0] is True


# ---- path spelling -----------------------------------------------------------------------
PATHS = [
    "/containers/create",
    "/v1.41/containers/create?name=x",
    "/v1.41/containers%2Fcreate",
    "/v1.41/containers/%63reate",
    "/v1.24/containers/create",
]


@matrix
@pytest.mark.parametrize("uri", PATHS)
def test_path_spelling(uri, dialect, profile):
    req = raw("POST", uri, json.dumps(compliant_body(Privileged=True)))
    assert denied(compiled(dialect, profile=profile), req, "privileged:")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_old_plugin_input_without_path_plain_or_query(dialect):
    """opa-docker-authz before PathPlain/Query: the raw Path is decoded by the policy."""
    policy = compiled(dialect, profile="baseline")
    doc = build_input(
        raw("POST", "/v1.41/containers%2Fcreate?x=1", json.dumps(compliant_body(Privileged=True)))
    )
    for key in ("PathPlain", "PathArr", "Query", "BindMounts"):
        del doc[key]
    allow, deny = policy.evaluate(doc)
    assert not allow and "privileged: privileged containers are not allowed (--privileged)" in deny
    build = build_input(write("POST", "/v1.41/build?t=x&networkmode=host"))
    del build["Query"], build["PathPlain"]
    assert policy.evaluate(build)[0] is False
    ps = build_input(write("GET", "/v1.41/containers/json?all=1"))
    del ps["PathPlain"], ps["Query"]
    assert policy.evaluate(ps)[0] is True


@pytest.mark.parametrize("dialect", DIALECTS)
def test_input_built_differently_is_denied(dialect):
    policy = compiled(dialect, profile="baseline")
    allow, deny = policy.evaluate({"Path": "/v1.41/containers/create", "Body": {"HostConfig": {}}})
    assert not allow and any(r.startswith("input:") for r in deny)
    assert policy.evaluate({})[0] is False


@pytest.mark.parametrize("dialect", DIALECTS)
def test_unknown_writes_are_denied_and_reads_allowed(dialect):
    policy = compiled(dialect, profile="restricted")
    for method, uri in [
        ("POST", "/v1.41/containers/x/copy"),
        ("POST", "/v1.41/containers/x/checkpoints"),
        ("PATCH", "/v1.41/containers/x/update"),
        ("POST", "/v1.41/Containers/create"),
        ("POST", "/v1.41/"),
        ("OPTIONS", "/v1.41/info"),
    ]:
        allow, deny = policy.decide(write(method, uri))
        assert not allow and any(r.startswith("request:") for r in deny), (method, uri, deny)
    for uri in [
        "/_ping",
        "/v1.41/info",
        "/v1.41/containers/json?all=1",
        "/v1.41/events",
        "/v1.41/plugins",
        "/v1.41/images/127.0.0.1:5000/a/b:1/json",
        "/v1.41/containers/x/archive?path=/etc",
    ]:
        assert policy.decide(write("GET", uri))[0], uri
        assert policy.decide(write("HEAD", uri))[0], uri


# ---- invisible body ----------------------------------------------------------------------
INVISIBLE = {
    "charset": "application/json; charset=utf-8",
    "upper-case": "Application/JSON",
    "space": "application/json ",
}


@matrix
@pytest.mark.parametrize("name", sorted(INVISIBLE))
def test_invisible_body_on_body_endpoints(name, dialect, profile):
    policy = compiled(dialect, profile=profile)
    for uri in [
        "/v1.41/containers/create",
        "/v1.41/containers/x/exec",
        "/v1.41/containers/x/update",
        "/v1.41/services/create",
        "/v1.41/services/x/update",
        "/v1.41/volumes/create",
    ]:
        req = raw("POST", uri, json.dumps(compliant_body(Privileged=True)), content_type=INVISIBLE[name])
        assert build_input(req)["Body"] is None
        assert denied(policy, req, "body:"), uri


@pytest.mark.parametrize("dialect", DIALECTS)
def test_json_body_not_forwarded_on_any_write(dialect):
    """CVE-2024-41110 / CVE-2026-34040 shape: Content-Type says JSON, the plugin got no body."""
    policy = compiled(dialect, profile="baseline")
    start = raw("POST", "/v1.23/containers/x/start", None, content_type="application/json")
    assert denied(policy, start, "body:")
    login = raw("POST", "/v1.41/auth", None, content_type="application/json")  # never forwarded by design
    assert policy.decide(login)[0] is True


@pytest.mark.parametrize("dialect", DIALECTS)
def test_form_bodies_and_start_bodies(dialect):
    policy = compiled(dialect, profile="baseline")
    form = raw(
        "POST",
        "/v1.41/build?remote=http://127.0.0.1/x.tar",
        "networkmode=host",
        content_type="application/x-www-form-urlencoded",
    )
    assert denied(policy, form, "body:")
    legacy_start = raw("POST", "/v1.23/containers/x/start", '{"Privileged": true}')
    assert denied(policy, legacy_start, "request:")
    assert policy.decide(raw("POST", "/v1.41/containers/x/start", None, content_type=None))[0]


# ---- other endpoints, value spelling, host paths -----------------------------------------
@matrix
def test_other_endpoints(dialect, profile):
    policy = compiled(dialect, profile=profile)
    assert denied(policy, write("POST", "/v1.41/containers/x/exec", {"Cmd": ["sh"], "privileged": True}))
    assert denied(policy, write("POST", "/v1.41/build?networkmode=HOST"))
    assert denied(
        policy,
        write(
            "POST",
            "/v1.41/volumes/create",
            {
                "Driver": "local",
                "DriverOpts": {"type": "none", "o": "bind", "device": "/var/lib/docker/../../../etc"},
            },
        ),
    )
    assert denied(
        policy,
        write(
            "POST",
            "/v1.41/services/x/update?version=3",
            {"TaskTemplate": {"ContainerSpec": {"Image": IMAGE, "capabilityadd": ["CAP_SYS_ADMIN"]}}},
        ),
    )
    for plugin_write in ["/v1.41/plugins/authz:latest/disable", "/plugins/authz/set"]:
        assert denied(policy, write("POST", plugin_write), "plugin_changes:")
    if profile == "restricted":
        assert denied(
            policy, write("POST", "/v1.41/containers/x/update", {"PidsLimit": -1}), "resource_limits:"
        )


@matrix
def test_value_spelling(dialect, profile):
    policy = compiled(dialect, profile=profile)
    for opts in (["seccomp=unconfined"], ["seccomp:unconfined"], ["apparmor:unconfined"], ["label:disable"]):
        assert denied(policy, create(host_config={"SecurityOpt": ["no-new-privileges", *opts]})), opts
    for cap in ("CAP_SYS_ADMIN", "SYS_ADMIN", "sys_admin", "Cap_Sys_Admin", "ALL", "all"):
        assert denied(policy, create(host_config={"CapAdd": [cap]}), "capabilities:"), cap
    if profile == "restricted":
        for user in ("", "0", "0:0", "root", "root:root", "00", " 0"):
            assert denied(policy, create({"User": user}), "root_user:"), user


@matrix
def test_host_path_spelling(dialect, profile):
    policy = compiled(dialect, profile=profile)
    for source in (
        "/var/run/../run/docker.sock",
        "//etc",
        "/etc/",
        "/etc/.",
        "/./etc",
        "/tmp/../etc/passwd",
        "/../../etc",
        "/srv/a/b/../../../proc/1",
        "/run//docker.sock",
        "/",
    ):
        req = create(host_config={"Binds": [f"{source}:/x:ro"]})
        assert denied(policy, req, "sensitive_mounts:"), source
    for source in ("/srv/etc", "/tmp/docker.sock", "/home/u/..data", "/srv/a/../b"):
        assert policy.decide(create(host_config={"Binds": [f"{source}:/x"]}))[0], source


@matrix
def test_a_host_path_above_a_sensitive_one_is_denied(dialect, profile):
    # /run holds /run/containerd/containerd.sock, which is not behind the authorization plugin
    policy = compiled(dialect, profile=profile)
    for source in ("/run", "/var/run", "/var", "/var/lib", "/run/containerd/..", "/var//lib/"):
        req = create(host_config={"Binds": [f"{source}:/h"]})
        assert denied(policy, req, "sensitive_mounts:"), source
        mount = create(host_config={"Mounts": [{"Type": "bind", "Source": source, "Target": "/h"}]})
        assert denied(policy, mount, "sensitive_mounts:"), source
    for source in ("/srv", "/home/u", "/var/log/app", "/run/user/1000"):
        assert policy.decide(create(host_config={"Binds": [f"{source}:/h"]}))[0], source


@matrix
def test_local_volume_options_that_mount_host_paths(dialect, profile):
    """The local driver hands "device" to mount(2) as given (relative to dockerd's working
    directory, "/") and passes overlay's lowerdir/upperdir/workdir through."""
    policy = compiled(dialect, profile=profile)
    bad = [
        {"type": "none", "o": "bind", "device": "."},
        {"type": "none", "o": "bind", "device": "etc"},
        {"type": "none", "o": "bind", "device": "proc/.."},
        {"type": "none", "o": "bind", "device": "etc/docker/policies"},
        {"type": "ext4", "device": "dev/sda1"},
        {"type": "overlay", "device": "overlay", "o": "lowerdir=/,upperdir=/srv/u,workdir=/srv/w"},
        {"type": "overlay", "device": "overlay", "o": "lowerdir=/srv/l,upperdir=/etc,workdir=/srv/w"},
        {"type": "overlay", "device": "overlay", "o": "lowerdir=/srv/a:/usr,upperdir=/srv/u,workdir=/srv/w"},
        {"type": "overlay", "device": "overlay", "o": "LowerDir=/srv/a, upperdir=/var"},
    ]
    for opts in bad:
        req = write("POST", "/v1.41/volumes/create", {"Name": "v", "Driver": "local", "DriverOpts": opts})
        assert denied(policy, req, "sensitive_mounts:"), opts
        mount = {
            "Type": "volume", "Source": "v", "Target": "/v",
            "VolumeOptions": {"DriverConfig": {"Name": "local", "Options": opts}},
        }  # fmt: skip
        assert denied(policy, create(host_config={"Mounts": [mount]}), "sensitive_mounts:"), opts
    good = [
        {"type": "tmpfs", "device": "tmpfs", "o": "size=100m,uid=1000"},
        {"type": "none", "o": "bind", "device": "/srv/data"},
        {"type": "overlay", "device": "overlay", "o": "lowerdir=/srv/l,upperdir=/srv/u,workdir=/srv/w"},
    ]
    for opts in good:
        req = write("POST", "/v1.41/volumes/create", {"Name": "v", "Driver": "local", "DriverOpts": opts})
        assert policy.decide(req)[0], opts


@matrix
def test_default_sensitive_paths_include_host_control_sockets(dialect, profile):
    """Cron, D-Bus/systemd sockets, containerd's store and dockerd's own run directory are as
    dangerous as the paths first on the list; /home and /var/log stay allowed (ordinary use)."""
    policy = compiled(dialect, profile=profile)
    for source in (
        "/var/spool/cron", "/var/spool/cron/crontabs", "/var/spool", "/run/dbus/system_bus_socket",
        "/var/run/dbus/system_bus_socket", "/run/systemd/private", "/var/run/systemd", "/var/lib/containerd",
        "/var/lib/containerd/io.containerd.content.v1.content", "/run/docker/plugins",
        "/var/run/docker/netns",
    ):  # fmt: skip
        assert denied(policy, create(host_config={"Binds": [f"{source}:/h:ro"]}), "sensitive_mounts:"), source
        mount = create(host_config={"Mounts": [{"Type": "bind", "Source": source, "Target": "/h"}]})
        assert denied(policy, mount, "sensitive_mounts:"), source
    for source in ("/home/u/project", "/var/log/app", "/run/user/1000", "/srv/docker", "/var/spool/mail"):
        assert policy.decide(create(host_config={"Binds": [f"{source}:/h"]}))[0], source


KERNEL_FILESYSTEMS = (
    "proc", "sysfs", "debugfs", "tracefs", "securityfs", "cgroup", "cgroup2", "bpf", "configfs",
    "devtmpfs", "efivarfs", "binfmt_misc", "mqueue", "pstore", "Proc", "",
)  # fmt: skip


@matrix
def test_local_volume_kernel_filesystem_types(dialect, profile):
    """The local driver hands any type to mount(2) in the host's namespaces (the device of a
    pseudo filesystem is ignored): type=proc is the host's /proc. Only disk, network, tmpfs and
    overlay types are allowed, and any type with o=bind/rbind (the kernel ignores it then)."""
    policy = compiled(dialect, profile=profile)
    for kind in KERNEL_FILESYSTEMS:
        opts = {"type": kind, "device": "x"}
        req = write("POST", "/v1.41/volumes/create", {"Name": "v", "Driver": "local", "DriverOpts": opts})
        assert denied(policy, req, "sensitive_mounts:"), kind
        mount = {
            "Type": "volume", "Source": "v", "Target": "/v",
            "VolumeOptions": {"DriverConfig": {"Name": "local", "Options": opts}},
        }  # fmt: skip
        assert denied(policy, create(host_config={"Mounts": [mount]}), "sensitive_mounts:"), kind
        assert denied(policy, create(host_config={"mounts": [mount]}), "sensitive_mounts:"), kind
        assert denied(policy, service({"Mounts": [mount]}), "sensitive_mounts:"), kind
    good = [
        {"type": "tmpfs", "device": "tmpfs", "o": "size=100m"},
        {"type": "nfs", "o": "addr=192.0.2.1,rw", "device": ":/export"},
        {"type": "cifs", "o": "addr=192.0.2.1", "device": "//192.0.2.1/share"},
        {"type": "ext4", "device": "/srv/disk.img"},
        {"type": "proc", "o": "bind", "device": "/srv/data"},  # a bind: the type is ignored
        {"type": "sysfs", "o": "ro,rbind", "device": "/srv/data"},
        {},
    ]
    for opts in good:
        req = write("POST", "/v1.41/volumes/create", {"Name": "v", "Driver": "local", "DriverOpts": opts})
        assert policy.decide(req)[0], opts
    # "bind" is a flag only as a whole item of o (moby/sys/mount): "nobind" or "bind=1" is not
    opts = {"type": "proc", "o": "nobind,bind=1", "device": "x"}
    req = write("POST", "/v1.41/volumes/create", {"Name": "v", "Driver": "local", "DriverOpts": opts})
    assert denied(policy, req, "sensitive_mounts:")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_service_ports_without_published_port(dialect):
    """The CLI omits PublishedPort for `docker service create -p 80`: swarm picks 30000-32767,
    on every interface."""
    req = service(endpoint_spec={"Ports": [{"TargetPort": 80}]})
    assert compiled(dialect, profile="restricted").decide(req)[0]
    narrow = Policy(render(dialect, profile="restricted", allowed_host_ports=["8000-8999"]))
    assert denied(narrow, req, "ports:")
    loopback = Policy(render(dialect, profile="restricted", allowed_host_ips=["127.0.0.1"]))
    assert denied(loopback, req, "ports:")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_symlink_resolved_by_the_plugin(dialect, tmp_path):
    """BindMounts[].Resolved (the plugin's view of the filesystem) is checked too."""
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "link").symlink_to("/etc")
    (tmp_path / "etc").mkdir()
    req = create(host_config={"Binds": ["/srv/link:/x"]})
    doc = build_input(req, fs_root=str(tmp_path))
    assert doc["BindMounts"][0]["Resolved"] == "/etc"
    allow, deny = compiled(dialect, profile="baseline").evaluate(doc)
    assert not allow and "sensitive_mounts: host path /etc is or is under the sensitive path /etc" in deny


# ---- identity ----------------------------------------------------------------------------
@pytest.mark.parametrize("dialect", DIALECTS)
def test_identity_comes_from_tls_never_from_headers(dialect):
    policy = compiled(dialect, profile="baseline", exempt_users=("ops-admin",))
    privileged = json.dumps(body_create(None, {"Privileged": True}))
    spoofed = raw("POST", "/v1.41/containers/create", privileged, headers={"Authz-User": "ops-admin"})
    assert denied(policy, spoofed, "privileged:")
    tls = raw("POST", "/v1.41/containers/create", privileged, user="ops-admin")
    assert policy.decide(tls)[0] is True
    other = raw("POST", "/v1.41/containers/create", privileged, user="dev")
    assert denied(policy, other, "privileged:")


def test_compliant_fixture_is_compliant():
    assert COMPLIANT_HOST_CONFIG["ReadonlyRootfs"] is True
    for dialect in DIALECTS:
        assert compiled(dialect, profile="restricted", require_readonly_rootfs=True).decide(create())[0]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_key_case_inside_data_keyed_maps(dialect):
    policy = compiled(dialect, profile="restricted")
    bindings = {"portbindings": {"80/TCP": [{"hostip": "", "HOSTPORT": "80"}]}}
    req = raw("POST", "/v1.41/containers/create", json.dumps(compliant_body(**bindings)))
    assert denied(policy, req, "ports:")


# ---- the body's normalisation (lib.rego): the cheap proof of unambiguous keys, the folded
# top level and HostConfig, and the deep paths read only when a rule asks for them -------------
AMBIGUOUS = {
    # keys that fold alike with different values, at every depth and with both special folds
    "nested-in-mounts": {"Mounts": [{"Type": "bind", "type": "volume", "Source": "/srv", "Target": "/x"}]},
    "long-s": {"Binds": ["/srv/a:/a"], "Bind\u017f": ["/srv/b:/b"]},
    "kelvin": {"NetworkMode": "default", "Networ\u212aMode": "bridge"},
    "inside-log-config": {"LogConfig": {"Type": "json-file", "Config": {"max-size": "1m", "MAX-SIZE": "2m"}}},
    "object-values": {"LogConfig": {"Type": "json-file", "Config": {}}, "logconfig": {"Type": "json-file"}},
}


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("name", sorted(AMBIGUOUS))
def test_ambiguous_keys_are_found_at_every_depth(name, dialect):
    policy = compiled(dialect, profile="restricted")
    body = json.dumps(compliant_body(**AMBIGUOUS[name]))
    allow, deny = policy.decide(raw("POST", "/v1.41/containers/create", body))
    reasons = [r for r in deny if r.startswith("body: keys that differ only in case")]
    assert not allow and reasons, deny
    assert all('["hostconfig",' in r for r in reasons), reasons


@pytest.mark.parametrize("dialect", DIALECTS)
def test_keys_that_fold_alike_with_equal_values_are_read_once(dialect):
    """Equal values are not ambiguous: allowed, and the rules still read the value (the memory
    limit that restricted requires) through the folded HostConfig."""
    policy = compiled(dialect, profile="restricted")
    text = json.dumps(compliant_body())[:-2] + ', "memory": 67108864, "MEMORY": 67108864}}'
    allow, deny = policy.decide(raw("POST", "/v1.41/containers/create", text))
    assert allow, deny
    nolimit = json.dumps(compliant_body(Memory=0))[:-2] + ', "memory": 0}}'
    assert denied(policy, raw("POST", "/v1.41/containers/create", nolimit), "resource_limits:")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_special_folding_characters_in_values_are_not_keys(dialect):
    """U+017F and U+212A in values (not keys) change nothing: the body is unambiguous and allowed."""
    body = compliant_body()
    body["Labels"] = {"note": "\u212a and \u017f", "k": "\u212a"}
    body["Cmd"] = ["echo", "\u017f\u212a"]
    req = raw("POST", "/v1.41/containers/create", json.dumps(body))
    allow, deny = compiled(dialect, profile="restricted").decide(req)
    assert allow, deny


DEEP = {
    # paths three deep (body_fields) under folded names at the first two levels
    "mount-source-long-s": (
        {"Mounts": [{"Type": "bind", "\u017fource": "/etc", "Target": "/x"}]},
        "sensitive_mounts:",
    ),
    "log-config-type-upper": ({"LOGCONFIG": {"TYPE": "syslog", "Config": {}}}, "log_drivers:"),
    "port-binding-case": ({"PortBindings": {"80/tcp": [{"HOSTIP": "", "hostport": "80"}]}}, "ports:"),
    "propagation": (
        {"Mounts": [{"Type": "bind", "Source": "/srv", "BINDOPTIONS": {"propagation": "rshared"}}]},
        "sensitive_mounts:",
    ),
}


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("name", sorted(DEEP))
def test_deep_fields_are_read_under_folded_names(name, dialect):
    host_config, prefix = DEEP[name]
    policy = compiled(dialect, profile="restricted")
    nested = raw("POST", "/v1.41/containers/create", json.dumps(compliant_body(**host_config)))
    assert denied(policy, nested, prefix)
    # the same at the top level of the body, where the daemon also reads HostConfig fields
    top = {**body_create(), **host_config}
    del top["HostConfig"]
    limits = ("Memory", "NanoCpus", "PidsLimit", "SecurityOpt")
    top.update({key: COMPLIANT_HOST_CONFIG[key] for key in limits})
    assert denied(policy, raw("POST", "/v1.41/containers/create", json.dumps(top)), prefix)


# A deny rule reads a create's HostConfig fields at both places the daemon takes them from (the
# HostConfig object and the top level of the body: body_levels); the Mounts lists of a create
# and of a service once for every mount check (mount_bases).
BOTH_PLACES = {
    "Privileged": (True, "privileged:"),
    "PublishAllPorts": (True, "ports:"),
    "Memory": (-1, "resource_limits: containers must set a memory limit"),
    "MemorySwap": (-1, "resource_limits: containers must not have unlimited swap"),
    "OomKillDisable": (True, "resource_limits: OomKillDisable"),
    "OomScoreAdj": (-500, "resource_limits: a negative OomScoreAdj"),
    "CgroupParent": ("/elsewhere", "resource_limits: a custom CgroupParent"),
    "Runtime": ("runsc", "runtimes: runtime runsc"),
    "Annotations": ({"run.oci.hooks": "x"}, "runtimes: annotation run.oci.hooks"),
    "CapAdd": ("SYS_ADMIN", "capabilities:"),
    "Capabilities": (["CAP_SYS_ADMIN"], "capabilities:"),
    "SecurityOpt": (["no-new-privileges", "seccomp=unconfined"], "seccomp_unconfined:"),
    "LogConfig": ({"Type": "syslog", "Config": {}}, "log_drivers:"),
    "Binds": (["/etc:/x"], "sensitive_mounts: host path /etc"),
    "Mounts": ([{"Type": "bind", "Source": "/proc", "Target": "/x"}], "sensitive_mounts: host path /proc"),
    "Devices": ([{"PathOnHost": "/dev/mem"}], "devices: host devices (devices)"),
    "DeviceRequests": ([{"Driver": "nvidia", "Count": -1}], "devices: host devices (devicerequests)"),
    "MaskedPaths": ([], "unmasked_paths: a custom maskedpaths"),
    "ReadonlyPaths": ([], "unmasked_paths: a custom readonlypaths"),
    "PidMode": ("host", "host_namespaces: pidmode host"),
    "UsernsMode": ("HOST", "host_namespaces: usernsmode host"),
}


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("name", sorted(BOTH_PLACES))
def test_host_config_fields_are_read_at_both_places(name, dialect):
    value, prefix = BOTH_PLACES[name]
    policy = compiled(dialect, profile="restricted")
    assert denied(policy, create(None, {name: value}), prefix)
    # at the top level, beside a compliant HostConfig the daemon would take instead
    assert denied(policy, create({name: value}, None), prefix)
    # one place compliant and the other not is still denied (the memory limit: one place
    # positive, neither negative)
    if name == "Memory":
        assert denied(policy, create({"Memory": 64 << 20}, {"Memory": -1}), prefix)
        allow, deny = policy.decide(create({"Memory": 0}, None))
        assert allow, deny


SERVICE_MOUNTS = {
    "bind-sensitive": (
        {"Type": "bind", "Source": "/etc", "Target": "/x"},
        "sensitive_mounts: host path /etc",
    ),
    "shared-propagation": (
        {"Type": "bind", "Source": "/srv/data", "Target": "/x", "BindOptions": {"Propagation": "rshared"}},
        "sensitive_mounts: shared mount propagation (rshared)",
    ),
    "volume-device": (
        {"Type": "volume", "Source": "v", "Target": "/x",
         "VolumeOptions": {"DriverConfig": {"Options": {"type": "none", "o": "bind", "device": "/etc"}}}},
        "sensitive_mounts: host path /etc",
    ),
    "volume-kernel-type": (
        {"Type": "volume", "Source": "v", "Target": "/x",
         "VolumeOptions": {"DriverConfig": {"Options": {"type": "sysfs", "device": "sysfs"}}}},
        "sensitive_mounts: local volume type \"sysfs\"",
    ),
    "bind-outside-allowed": (
        {"Type": "bind", "Source": "/opt/x", "Target": "/x"},
        "sensitive_mounts: host path /opt/x is not under",
    ),
}  # fmt: skip


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("name", sorted(SERVICE_MOUNTS))
def test_service_and_create_mounts_are_read_alike(name, dialect):
    mount, prefix = SERVICE_MOUNTS[name]
    policy = compiled(dialect, profile="restricted", allowed_bind_sources=("/srv/data",))
    assert denied(policy, service({"Mounts": [mount]}), prefix)
    assert denied(policy, create(None, {"Mounts": [mount]}), prefix)
    assert denied(policy, create({"Mounts": [mount]}, None), prefix)
    # an empty list and a compliant mount beside it change nothing
    ok = {"Type": "bind", "Source": "/srv/data/app", "Target": "/data"}
    assert not denied(policy, service({"Mounts": [ok]}))
    assert denied(policy, service({"Mounts": [ok, mount]}), prefix)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_ambiguous_keys_are_found_when_lowercasing_changes_the_length_of_values(dialect):
    """The cheap proof that no keys fold alike compares the length of the folded body's JSON
    before and after merging keys. lower() makes some characters longer ("\u023a", two bytes in
    UTF-8, becomes U+2C65, three) and others shorter, so values full of them must not make up for
    the member that a merge removes: every padding from none to past its length is tried."""
    policy = compiled(dialect, profile="restricted")
    for pad in range(40):
        body = {"Labels": {"note": "\u023a" * pad}, **compliant_body(Privileged=False)}
        text = json.dumps(body, ensure_ascii=False)
        assert text.endswith('"Privileged": false}}')
        text = text[:-2] + ', "privileged": true}}'
        allow, deny = policy.decide(raw("POST", "/v1.41/containers/create", text))
        reasons = [r for r in deny if r.startswith("body: keys that differ only in case")]
        assert not allow and reasons == ['body: keys that differ only in case carry different values at '
                                         '["hostconfig","privileged"] (the daemon merges them); the request '
                                         'is ambiguous'], (pad, deny)
    # and such values alone are not ambiguous
    body = compliant_body()
    body["Labels"] = {"note": "\u023a" * 7, "Other": "\u0130stanbul \u2126"}
    assert policy.decide(raw("POST", "/v1.41/containers/create", json.dumps(body, ensure_ascii=False)))[0]
