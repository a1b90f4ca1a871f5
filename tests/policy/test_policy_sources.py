"""The policy's sources (roles/opa_authz/files/policy) and how they are shipped: the single file of
policy-file mode (both dialects) and the OPA bundle of bundle mode (Rego v1, evaluated here with
OPA's own engine), with rules that are off left out."""

from __future__ import annotations

import json
import re

import pytest
from ansible.errors import AnsibleFilterError
from opa_bindings import OpaEngine

from ansible_collections.hardening.docker_authz.plugins.filter.policy import (
    SOURCES,
    policy_bundle,
    policy_config,
    policy_rego,
)
from module_utils.policy import (
    POLICY_VARIABLES,
    RULE_IDS,
    assemble_policy,
    policy_bundle_files,
    rego_v1_to_v0,
)
from tests.opa_docker_authz_double.opa_input import build_input
from tests.policy.harness import request, variables

RESTRICTED = variables(profile="restricted")
BASELINE = variables(profile="baseline")


def config_of(values: dict) -> dict:
    return policy_config({k: v for k, v in values.items() if k in POLICY_VARIABLES})


def test_one_source_per_rule_beside_the_library():
    assert (SOURCES / "lib.rego").is_file()
    assert sorted(p.stem for p in (SOURCES / "rules").glob("*.rego")) == sorted(RULE_IDS)
    for path in [SOURCES / "lib.rego", *(SOURCES / "rules").glob("*.rego")]:
        text = path.read_text()
        assert re.search(r"^package docker\.authz\n\nimport rego\.v1\n", text, re.M), path
        assert "\nconfig :=" not in text, f"{path}: the config is data, not a rule"
        if path.parent.name == "rules":
            assert "config.rules." not in text, f"{path}: a rule is on when its file is shipped"


def test_rules_that_are_off_are_not_shipped():
    config = config_of(BASELINE)
    off = [rule for rule in RULE_IDS if not config["rules"][rule]]
    assert off, "the baseline profile leaves rules off"
    files = policy_bundle(BASELINE)
    text = policy_rego(BASELINE, "v1")
    for rule in RULE_IDS:
        shipped = f"docker/authz/rules/{rule}.rego" in files
        assert shipped == config["rules"][rule], rule
        assert (f"# rules/{rule}.rego\n" in text) == config["rules"][rule], rule
    assert len(policy_rego(RESTRICTED, "v1")) > len(text)


def test_bundle_layout_and_manifest():
    files = policy_bundle(RESTRICTED)
    assert set(files) == {
        ".manifest",
        "docker/authz/data.json",
        "docker/authz/lib.rego",
        "system/log.rego",
        *(f"docker/authz/rules/{r}.rego" for r in RULE_IDS if config_of(RESTRICTED)["rules"][r]),
    }
    manifest = json.loads(files[".manifest"])
    assert manifest["roots"] == ["docker/authz", "system/log"]
    assert re.fullmatch(r"[0-9a-f]{64}", manifest["revision"])
    assert json.loads(files["docker/authz/data.json"]) == {"config": config_of(RESTRICTED)}
    assert files["docker/authz/lib.rego"] == (SOURCES / "lib.rego").read_text(), "shipped as they are"
    assert all(content.endswith("\n") for content in files.values())
    # the revision follows the content: same variables, same revision; other variables, another
    assert json.loads(policy_bundle(dict(RESTRICTED))[".manifest"]) == manifest
    other = policy_bundle({**RESTRICTED, "docker_authz_max_memory_bytes": 1024})
    assert json.loads(other[".manifest"])["revision"] != manifest["revision"]


def test_filters_take_variables_or_a_config_and_ignore_other_role_variables():
    config = config_of(RESTRICTED)
    assert policy_bundle(config) == policy_bundle(RESTRICTED)
    with_others = {**RESTRICTED, "docker_authz_plugin_image": "x:0.10", "docker_authz_policy_mode": "bundle"}
    assert policy_rego(with_others, "v1") == policy_rego(RESTRICTED, "v1")
    with pytest.raises(AnsibleFilterError, match="docker_authz_required_limits"):
        policy_bundle({**RESTRICTED, "docker_authz_required_limits": ["disk"]})
    with pytest.raises(AnsibleFilterError, match="expects a mapping"):
        policy_bundle(["privileged"])
    with pytest.raises(AnsibleFilterError, match="dialect"):
        policy_rego(RESTRICTED, "v2")


