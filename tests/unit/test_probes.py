"""Pure logic of module_utils/probes.py: the probe table built from the rules, the
classification of answers, the CVE version logic, and the verdict and its failure message.

The verify() tests talk HTTP over a real unix socket to a fake engine (tests/unit/fake_engine.py);
enforcement by a real daemon and plugin is tested in tests/integration/test_authz_verify_module.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ansible_collections.hardening.docker_authz.plugins.module_utils import probes as P
from ansible_collections.hardening.docker_authz.plugins.module_utils.docker_api import (
    DockerClient,
    DockerUnavailable,
)
from tests.lib.ansible_run import run_playbook
from tests.unit import fake_engine

ALIAS = "opa-docker-authz"


def names(probes: list[P.Probe]) -> set[str]:
    return {p.name for p in probes}


def by_name(probes: list[P.Probe]) -> dict[str, P.Probe]:
    return {p.name: p for p in probes}


# ---------------------------------------------------------------------------------- rules
def test_profiles_set_the_catalog_defaults() -> None:
    base = P.normalize_rules({}, "baseline")
    restricted = P.normalize_rules({}, "restricted")
    assert base.enabled == [
        "deny_privileged", "deny_seccomp_unconfined", "deny_host_namespaces", "deny_added_capabilities",
        "deny_apparmor_unconfined", "deny_selinux_disabled", "deny_unmasked_paths", "deny_sensitive_mounts",
        "deny_devices", "deny_plugin_changes", "deny_swarm_changes", "restrict_runtimes",
    ]  # fmt: skip
    assert set(restricted.enabled) - set(base.enabled) == {
        "require_no_new_privileges", "require_resource_limits", "restrict_ports", "deny_root_user",
        "deny_sensitive_env", "restrict_log_drivers", "deny_remote_fetch",
    }  # fmt: skip
    assert not restricted.on("require_readonly_rootfs")
    assert "SYS_CHROOT" in base.params["allowed_capabilities"]
    assert restricted.params["allowed_capabilities"] == ["NET_BIND_SERVICE"]


def test_rules_accept_role_names_and_override_the_profile() -> None:
    s = P.normalize_rules(
        {"docker_authz_deny_privileged": False, "require_readonly_rootfs": "yes", "profile": "restricted",
         "docker_authz_required_limits": ["memory"], "max_memory_bytes": "1073741824"}
    )  # fmt: skip
    assert s.profile == "restricted"
    assert not s.on("deny_privileged")
    assert s.on("require_readonly_rootfs") and s.on("deny_root_user")
    assert s.params["required_limits"] == ["memory"]
    assert s.params["max_memory_bytes"] == 1073741824
    unset = P.normalize_rules(
        {"docker_authz_deny_root_user": None, "allowed_capabilities": None}, "restricted"
    )
    assert unset.on("deny_root_user") and unset.params["allowed_capabilities"] == ["NET_BIND_SERVICE"]


@pytest.mark.parametrize(
    ("rules", "needle"),
    [
        ({"deny_privilege": True}, "unknown name(s) deny_privilege; known rules: deny_privileged"),
        ({"deny_privileged": "sometimes"}, "rules.deny_privileged must be a boolean"),
        ({"deny_privileged": True, "docker_authz_deny_privileged": True}, "given twice"),
        ({"allowed_host_ports": ["80-70"]}, "'80-70' is not a port or range"),
        ({"allowed_host_ports": ["http"]}, "'http' is not a port or range"),
        ({"required_limits": ["memory", "disk"]}, "unknown limit(s) disk"),
        ({"max_memory_bytes": -1}, "must be a whole number >= 0"),
        ({"trusted_registries": {"a": 1}}, "rules.trusted_registries must be a list"),
        ({"profile": "paranoid"}, "profile must be one of baseline, restricted"),
    ],
)
def test_bad_rules_are_refused_with_the_fix(rules: dict, needle: str) -> None:
    with pytest.raises(P.VerifyInputError) as exc:
        P.normalize_rules(rules)
    assert needle in str(exc.value)


# ------------------------------------------------------------------------------ the table
def test_compliant_create_satisfies_every_enabled_rule() -> None:
    s = P.normalize_rules(
        {"profile": "restricted", "require_readonly_rootfs": True, "max_memory_bytes": 64 * 1024 * 1024,
         "max_nano_cpus": 250_000_000, "trusted_registries": ["registry.example.com/team"]}
    )  # fmt: skip
    body = P.compliant_body(s)
    assert body["Image"] == "registry.example.com/team/hardening-verify/nonexistent:probe"
    assert body["User"] == "1000:1000"
    host = body["HostConfig"]
    assert host == {
        "Memory": 64 * 1024 * 1024,
        "NanoCpus": 250_000_000,
        "PidsLimit": 256,
        "SecurityOpt": ["no-new-privileges"],
        "ReadonlyRootfs": True,
    }
    baseline = P.compliant_body(P.normalize_rules({}))
    assert baseline == {"Image": P.PROBE_IMAGE, "Cmd": ["true"], "HostConfig": {}}


@pytest.mark.parametrize("profile", ["baseline", "restricted"])
def test_every_enabled_rule_has_a_denial_probe_and_no_other_rule_has(profile: str) -> None:
    s = P.normalize_rules({"trusted_registries": ["docker.io"]}, profile)
    table = P.build_probes(s)
    assert len(names(table)) == len(table), "probe names are unique"
    rules_probed = {p.rule for p in table if p.expect == P.DENY and p.bypass is None}
    assert rules_probed == set(s.enabled)
    assert [p.name for p in table if p.expect == P.ALLOW] == ["compliant-create", "compliant-list"]


def test_denial_probes_change_one_thing_of_the_compliant_create() -> None:
    s = P.normalize_rules({}, "restricted")
    base = P.compliant_body(s)
    t = by_name(P.build_probes(s))
    assert t["privileged"].body == {**base, "HostConfig": {**base["HostConfig"], "Privileged": True}}
    assert t["cap-add"].body["HostConfig"]["CapAdd"] == ["SYS_ADMIN"]
    assert t["cap-add-lower"].body["HostConfig"]["CapAdd"] == ["sys_admin"]
    no_pids = dict(base["HostConfig"])
    del no_pids["PidsLimit"]
    assert t["limits-no-pids"].body["HostConfig"] == no_pids
    assert "User" not in t["root-user-default"].body and t["root-user-0-0"].body["User"] == "0:0"
    assert t["seccomp-unconfined-colon"].body["HostConfig"]["SecurityOpt"] == [
        "no-new-privileges",
        "seccomp:unconfined",
    ]
    assert t["no-new-privileges-missing"].body["HostConfig"].get("SecurityOpt") is None
    # key case: only the violating key changes spelling, the rest stays canonical
    lower = t["privileged-key-lower"].body["HostConfig"]
    assert (
        lower["privileged"] is True
        and "Privileged" not in lower
        and lower["Memory"] == base["HostConfig"]["Memory"]
    )
    assert t["privileged-key-hostconfig"].body["hostconfig"]["privileged"] is True
    assert "HostConfig" not in t["privileged-key-hostconfig"].body


def test_probes_name_things_that_do_not_exist() -> None:
    s = P.normalize_rules({"trusted_registries": ["registry.example.com"]}, "restricted")
    for p in P.build_probes(s):
        if isinstance(p.body, dict) and "Image" in p.body:
            assert "hardening-verify/nonexistent:probe" in p.body["Image"], p.name
        if p.path.startswith("/containers/") and p.path != "/containers/create" and p.method == "POST":
            assert P.PROBE_CONTAINER in p.path, p.name
        if p.path.startswith("/plugins"):
            assert ALIAS not in p.request_target("1.41"), "never touch the real plugin"
            assert P.PROBE_PLUGIN in p.request_target("1.41"), p.name
        if p.path == "/services/create":
            assert p.body["Mode"] == {"Replicated": {"Replicas": 0}}, p.name
    pull = by_name(P.build_probes(s))["untrusted-image-pull"]
    assert pull.request_target("1.41") == (
        "/v1.41/images/create?fromImage=127.0.0.1:1/hardening-verify/nonexistent&tag=probe"
    )


def test_bypass_probes_and_their_spellings() -> None:
    s = P.normalize_rules({})
    t = by_name(P.build_probes(s))
    assert t["path-unversioned"].request_target("1.41") == "/containers/create"
    assert t["path-percent-encoded"].request_target("1.44") == "/v1.44/containers%2Fcreate"
    assert (
        t["path-query-string"].request_target("1.41")
        == "/v1.41/containers/create?name=hardening-verify-probe"
    )
    assert t["path-unversioned"].body["HostConfig"]["Privileged"] is True
    assert t["body-invisible-charset"].content_type == "application/json; charset=utf-8"
    assert t["body-invisible-charset"].body == P.compliant_body(s)
    assert t["host-network-build"].request_target("1.41") == "/v1.41/build?networkmode=host"
    assert t["mount-docker-sock-spelling"].body["HostConfig"]["Binds"] == [
        "/var/run/../run/docker.sock:/var/run/docker.sock"
    ]
    spellings = [t[f"mount-bind-spelling-{i}"].body["HostConfig"]["Binds"][0] for i in range(1, 6)]
    assert spellings == [
        "/etc/:/probe", "//etc:/probe", "/etc/.:/probe", "/etc/../etc:/probe", "/etc/hardening-probe:/probe",
    ]  # fmt: skip
    assert all(P.clean_path(x.split(":")[0]).startswith("/etc") for x in spellings)
    assert t["mount-volume-bind"].body["DriverOpts"] == {"type": "none", "o": "bind", "device": "/etc"}
    assert t["body-chunked"].chunked and t["body-chunked"].body["HostConfig"]["Privileged"] is True
    assert len(t["body-over-1mib"].body_bytes()) > 1 << 20
    assert t["body-over-1mib"].body["HostConfig"]["Privileged"] is True
    classes = {p.bypass for p in t.values()} - {None}
    assert classes == {
        "key case", "path spelling", "invisible body", "value spelling", "host path spelling",
        "other endpoints", "engine bugs",
    }  # fmt: skip
    plain = P.build_probes(s, probe_bypasses=False)
    assert all(p.bypass is None for p in plain)
    assert {"privileged", "plugin-disable", "mount-bind"} <= names(plain)


def test_bind_source_allow_list_probe_only_when_the_list_is_set() -> None:
    assert "mount-bind-outside-allowed" not in names(P.build_probes(P.normalize_rules({})))
    table = {p.name: p for p in P.build_probes(P.normalize_rules({"allowed_bind_sources": ["/srv/data"]}))}
    binds = table["mount-bind-outside-allowed"].body["HostConfig"]["Binds"]
    assert binds == ["/srv/hardening-verify-probe-outside:/probe"]
    # no probe when the list allows the probe's path (it would be allowed, not denied)
    wide = P.build_probes(P.normalize_rules({"allowed_bind_sources": ["/srv"]}))
    assert "mount-bind-outside-allowed" not in names(wide)
    new = ("mount-volume-proc", "mount-propagation-shared", "mount-propagation-mounts", "mount-bind-dbus")
    for name in new:
        assert name in table, name


def test_plugin_probes_only_when_plugin_changes_are_denied() -> None:
    on = names(P.build_probes(P.normalize_rules({})))
    off = names(P.build_probes(P.normalize_rules({"deny_plugin_changes": False})))
    plugin_probes = {
        "plugin-disable",
        "plugin-enable",
        "plugin-remove",
        "plugin-set",
        "plugin-pull",
        "plugin-upgrade",
    }
    assert plugin_probes <= on
    assert not plugin_probes & off


def test_parameters_steer_the_probes() -> None:
    t = by_name(P.build_probes(P.normalize_rules({"allowed_capabilities": ["SYS_ADMIN", "cap_sys_ptrace"]})))
    assert t["cap-add"].body["HostConfig"]["CapAdd"] == ["SYS_MODULE"]
    every = ["SYS_ADMIN", "SYS_PTRACE", "SYS_MODULE", "NET_ADMIN", "SYS_RAWIO", "DAC_READ_SEARCH", "BPF"]
    t = by_name(P.build_probes(P.normalize_rules({"allowed_capabilities": every})))
    assert t["cap-add"].body["HostConfig"]["CapAdd"] == ["ALL"] and "cap-add-lower" not in t

    t = by_name(
        P.build_probes(
            P.normalize_rules({"restrict_ports": True, "allowed_host_ports": ["1-79", "81-65535"]})
        )
    )
    assert t["ports-outside-range"].body["HostConfig"]["PortBindings"] == {
        "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "80"}]
    }
    assert "ports-host-ip" not in t and "ports-publish-all" in t
    t = by_name(
        P.build_probes(
            P.normalize_rules(
                {
                    "restrict_ports": True,
                    "allowed_host_ports": ["1-65535"],
                    "allowed_host_ips": ["10.0.0.0/8"],
                }
            )
        )
    )
    assert "ports-outside-range" not in t
    assert t["ports-host-ip"].body["HostConfig"]["PortBindings"]["80/tcp"] == [
        {"HostIp": "", "HostPort": "1"}
    ]

    t = by_name(
        P.build_probes(
            P.normalize_rules({"deny_sensitive_env": True, "sensitive_env_allowed": ["*_PASSWORD"]})
        )
    )
    assert t["sensitive-env"].body["Env"] == ["HARDENING_PROBE_PASSWD=probe"]

    t = by_name(
        P.build_probes(P.normalize_rules({"sensitive_host_paths": ["/srv/secrets/", "/run/docker.sock"]}))
    )
    assert t["mount-bind"].body["HostConfig"]["Binds"] == ["/srv/secrets:/probe"]
    assert "mount-docker-sock-spelling" not in t

    t = by_name(
        P.build_probes(P.normalize_rules({"require_resource_limits": True, "max_memory_bytes": 1000}))
    )
    assert t["limits-memory-over-ceiling"].body["HostConfig"]["Memory"] == 1001
    assert t["compliant-create"].body["HostConfig"]["Memory"] == 1000


def test_trusted_registry_probes_pick_an_untrusted_registry() -> None:
    s = P.normalize_rules({"trusted_registries": ["127.0.0.1:1"]})
    t = by_name(P.build_probes(s))
    assert t["untrusted-image"].body["Image"] == "untrusted.invalid/hardening-verify/nonexistent:probe"
    assert "untrusted-image-pull" not in t, "no pull unless it goes to the dead loopback port"
    assert t["compliant-create"].body["Image"] == "127.0.0.1:1/hardening-verify/nonexistent:probe"
    assert P.image_registry("busybox") == "docker.io"
    assert P.image_registry("localhost/x") == "localhost"
    assert P.image_registry("ghcr.io/a/b:1") == "ghcr.io"


# ------------------------------------------------------------------------ classification
@pytest.mark.parametrize(
    ("status", "message", "outcome", "plugin"),
    [
        (403, "authorization denied by plugin opa-docker-authz: request rejected by administrative policy",
         "denied", "opa-docker-authz"),
        (403, "authorization denied by plugin opa-docker-authz:latest: request rejected by policy",
         "denied", "opa-docker-authz:latest"),
        (403, "authorization denied by plugin other-authz: no", "denied", "other-authz"),
        (500, "plugin opa-docker-authz failed with error: AuthZPlugin.AuthZReq: rego_parse_error",
         "plugin-error",
         "opa-docker-authz"),
        (404, "No such image: hardening-verify/nonexistent:probe", "authorized", None),
        (403, "forbidden for another reason", "authorized", None),
        (400, "Content-Type specified () must be 'application/json'", "authorized", None),
        (201, "", "authorized", None),
        (None, "cannot connect to the Docker daemon", "error", None),
        # an engine with the CVE-2026-34040 fix refuses a body over its plugin limit itself
        (500, "request body too large for authorization plugin: size exceeds 4194304 bytes",
         "engine-refused", None),
    ],
)  # fmt: skip
def test_classify(status: int | None, message: str, outcome: str, plugin: str | None) -> None:
    got = P.classify(status, message)
    assert (got.outcome, got.plugin) == (outcome, plugin)
    if outcome == "denied":
        assert got.message in (
            "request rejected by administrative policy",
            "request rejected by policy",
            "no",
        )


# ------------------------------------------------------------------------------------ CVEs
@pytest.mark.parametrize(
    ("version", "cve_41110", "cve_34040"),
    [
        ("20.10.24+dfsg1", True, True),
        ("19.03.15", True, True),
        ("23.0.14", True, True),
        ("23.0.15", False, True),
        ("24.0.9", True, True),
        ("25.0.5", True, True),
        ("25.0.6", False, True),
        ("25.0.16", False, False),
        ("26.0.2", True, True),
        ("26.1.4", True, True),
        ("26.1.5", False, True),
        ("27.0.3", True, True),
        ("27.1.1", False, True),
        ("28.2.2", False, True),
        ("29.3.0", False, True),
        ("29.3.1", False, False),
        ("29.4.0", False, False),
        ("30.0.0", False, False),
        ("17.03.2-ce", True, True),
        # a pre-release of a fixed version is not that version yet
        ("29.3.1-rc.1", False, True),
        ("29.3.2-rc.1", False, False),
        ("27.1.1-beta.2", True, True),
        ("v29.3.1", False, False),
    ],
)
def test_cve_versions_per_release_branch(version: str, cve_41110: bool, cve_34040: bool) -> None:
    found = {c["id"]: c["vulnerable"] for c in P.cve_findings(version)}
    assert found == {"CVE-2024-41110": cve_41110, "CVE-2026-34040": cve_34040}


@pytest.mark.parametrize(
    ("version", "targets"),
    [
        ("20.10.24+dfsg1", {"CVE-2024-41110": "27.1.1", "CVE-2026-34040": "29.3.1"}),
        ("25.0.10", {"CVE-2026-34040": "25.0.16"}),
        ("26.1.4", {"CVE-2024-41110": "26.1.5", "CVE-2026-34040": "29.3.1"}),
        ("28.5.2", {"CVE-2026-34040": "29.3.1"}),
    ],
)
def test_cve_message_names_the_release_to_upgrade_to(version: str, targets: dict[str, str]) -> None:
    found = {c["id"]: c["message"] for c in P.cve_findings(version) if c["vulnerable"]}
    assert set(found) == set(targets)
    for cve, target in targets.items():
        assert f"upgrade the engine to {target} or later" in found[cve], found[cve]


# The version strings the engine matrix's Debian packages report (docs/engines.md), read as the
# upstream release they package.
@pytest.mark.parametrize(
    ("version", "parsed", "cve_41110", "cve_34040"),
    [
        ("20.10.5+dfsg1", (20, 10, 5), True, True),  # Debian 11 docker.io 20.10.5+dfsg1-1+deb11u2
        ("20.10.24+dfsg1", (20, 10, 24), True, True),  # Debian 12 docker.io 20.10.24+dfsg1-1+deb12u1+b6
        ("26.1.5+dfsg1", (26, 1, 5), False, True),  # Debian 13 docker.io 26.1.5+dfsg1-9+deb13u1+b1
    ],
)
def test_debian_version_strings(version: str, parsed: tuple, cve_41110: bool, cve_34040: bool) -> None:
    assert P.parse_engine_version(version) == parsed and not P.is_prerelease(version)
    found = {c["id"]: c["vulnerable"] for c in P.cve_findings(version)}
    assert found == {"CVE-2024-41110": cve_41110, "CVE-2026-34040": cve_34040}


def test_a_fix_seen_on_the_engine_wins_over_the_version() -> None:
    seen = {"CVE-2026-34040": "it refused the body-over-1mib probe itself"}
    found = {c["id"]: c for c in P.cve_findings("26.1.5+dfsg1", seen)}
    assert found["CVE-2026-34040"]["vulnerable"] is False
    assert "has the fix for CVE-2026-34040: it refused" in found["CVE-2026-34040"]["message"]
    assert found["CVE-2024-41110"]["vulnerable"] is False  # by version (26.1.5)


def test_backported_body_limit_passes_the_probe_and_clears_the_cve(engine_factory) -> None:
    """Debian 13's 26.1.5+dfsg1 refuses bodies over 4 MiB before the plugin (the CVE-2026-34040
    fix, backported): the probe's body is over that limit, so it never reaches the plugin."""
    s = P.normalize_rules({})
    eng = engine_factory(
        compliant_only(s), plugins=[PLUGIN_OK], version="26.1.5+dfsg1", api_version="1.45",
        plugin_body_limit=4 << 20,
    )  # fmt: skip
    result = run_verify(eng, s)
    probe = next(p for p in result["probes"] if p["name"] == "body-over-1mib")
    assert probe["outcome"] == "engine-refused" and probe["passed"] and probe["status"] == 500
    assert result["counts"]["failed"] == 0, result.get("msg")
    assert [f["id"] for f in result["findings"] if f["kind"] == "cve"] == []
    assert not any("CVE-2026-34040" in w for w in result["warnings"])
    # the probe's body is over the fixed engines' 4 MiB as well as the old 1 MiB
    big = [r for r in eng.requests if len(r.body) > 1 << 20]
    assert len(big) == 1 and len(big[0].body) > 4 << 20


