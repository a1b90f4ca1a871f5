"""The coverage audit's data (tests/policy/coverage.yaml over tests/policy/coverage_api.json): load,
expand, check, and render docs/coverage.md.

    .venv/bin/python -m tests.policy.coverage_table          # rewrite docs/coverage.md
    .venv/bin/python -m tests.policy.coverage_table --check  # exit 1 when it is stale or a check fails

tests/policy/test_coverage.py runs the same checks (plus the examples against the policy).
"""

from __future__ import annotations

import ast
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
API_FILE = HERE / "coverage_api.json"
DATA_FILE = HERE / "coverage.yaml"
DOC_FILE = ROOT / "docs" / "coverage.md"
VERDICTS = ("rule", "always_on", "no_rule", "limit", "gap")
ENDPOINT = "(endpoint)"
EVERY = "*"
READ_METHODS = ("GET", "HEAD")


@dataclass
class Row:
    index: int
    endpoints: list[str]
    fields: list[str]
    verdict: str
    raw: dict[str, Any]
    rules: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    probes: list[str] = field(default_factory=list)
    tests: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        ident = self.raw.get("id")
        return f"row {self.index + 1}" + (
            f" ({ident})" if ident else f" ({self.endpoints[0]} {self.fields[0]})"
        )


@cache
def api() -> dict[str, Any]:
    return json.loads(API_FILE.read_text())


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@cache
def data() -> dict[str, Any]:
    return yaml.load(DATA_FILE.read_text(), Loader=_LOADER)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


@cache
def rows() -> tuple[Row, ...]:
    out = []
    for i, raw in enumerate(data()["rows"]):
        prefix = raw.get("prefix", "")
        given = raw.get("fields")
        names = given.split() if isinstance(given, str) else [str(f) for f in _as_list(given)]
        fields = [f if f in (ENDPOINT, EVERY) else prefix + f for f in names]
        out.append(
            Row(
                index=i,
                endpoints=[str(e) for e in _as_list(raw.get("at"))],
                fields=fields,
                verdict=str(raw.get("verdict")),
                raw=raw,
                rules=[str(r) for r in _as_list(raw.get("rules"))],
                checks=[str(c) for c in _as_list(raw.get("checks"))],
                probes=[str(p) for p in _as_list(raw.get("probes"))],
                tests=[str(t) for t in _as_list(raw.get("tests"))],
            )
        )
    return tuple(out)


def api_fields(endpoint: str) -> dict[str, list[str]]:
    entry = api()["endpoints"].get(endpoint)
    return entry["fields"] if entry else {}


def coverage() -> dict[tuple[str, str], list[Row]]:
    """(endpoint, field) -> the rows that cover it; field "(endpoint)" is the endpoint itself."""
    covered: dict[tuple[str, str], list[Row]] = {}
    for row in rows():
        for endpoint in row.endpoints:
            known = api_fields(endpoint)
            for name in row.fields:
                targets = [*known, ENDPOINT] if name == EVERY else [name]
                for target in targets:
                    if target == ENDPOINT or target in known or row.raw.get("daemon_only"):
                        covered.setdefault((endpoint, target), []).append(row)
    return covered


def missing() -> list[str]:
    """Writes and fields of coverage_api.json that no row covers."""
    covered = coverage()
    out = []
    for endpoint, entry in api()["endpoints"].items():
        for name in [ENDPOINT, *entry["fields"]]:
            if (endpoint, name) not in covered:
                out.append(f"{endpoint} {name}")
    return out


# ---------------------------------------------------------------------------------------- names
def rule_table() -> dict[str, tuple[str, bool | None, bool | None]]:
    """Rule id -> (role variable, on in baseline, on in restricted); trusted_registries is a list."""
    from module_utils.policy import RULES

    return {**RULES, "trusted_registries": ("docker_authz_trusted_registries", None, None)}


def rule_ids() -> set[str]:
    return set(rule_table())


