"""The decision log (module_utils/decision_log.py) and its explanation (module_utils/explain.py).

The plugin lines are the ones the opa-docker-authz test double really writes (its Plugin class,
policy-file mode and config-file mode with console decision logs, evaluating the role's rendered
policy and bundle with OPA's engine), wrapped the way dockerd logs a plugin's stderr; a fixture
holds lines copied from a real dockerd 20.10 log. Then: masking, filters, windows, rotated and
gzipped files, bounds, re-evaluation that names exactly the rules, grouping for the report.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.hardening.docker_authz.plugins.filter.policy import FilterModule as PolicyFilters
from ansible_collections.hardening.docker_authz.plugins.module_utils import decision_log as D
from ansible_collections.hardening.docker_authz.plugins.module_utils import explain as X
from ansible_collections.hardening.docker_authz.plugins.module_utils import report as R
from ansible_collections.hardening.docker_authz.plugins.module_utils.policy import PARAMETER_DEFAULTS, RULES
from tests.opa_docker_authz_double import server
from tests.policy.harness import render, variables

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).with_name("dockerd_decision_lines.log")
PLUGIN_ID = "5cd6fb5d0853c38d32d5dc12a35953e30f5c521b2de44886ec597437f55dbb61"
SECRET = "hunter2-s3cr3t"


# --------------------------------------------------------------------------- helpers


def go_quote(text: str) -> str:
    """Go's strconv.Quote (what logrus's text formatter writes for msg=...)."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        elif not ch.isprintable():
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out) + '"'


def daemon_lines(
    stderr: str, when: str = "2026-12-06T01:50:16.000000000Z", json_format: bool = False
) -> list[str]:
    """The plugin's stderr as dockerd logs it, one daemon line per plugin line."""
    out = []
    for line in stderr.splitlines():
        if json_format:
            out.append(json.dumps({"level": "error", "msg": line, "plugin": PLUGIN_ID, "time": when}))
        else:
            out.append(f"time={go_quote(when)} level=error msg={go_quote(line)} plugin={PLUGIN_ID}")
    return out


def authz_req(
    method: str, uri: str, body: Any = None, user: str = "", agent: str = "Docker-Client/27.5.1"
) -> dict:
    req: dict[str, Any] = {
        "RequestMethod": method,
        "RequestUri": uri,
        "RequestHeaders": {"Content-Type": "application/json", "User-Agent": agent},
        "User": user,
        "UserAuthNMethod": "TLS" if user else "",
    }
    if body is not None:
        req["RequestBody"] = base64.b64encode(json.dumps(body).encode()).decode()
    return req


def create(name: str | None = None, **host_config: Any) -> tuple[str, str, dict]:
    body: dict[str, Any] = {"Image": "registry.example.com/web:1.2", "User": "1000", "Env": ["PATH=/bin"]}
    body["HostConfig"] = {
        "Memory": 67108864,
        "NanoCpus": 500000000,
        "PidsLimit": 100,
        "SecurityOpt": ["no-new-privileges"],
        **host_config,
    }
    return "POST", "/v1.47/containers/create" + (f"?name={name}" if name else ""), body


# The four kinds of denied run of the issue, each with the rules that deny it under "restricted".
DENIED_RUNS: dict[str, tuple[tuple[str, str, dict], set[str]]] = {}


def _runs() -> dict[str, tuple[tuple[str, str, dict], set[str]]]:
    if DENIED_RUNS:
        return DENIED_RUNS
    priv = create("priv", Privileged=True)
    root = create("rootly")
    root[2]["User"] = "0"
    secret = create("leaky")
    secret[2]["Env"] = ["PATH=/bin", f"DB_PASSWORD={SECRET}", f"API_TOKEN={SECRET}", "PASSWORD_FILE=/run/s"]
    mount = create("mounty", Binds=["/etc:/host-etc:ro"])
    DENIED_RUNS.update(
        {
            "privileged": (priv, {"privileged"}),
            "root": (root, {"root_user"}),
            "secret": (secret, {"sensitive_env"}),
            "mount": (mount, {"sensitive_mounts"}),
        }
    )
    return DENIED_RUNS


@pytest.fixture(scope="module")
def restricted_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("policy") / "authz.rego"
    path.write_text(render("v1", profile="restricted"))
    return path


@pytest.fixture(scope="module")
def policy_file_log(restricted_policy: Path) -> str:
    """stderr of the double in policy-file mode: the four denied runs, a compliant run, a probe."""
    import contextlib
    import io

    plugin = server.Plugin(server.parse_flags(["-policy-file", str(restricted_policy)]))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        for (method, uri, body), _rules in _runs().values():
            assert plugin.authz_req(authz_req(method, uri, body))["Allow"] is False
        method, uri, body = create("fine")
        assert plugin.authz_req(authz_req(method, uri, body)) == {"Allow": True}
        # this collection's own verification probe
        p_method, p_uri, p_body = create("hardening-verify-probe", Privileged=True)
        plugin.authz_req(authz_req(p_method, p_uri, p_body, agent="hardening.docker_authz"))
        # a TLS user
        plugin.authz_req(authz_req(*create("tls", Privileged=True), user="alice"))
    return err.getvalue()