def test_unreadable_version_is_reported_not_guessed() -> None:
    assert P.parse_engine_version("dev") is None
    assert all(c["vulnerable"] is None and "by hand" in c["message"] for c in P.cve_findings("dev"))


# ------------------------------------------------------------------- verify() on a socket
def compliant_only(settings: P.Settings) -> fake_engine.Authz:
    """A plugin that lets through reads and exactly the compliant create, as JSON."""
    want = P.compliant_body(settings)

    def authz(req: fake_engine.Request) -> str | None:
        if req.method == "GET":
            return None
        plain = req.path.replace("%2F", "/")
        if (
            plain.endswith("/containers/create")
            and req.headers.get("Content-Type") == "application/json"
            and req.json() == want
        ):
            return None
        if req.method == "DELETE" and plain.startswith("/v1.41/containers/"):
            return None
        return "deny"

    return authz


PLUGIN_OK = {
    "Name": "opa-docker-authz:latest",
    "Enabled": True,
    "PluginReference": "127.0.0.1:5000/opa-docker-authz-double:v0.10-linux-amd64",
    "Config": {"WorkDir": "/opa"},
    "Settings": {
        "Args": ["-policy-file", "/opa/policies/authz.rego", "-quiet"],
        "Mounts": [{"Source": "/tmp/SOURCE", "Destination": "/opa"}],
    },
}


