# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""The fleet compliance report: what one host runs (read-only facts), and the report of a fleet.

- :func:`host_facts` runs on a managed host (module ``hardening.docker_authz.authz_facts``):
  engine version, the plugin (reference, manifest digest, enabled, args), whether daemon.json
  hooks it, and the deployed policy (sha256, Rego dialect, the rules it enables, read back from
  the ``config`` object the role renders into it). It never changes anything, and a host
  without Docker or without the plugin is described, not an error.
- :func:`build_report` and :func:`render_html` run on the controller (filters
  ``hardening.docker_authz.fleet_report`` / ``fleet_report_html``): one row per host, failures
  first, as a JSON document and a static HTML page (every host-provided string escaped).

Stdlib only.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Mapping
from typing import Any

from ansible_collections.hardening.docker_authz.plugins.module_utils.docker_api import (
    DockerClient,
    DockerError,
)
from ansible_collections.hardening.docker_authz.plugins.module_utils.opa_args import engine_args
from ansible_collections.hardening.docker_authz.plugins.module_utils.plugin import (
    PluginError,
    PluginManager,
    normalize_alias,
)
from ansible_collections.hardening.docker_authz.plugins.module_utils.policy import RULES
from ansible_collections.hardening.docker_authz.plugins.module_utils.probes import host_policy_path

REPORT_VERSION = 1
DEFAULT_POLICY_PATH = "/etc/docker/policies/authz.rego"
PREFIX = "docker_authz_"
_CONFIG_RE = re.compile(r"^config\s*:?=\s*", re.M)

# Status of a host, worst first: the report lists hosts in this order.
STATUS_ORDER = ("failing", "unreachable", "no-docker", "not-hardened", "warning", "ok")
STATUS_TEXT = {
    "failing": "verification failed",
    "unreachable": "unreachable",
    "no-docker": "Docker unavailable",
    "not-hardened": "not hardened",
    "warning": "enforced, with warnings",
    "ok": "enforced",
}


# --------------------------------------------------------------------------- the deployed policy


def policy_summary(text: str) -> dict[str, Any]:
    """sha256, dialect and the enabled rules of a policy file's text (the role's or any other)."""
    data = text.encode("utf-8", "surrogateescape")
    summary: dict[str, Any] = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "dialect": "v1" if re.search(r"^\s*import\s+rego\.v1\b", text, re.M) else "v0",
        "package": None,
        "managed": False,
        "rules": None,
        "verify_rules": None,
    }
    pkg = re.search(r"^\s*package\s+([\w.]+)", text, re.M)
    summary["package"] = pkg.group(1) if pkg else None
    m = _CONFIG_RE.search(text)
    if not m:
        return summary
    try:
        config, _end = json.JSONDecoder().raw_decode(text, m.end())
    except ValueError:
        return summary
    if not isinstance(config, dict) or not isinstance(config.get("rules"), dict):
        return summary
    summary["managed"] = True
    rules = config["rules"]
    summary["rules"] = sorted(k for k, v in rules.items() if v is True)
    summary["verify_rules"] = verify_rules(config)
    return summary


def verify_rules(config: Mapping[str, Any]) -> dict[str, Any]:
    """authz_verify's ``rules`` for exactly what a deployed policy ``config`` object enforces."""
    rules = config.get("rules") or {}
    out: dict[str, Any] = {}
    for rule_id, (var, _baseline, _restricted) in RULES.items():
        if rule_id in rules:
            out[var[len(PREFIX) :]] = bool(rules[rule_id])
    out["required_limits"] = sorted(config.get("required_limits") or {})
    for name in ("max_memory_bytes", "max_nano_cpus"):
        if isinstance(config.get(name), int):
            out[name] = config[name]
    ports = config.get("allowed_host_ports")
    if isinstance(ports, list):
        pairs = [p for p in ports if isinstance(p, list) and len(p) == 2]
        out["allowed_host_ports"] = [f"{a}-{b}" for a, b in pairs]
    out["allowed_host_ips"] = sorted(config.get("allowed_host_ips") or {})
    out["sensitive_env_keywords"] = list(config.get("sensitive_env_keywords") or [])
    out["sensitive_env_allowed"] = [
        p.get("prefix", "") + ("" if p.get("exact") else "*") + p.get("suffix", "")
        for p in config.get("sensitive_env_allowed") or []
        if isinstance(p, dict)
    ]
    out["allowed_capabilities"] = sorted(config.get("allowed_capabilities") or {})
    out["sensitive_host_paths"] = list(config.get("sensitive_host_paths") or [])
    out["trusted_registries"] = list(config.get("trusted_registries") or [])
    out["exempt_users"] = sorted(config.get("exempt_users") or {})
    # rules in audit (docs/policy.md "Audit mode"): their probes are expected allowed
    if config.get("enforcement") in ("enforce", "audit"):
        out["enforcement"] = config["enforcement"]
    audit = config.get("audit_rules")
    if isinstance(audit, dict):
        out["audit_rules"] = sorted(k for k, v in audit.items() if v is True)
    return out