def _collect(lines: list[str], **kw: Any) -> dict[str, Any]:
    return D.collect([("test", ((line, None) for line in lines))], **kw)


# --------------------------------------------------------------------------- parsing


def test_policy_file_mode_lines_of_the_double_parse(policy_file_log: str) -> None:
    # the double writes v0.10's one line per decision
    assert policy_file_log.count("Returning OPA policy decision: false: {") == 6
    found = _collect(daemon_lines(policy_file_log), kinds=D.KINDS)
    assert found["counts"] == {"denied": 5, "allowed": 1, "error": 0, "fail_open": 0}
    assert found["probes_skipped"] == 1 and found["plugin_ids"] == [PLUGIN_ID]
    entries = found["entries"]
    assert [e["request"]["container"] for e in entries] == [
        "priv",
        "rootly",
        "leaky",
        "mounty",
        "fine",
        "tls",
    ]
    first = entries[0]
    assert first["mode"] == "policy-file" and first["kind"] == "denied" and first["allowed"] is False
    assert re.fullmatch(r"[0-9a-f-]{36}", first["decision_id"])
    assert first["config_hash"] and len(first["config_hash"]) == 64
    assert first["request"] == {
        "method": "POST",
        "endpoint": "/containers/create",
        "image": "registry.example.com/web:1.2",
        "container": "priv",
        "user": None,
        "container_user": "1000",
        "user_agent": "Docker-Client/27.5.1",
    }
    assert entries[-1]["request"]["user"] == "alice"
    assert first["input"]["Body"]["HostConfig"]["Privileged"] is True
    # the decision's own RFC 3339 timestamp wins over the daemon line's time
    assert first["time"].endswith("Z") and not first["time"].startswith("2026-12-06T01:50:16.000000")


def test_json_log_format_and_real_dockerd_lines_parse(policy_file_log: str) -> None:
    as_json = _collect(daemon_lines(policy_file_log, json_format=True), kinds=D.KINDS)
    as_text = _collect(daemon_lines(policy_file_log), kinds=D.KINDS)
    assert [e["decision_id"] for e in as_json["entries"]] == [e["decision_id"] for e in as_text["entries"]]
    # lines copied from a real dockerd 20.10 log (the double as a managed plugin on a DinD host)
    real = _collect(FIXTURE.read_text().splitlines(), kinds=D.KINDS)
    kinds = [e["kind"] for e in real["entries"]]
    assert "denied" in kinds and "fail_open" in kinds and "error" in kinds, kinds
    denied = [e for e in real["entries"] if e["kind"] == "denied"]
    assert (
        denied[0]["request"]["method"] == "POST" and denied[0]["request"]["endpoint"] == "/containers/create"
    )
    assert all(e["plugin_id"] for e in real["entries"])


def test_go_unquote() -> None:
    assert D.go_unquote(r"a\"b\\c\n\t\u00e9\x41\101") == 'a"b\\c\n\téAA'
    for text in ['{"a":"b\\"c"}', "tab\there", "é ünï 😀", "ctl\x01\x7f"]:
        assert D.go_unquote(go_quote(text)[1:-1]) == text


def test_error_lines_single_and_multi_line() -> None:
    input_doc = {"Method": "POST", "PathPlain": "/containers/create", "Body": {"Env": [f"PASSWORD={SECRET}"]}}
    one = (
        "2026/12/06 01:50:16 Returning OPA policy decision: false "
        f"(error: 'boom'; input: '{json.dumps(input_doc)}')"
    )
    multi = (
        "2026/12/06 01:50:17 Returning OPA policy decision: false (error: '2 errors occurred:\n"
        "authz.rego:3: rego_parse_error: `if` keyword is required before rule body\n"
        f"authz.rego:7: rego_parse_error: x'; input: '{json.dumps(input_doc)}')"
    )
    old_double = "Returning OPA policy decision: false (error: bad; input: [123 125])"
    found = _collect(daemon_lines(one + "\n" + multi + "\n" + old_double), kinds=D.KINDS)
    errors = found["entries"]
    assert [e["kind"] for e in errors] == ["error", "error", "error"]
    assert errors[0]["error"] == "boom" and errors[0]["input"]["Method"] == "POST"
    assert errors[1]["error"].startswith("2 errors occurred:\nauthz.rego:3: rego_parse_error")
    assert errors[1]["input"]["PathPlain"] == "/containers/create"
    assert errors[2]["input"] == {}
    assert SECRET not in json.dumps(found)