@pytest.fixture
def engine_factory() -> Iterator:
    started: list[fake_engine.FakeEngine] = []

    def make(authz: fake_engine.Authz, **kw) -> fake_engine.FakeEngine:
        eng = fake_engine.start(authz, **kw)
        started.append(eng)
        return eng

    yield make
    for eng in started:
        fake_engine.stop(eng)


def plugin_with_source(source: Path) -> dict:
    doc = json.loads(json.dumps(PLUGIN_OK))
    doc["Settings"]["Mounts"][0]["Source"] = str(source)
    return doc


def run_verify(eng: fake_engine.FakeEngine, settings: P.Settings, **kw) -> dict:
    return P.verify(DockerClient(eng.socket_path, timeout=5), settings, alias=ALIAS, **kw)


def _earlier_plugin_denies_privileged(settings: P.Settings, holder: dict) -> fake_engine.Authz:
    """A chain where another plugin, asked first, denies every privileged request: the
    alias's policy never sees them."""
    base = compliant_only(settings)

    def authz(req: fake_engine.Request) -> str | None:
        verdict = base(req)
        body = req.json() if req.headers.get("Content-Type") == "application/json" else None
        privileged = isinstance(body, dict) and (
            body.get("Privileged") is True or (body.get("HostConfig") or {}).get("Privileged") is True
        )
        holder["engine"].alias = "legacy-authz" if verdict and privileged else ALIAS
        return verdict

    return authz