def read_policy(path: str | None) -> dict[str, Any]:
    if not path:
        return {"path": None, "exists": False, "error": "no policy file: the plugin has no -policy-file"}
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        return {"path": path, "exists": False, "error": None}
    except OSError as exc:
        return {"path": path, "exists": None, "error": f"cannot read {path}: {exc.strerror}"}
    return {
        "path": path,
        "exists": True,
        "error": None,
        **policy_summary(raw.decode("utf-8", "surrogateescape")),
    }


def read_hook(path: str, alias: str) -> dict[str, Any]:
    """Whether daemon.json names the plugin in authorization-plugins (and what else it names)."""
    out: dict[str, Any] = {
        "path": path,
        "exists": False,
        "hooked": False,
        "authorization_plugins": [],
        "error": None,
    }
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        return out
    except OSError as exc:
        out["error"] = f"cannot read {path}: {exc.strerror}"
        return out
    out["exists"] = True
    try:
        doc = json.loads(raw.decode("utf-8") or "{}")
    except (UnicodeDecodeError, ValueError) as exc:
        out["error"] = f"{path} is not valid JSON: {exc}"
        return out
    plugins = doc.get("authorization-plugins") if isinstance(doc, dict) else None
    if isinstance(plugins, list):
        out["authorization_plugins"] = [str(p) for p in plugins]
        out["hooked"] = any(p in (alias, f"{alias}:latest", normalize_alias(alias)) for p in plugins)
    return out


# --------------------------------------------------------------------------- one host


def host_facts(
    client: DockerClient, alias: str, daemon_json_path: str, policy_path: str | None = None
) -> dict[str, Any]:
    """Everything the report needs from one host, read-only. Never raises for a host's state."""
    facts: dict[str, Any] = {
        "docker": {"available": False, "error": None},
        "engine": {},
        "plugin": {"name": alias, "installed": False},
        "daemon_json": read_hook(daemon_json_path, alias),
        "policy": {},
    }
    try:
        version = client.version() or {}
    except DockerError as exc:
        facts["docker"]["error"] = str(exc)
        # Without the engine the plugin's -policy-file is unknown: report the role's default path.
        facts["policy"] = read_policy(policy_path or DEFAULT_POLICY_PATH)
        return facts
    facts["docker"]["available"] = True
    facts["engine"] = {
        "version": version.get("Version"),
        "api_version": version.get("ApiVersion"),
        "os": version.get("Os"),
        "arch": version.get("Arch"),
        "kernel": version.get("KernelVersion"),
    }
    mgr = PluginManager(client)
    found_policy = policy_path
    try:
        name = normalize_alias(alias)
        raw = next((p for p in mgr.list_plugins() if p.get("Name") == name), None)
        if raw is not None:
            state = mgr.find(name)
            words = engine_args((raw.get("Settings") or {}).get("Args"))
            args = " ".join(words)
            facts["plugin"] = {
                "name": name,
                "installed": True,
                "id": raw.get("Id"),
                "enabled": bool(raw.get("Enabled")),
                "reference": raw.get("PluginReference"),
                "digest": state.digest if state else None,
                "args": args,
            }
            if found_policy is None:
                found_policy = host_policy_path(raw, words)
    except (DockerError, PluginError) as exc:
        facts["plugin"]["error"] = str(exc)
    facts["policy"] = read_policy(found_policy) if found_policy else {"path": None, "exists": None}
    return facts


# --------------------------------------------------------------------------- the fleet