def test_config_file_mode_console_lines_of_the_double(tmp_path: Path) -> None:
    import contextlib
    import io

    bundle = PolicyFilters().filters()["policy_bundle"](variables(profile="restricted"))
    root = tmp_path / "bundle"
    for name, text in bundle.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    cfg = tmp_path / "config.json"
    cfg.write_text(
        json.dumps({"bundles": {"authz": {"resource": f"file://{root}"}}, "decision_logs": {"console": True}})
    )
    manager = server.BundleManager(server.parse_config(cfg.read_text()))
    manager.start()
    assert manager.ready.wait(30)
    plugin = server.Plugin(server.parse_flags(["-config-file", str(cfg)]), manager)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        for (method, uri, body), _rules in _runs().values():
            assert plugin.authz_req(authz_req(method, uri, body))["Allow"] is False
    assert '"msg":"Decision Log"' in err.getvalue() and "6.7108864e+07" in err.getvalue()
    found = _collect(daemon_lines(err.getvalue()), kinds=D.KINDS)
    assert found["counts"]["denied"] == 4
    entry = found["entries"][0]
    assert entry["mode"] == "config-file" and entry["bundle_revisions"] == {
        "authz": json.loads(bundle[".manifest"])["revision"]
    }
    # floats of the console logger are integers again, so the policy sees what the plugin saw
    assert entry["input"]["Body"]["HostConfig"]["Memory"] == 67108864
    assert isinstance(entry["input"]["Body"]["HostConfig"]["Memory"], int)
    policy = D.read_policy_files(str(root))
    assert policy["kind"] == "bundle" and "docker/authz/data.json" in policy["files"]
    doc = X.explain_fleet({"h": {"decisions": found, "policy": policy}})
    items = doc["hosts"][0]["items"]
    for item, (_req, rules) in zip(items, _runs().values(), strict=True):
        assert {r["rule"] for r in item["reasons"]} == rules, item["reasons"]
        assert item["status"] == "denied" and item["policy_changed"] is False
    assert SECRET not in json.dumps(doc)


# --------------------------------------------------------------------------- masking


def test_the_keyword_list_is_the_policys() -> None:
    assert list(D.DEFAULT_SENSITIVE_ENV_KEYWORDS) == PARAMETER_DEFAULTS["docker_authz_sensitive_env_keywords"]


def test_masking_env_credentials_and_buildargs() -> None:
    doc = {
        "Method": "POST",
        "Path": "/v1.47/build?t=x&buildargs="
        + json.dumps({"NPM_TOKEN": SECRET, "VERSION": "1"}).replace('"', "%22"),
        "Query": {"buildargs": [json.dumps({"NPM_TOKEN": SECRET, "VERSION": "1"})], "t": ["x"]},
        "Headers": {"X-Registry-Auth": SECRET, "User-Agent": "c"},
        "Body": {
            "Env": [f"DB_PASSWORD={SECRET}", "HOME=/root", f"my_apikey={SECRET}", "EMPTY_SECRET="],
            "TaskTemplate": {"ContainerSpec": {"Env": [f"GH_TOKEN={SECRET}"]}},
            "username": "bob",
            "password": SECRET,
            "serveraddress": "registry.example.com",
            "auth": SECRET,
            "IdentityToken": SECRET,
            "Settings": {"authconfig": SECRET},
            "Labels": {"vault_secret": SECRET, "team": "web"},
        },
    }
    masked, where = D.mask_input(doc)
    text = json.dumps(masked)
    assert SECRET not in text and "hunter2" not in text
    body = masked["Body"]
    assert body["Env"] == ["DB_PASSWORD=<masked>", "HOME=/root", "my_apikey=<masked>", "EMPTY_SECRET="]
    assert body["username"] == "bob" and body["serveraddress"] == "registry.example.com"
    assert body["Labels"]["team"] == "web"
    assert json.loads(masked["Query"]["buildargs"][0]) == {"NPM_TOKEN": "<masked>", "VERSION": "1"}
    assert (
        "Body.Env[0] (DB_PASSWORD)" in where
        and "Body.password" in where
        and "Headers.X-Registry-Auth" in where
    )
    assert doc["Body"]["password"] == SECRET  # the original is not changed
    # extra keywords (the host policy's own)
    masked, _ = D.mask_input(
        {"Body": {"Env": [f"DBPASS={SECRET}"]}}, [*D.DEFAULT_SENSITIVE_ENV_KEYWORDS, "dbpass"]
    )
    assert masked["Body"]["Env"] == ["DBPASS=<masked>"]