@pytest.mark.parametrize("accept", [False, True])
def test_a_denial_by_another_plugin_does_not_prove_the_alias(engine_factory, tmp_path: Path, accept) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "authz.rego").write_text("package docker.authz\n")
    s = P.normalize_rules({}, "baseline")
    holder: dict = {}
    eng = engine_factory(_earlier_plugin_denies_privileged(s, holder), plugins=[plugin_with_source(tmp_path)])
    holder["engine"] = eng
    result = run_verify(eng, s, accept_other_plugins=accept)
    privileged = next(p for p in result["probes"] if p["name"] == "privileged")
    assert privileged["outcome"] == "denied" and privileged["plugin"] == "legacy-authz"
    assert "denied by plugin legacy-authz, before opa-docker-authz was asked" in privileged["message"]
    assert privileged["passed"] is accept
    if accept:
        assert "failed_verification" not in result, result["msg"]
        assert any("(accepted: accept_other_plugins)" in w for w in result["warnings"])
    else:
        assert result["failed_verification"] is True
        assert "put opa-docker-authz before legacy-authz in authorization-plugins" in result["msg"]
        assert result["enforced"] is True  # the alias denies the rest: live, but not proven


@pytest.mark.parametrize("profile", ["baseline", "restricted"])
def test_enforcing_plugin_passes_every_probe(engine_factory, tmp_path: Path, profile: str) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "authz.rego").write_text("package docker.authz\n")
    s = P.normalize_rules({}, profile)
    eng = engine_factory(compliant_only(s), plugins=[plugin_with_source(tmp_path)])
    result = run_verify(eng, s)
    assert result["counts"]["failed"] == 0, result["msg"]
    assert "failed_verification" not in result
    assert result["enforced"] is True and result["changed"] is False
    assert result["counts"]["total"] == len(P.build_probes(s)) == len(result["probes"])
    assert result["plugin"]["policy_file"] == str(tmp_path / "policies" / "authz.rego")
    assert result["plugin"]["policy_file_exists"] is True
    privileged = next(p for p in result["probes"] if p["name"] == "privileged")
    assert privileged == {
        **privileged,
        "status": 403,
        "outcome": "denied",
        "plugin": ALIAS,
        "passed": True,
        "request": "POST /v1.41/containers/create",
        "message": "request rejected by administrative policy",
    }
    compliant = next(p for p in result["probes"] if p["name"] == "compliant-create")
    assert (compliant["status"], compliant["outcome"]) == (404, "authorized")
    # The engine is 20.10: both CVEs are reported, nothing about fail-open.
    assert [f["id"] for f in result["findings"]] == ["CVE-2024-41110", "CVE-2026-34040"]
    assert not [w for w in result["warnings"] if "fail" in w]
    assert result["table"][0].split()[:5] == ["result", "probe", "rule", "expected", "outcome"]
    assert len(result["table"]) == len(result["probes"]) + 1
    # What was sent: the probes, the facts, nothing else.
    sent = [r for r in eng.requests if r.method not in ("GET", "HEAD")]
    assert len(sent) == result["counts"]["total"] - 1  # all probes but the GET list
    assert not [r for r in eng.requests if ALIAS in r.target]