@cache
def probe_table() -> dict[str, str]:
    """Every probe build_probes can make (all rules on, ceilings and lists set) -> its method."""
    from module_utils import probes

    settings = probes.normalize_rules(
        {
            **{name: True for name in probes.RULE_DEFAULTS},
            "max_memory_bytes": 1 << 30,
            "max_nano_cpus": 10**9,
            "allowed_host_ips": ["127.0.0.1"],
            "trusted_registries": ["127.0.0.1:5000"],
            "allowed_bind_sources": ["/srv/data"],
        },
        "restricted",
    )
    return {p.name: p.method for p in probes.build_probes(settings)}


@cache
def test_names(path: str) -> frozenset[str]:
    """The test functions of a Python file, the test rules of a Rego file (empty when missing)."""
    file = ROOT / path
    if not file.is_file():
        return frozenset()
    text = file.read_text()
    if file.suffix == ".py":
        tree = ast.parse(text)
        return frozenset(
            n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name.startswith("test")
        )
    if file.suffix == ".rego":
        return frozenset(re.findall(r"^(test_\w+)", text, re.M))
    return frozenset()


def test_exists(ref: str) -> bool:
    path, _, name = ref.partition("::")
    return bool(name) and name in test_names(path)


def problems() -> list[str]:
    """Everything wrong with the table except the examples (those need the policy engine)."""
    out = []
    known_rules = rule_ids()
    known_checks = set(data().get("checks") or {})
    probe_names = probe_table()
    endpoints = api()["endpoints"]
    for row in rows():
        where = row.label
        if row.verdict not in VERDICTS:
            out.append(f"{where}: verdict {row.verdict!r} is not one of {', '.join(VERDICTS)}")
        if not row.endpoints or not row.fields:
            out.append(f"{where}: needs at (endpoints) and fields")
        if not str(row.raw.get("why") or "").strip() and row.verdict != "rule":
            out.append(f"{where}: a {row.verdict} row needs a why")
        for endpoint in row.endpoints:
            if endpoint not in endpoints and not row.raw.get("daemon_only"):
                out.append(
                    f"{where}: {endpoint} is not a write of API {api()['versions'][0]}-{api()['newest']} "
                    "(coverage_api.json); mark daemon_only: true if the daemon has it anyway"
                )
        for name in row.fields:
            if name in (ENDPOINT, EVERY):
                continue
            present = [e for e in row.endpoints if name in api_fields(e)]
            if row.raw.get("daemon_only") and present:
                out.append(f"{where}: {name} is in the swagger of {', '.join(present)} now: drop daemon_only")
            if not row.raw.get("daemon_only") and not present:
                out.append(
                    f"{where}: {name} is a field of none of {', '.join(row.endpoints)} (coverage_api.json)"
                )
        if EVERY in row.fields and row.verdict not in ("rule", "always_on"):
            out.append(f"{where}: '*' (every field) is only for endpoints a rule or check denies as a whole")
        for rule in row.rules:
            if rule not in known_rules:
                out.append(
                    f"{where}: rule {rule!r} is not in module_utils/policy.RULES (nor trusted_registries)"
                )
        for check in row.checks:
            if check not in known_checks:
                out.append(
                    f"{where}: check {check!r} is not an always-on check ({', '.join(sorted(known_checks))})"
                )
        for probe in row.probes:
            if probe not in probe_names:
                out.append(f"{where}: probe {probe!r} is not made by module_utils/probes.build_probes")
        for ref in row.tests:
            if not test_exists(ref):
                out.append(f"{where}: test {ref} does not exist")
        if row.verdict == "rule" and not (row.rules and row.tests):
            out.append(f"{where}: a rule row needs rules and tests")
        if row.verdict == "always_on" and not (row.checks and row.tests):
            out.append(f"{where}: an always_on row needs checks and tests")
        if row.verdict == "gap" and not row.raw.get("examples"):
            out.append(f"{where}: a gap row needs examples (requests the policy still allows)")
    used_rules = {r for row in rows() if row.verdict == "rule" for r in row.rules}
    for rule in sorted(known_rules - used_rules):
        out.append(f"rule {rule} judges no field: add it to the rows of the fields it judges")
    used_probes = {p for row in rows() for p in row.probes}
    for probe, method in sorted(probe_table().items()):
        if probe not in used_probes and method not in READ_METHODS:
            out.append(f"probe {probe} is in no row: add it to the row of the field it probes")
    out += [f"no row covers {item}" for item in missing()]
    return out