def test_masked_input_gets_the_same_verdict(restricted_policy: Path, policy_file_log: str) -> None:
    found = _collect(daemon_lines(policy_file_log))
    leaky = next(e for e in found["entries"] if e["request"]["container"] == "leaky")
    # names stay; the value of PASSWORD_FILE (a path the policy allows) is masked too: masking errs safe
    assert leaky["masked"] == [
        "Body.Env[1] (DB_PASSWORD)",
        "Body.Env[2] (API_TOKEN)",
        "Body.Env[3] (PASSWORD_FILE)",
    ]
    assert SECRET not in json.dumps(found)
    ev = X.PolicyEvaluator({"authz.rego": restricted_policy.read_text()})
    verdict = ev.evaluate(leaky["input"])
    assert [r for r in verdict["deny"] if r.startswith("sensitive_env")] == [
        f"sensitive_env: environment variable {name} looks like a secret ({kw}); "
        "pass a file (*_FILE) or a Docker secret instead"
        for name, kw in (("API_TOKEN", "token"), ("DB_PASSWORD", "password"))
    ]
    ev.close()


# --------------------------------------------------------------------------- windows, filters, files


def test_window_last_filters_and_bounds(policy_file_log: str) -> None:
    lines = daemon_lines(policy_file_log)
    everything = _collect(lines, kinds=D.KINDS)
    stamps = [D.parse_rfc3339(e["time"]) for e in everything["entries"]]
    assert stamps == sorted(stamps)
    assert _collect(lines, since=stamps[-1] + dt.timedelta(seconds=1))["entries"] == []
    assert len(_collect(lines, until=stamps[0] - dt.timedelta(seconds=1))["entries"]) == 0
    last2 = _collect(lines, last=2)
    assert [e["request"]["container"] for e in last2["entries"]] == ["mounty", "tls"] and last2[
        "matched"
    ] == 5
    assert [e["request"]["container"] for e in _collect(lines, filters={"container": ["r*"]})["entries"]] == [
        "rootly"
    ]
    assert len(_collect(lines, filters={"image": ["registry.example.com/web"]})["entries"]) == 5
    assert _collect(lines, filters={"image": ["other/*"]})["entries"] == []
    assert [e["request"]["user"] for e in _collect(lines, filters={"user": ["alice"]})["entries"]] == [
        "alice"
    ]
    bounded = _collect(lines, max_entries=3)
    assert bounded["returned"] == 3 and bounded["truncated"] == 2
    assert [e["request"]["container"] for e in bounded["entries"]] == ["leaky", "mounty", "tls"]
    small = _collect(lines, max_bytes=1)  # at least the newest one
    assert small["returned"] == 1 and small["truncated"] == 4
    assert _collect(lines, plugin_id="0000")["entries"] == []
    assert len(_collect(lines, plugin_id=PLUGIN_ID[:12])["entries"]) == 5
    assert _collect(lines, include_probes=True)["probes_skipped"] == 0


def test_parse_time() -> None:
    now = dt.datetime(2026, 12, 6, 2, 0, tzinfo=dt.UTC)
    assert D.parse_time("90m", "since", now) == now - dt.timedelta(minutes=90)
    assert D.parse_time("2026-12-06T01:50:16+01:00", "since") == dt.datetime(
        2026, 12, 6, 0, 50, 16, tzinfo=dt.UTC
    )
    assert D.parse_time("2026-12-06 01:50", "since") == dt.datetime(2026, 12, 6, 1, 50, tzinfo=dt.UTC)
    assert D.parse_time("@0", "since") == dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    assert D.parse_time(None, "since") is None
    with pytest.raises(D.DecisionLogError, match=r"since: 'yesterday' is not a time\. Give an ISO 8601"):
        D.parse_time("yesterday", "since")


def test_rotated_and_gzipped_files(tmp_path: Path, policy_file_log: str) -> None:
    lines = daemon_lines(policy_file_log)
    log = tmp_path / "docker.log"
    (tmp_path / "docker.log.2.gz").write_bytes(gzip.compress(("\n".join(lines[:2]) + "\n").encode()))
    (tmp_path / "docker.log.1").write_text("\n".join(lines[2:4]) + "\n")
    log.write_text("\n".join(lines[4:]) + "\n")
    (tmp_path / "docker.log.bak-unrelated").mkdir()
    for i, name in enumerate(["docker.log.2.gz", "docker.log.1", "docker.log"]):
        os.utime(tmp_path / name, (1_800_000_000 + i, 1_800_000_000 + i))
    files = D.rotated_files(str(log))
    assert [Path(f).name for f in files] == ["docker.log.2.gz", "docker.log.1", "docker.log"]
    found = D.collect([(f, D.file_lines(f)) for f in files], kinds=D.KINDS)
    assert [e["request"]["container"] for e in found["entries"]] == [
        "priv",
        "rootly",
        "leaky",
        "mounty",
        "fine",
        "tls",
    ]
    assert {Path(e["source"]).name for e in found["entries"]} == {
        "docker.log.2.gz",
        "docker.log.1",
        "docker.log",
    }
    # DOCKER_LOGFILE of /etc/default/docker names the file
    defaults = tmp_path / "default-docker"
    defaults.write_text(f'DOCKER_OPTS="--iptables=false"\nexport DOCKER_LOGFILE="{log}"\n')
    assert D.default_log_file(str(defaults)) == str(log)