def test_unhooked_plugin_fails_with_a_table_and_fail_open_warning(engine_factory, tmp_path: Path) -> None:
    s = P.normalize_rules({})
    eng = engine_factory(lambda req: None, plugins=[plugin_with_source(tmp_path)])  # policy file missing
    result = run_verify(eng, s)
    assert result["failed_verification"] is True
    assert result["enforced"] is False
    assert result["counts"]["failed"] == result["counts"]["total"] - 2
    msg = result["msg"]
    assert f"plugin {ALIAS} denied no request" in msg
    assert "FAILED  privileged " in msg and "expected deny, got authorized" in msg
    assert "404 No such image" in msg
    assert "compliant-create" not in msg, "only failed probes are listed"
    kinds = [f["kind"] for f in result["findings"]]
    assert kinds.count("fail-open") == 2  # policy file missing + privileged authorized while enabled
    assert any("policy file" in w and "is missing" in w for w in result["warnings"])


def test_policy_that_allows_privileged_is_caught(engine_factory) -> None:
    s = P.normalize_rules({})
    strict = compliant_only(s)

    def authz(req: fake_engine.Request) -> str | None:
        body = req.json() or {}
        if isinstance(body, dict) and (body.get("HostConfig") or {}).get("Privileged") is True:
            return None
        return strict(req)

    eng = engine_factory(authz, plugins=[PLUGIN_OK])
    result = run_verify(eng, s)
    failed = {p["name"] for p in result["probes"] if not p["passed"]}
    # The fake engine hands over a body over 1 MiB (as fixed engines do) but no chunked body (as
    # engines without the CVE-2024-41110 fix): the chunked probe meets the strict part, denied.
    assert failed == {
        "privileged", "path-unversioned", "path-percent-encoded", "path-query-string", "body-over-1mib",
    }  # fmt: skip
    assert result["enforced"] is True
    assert "5 of" in result["msg"] and "FAILED  privileged " in result["msg"]