# ---------------------------------------------------------------------------------------- render
def _span(endpoint: str, name: str) -> str:
    spans = api_fields(endpoint).get(name)
    first, newest = api()["versions"][0], api()["newest"]
    if not spans or spans == [first, newest]:
        return ""
    low, high = spans
    if high == newest:
        return f" ({low}+)"
    if low == first:
        return f" (to {high})"
    return f" ({low}-{high})"


def _cell(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _code(items: list[str]) -> str:
    return ", ".join(f"`{i}`" for i in items)


def render() -> str:
    info = api()
    counts = Counter(r.verdict for r in rows())
    covered = coverage()
    field_verdicts: Counter[str] = Counter()
    for endpoint, entry in info["endpoints"].items():
        for name in entry["fields"]:
            field_verdicts.update({r.verdict for r in covered.get((endpoint, name), [])})
    total_fields = sum(len(e["fields"]) for e in info["endpoints"].values())
    lines = [
        "# Coverage of the Docker Engine API",
        "",
        "<!-- Generated by `.venv/bin/python -m tests.policy.coverage_table` from tests/policy/coverage.yaml",
        "     and tests/policy/coverage_api.json; edit those, not this file. -->",
        "",
        f"Every write of the Engine API {info['versions'][0]} to {info['newest']} (every method but GET and"
        f" HEAD in moby's `api/docs/v1.N.yaml` and `api/swagger.yaml`: {len(info['endpoints'])} endpoints,"
        f" {total_fields} query parameters, headers and body fields) and what judges each: a rule of the"
        " policy (with its role variable, verification probes and tests), an always-on check, no rule"
        " (why none is needed), a known limit (why no policy over the request can judge it), or a gap"
        " this audit found. Fields the daemon reads but swagger lacks are marked *daemon only*.",
        "",
        "`tests/policy/test_coverage.py` fails when a write or field has no row, when a row names a rule,"
        " check, probe, test or field that does not exist, when a rule or probe is in no row, when an"
        " example request does not get the decision its row promises (OPA's own engine; a gap's examples"
        " must still be allowed with every rule on: closing a gap turns the test red until its row becomes"
        " a rule row), or when this file is stale. Regenerate the field list from a newer moby with"
        " `.venv/bin/python -m tests.policy.coverage_api --git-dir <moby.git>`.",
        "",
        "Sources: moby's swagger files and code (`api/types`, `daemon/server/router/*`,"
        " `daemon/daemon_unix.go`, `daemon/oci_linux.go`, `daemon/volume/local`, `pkg/authorization`),"
        " the CIS Docker Benchmark section 5 as docker-bench-security checks it"
        " (`tests/5_container_runtime.sh`), and the policy evaluated with the test harness"
        " (`tests/policy/harness.py`).",
        "",
        "| verdict | rows | fields with a row of this verdict |",
        "|---|---|---|",
    ]
    for verdict in VERDICTS:
        lines.append(f"| {verdict} | {counts.get(verdict, 0)} | {field_verdicts.get(verdict, 0)} |")
    lines += [
        "",
        "## Gaps found by the audit",
        "",
    ]
    gaps = [row for row in rows() if row.verdict == "gap"]
    if not gaps:
        lines.append(
            "None open: every gap the audit found is closed by a rule (its row is a rule row) or recorded"
            " as a known limit with the reason. A new gap row (verdict gap) is listed here; its examples"
            " must be allowed by the policy with every rule on (the test turns red when a rule closes it)."
        )
    else:
        lines += [
            "Verified against the current policy with the test harness (OPA 1.20.2, Rego v1, the restricted"
            " profile with readonly_rootfs and trusted_registries on too): every example of these rows in"
            " tests/policy/coverage.yaml is allowed. The policy is not changed here.",
            "",
            "| id | endpoints | fields | should be judged by | what is not judged |",
            "|---|---|---|---|---|",
        ]
    for row in gaps:
        lines.append(
            f"| `{row.raw.get('id', '')}` | {_code(row.endpoints)} | {_code(row.fields)} |"
            f" {_code(row.rules)} | {_cell(row.raw.get('why', ''))} |"
        )
    lines += ["", "## Where swagger and the daemon disagree", ""]
    for row in rows():
        text = str(row.raw.get("why", ""))
        if row.raw.get("daemon_only") or "disagree" in text or "Swagger and the daemon" in text:
            tag = " (daemon only)" if row.raw.get("daemon_only") else ""
            lines.append(f"- {_code(row.endpoints)} {_code(row.fields)}{tag}: {_cell(text)}")
    lines += ["", "## CIS Docker Benchmark section 5", "", "| CIS | rows (verdict) |", "|---|---|"]
    cis: dict[str, list[str]] = {}
    for row in rows():
        for item in re.findall(r"\d+\.\d+", str(row.raw.get("cis", ""))):
            name = row.raw.get("id") or f"{row.endpoints[0]} {', '.join(row.fields[:3])}"
            cis.setdefault(item, []).append(f"{name} ({row.verdict})")
    for item in sorted(cis, key=lambda c: tuple(int(x) for x in c.split("."))):
        lines.append(f"| {item} | {_cell('; '.join(dict.fromkeys(cis[item])))} |")
    lines += [
        "",
        "In no row: 5.7 (sshd in containers: image content), 5.28 (latest images: content), 5.30 (the"
        " default bridge docker0: NetworkMode default or bridge, a choice that grants nothing of the host)."
        " 5.15, 5.19 and 5.27 are advisory and grant nothing (no_rule rows above).",
        "",
        "## Always-on checks",
        "",
        "| check (reason prefix) | denies |",
        "|---|---|",
    ]
    for name, text in (data().get("checks") or {}).items():
        lines.append(f"| `{name}` | {_cell(text)} |")
    lines += [
        "",
        "## Rules",
        "",
        "| rule (reason prefix) | variable | baseline | restricted | fields judged |",
        "|---|---|---|---|---|",
    ]
    judged: Counter[str] = Counter()
    for (_endpoint, name), covering in coverage().items():
        if name != ENDPOINT:
            judged.update({r for row in covering if row.verdict == "rule" for r in row.rules})
    for rule, (variable, baseline, strict) in rule_table().items():
        on = {True: "on", False: "off", None: "off (on when the list is set)"}
        lines.append(f"| `{rule}` | `{variable}` | {on[baseline]} | {on[strict]} | {judged.get(rule, 0)} |")
    lines += [
        "",
        "## The table",
        "",
        "Grouped by endpoints; a field may have several rows (a rule and a limit or gap of the same"
        " field). `(endpoint)` is the write itself, `*` every field of it; `A[]` the items of an array,"
        " `A.*` the values of a map; (1.44+) marks a field that appeared in that version, (to 1.51) one"
        " that left the swagger after it (older path versions still take it).",
    ]
    groups: dict[tuple[str, ...], list[Row]] = {}
    for row in rows():
        groups.setdefault(tuple(row.endpoints), []).append(row)
    for endpoints, group in groups.items():
        lines += [
            "",
            f"### {', '.join(endpoints)}",
            "",
            "| fields | verdict | judged by | probes | tests | why |",
            "|---|---|---|---|---|---|",
        ]
        for row in group:
            names = [n + _span(endpoints[0], n) for n in row.fields]
            judged = _code(row.rules) or _code(row.checks)
            if row.raw.get("id"):
                judged = (judged + " " if judged else "") + f"(`{row.raw['id']}`)"
            if row.raw.get("daemon_only"):
                judged += " *daemon only*"
            tests = ", ".join(f"`{t.rpartition('/')[2]}`" for t in row.tests)
            why = _cell(row.raw.get("why", ""))
            if row.raw.get("cis"):
                why += f" CIS {_cell(row.raw['cis'])}."
            lines.append(
                f"| {_cell(', '.join(names))} | {row.verdict} | {judged} | {_code(row.probes)} | {tests}"
                f" | {why} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    found = problems()
    for problem in found:
        print(problem, file=sys.stderr)
    text = render()
    if "--check" in args:
        stale = not DOC_FILE.is_file() or DOC_FILE.read_text() != text
        if stale:
            print(
                f"{DOC_FILE} is stale: run .venv/bin/python -m tests.policy.coverage_table", file=sys.stderr
            )
        return 1 if (found or stale) else 0
    DOC_FILE.write_text(text)
    print(f"wrote {DOC_FILE} ({len(rows())} rows)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