def test_read_policy_files(tmp_path: Path) -> None:
    assert D.read_policy_files(str(tmp_path / "none.rego"))["exists"] is False
    (tmp_path / "a.rego").write_text("package x\n")
    assert D.read_policy_files(str(tmp_path / "a.rego"))["files"] == {"a.rego": "package x\n"}
    big = D.read_policy_files(str(tmp_path / "a.rego"), max_bytes=3)
    assert big["exists"] is False and "larger than 3 bytes" in big["error"]
    assert D.defines_audit({"r.rego": "package docker.authz\naudit contains msg if { msg := 1 }\n"})
    assert not D.defines_audit({"r.rego": "package docker.authz\ndeny contains msg if { audit_x }\n"})


# --------------------------------------------------------------------------- explain


@pytest.mark.parametrize("dialect", ["v1", "v0"])
def test_explain_names_exactly_the_rules_that_denied(
    dialect: str, policy_file_log: str, tmp_path: Path
) -> None:
    text = render(dialect, profile="restricted")
    found = _collect(daemon_lines(policy_file_log))
    doc = X.explain_fleet(
        {
            "web1": {
                "decisions": found,
                "policy": {"path": "/p", "kind": "file", "files": {"authz.rego": text}},
            }
        }
    )
    host = doc["hosts"][0]
    assert host["engine"] == ("OPA (opa_bindings)" if dialect == "v1" else "regopy (rego-cpp)")
    by_name = {i["request"]["container"]: i for i in host["items"]}
    for name, (_req, rules) in zip(["priv", "rootly", "leaky", "mounty"], _runs().values(), strict=True):
        item = by_name[name]
        assert {r["rule"] for r in item["reasons"]} == rules, (name, item["reasons"])
        for r in item["reasons"]:
            assert r["variable"] == RULES[r["rule"]][0]
            assert r["doc"] == f"docs/policy.md#{r['rule']}--{RULES[r['rule']][0]}"
        assert item["status"] == "denied" and item["now_allowed"] is False
    out = X.render_text(doc)
    assert (
        "priv" in out
        and "controlled by docker_authz_deny_privileged; "
        "see docs/policy.md#privileged--docker_authz_deny_privileged"
        in out
    )
    assert SECRET not in out and SECRET not in json.dumps(doc)


def test_a_request_the_policy_now_allows_is_said_to_be(policy_file_log: str) -> None:
    found = _collect(daemon_lines(policy_file_log))
    text = render("v1", profile="restricted", deny_privileged=False)
    doc = X.explain_fleet({"h": {"decisions": found, "policy": {"files": {"authz.rego": text}}}})
    priv = next(i for i in doc["hosts"][0]["items"] if i["request"]["container"] == "priv")
    assert priv["status"] == "now_allowed" and priv["reasons"] == [] and priv["policy_changed"] is True
    assert "the policy the host runs now ALLOWS it" in X.render_text(doc)


def test_would_be_denials_fit_in(policy_file_log: str) -> None:
    """A policy exposing data.docker.authz.audit: allowed decisions it flags are would-be denials."""
    found = _collect(daemon_lines(policy_file_log), kinds=("denied", "allowed"))
    text = render("v1", profile="restricted") + (
        "\naudit contains msg if {\n\tinput.Body.HostConfig.Memory > 1\n"
        '\tmsg := "resource_limits: (audit) a memory limit above 1 byte"\n}\n'
    )
    doc = X.explain_fleet({"h": {"decisions": found, "policy": {"files": {"authz.rego": text}}}})
    fine = next(i for i in doc["hosts"][0]["items"] if i["request"]["container"] == "fine")
    assert fine["status"] == "would_be_denied" and [a["rule"] for a in fine["audit"]] == ["resource_limits"]
    assert doc["would_be_denied"] == 1 and doc["denied"] == 5
    # explain.yml keeps the would-be denials and drops the plain allowed decisions
    plain = X.explain_fleet(
        {"h": {"decisions": found, "policy": {"files": {"authz.rego": render("v1")}}}}, keep_allowed=False
    )
    assert "allowed" not in {i["status"] for i in plain["hosts"][0]["items"]}
    kept = X.explain_fleet(
        {"h": {"decisions": found, "policy": {"files": {"authz.rego": text}}}}, keep_allowed=False
    )
    assert [i["status"] for i in kept["hosts"][0]["items"]].count("would_be_denied") == 1
    summary = R.denial_summary(doc["hosts"][0]["items"])
    assert summary["denied"] == 5 and summary["would_be_denied"] == 1
    by_rule = {r["rule"]: r for r in summary["by_rule"]}
    assert by_rule["resource_limits"]["would_be_denied"] == 1