def test_refused_compliant_request_fails(engine_factory) -> None:
    s = P.normalize_rules({}, "restricted")
    eng = engine_factory(lambda req: None if req.method == "GET" else "deny", plugins=[PLUGIN_OK])
    result = run_verify(eng, s)
    assert [p["name"] for p in result["probes"] if not p["passed"]] == ["compliant-create"]
    assert "A compliant request was refused" in result["msg"]


def test_policy_errors_are_told_apart(engine_factory) -> None:
    s = P.normalize_rules({})
    eng = engine_factory(lambda req: "error", plugins=[])
    result = run_verify(eng, s)
    outcomes = {p["outcome"] for p in result["probes"]}
    assert outcomes == {"plugin-error"}
    assert result["failed_verification"] and result["enforced"] is False
    assert any("plugin error" in w and "rego_parse_error" in w for w in result["warnings"])
    assert result["engine"]["version"] == "20.10.24+dfsg1"  # read from the ping's Server header
    assert result["engine"]["source"] == "Server header of /_ping"


def test_report_only_never_fails(engine_factory) -> None:
    eng = engine_factory(lambda req: None, plugins=[])
    result = run_verify(eng, P.normalize_rules({}), expect_enforced=False)
    assert "failed_verification" not in result
    assert "report only" in result["msg"] and result["counts"]["failed"] > 0
    assert any(f"plugin {ALIAS} is not installed" in w for w in result["warnings"])


