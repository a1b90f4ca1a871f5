"""docs/coverage.md accounts for every write and field of the Engine API (1.41 to the newest), and
cannot drift from the policy: every write and field has a row; every rule, always-on check, probe
and test a row names exists; every rule and probe is in a row; every example request gets the
decision its row promises from the real policy (regopy); the document is the rendering of the data.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.policy import coverage_api, coverage_table
from tests.policy.coverage_table import ENDPOINT, EVERY, ROOT
from tests.policy.harness import compiled, request
from tests.policy.requests import COMPLIANT_CONFIG, COMPLIANT_HOST_CONFIG, IMAGE
from tests.policy.requests import create as create_request
from tests.policy.requests import service as service_request

TRUSTED = ("127.0.0.1:5000",)


def all_on():
    """The restricted profile with the two rules it leaves off switched on too."""
    return compiled(
        "v1", "opa", profile="restricted", require_readonly_rootfs=True, trusted_registries=TRUSTED
    )


def restricted():
    """OPA's own engine (the plugin's); the rule and bypass tests compare it with regopy."""
    return compiled("v1", "opa", profile="restricted")


def build_request(example: dict[str, Any]) -> dict[str, Any]:
    if "create" in example:
        spec = dict(example["create"] or {})
        uri = spec.pop("uri", "/v1.41/containers/create?name=c1")
        host = spec.pop("HostConfig", None)
        return create_request(spec, host, uri=uri)
    if "service" in example:
        spec = dict(example["service"] or {})
        return service_request(
            spec.get("ContainerSpec"),
            spec.get("TaskTemplate"),
            uri=spec.get("uri", "/v1.44/services/create"),
            endpoint_spec=spec.get("EndpointSpec"),
        )
    req = example["request"]
    return request(
        req["method"], req["path"], req.get("body"), content_type=req.get("content_type", "application/json")
    )


def examples() -> list[tuple[str, int, coverage_table.Row, dict[str, Any]]]:
    out = []
    for row in coverage_table.rows():
        for i, example in enumerate(row.raw.get("examples") or []):
            out.append((row.label, i, row, example))
    return out


EXAMPLES = examples()


# ---------------------------------------------------------------------------------------- table
def test_every_write_and_field_has_a_row():
    missing = coverage_table.missing()
    assert not missing, (
        "fields of tests/policy/coverage_api.json without a row in tests/policy/coverage.yaml:\n"
        + "\n".join(missing)
    )


def test_rows_name_only_real_fields_rules_checks_probes_and_tests():
    problems = coverage_table.problems()
    assert not problems, "tests/policy/coverage.yaml:\n" + "\n".join(problems)


def test_the_document_is_the_rendering_of_the_data():
    assert coverage_table.DOC_FILE.read_text() == coverage_table.render(), (
        "docs/coverage.md is stale: run .venv/bin/python -m tests.policy.coverage_table"
    )


def test_the_always_on_checks_are_reason_prefixes_of_the_policy():
    role = ROOT / "roles" / "opa_authz"
    sources = "\n".join(p.read_text() for pattern in ("*.rego", "*.j2") for p in role.rglob(pattern))
    for check in coverage_table.data()["checks"]:
        assert re.search(rf'"{check}: ', sources), (
            f"no deny reason starts with {check}: in the policy sources"
        )


def test_the_api_spans_1_41_to_the_newest():
    info = coverage_table.api()
    assert info["versions"][0] == "1.41"
    assert info["newest"] == info["versions"][-1]
    assert [int(v.split(".")[1]) for v in info["versions"]] == list(
        range(41, int(info["newest"].split(".")[1]) + 1)
    )
    for must in (
        "POST /containers/create",
        "POST /containers/*/update",
        "POST /containers/*/exec",
        "PUT /containers/*/archive",
        "POST /build",
        "POST /volumes/create",
        "POST /networks/create",
        "POST /plugins/pull",
        "POST /swarm/init",
        "POST /services/create",
        "POST /session",
    ):
        assert must in info["endpoints"], must
    assert (
        "HostConfig.Mounts[].BindOptions.Propagation"
        in info["endpoints"]["POST /containers/create"]["fields"]
    )


# ---------------------------------------------------------------------------------------- policy
@pytest.mark.parametrize(
    ("label", "index", "row", "example"), EXAMPLES, ids=[f"{e[0]}-{e[1]}" for e in EXAMPLES]
)
def test_examples_get_the_decision_their_row_promises(label, index, row, example):
    req = build_request(example)
    expect = example.get("expect")
    if expect == "allow" or (expect is None and row.verdict in ("no_rule", "limit")):
        allow, deny = restricted().decide(req)
        assert allow, f"{label}: expected the restricted profile to allow it, denied: {sorted(deny)}"
        return
    if expect is None and row.verdict == "gap":
        allow, deny = all_on().decide(req)
        assert allow, (
            f"{label}: this gap's example is denied now ({sorted(deny)}). If a rule closes the gap, make the "
            "row a rule row (rules, probes, tests) in tests/policy/coverage.yaml"
        )
        return
    prefixes = [expect] if expect else (row.rules if row.verdict == "rule" else row.checks)
    allow, deny = all_on().decide(req)
    assert not allow and any(reason.startswith(f"{p}:") for p in prefixes for reason in deny), (
        f"{label}: expected a denial by {prefixes}, got allow={allow} {sorted(deny)}"
    )


def _bare(endpoint: str) -> dict[str, Any]:
    method, path = endpoint.split(" ", 1)
    return request(method, "/v1.41" + path.replace("*", "x1"), None)


def endpoints_with_rows() -> dict[str, bool]:
    """Every write (the API's and the daemon-only ones with a row) -> whether the policy should
    understand it (a row says ``understood: false`` for writes it denies as unknown on purpose)."""
    names = dict.fromkeys(coverage_table.api()["endpoints"], True)
    for row in coverage_table.rows():
        if ENDPOINT in row.fields:
            for endpoint in row.endpoints:
                names[endpoint] = names.get(endpoint, True) and row.raw.get("understood", True)
    return names


def test_every_write_of_the_api_is_understood_by_the_policy():
    """A write missing from the policy's table is denied as not understood ("request: ..."): a new
    endpoint in a newer API is a false denial until the policy knows it and this table has its row."""
    policy = restricted()  # only "request:" reasons count: the rules may deny as they like
    wrong = {}
    for endpoint, understood in sorted(endpoints_with_rows().items()):
        _allow, deny = policy.decide(_bare(endpoint))
        unknown = any(r.startswith("request:") for r in deny)
        if unknown == understood:
            wrong[endpoint] = ("should be understood" if understood else "should be unknown", sorted(deny))
    assert not wrong, wrong


def test_whole_endpoint_rows_deny_every_request_to_their_endpoints():
    for row in coverage_table.rows():
        if EVERY not in row.fields:
            continue
        for endpoint in row.endpoints:
            for body in (None, {}, {"Anything": True}):
                method, path = endpoint.split(" ", 1)
                req = request(method, "/v1.41" + path.replace("*", "x1"), body)
                allow, deny = restricted().decide(req)
                assert not allow and any(r.startswith(f"{p}:") for p in row.rules for r in deny), (
                    endpoint,
                    body,
                    deny,
                )


def test_example_fixtures_start_compliant():
    assert restricted().decide(create_request())[0]
    assert all_on().decide(create_request())[0]
    assert all_on().decide(service_request())[0]
    assert COMPLIANT_CONFIG["Image"] == IMAGE and COMPLIANT_HOST_CONFIG["ReadonlyRootfs"] is True


# ---------------------------------------------------------------------------------------- the checks fail
@pytest.fixture
def edited(monkeypatch):
    """Check an edited copy of coverage.yaml's data."""

    def edit(change) -> list[str]:
        data = copy.deepcopy(coverage_table.data())
        change(data["rows"])
        monkeypatch.setattr(coverage_table, "data", lambda: data)
        coverage_table.rows.cache_clear()
        return coverage_table.problems()

    yield edit
    coverage_table.rows.cache_clear()


def _row(rows: list[dict], field: str) -> dict:
    return next(r for r in rows if field in str(r.get("fields", "")).split() and r["verdict"] == "rule")


def test_a_missing_row_fails(edited):
    problems = edited(lambda rows: rows.remove(_row(rows, "Privileged")))
    assert "no row covers POST /containers/create HostConfig.Privileged" in problems


def test_an_unknown_rule_probe_test_or_field_fails(edited):
    def change(rows):
        row = _row(rows, "Privileged")
        row["rules"] = ["privilegd"]
        row["probes"] = ["no-such-probe"]
        row["tests"] = ["tests/policy/test_policy_rules.py::test_no_such_test"]
        row["fields"] += " NoSuchField"

    problems = "\n".join(edited(change))
    assert "rule 'privilegd' is not in module_utils/policy.RULES" in problems
    assert "probe 'no-such-probe' is not made by module_utils/probes.build_probes" in problems
    assert "test tests/policy/test_policy_rules.py::test_no_such_test does not exist" in problems
    assert "HostConfig.NoSuchField is a field of none of POST /containers/create" in problems


def test_a_rule_or_probe_in_no_row_fails(edited):
    def change(rows):
        for row in rows:
            if "swarm_changes" in (row.get("rules") or []):
                row["rules"] = ["plugin_changes"]
                row["probes"] = []

    problems = edited(change)
    assert "rule swarm_changes judges no field: add it to the rows of the fields it judges" in problems
    assert "probe swarm-join is in no row: add it to the row of the field it probes" in problems


# ---------------------------------------------------------------------------------------- the extractor
SWAGGER = {
    "swagger": "2.0",
    "info": {"version": "1.99"},
    "definitions": {
        "Base": {"type": "object", "properties": {"A": {"type": "string"}}},
        "Item": {"type": "object", "properties": {"Path": {"type": "string"}}},
        "Spec": {
            "allOf": [
                {"$ref": "#/definitions/Base"},
                {
                    "type": "object",
                    "properties": {
                        "List": {"type": "array", "items": {"$ref": "#/definitions/Item"}},
                        "Names": {"type": "array", "items": {"type": "string"}},
                        "Map": {"type": "object", "additionalProperties": {"$ref": "#/definitions/Item"}},
                        "Labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    },
                },
            ]
        },
    },
    "paths": {
        "/things/{id}/update": {
            "post": {
                "parameters": [
                    {"name": "id", "in": "path", "type": "string"},
                    {"name": "force", "in": "query", "type": "boolean"},
                    {"name": "X-Registry-Auth", "in": "header", "type": "string"},
                    {"name": "body", "in": "body", "schema": {"$ref": "#/definitions/Spec"}},
                ]
            },
            "get": {"parameters": [{"name": "all", "in": "query", "type": "boolean"}]},
        },
        "/things/{name}": {"delete": {}, "head": {}},
        "/upload": {"put": {"parameters": [{"name": "body", "in": "body", "schema": {"type": "string"}}]}},
    },
}


def test_the_extractor_lists_writes_and_every_field():
    newer = copy.deepcopy(SWAGGER)
    newer["info"]["version"] = "1.100"
    del newer["definitions"]["Spec"]["allOf"][1]["properties"]["Labels"]
    data = coverage_api.build([("1.99", SWAGGER), ("1.100", newer), ("1.40", SWAGGER)], "1.41")
    assert data["versions"] == ["1.99", "1.100"] and data["newest"] == "1.100"
    assert sorted(data["endpoints"]) == ["DELETE /things/*", "POST /things/*/update", "PUT /upload"]
    fields = data["endpoints"]["POST /things/*/update"]["fields"]
    assert sorted(fields) == sorted(
        [
            "query:force",
            "header:X-Registry-Auth",
            "A",
            "List",
            "List[].Path",
            "Names",
            "Map",
            "Map.*.Path",
            "Labels",
        ]
    )
    assert fields["Labels"] == ["1.99", "1.99"] and fields["A"] == ["1.99", "1.100"]
    assert data["endpoints"]["PUT /upload"]["fields"] == {"body": ["1.99", "1.100"]}


def test_the_checked_in_api_file_is_the_extractors_format():
    raw = json.loads(Path(coverage_api.OUT).read_text())
    assert set(raw) == {"source", "versions", "newest", "endpoints"}
    for endpoint, entry in raw["endpoints"].items():
        assert re.fullmatch(r"(POST|PUT|DELETE|PATCH) /[^{}]*", endpoint), endpoint
        assert set(entry) == {"versions", "fields"}