def test_explain_host_states() -> None:
    doc = X.explain_fleet(
        {
            "gone": {"status": "unreachable", "message": "ssh: connect refused"},
            "bare": {"status": "no-plugin", "message": "plugin opa-docker-authz is not installed"},
            "quiet": {
                "decisions": {
                    "entries": [],
                    "counts": {},
                    "message": "no denied decision in the log since X",
                },
                "policy": None,
            },
        }
    )
    states = {h["host"]: (h["status"], h["message"]) for h in doc["hosts"]}
    assert states["gone"] == ("unreachable", "ssh: connect refused")
    assert states["bare"][0] == "no-plugin"
    assert states["quiet"] == ("empty", "no denied decision in the log since X")
    text = X.render_text(doc)
    assert "== gone: unreachable: ssh: connect refused" in text and "== quiet: 0 decision(s)" in text


def test_doc_anchors_exist() -> None:
    headings = [
        line.lstrip("#").strip()
        for line in (ROOT / "docs" / "policy.md").read_text().splitlines()
        if line.startswith("#")
    ]
    anchors = {X.github_anchor(h) for h in headings}
    for rule_id in [*RULES, "trusted_registries", "input", "request", "body"]:
        info = X.rule_info(f"{rule_id}: x")
        assert info["doc"].split("#", 1)[1] in anchors, rule_id


# --------------------------------------------------------------------------- report grouping


def test_report_groups_denials_by_rule_and_image(policy_file_log: str) -> None:
    found = _collect(daemon_lines(policy_file_log))
    text = render("v1", profile="restricted")
    items = X.explain_host("web1", found, {"files": {"authz.rego": text}})["items"]
    items2 = X.explain_host(
        "web2", _collect(daemon_lines(policy_file_log), last=1), {"files": {"authz.rego": text}}
    )["items"]
    entries = {
        "web1": {"facts": {"docker": {"available": True}}, "denials": items},
        "web2": {"facts": {"docker": {"available": True}}, "denials": items2},
        "web3": {"unreachable": True},
    }
    report = R.build_report(entries, "now", "2026-12-06T00:00:00Z")
    fleet = report["denials"]
    assert fleet["denied"] == 6 and fleet["hosts"] == 2 and fleet["since"] == "2026-12-06T00:00:00Z"
    by_rule = {r["rule"]: r["denied"] for r in fleet["by_rule"]}
    assert by_rule["privileged"] == 3 and by_rule["root_user"] == 1 and by_rule["sensitive_env"] == 1
    assert fleet["by_rule"][0]["denied"] == max(by_rule.values())
    assert fleet["by_image"][0] == {
        "image": "registry.example.com/web:1.2",
        "denied": 6,
        "would_be_denied": 0,
        "rules": sorted({r for i in items for r in (x["rule"] for x in i["reasons"])}),
    }
    top = fleet["top_offenders"][0]
    assert (top["host"], top["user"], top["denied"]) == ("web1", "(unix socket)", 4)
    assert {(o["host"], o["user"]) for o in fleet["top_offenders"]} == {
        ("web1", "(unix socket)"),
        ("web1", "alice"),
        ("web2", "alice"),
    }
    rows = {r["host"]: r for r in report["hosts"]}
    assert rows["web1"]["denials"]["denied"] == 5 and rows["web3"]["denials"] is None
    page = R.render_html(report)
    # counts per rule first, then the detail; nothing a host says is markup
    assert page.index('id="denials-rules"') < page.index('id="denials-images"') < page.index('id="d-web1"')
    assert '<a href="docs/policy.md#privileged--docker_authz_deny_privileged">' in page
    assert "http" not in page.split("<body>")[1] and SECRET not in page
    evil = [dict(items[0], request={**items[0]["request"], "image": "<script>x</script>"})]
    assert "<script>x" not in R.render_html(R.build_report({"h": {"facts": {"docker": {}}, "denials": evil}}))


# --------------------------------------------------------------------------- the module itself


def _module(tmp_path: Path, **args: Any) -> dict[str, Any]:
    """Run collection/plugins/modules/authz_decisions.py as Ansible runs a module (args file)."""
    import subprocess
    import sys

    args_file = tmp_path / f"args-{len(list(tmp_path.glob('args-*')))}.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {"_ansible_check_mode": True, **args}}))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "collection/plugins/modules/authz_decisions.py"), str(args_file)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    return json.loads(proc.stdout)