def test_created_things_are_removed_at_once(engine_factory) -> None:
    eng = engine_factory(lambda req: None, plugins=[PLUGIN_OK], create_returns_201=True)
    result = run_verify(eng, P.normalize_rules({}), expect_enforced=False)
    creates = [
        p for p in result["probes"] if p["request"].endswith("/containers/create") and p["status"] == 201
    ]
    assert creates and all(p["cleanup"] == "removed container ffffffffffff" for p in creates)
    deletes = [r for r in eng.requests if r.method == "DELETE" and r.path.startswith("/v1.41/containers/")]
    assert len(deletes) >= len(creates)
    assert all("force=1" in r.target for r in deletes)
    volume = next(p for p in result["probes"] if p["name"] == "mount-volume-bind")
    assert volume["cleanup"].startswith("removed volume hardening-verify-probe-")


def test_engine_versions_and_explicit_policy_path(engine_factory, tmp_path: Path) -> None:
    s = P.normalize_rules({})
    eng = engine_factory(compliant_only(s), plugins=[PLUGIN_OK], version="27.1.1")
    policy = tmp_path / "authz.rego"
    result = run_verify(eng, s, policy_path=str(policy))
    assert [f["id"] for f in result["findings"] if f["kind"] == "cve"] == ["CVE-2026-34040"]
    assert result["plugin"]["policy_file"] == str(policy)
    assert any(f"policy file {policy} is missing" in w for w in result["warnings"])


def test_podman_and_missing_socket_are_clear_errors(engine_factory, tmp_path: Path) -> None:
    eng = engine_factory(lambda req: None, podman=True)
    with pytest.raises(DockerUnavailable, match="Podman has no authorization plugins"):
        run_verify(eng, P.normalize_rules({}))
    with pytest.raises(DockerUnavailable, match="does not exist: is Docker installed"):
        P.verify(DockerClient(str(tmp_path / "nope.sock")), P.normalize_rules({}))


def test_failure_message_lists_the_failed_rows() -> None:
    rows = [
        P.ProbeResult("privileged", "deny_privileged", None, "POST /v1.41/containers/create",
                      "HostConfig.Privileged=true", "deny", 404, "authorized", None,
                      "No such image: hardening-verify/nonexistent:probe", False),
        P.ProbeResult("compliant-create", "always_on", None, "POST /v1.41/containers/create", "ok", "allow",
                      404, "authorized", None, "No such image", True),
    ]  # fmt: skip
    msg = P.failure_message(rows, ["1 of 2 probes failed"], {"version": "20.10.24"}, ALIAS)
    lines = msg.splitlines()
    assert lines[0] == (
        "authorization is not enforced as expected on Docker Engine 20.10.24 (plugin opa-docker-authz): "
        "1 of 2 probes failed."
    )
    assert lines[2].split() == ["result", "probe", "rule", "expected", "outcome", "answer"]
    assert lines[3].split()[:5] == ["FAILED", "privileged", "deny_privileged", "deny", "authorized"]
    assert "compliant-create" not in msg
    assert (
        "- privileged: POST /v1.41/containers/create (HostConfig.Privileged=true): "
        "expected deny, got authorized" in msg
    )


def testhost_policy_path_follows_the_plugin_mounts() -> None:
    plugin = {
        "Config": {"WorkDir": "/opa"},
        "Settings": {"Mounts": [{"Source": "/etc/docker", "Destination": "/opa"}]},
    }
    assert (
        P.host_policy_path(plugin, "-policy-file /opa/policies/authz.rego")
        == "/etc/docker/policies/authz.rego"
    )
    assert (
        P.host_policy_path(plugin, "-policy-file=policies/authz.rego -quiet")
        == "/etc/docker/policies/authz.rego"
    )
    assert P.host_policy_path(plugin, "-config-file /opa/config.yaml") is None
    assert P.host_policy_path(plugin, "-policy-file /elsewhere/p.rego") is None
    # read as the plugin reads them: the last one, none after a word that is not a flag
    twice = "-policy-file /opa/a.rego -policy-file /opa/b.rego"
    assert P.host_policy_path(plugin, twice) == "/etc/docker/b.rego"
    assert P.host_policy_path(plugin, ["", "-policy-file", "/opa/policies/authz.rego"]) is None
    assert P.host_policy_path(plugin, "-skip-ping false -policy-file /opa/policies/authz.rego") is None


# ---------------------------------------------------------------- the module, thin layer
def test_module_refuses_bad_rules_and_runs_in_check_mode(engine_factory, tmp_path: Path) -> None:
    s = P.normalize_rules({})
    eng = engine_factory(compliant_only(s), plugins=[PLUGIN_OK])
    play = f"""
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Bad rule name
      hardening.docker_authz.authz_verify:
        socket: {eng.socket_path}
        rules: {{deny_privilege: true}}
      ignore_errors: true
    - name: Verify
      hardening.docker_authz.authz_verify:
        docker_socket: {eng.socket_path}
        rules: {{docker_authz_deny_privileged: true}}
"""
    run = run_playbook(play, tmp_path, args=["--check"])
    bad = run.task("Bad rule name")
    assert bad["status"] == "failed" and "unknown name(s) deny_privilege" in bad["result"]["msg"]
    assert "probes" not in bad["result"], "bad input: nothing was sent"
    good = run.task("Verify")
    assert good["status"] == "ok", good["result"].get("msg")
    good = good["result"]
    assert good["changed"] is False
    assert good["counts"] == {"total": len(P.build_probes(s)), "passed": len(P.build_probes(s)), "failed": 0}
    assert any("CVE-2024-41110" in str(w) for w in good.get("warnings", [])), good.get("warnings")
    assert run.recap() == {**run.recap(), "ok": 2, "changed": 0, "ignored": 1}