def host_row(name: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    """One report row from what report.yml registered for a host (any part may be missing)."""
    facts = entry.get("facts") or {}
    verify = entry.get("verify") or {}
    row: dict[str, Any] = {
        "host": name,
        "status": "ok",
        "reason": "",
        "engine": facts.get("engine") or {},
        "plugin": facts.get("plugin") or {},
        "hooked": (facts.get("daemon_json") or {}).get("hooked"),
        "authorization_plugins": (facts.get("daemon_json") or {}).get("authorization_plugins") or [],
        "policy": {
            k: (facts.get("policy") or {}).get(k)
            for k in ("path", "exists", "sha256", "dialect", "managed", "rules", "error")
        },
        "probes": [
            {k: p.get(k) for k in ("name", "rule", "expected", "outcome", "passed", "message")}
            for p in verify.get("probes") or []
        ],
        "counts": verify.get("counts") or {},
        "enforced": verify.get("enforced"),
        "warnings": list(entry.get("warnings") or verify.get("warnings") or [])
        + list(entry.get("log_warnings") or []),
        "cves": [
            c for c in (verify.get("engine") or {}).get("cves") or [] if c.get("vulnerable") is not False
        ],
    }
    row["denials"] = denial_summary(entry["denials"]) if isinstance(entry.get("denials"), list) else None
    if isinstance(entry.get("denials_error"), str):
        row["denials"] = {**(row["denials"] or denial_summary([])), "error": entry["denials_error"]}
    if entry.get("unreachable") or not facts:
        row["status"] = "unreachable"
        row["reason"] = str(entry.get("msg") or "the host did not answer (SSH or Python)")
        return row
    docker = facts.get("docker") or {}
    plugin = row["plugin"]
    if not docker.get("available"):
        row["status"] = "no-docker"
        row["reason"] = str(docker.get("error") or "the Docker Engine does not answer")
    elif not plugin.get("installed"):
        row["status"] = "not-hardened"
        row["reason"] = f"plugin {plugin.get('name')} is not installed"
    elif not plugin.get("enabled"):
        row["status"] = "not-hardened"
        row["reason"] = f"plugin {plugin.get('name')} is installed but disabled"
    elif not row["hooked"]:
        row["status"] = "not-hardened"
        row["reason"] = "daemon.json does not name the plugin in authorization-plugins"
    elif not row["policy"].get("exists"):
        row["status"] = "failing"
        row["reason"] = f"policy file {row['policy'].get('path')} is missing: the plugin allows everything"
    elif not verify:
        row["status"] = "failing"
        row["reason"] = str(entry.get("verify_msg") or "verification did not run")
    elif verify.get("failed") or row["counts"].get("failed"):
        row["status"] = "failing"
        row["reason"] = str(verify.get("msg") or f"{row['counts'].get('failed')} probe(s) failed")
    elif row["warnings"]:
        row["status"] = "warning"
        row["reason"] = f"{len(row['warnings'])} warning(s)"
    return row


def build_report(
    hosts: Mapping[str, Mapping[str, Any]], generated_at: str = "", denials_since: str | None = None
) -> dict[str, Any]:
    rows = [host_row(name, entry) for name, entry in hosts.items()]
    rows.sort(key=lambda r: (STATUS_ORDER.index(r["status"]), r["host"]))
    summary = {status: sum(1 for r in rows if r["status"] == status) for status in STATUS_ORDER}
    collected = [r for r in rows if r.get("denials") is not None]
    fleet_items = [item for name, entry in hosts.items() for item in (entry.get("denials") or [])]
    return {
        "report_version": REPORT_VERSION,
        "generated_at": generated_at,
        "hosts_total": len(rows),
        "summary": summary,
        "denials": {
            **denial_summary(fleet_items, fleet=True),
            "since": denials_since,
            "hosts": len(collected),
        }
        if collected
        else None,
        "hosts": rows,
    }


# --------------------------------------------------------------------------- denials

# Statuses of an explained decision (module_utils/explain.py) that the report counts.
DENIED = ("denied", "now_allowed")
WOULD_BE = ("would_be_denied",)
TOP = 10


def _rules_of(item: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    seen: dict[str, Mapping[str, Any]] = {}
    for r in item.get(key) or []:
        seen.setdefault(str(r.get("rule")), r)
    return list(seen.values())


def denial_summary(items: list[Mapping[str, Any]], fleet: bool = False) -> dict[str, Any]:
    """Explained decisions (explain.explain_host's ``items``) -> counts by rule, by image, top offenders.

    A request denied by three rules counts once in ``denied`` and once under each rule. Would-be
    denials (allowed, flagged by rules in audit mode) are counted apart, the same way.
    """
    out: dict[str, Any] = {
        "denied": 0,
        "would_be_denied": 0,
        "now_allowed": 0,
        "errors": 0,
        "fail_open": 0,
        "by_rule": [],
        "by_image": [],
        "top_offenders": [],
        "recent": [],
    }
    by_rule: dict[str, dict[str, Any]] = {}
    by_image: dict[str, dict[str, Any]] = {}
    offenders: dict[tuple[str, ...], dict[str, Any]] = {}
    counted = []
    for item in items:
        status = item.get("status")
        if status == "error":
            out["errors"] += 1
        elif status == "fail_open":
            out["fail_open"] += 1
        if status not in DENIED + WOULD_BE:
            continue
        key = "denied" if status in DENIED else "would_be_denied"
        out[key] += 1
        if status == "now_allowed":
            out["now_allowed"] += 1
        rules = _rules_of(item, "reasons" if key == "denied" else "audit") or [
            {"rule": "unexplained", "variable": None, "doc": None}
        ]
        for r in rules:
            slot = by_rule.setdefault(
                str(r.get("rule")),
                {
                    "rule": r.get("rule"),
                    "variable": r.get("variable"),
                    "doc": r.get("doc"),
                    "denied": 0,
                    "would_be_denied": 0,
                },
            )
            slot[key] += 1
        req = item.get("request") or {}
        image = str(req.get("image") or "(no image)")
        islot = by_image.setdefault(
            image, {"image": image, "denied": 0, "would_be_denied": 0, "rules": set()}
        )
        islot[key] += 1
        islot["rules"].update(str(r.get("rule")) for r in rules)
        who = str(req.get("user") or "(unix socket)")
        okey = ((str(item.get("host")),) if fleet else ()) + (who, image)
        oslot = offenders.setdefault(
            okey,
            {
                **({"host": item.get("host")} if fleet else {}),
                "user": who,
                "image": image,
                "denied": 0,
                "would_be_denied": 0,
                "rules": set(),
                "last": None,
            },
        )
        oslot[key] += 1
        oslot["rules"].update(str(r.get("rule")) for r in rules)
        oslot["last"] = max(filter(None, [oslot["last"], item.get("time")]), default=None)
        counted.append(item)

    def order(d: Mapping[str, Any]) -> tuple[int, int]:
        return (-(d["denied"] + d["would_be_denied"]), -d["denied"])

    out["by_rule"] = sorted(by_rule.values(), key=lambda d: (*order(d), str(d["rule"])))
    out["by_image"] = [
        {**d, "rules": sorted(d["rules"])}
        for d in sorted(by_image.values(), key=lambda d: (*order(d), d["image"]))
    ][:TOP]
    out["top_offenders"] = [
        {**d, "rules": sorted(d["rules"])}
        for d in sorted(offenders.values(), key=lambda d: (*order(d), d["user"], d["image"]))
    ][:TOP]
    counted.sort(key=lambda i: str(i.get("time") or ""), reverse=True)
    out["recent"] = [
        {
            **({"host": i.get("host")} if fleet else {}),
            "time": i.get("time"),
            "status": i.get("status"),
            "request": {
                k: (i.get("request") or {}).get(k)
                for k in ("method", "endpoint", "image", "container", "user")
            },
            "rules": sorted({str(r.get("rule")) for r in _rules_of(i, "reasons") + _rules_of(i, "audit")}),
        }
        for i in counted[:20]
    ]
    return out


# --------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1b1f23}
table{border-collapse:collapse;width:100%}th,td{border:1px solid #d0d7de;padding:.35rem .5rem;
text-align:left;vertical-align:top;font-size:.9rem}th{background:#f6f8fa}
.failing td.s{background:#ffd7d5}.unreachable td.s,.no-docker td.s{background:#ffe7c2}
.not-hardened td.s{background:#fff5b1}.warning td.s{background:#ddf4ff}.ok td.s{background:#dafbe1}
code{font-size:.85rem}details{margin:.6rem 0}summary{cursor:pointer;font-weight:600}
.pass{color:#1a7f37}.fail{color:#cf222e;font-weight:600}td.n{text-align:right}
table.by-rule,table.by-image,table.offenders{width:auto;margin:.5rem 0}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _count_cells(d: Mapping[str, Any]) -> str:
    return f'<td class="n">{_e(d.get("denied", 0))}</td><td class="n">{_e(d.get("would_be_denied", 0))}</td>'


def _denials_html(den: Mapping[str, Any] | None, fleet: bool, host: str = "") -> list[str]:
    """Counts per rule first, then images, offenders and the most recent denials."""
    if not den:
        return []
    ident = "denials" if fleet else f"denials-{host}"
    head = "h2" if fleet else "h3"
    since = den.get("since")
    out = [
        f'<{head} id="{_e(ident)}">Denials{" since " + _e(since) if since else ""}</{head}>',
        f"<p>{_e(den.get('denied', 0))} denied request(s), {_e(den.get('would_be_denied', 0))} would-be "
        f"denial(s) (rules in audit mode)"
        + (
            f", {_e(den['now_allowed'])} now allowed by the policy the host runs"
            if den.get("now_allowed")
            else ""
        )
        + (f", {_e(den['errors'])} plugin error(s)" if den.get("errors") else "")
        + (
            f", {_e(den['fail_open'])} allowed unevaluated (policy file missing)"
            if den.get("fail_open")
            else ""
        )
        + (f"{' over ' + _e(den.get('hosts')) + ' host(s)' if fleet and den.get('hosts') else ''}.</p>"),
    ]
    if den.get("error"):
        out.append(f'<p class="fail">{_e(den["error"])}</p>')
    if not den.get("by_rule"):
        return out
    out.append(
        f'<table class="by-rule" id="{_e(ident)}-rules"><thead><tr><th>rule</th><th>denied</th>'
        "<th>would-be</th>"
        "<th>variable</th></tr></thead><tbody>"
    )
    for r in den["by_rule"]:
        doc = r.get("doc")
        var = (
            f'<a href="{_e(doc)}"><code>{_e(r.get("variable") or "always on")}</code></a>'
            if doc
            else _e(r.get("variable") or "-")
        )
        out.append(f"<tr><td>{_e(r.get('rule'))}</td>{_count_cells(r)}<td>{var}</td></tr>")
    out.append("</tbody></table>")
    out.append(
        f'<table class="by-image" id="{_e(ident)}-images"><thead><tr><th>image</th><th>denied</th>'
        "<th>would-be</th>"
        "<th>rules</th></tr></thead><tbody>"
    )
    for r in den.get("by_image") or []:
        out.append(
            f"<tr><td>{_e(r.get('image'))}</td>{_count_cells(r)}"
            f"<td>{_e(', '.join(r.get('rules') or []))}</td></tr>"
        )
    out.append("</tbody></table>")
    out.append(
        f'<table class="offenders" id="{_e(ident)}-offenders"><thead><tr>{"<th>host</th>" if fleet else ""}'
        "<th>user</th><th>image</th><th>denied</th><th>would-be</th><th>rules</th><th>last</th></tr></thead><tbody>"
    )
    for r in den.get("top_offenders") or []:
        out.append(
            f"<tr>{'<td>' + _e(r.get('host')) + '</td>' if fleet else ''}<td>{_e(r.get('user'))}</td>"
            f"<td>{_e(r.get('image'))}</td>{_count_cells(r)}<td>{_e(', '.join(r.get('rules') or []))}</td>"
            f"<td>{_e(r.get('last'))}</td></tr>"
        )
    out.append("</tbody></table>")
    if not fleet and den.get("recent"):
        out.append(
            "<table><thead><tr><th>time</th><th>request</th><th>status</th><th>rules</th></tr></thead><tbody>"
        )
        for i in den["recent"]:
            req = i.get("request") or {}
            what = " ".join(str(x) for x in (req.get("method"), req.get("endpoint")) if x)
            what += "".join(f", {k} {req[k]}" for k in ("image", "container", "user") if req.get(k))
            out.append(
                f"<tr><td>{_e(i.get('time'))}</td><td>{_e(what)}</td><td>{_e(i.get('status'))}</td>"
                f"<td>{_e(', '.join(i.get('rules') or []))}</td></tr>"
            )
        out.append("</tbody></table>")
    return out


def render_html(report: Mapping[str, Any]) -> str:
    rows = report.get("hosts") or []
    summary = report.get("summary") or {}
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>Docker authorization fleet report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Docker authorization fleet report</h1>",
        f"<p>{_e(report.get('hosts_total', len(rows)))} host(s), generated {_e(report.get('generated_at'))}: "
        + ", ".join(f"{_e(summary.get(s, 0))} {_e(STATUS_TEXT[s])}" for s in STATUS_ORDER if summary.get(s))
        + "</p>",
        '<table id="hosts"><thead><tr><th>host</th><th>status</th><th>engine</th><th>plugin</th>'
        "<th>policy</th><th>probes</th><th>warnings</th></tr></thead><tbody>",
    ]
    for r in rows:
        plugin = r.get("plugin") or {}
        policy = r.get("policy") or {}
        counts = r.get("counts") or {}
        engine = r.get("engine") or {}
        probes = (
            f"{_e(counts.get('passed'))}/{_e(counts.get('total'))} passed"
            + (
                f', <span class="fail">{_e(counts.get("failed"))} failed</span>'
                if counts.get("failed")
                else ""
            )
            if counts
            else "-"
        )
        plugin_cell = (
            f"{_e(plugin.get('reference') or plugin.get('name'))}"
            f"<br><code>{_e((plugin.get('digest') or '')[:19])}</code>"
            f"<br>{'enabled' if plugin.get('enabled') else 'disabled'}, "
            f"{'hooked' if r.get('hooked') else 'not hooked'}"
            if plugin.get("installed")
            else "not installed"
        )
        policy_cell = (
            f"<code>{_e((policy.get('sha256') or '')[:12])}</code> {_e(policy.get('dialect'))}, "
            f"{_e(len(policy.get('rules') or []))} rules"
            if policy.get("exists")
            else "none"
        )
        out.append(
            f'<tr class="{_e(r.get("status"))}" id="host-{_e(r.get("host"))}"><td>'
            f'<a href="#d-{_e(r.get("host"))}">{_e(r.get("host"))}</a></td>'
            f'<td class="s">{_e(STATUS_TEXT.get(str(r.get("status")), r.get("status")))}<br>'
            f"<small>{_e(r.get('reason'))}</small></td>"
            f"<td>{_e(engine.get('version') or '-')}</td><td>{plugin_cell}</td><td>{policy_cell}</td>"
            f"<td>{probes}</td><td>{_e(len(r.get('warnings') or []))}</td></tr>"
        )
    out.append("</tbody></table>")
    out.extend(_denials_html(report.get("denials"), fleet=True))
    out.append("<h2>Details</h2>")
    for r in rows:
        policy = r.get("policy") or {}
        out.append(f'<details id="d-{_e(r.get("host"))}"><summary>{_e(r.get("host"))}</summary>')
        out.append(
            f"<p>Policy <code>{_e(policy.get('path'))}</code> "
            f"sha256 <code>{_e(policy.get('sha256'))}</code>; "
            f"rules: {_e(', '.join(policy.get('rules') or []) or '-')}. authorization-plugins: "
            f"{_e(', '.join(r.get('authorization_plugins') or []) or '-')}.</p>"
        )
        if r.get("warnings"):
            out.append("<ul>" + "".join(f"<li>{_e(w)}</li>" for w in r["warnings"]) + "</ul>")
        if r.get("denials") is not None:
            out.extend(_denials_html(r["denials"], fleet=False, host=str(r.get("host"))))
        if r.get("probes"):
            out.append(
                "<table><thead><tr><th>probe</th><th>rule</th><th>expected</th><th>outcome</th>"
                "<th>result</th></tr></thead><tbody>"
            )
            for p in r["probes"]:
                ok = p.get("passed")
                out.append(
                    f"<tr><td>{_e(p.get('name'))}</td><td>{_e(p.get('rule'))}</td><td>{_e(p.get('expected'))}"
                    f'</td><td>{_e(p.get("outcome"))}</td><td class="{"pass" if ok else "fail"}">'
                    f"{'pass' if ok else 'FAIL'}</td></tr>"
                )
            out.append("</tbody></table>")
        out.append("</details>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