def test_the_module_on_a_log_file(tmp_path: Path, policy_file_log: str, restricted_policy: Path) -> None:
    log = tmp_path / "dockerd.log"
    log.write_text("\n".join(daemon_lines(policy_file_log)) + "\n")
    before = log.read_bytes()
    res = _module(
        tmp_path,
        log_path=str(log),
        policy_path=str(restricted_policy),
        last=3,
        sensitive_env_keywords=["dbpass"],
    )
    assert res["changed"] is False and res["source"] == "file" and res["sources"] == [str(log)]
    assert [e["request"]["container"] for e in res["entries"]] == ["leaky", "mounty", "tls"]
    assert (
        res["counts"]["denied"] == 5
        and res["probes_skipped"] == 1
        and res["kinds"] == ["denied", "error", "fail_open"]
    )
    assert (
        res["policy"]["kind"] == "file"
        and res["policy"]["files"]["authz.rego"] == restricted_policy.read_text()
    )
    assert SECRET not in json.dumps(res) and log.read_bytes() == before
    # allowed decisions only when the policy defines audit
    assert (
        _module(
            tmp_path,
            log_path=str(log),
            policy_path=str(restricted_policy),
            kinds=["allowed"],
            allowed_if_audit=True,
        )["entries"]
        == []
    )
    assert (
        len(
            _module(tmp_path, log_path=str(log), policy_path=str(restricted_policy), kinds=["allowed"])[
                "entries"
            ]
        )
        == 1
    )
    empty = _module(tmp_path, log_path=str(log), since="@4102444800")
    assert empty["entries"] == [] and empty["message"].startswith(
        "no denied/error/fail_open decision in the log since 2100-01-01"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"since": "yesterday"}, "since: 'yesterday' is not a time. Give an ISO 8601 time"),
        ({"since": "1h", "until": "2h"}, ") is after until ("),
        (
            {"kinds": ["denied", "maybe"]},
            "kinds: unknown kind(s) maybe. Use a subset of denied, allowed, error, fail_open",
        ),
        ({"max_entries": 0}, "max_entries: 0 is not allowed. Give a positive number"),
        ({"last": -1}, "last: -1 is not allowed. Give a positive number (0 for all)"),
        (
            {"log_path": "/nonexistent/docker.log"},
            "log_path: /nonexistent/docker.log does not exist. Name dockerd's log file",
        ),
    ],
)
def test_the_module_refuses_bad_options(tmp_path: Path, args: dict[str, Any], message: str) -> None:
    res = _module(tmp_path, **args)
    assert res.get("failed") is True and message in res["msg"], res


# --------------------------------------------------------------------------- bundle mode's log policy


def _bundle_plugin(tmp_path: Path, **extra: Any) -> Any:
    bundle = PolicyFilters().filters()["policy_bundle"](variables(profile="restricted", **extra))
    root = tmp_path / "bundle"
    for name, text in bundle.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    cfg = tmp_path / "config.json"
    cfg.write_text(
        json.dumps({"bundles": {"authz": {"resource": f"file://{root}"}}, "decision_logs": {"console": True}})
    )
    manager = server.BundleManager(server.parse_config(cfg.read_text()))
    manager.start()
    assert manager.ready.wait(30)
    return server.Plugin(server.parse_flags(["-config-file", str(cfg)]), manager), root


def _logged(plugin: Any, *requests: tuple[str, str, Any]) -> tuple[list[bool], str]:
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        allowed = [plugin.authz_req(authz_req(*r))["Allow"] for r in requests]
    return allowed, err.getvalue()


ALLOWED_RUN = create("fine")
ROOT_NO_LIMITS = ("POST", "/v1.47/containers/create?name=rooty", {"Image": "busybox", "HostConfig": {
    "SecurityOpt": ["no-new-privileges"]}})  # fmt: skip


def test_bundle_drops_allowed_decisions_in_pure_enforce(tmp_path: Path) -> None:
    from ansible_collections.hardening.docker_authz.plugins.module_utils.rego_check import check_bundle

    plugin, root = _bundle_plugin(tmp_path)
    assert json.loads((root / ".manifest").read_text())["roots"] == ["docker/authz", "system/log"]
    assert "system/log.rego" in check_bundle(str(root), "v1")["files"], "the role's own check accepts it"
    priv = _runs()["privileged"][0]
    allowed, err = _logged(plugin, ALLOWED_RUN, ("GET", "/v1.47/containers/json", None), priv)
    assert allowed == [True, True, False]
    found = _collect(daemon_lines(err), kinds=D.KINDS)
    assert [e["kind"] for e in found["entries"]] == ["denied"], "only the denial is logged"


def test_bundle_logs_would_be_denials_of_audit_rules_only(tmp_path: Path) -> None:
    plugin, root = _bundle_plugin(tmp_path, audit_rules=["resource_limits", "root_user"])
    allowed, err = _logged(plugin, ALLOWED_RUN, ("GET", "/v1.47/containers/json", None), ROOT_NO_LIMITS)
    assert allowed == [True, True, True]
    found = _collect(daemon_lines(err), kinds=D.KINDS)
    (entry,) = found["entries"]
    assert entry["kind"] == "allowed" and entry["request"]["container"] == "rooty"
    doc = X.explain_fleet({"h": {"decisions": found, "policy": D.read_policy_files(str(root))}})
    (item,) = doc["hosts"][0]["items"]
    assert item["status"] == "would_be_denied"
    assert {r["rule"] for r in item["audit"]} == {"resource_limits", "root_user"}