REQUESTS = [
    request("GET", "/v1.41/containers/json"),
    request("POST", "/v1.41/containers/create", {"Image": "busybox", "HostConfig": {"Privileged": True}}),
    request(
        "POST",
        "/v1.41/containers/create",
        {
            "Image": "busybox",
            "User": "1000",
            "HostConfig": {
                "Memory": 67108864, "NanoCpus": 500000000, "PidsLimit": 100,
                "SecurityOpt": ["no-new-privileges"], "CapDrop": ["ALL"],
            },
        },
    ),
    request("POST", "/v1.41/containers/abc/start"),
    request("POST", "/v1.41/plugins/pull"),
    request("POST", "/v1.41/frobnicate"),
]


def _decide(engine: OpaEngine, authz_req: dict) -> tuple[bool, list[str]]:
    doc = build_input(authz_req)
    allow = engine.eval_document("docker.authz.allow", doc)
    return allow, sorted(engine.eval_document("docker.authz.deny", doc))


@pytest.mark.parametrize("profile", ["baseline", "restricted"])
def test_bundle_decides_like_the_single_file_on_opa(profile):
    values = variables(profile=profile)
    files = policy_bundle(values)
    bundle = OpaEngine()
    for path, content in files.items():
        if path.endswith(".rego"):
            bundle.add_policy(path, content)
    bundle.add_data({"docker": {"authz": json.loads(files["docker/authz/data.json"])}})
    single = OpaEngine()
    single.add_policy("authz.rego", policy_rego(values, "v1"))
    decisions = [_decide(bundle, r) for r in REQUESTS]
    assert decisions == [_decide(single, r) for r in REQUESTS]
    assert decisions[0] == (True, []) and decisions[2][0] is True
    assert decisions[1][0] is False and any(d.startswith("privileged:") for d in decisions[1][1])
    assert decisions[5][0] is False


def test_a_bundle_without_its_data_denies_everything():
    files = policy_bundle(RESTRICTED)
    engine = OpaEngine()
    for path, content in files.items():
        if path.endswith(".rego"):
            engine.add_policy(path, content)
    allow, deny = _decide(engine, REQUESTS[0])
    assert allow is False and any(d.startswith("policy: the configuration") for d in deny)


V1_TO_V0 = [
    ("default allow := false", "default allow = false"),
    ("deny contains msg if {", "deny[msg] {"),
    ('deny contains "x: a := b if {c}" if {', 'deny["x: a := b if {c}"] {'),
    ("op := name if {", "op = name {"),
    ('port_text(spec) := "(any free port)" if {', 'port_text(spec) = "(any free port)" {'),
    ("port_span(spec) := [low, high] if {", "port_span(spec) = [low, high] {"),
    ("creating if {", "creating {"),
    ("under(path, base) if {", "under(path, base) {"),
    ('read_methods := {"GET": true}', 'read_methods = {"GET": true}'),
    ("config := {", "config = {"),
    ("\tx := 1", "\tx := 1"),
    ("}", "}"),
    ("# a := b if {", "# a := b if {"),
]


@pytest.mark.parametrize(("v1", "v0"), V1_TO_V0)
def test_rule_heads_in_v0(v1, v0):
    assert rego_v1_to_v0(v1) == v0


@pytest.mark.parametrize(
    "line", ["allow if input.x", "p contains x if input.y", "some x in y", "every x in y {"]
)
def test_v0_conversion_refuses_heads_it_does_not_know(line):
    with pytest.raises(ValueError, match="rule head"):
        rego_v1_to_v0(line)


def test_assembly_refuses_a_source_without_the_header():
    config = config_of(BASELINE)
    sources = {name: "package docker.authz\n\nimport rego.v1\n\nallow := true\n" for name in ["lib.rego"]}
    sources.update({f"rules/{r}.rego": "package other\n" for r in RULE_IDS})
    with pytest.raises(ValueError, match=r"rules/privileged\.rego must start with 'package docker\.authz'"):
        assemble_policy(sources, config, "v1")
    with pytest.raises(ValueError, match="must start with"):
        policy_bundle_files(sources, config)  # the bundle ships sources as they are: checked too