# ------------------------------------------------------------------- depth: quick
def test_quick_depth_selects_the_compliant_and_the_privileged_create() -> None:
    s = P.normalize_rules({}, "restricted")
    table = P.build_probes(s)
    quick = P.select_probes(table, "quick")
    assert [(p.name, p.expect) for p in quick] == [("compliant-create", "allow"), ("privileged", "deny")]
    assert P.select_probes(table, "full") == table
    # deny_privileged off: the first rule's plain create probe stands in
    s = P.normalize_rules({"deny_privileged": False}, "restricted")
    quick = P.select_probes(P.build_probes(s), "quick")
    assert quick[0].name == "compliant-create" and quick[1].expect == "deny" and quick[1].bypass is None
    assert quick[1].rule != "deny_privileged"
    with pytest.raises(P.VerifyInputError, match="depth must be one of full, quick, got 'deep'"):
        P.select_probes(table, "deep")


def _hooked_daemon_json(tmp_path: Path, names: list[str]) -> Path:
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps({"authorization-plugins": names}))
    return path


def test_quick_depth_proves_state_and_enforcement(engine_factory, tmp_path: Path) -> None:
    import hashlib

    (tmp_path / "policies").mkdir()
    policy = tmp_path / "policies" / "authz.rego"
    policy.write_text("package docker.authz\n")
    digest = hashlib.sha256(policy.read_bytes()).hexdigest()
    s = P.normalize_rules({}, "baseline")
    eng = engine_factory(compliant_only(s), plugins=[plugin_with_source(tmp_path)])
    daemon_json = _hooked_daemon_json(tmp_path, ["opa-docker-authz"])
    args = "-policy-file /opa/policies/authz.rego -quiet"
    expect = {"expect_policy_sha256": digest, "expect_args": args, "expect_hooked_in": str(daemon_json)}
    result = run_verify(eng, s, depth="quick", **expect)
    assert "failed_verification" not in result, result["msg"]
    assert result["counts"] == {"total": 2, "passed": 2, "failed": 0}
    assert result["depth"] == "quick" and result["table_size"] == len(P.build_probes(s))
    assert result["state"] == {"policy_sha256": digest, "args": args, "hooked": True}
    assert "quick proof" in result["msg"]
    sent = [r for r in eng.requests if r.method not in ("GET", "HEAD")]
    assert len(sent) == 2

    # each tampered piece is named, and fails the proof
    policy.write_text("package docker.authz\nallow := true\n")
    bad = run_verify(eng, s, depth="quick", **expect)
    assert bad["failed_verification"] is True
    tampered = hashlib.sha256(policy.read_bytes()).hexdigest()
    assert f"is not the one the role writes (sha256 {tampered}" in bad["msg"]
    policy.write_text("package docker.authz\n")
    assert "failed_verification" not in run_verify(eng, s, depth="quick", **expect)
    other_args = {**expect, "expect_args": "-policy-file /opa/policies/other.rego"}
    bad = run_verify(eng, s, depth="quick", **other_args)
    assert "runs with opa-args '-policy-file /opa/policies/authz.rego -quiet', expected" in bad["msg"]
    _hooked_daemon_json(tmp_path, ["other-plugin"])
    bad = run_verify(eng, s, depth="quick", **expect)
    assert f"{daemon_json} does not name opa-docker-authz in authorization-plugins" in bad["msg"]


def test_quick_depth_names_an_empty_word_in_the_plugins_args(engine_factory, tmp_path: Path) -> None:
    """opa-args set by hand with a leading space: the engine holds an empty first word, at which
    the plugin stops reading flags (no policy file: it allows everything). Normalising the
    spaces hid it; the proof now names it."""
    s = P.normalize_rules({}, "baseline")
    plugin = plugin_with_source(tmp_path)
    plugin["Settings"]["Args"] = ["", "-policy-file", "/opa/policies/authz.rego", "-quiet"]
    eng = engine_factory(compliant_only(s), plugins=[plugin])
    result = run_verify(eng, s, depth="quick", expect_args="-policy-file /opa/policies/authz.rego -quiet")
    assert result["failed_verification"] is True
    assert "runs with opa-args ' -policy-file /opa/policies/authz.rego -quiet', expected" in result["msg"]
    # a trailing empty word changes nothing for the plugin, and is not named
    plugin["Settings"]["Args"] = ["-policy-file", "/opa/policies/authz.rego", "-quiet", ""]
    eng = engine_factory(compliant_only(s), plugins=[plugin])
    result = run_verify(eng, s, depth="quick", expect_args="-policy-file /opa/policies/authz.rego -quiet")
    assert "failed_verification" not in result, result["msg"]


def test_quick_depth_fails_when_the_plugin_allows_privileged(engine_factory, tmp_path: Path) -> None:
    s = P.normalize_rules({})
    eng = engine_factory(lambda req: None, plugins=[plugin_with_source(tmp_path)])
    result = run_verify(eng, s, depth="quick")
    assert result["failed_verification"] is True and result["counts"]["total"] == 2
    assert "FAILED  privileged " in result["msg"]