def test_bundle_masks_an_oversized_input_and_keeps_the_verdict(tmp_path: Path) -> None:
    plugin, root = _bundle_plugin(tmp_path)
    method, uri, body = create("huge", Privileged=True)
    body["Labels"] = {"big": "x" * 100_000, "k" * 300: "v"}
    body["Env"] = [*body["Env"], f"DB_PASSWORD={SECRET}", "A=" + "<" * 30_000]
    many = create("many")
    many[2]["Labels"] = {f"l{i}": "v" for i in range(5000)}
    many[2]["User"] = "0"
    allowed, err = _logged(plugin, (method, uri, body), many)
    assert allowed == [False, False]
    lines = err.splitlines()
    assert len(lines) == 2 and max(len(x.encode()) for x in lines) < 16 * 1024, [len(x) for x in lines]
    event = json.loads(lines[0])
    assert event["masked"] == ["/input"]
    record = event["input"]["DockerAuthzMasked"]
    assert record["characters"] > 130_000
    assert {r.split(":")[0] for r in record["deny"]} == {"privileged", "sensitive_env"}
    assert event["input"]["Body"]["HostConfig"]["Privileged"] is True
    assert event["input"]["Body"]["Labels"].startswith("<masked: ")
    assert SECRET not in record["deny"][0] + record["deny"][-1]
    found = _collect(daemon_lines(err), kinds=D.KINDS)
    doc = X.explain_fleet({"h": {"decisions": found, "policy": D.read_policy_files(str(root))}})
    first, second = doc["hosts"][0]["items"]
    assert first["request"]["container"] == "huge" and first["status"] == "denied"
    assert {r["rule"] for r in first["reasons"]} == {"privileged", "sensitive_env"}
    assert "trimmed" in first["note"] and first["trimmed"] == record["characters"]
    assert {r["rule"] for r in second["reasons"]} == {"root_user"}
    assert second["input"]["Body"]["Labels"].startswith("<masked: ")
    assert SECRET not in json.dumps(doc)


def test_double_applies_mask_rules_as_opa_does() -> None:
    event = {"input": {"a": {"b": 1, "c": [1, 2, 3]}, "x": "y"}, "result": True}
    out = server.apply_masks(
        event,
        ["/input/x", {"op": "upsert", "path": "/input/a/b", "value": 2}, "/input/a/c/1", "/input/missing",
         {"op": "upsert", "path": "/input/n/m", "value": 3}, "/result"],
    )  # fmt: skip
    assert event == {"input": {"a": {"b": 2, "c": [1, 3]}, "n": {"m": 3}}}
    assert out == {"erased": ["/input/x", "/input/a/c/1", "/result"], "masked": ["/input/a/b", "/input/n/m"]}
    for bad in (["input/x"], ["/labels/x"], [{"op": "nope", "path": "/input/x"}], [1]):
        with pytest.raises(server.MaskError):
            server.apply_masks({"input": {}}, bad)
    with pytest.raises(server.ConfigError):
        server.parse_config(json.dumps({"decision_logs": {"drop_decision": "/a b"}}))
    config = server.parse_config(json.dumps({"decision_logs": {"mask_decision": "data/x/y"}}))
    assert config.mask_decision == "/x/y" and config.drop_decision == "/system/log/drop"


def test_a_stalled_plugin_log_is_reported() -> None:
    stall = (
        'time="2026-12-06T03:10:00.000000000Z" level=error msg="Error while reading from Writer: '
        f'bufio.Scanner: token too long" plugin={PLUGIN_ID}'
    )
    found = _collect([stall], kinds=D.KINDS)
    assert found["log_stalls"] == [{"time": "2026-12-06T03:10:00.000000000Z", "plugin": PLUGIN_ID}]
    doc = X.explain_fleet({"h": {"decisions": found, "policy": None}})
    assert "token too long" in doc["hosts"][0]["warning"]
    assert "WARNING: dockerd stopped reading the plugin's log" in X.render_text(doc)


def test_an_empty_log_file_is_an_empty_answer(tmp_path: Path) -> None:
    log = tmp_path / "docker.log"
    log.write_text("")
    found = D.collect([(str(log), D.file_lines(str(log)))], kinds=D.KINDS)
    assert found["entries"] == [] and found["lines_read"] == 0 and found["log_stalls"] == []
    decisions = {**found, "message": "no denied decision in the log"}
    doc = X.explain_fleet({"h": {"decisions": decisions, "policy": None}})
    (row,) = doc["hosts"]
    assert row["status"] == "empty" and row["message"] == "no denied decision in the log"
    assert "== h: 0 decision(s) explained" in X.render_text(doc)
