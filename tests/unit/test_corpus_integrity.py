"""The captured request corpus (tests/policy/corpus/) is complete and every request builds an input."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tests.opa_docker_authz_double.opa_input import InputError, build_input

CORPUS = Path(__file__).resolve().parents[1] / "policy" / "corpus"

# rule-catalog.md: every rule variable that denies something (docker_authz_exempt_users exempts).
RULES = {
    "docker_authz_deny_privileged",
    "docker_authz_deny_seccomp_unconfined",
    "docker_authz_require_no_new_privileges",
    "docker_authz_require_resource_limits",
    "docker_authz_restrict_ports",
    "docker_authz_deny_root_user",
    "docker_authz_deny_sensitive_env",
    "docker_authz_deny_host_namespaces",
    "docker_authz_deny_added_capabilities",
    "docker_authz_deny_apparmor_unconfined",
    "docker_authz_deny_selinux_disabled",
    "docker_authz_deny_unmasked_paths",
    "docker_authz_deny_sensitive_mounts",
    "docker_authz_deny_devices",
    "docker_authz_deny_plugin_changes",
    "docker_authz_deny_swarm_changes",
    "docker_authz_restrict_runtimes",
    "docker_authz_restrict_log_drivers",
    "docker_authz_deny_remote_fetch",
    "docker_authz_require_readonly_rootfs",
    "docker_authz_trusted_registries",
}
BASELINE_ON = {
    "docker_authz_deny_privileged",
    "docker_authz_deny_seccomp_unconfined",
    "docker_authz_deny_host_namespaces",
    "docker_authz_deny_added_capabilities",
    "docker_authz_deny_apparmor_unconfined",
    "docker_authz_deny_selinux_disabled",
    "docker_authz_deny_unmasked_paths",
    "docker_authz_deny_sensitive_mounts",
    "docker_authz_deny_devices",
    "docker_authz_deny_plugin_changes",
    "docker_authz_deny_swarm_changes",
    "docker_authz_restrict_runtimes",
}
RESTRICTED_ON = BASELINE_ON | {
    "docker_authz_restrict_log_drivers",
    "docker_authz_deny_remote_fetch",
    "docker_authz_require_no_new_privileges",
    "docker_authz_require_resource_limits",
    "docker_authz_restrict_ports",
    "docker_authz_deny_root_user",
    "docker_authz_deny_sensitive_env",
}
# bypass-classes.md; "fail open" is a plugin configuration, not a request (see the corpus README).
BYPASS_CLASSES = {
    "key case",
    "duplicate keys",
    "path spelling",
    "invisible body",
    "other endpoints",
    "value spelling",
    "host path spelling",
    "engine bugs",
    "identity",
}
FIELDS = {
    "id": str,
    "description": str,
    "client": str,
    "command": str,
    "rules": list,
    "compliant": list,
    "crafted": bool,
    "daemon_outcome": str,
    "requests": list,
}
OPTIONAL = {"bypass_class": str, "policy_can_stop": bool, "always_deny": bool, "fs_links": dict}
WRITE_ENDPOINTS = ("/containers/create", "/exec", "/update", "/services/create", "/volumes/create")


def load_all() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(CORPUS.glob("*.json"))]


SCENARIOS = load_all()


def body_of(req: dict) -> bytes:
    return base64.b64decode(req.get("RequestBody", ""))


def is_json_array_body(req: dict) -> bool:
    if (req.get("RequestHeaders") or {}).get("Content-Type") != "application/json":
        return False
    return body_of(req).lstrip()[:1] == b"["


# The CLIs of the corpus: CLI 28 and Debian 12's 20.10.24 on this machine, and the engine matrix's
# Debian 11 (20.10.5) and Debian 13 (26.1.5) CLIs, each against its own release's dockerd
# (tests/policy/capture/in_host.py).
CLIS = ("cli-28", "cli-20.10", "cli-20.10.5", "cli-26.1")


def test_corpus_is_there_and_small():
    files = list(CORPUS.glob("*.json"))
    assert len(files) >= 450
    assert sum(p.stat().st_size for p in files) < 2_000_000
    assert (CORPUS / "README.md").is_file()


@pytest.mark.parametrize("doc", SCENARIOS, ids=[d["id"] for d in SCENARIOS])
def test_scenario_shape(doc):
    assert (CORPUS / f"{doc['id']}.json").is_file()
    for key, typ in FIELDS.items():
        assert isinstance(doc.get(key), typ), key
    assert set(doc) <= set(FIELDS) | set(OPTIONAL)
    for key, typ in OPTIONAL.items():
        if key in doc:
            assert isinstance(doc[key], typ), key
    assert doc["client"] in {*CLIS, "sdk", "raw"}
    assert set(doc["rules"]) <= RULES
    assert set(doc["compliant"]) <= {"baseline", "restricted"}
    if doc.get("bypass_class"):
        assert doc["bypass_class"] in BYPASS_CLASSES
    # compliant must agree with the rules a profile enables (capability parameters differ per profile).
    if set(doc["rules"]) & RESTRICTED_ON:
        assert "restricted" not in doc["compliant"]
    if set(doc["rules"]) & (BASELINE_ON - {"docker_authz_deny_added_capabilities"}):
        assert "baseline" not in doc["compliant"]
    if doc.get("always_deny"):
        assert doc["compliant"] == []
    for req in doc["requests"]:
        assert {"RequestMethod", "RequestUri"} <= set(req)
        assert set(req) <= {
            "User",
            "UserAuthNMethod",
            "RequestMethod",
            "RequestUri",
            "RequestBody",
            "RequestHeaders",
        }


@pytest.mark.parametrize("doc", SCENARIOS, ids=[d["id"] for d in SCENARIOS])
def test_every_request_builds_an_input(doc, tmp_path):
    for req in doc["requests"]:
        if is_json_array_body(req):
            # /plugins/pull, /set, /upgrade send a JSON array: opa-docker-authz answers with an error.
            with pytest.raises(InputError):
                build_input(req, fs_root=str(tmp_path))
            continue
        inp = build_input(req, fs_root=str(tmp_path))
        assert inp["Method"] == req["RequestMethod"] and inp["Path"] == req["RequestUri"]
        assert inp["PathPlain"].startswith("/")


def test_every_rule_has_a_deny_scenario_for_each_cli():
    missing = []
    for rule in sorted(RULES):
        for client in CLIS:
            hits = [
                d
                for d in SCENARIOS
                if d["client"] == client
                and rule in d["rules"]
                and any(r["RequestUri"] != "/_ping" for r in d["requests"])
            ]
            if not hits:
                missing.append((rule, client))
    assert missing == []


def test_every_rule_has_a_deny_scenario_from_sdk_or_raw():
    covered = {rule for d in SCENARIOS if d["client"] in ("sdk", "raw") for rule in d["rules"]}
    # Plugin changes and registries come from the CLIs and raw plugin requests; readonly from CLIs only.
    assert RULES - covered <= {
        "docker_authz_require_readonly_rootfs",
        "docker_authz_trusted_registries",
        "docker_authz_require_no_new_privileges",
    }


def test_every_bypass_class_has_a_scenario():
    assert {d["bypass_class"] for d in SCENARIOS if d.get("bypass_class")} == BYPASS_CLASSES


def test_both_profiles_have_compliant_scenarios_from_every_client():
    for profile in ("baseline", "restricted"):
        clients = {d["client"] for d in SCENARIOS if profile in d["compliant"]}
        assert clients == {*CLIS, "sdk", "raw"}, profile


def test_always_deny_scenarios_hide_a_body_carrying_write(tmp_path):
    for doc in (d for d in SCENARIOS if d.get("always_deny")):
        hidden = [
            r
            for r in doc["requests"]
            if r["RequestMethod"] == "POST"
            and any(e in build_input(r, fs_root=str(tmp_path))["PathPlain"] for e in WRITE_ENDPOINTS)
            and build_input(r, fs_root=str(tmp_path))["Body"] is None
        ]
        assert hidden, doc["id"]


def test_key_case_scenarios_reach_the_policy_with_a_body(tmp_path):
    for doc in (d for d in SCENARIOS if d.get("bypass_class") == "key case"):
        writes = [r for r in doc["requests"] if r["RequestMethod"] == "POST"]
        assert writes and all(build_input(r, fs_root=str(tmp_path))["Body"] for r in writes), doc["id"]


def test_the_two_clis_really_send_different_bodies():
    def cap_add(scenario_id: str) -> list:
        doc = next(d for d in SCENARIOS if d["id"] == scenario_id)
        req = next(r for r in doc["requests"] if r["RequestUri"].endswith("/containers/create"))
        return build_input(req)["Body"]["HostConfig"]["CapAdd"]

    assert cap_add("create-cap-add-sys-admin-lower.cli-28") == ["CAP_SYS_ADMIN"]
    assert cap_add("create-cap-add-sys-admin-lower.cli-20.10") == ["sys_admin"]


def test_fs_links_and_bind_mounts(tmp_path):
    doc = next(d for d in SCENARIOS if d["id"] == "create-bind-symlink-to-root.cli-28")
    for link, target in doc["fs_links"].items():
        place = tmp_path / link.lstrip("/")
        place.parent.mkdir(parents=True, exist_ok=True)
        place.symlink_to(target)
    req = next(r for r in doc["requests"] if r["RequestUri"].endswith("/containers/create"))
    (mount,) = build_input(req, fs_root=str(tmp_path))["BindMounts"]
    assert mount["Resolved"] == "/"
