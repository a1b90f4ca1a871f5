# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""Why was a request denied: re-evaluate logged decisions with the policy the host runs.

Controller side (filters ``hardening.docker_authz.explain_decisions`` / ``explain_text`` and
``fleet_report``). Every entry that module ``hardening.docker_authz.authz_decisions`` collected
on a host (already masked there) is evaluated again with OPA's own engine against the policy
read back from that host (the deployed file or bundle), and gets:

- ``reasons``: every member of ``data.docker.authz.deny`` (each starts with the rule id,
  ``privileged: ...``) with the variable that controls the rule and where docs/policy.md
  documents it;
- ``audit``: the members of ``data.docker.authz.audit`` when the policy defines it (rules in
  audit mode: they deny nothing, a logged ALLOWED decision with audit reasons is a would-be
  denial);
- ``status``: ``denied`` (logged denied, still denied), ``now_allowed`` (logged denied, the
  policy read back allows it: it changed since), ``would_be_denied``, ``error`` (the plugin
  answered with an error), ``fail_open`` (no policy file: allowed unevaluated), ``allowed``.

The engine is OPA 1.20 (``opa_bindings``) for v1 policies, regopy (rego-cpp) for v0 policies
(OPA 1.x no longer parses v0). They are imported lazily: the rest of this file is stdlib, and
module_utils/report.py imports only the stdlib parts on managed hosts.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ansible_collections.hardening.docker_authz.plugins.module_utils.decision_log import (
    DEFAULT_SENSITIVE_ENV_KEYWORDS,
    defines_audit,
    mask_input,
)
from ansible_collections.hardening.docker_authz.plugins.module_utils.policy import RULES

DOCS = "docs/policy.md"
DENY_PATH = "docker.authz.deny"
AUDIT_PATH = "docker.authz.audit"
# The key bundle mode's mask_decision adds to an input it trimmed (roles/opa_authz/files/policy/
# system/log.rego): {characters, deny, audit} computed on the full input at decision time.
TRIMMED_KEY = "DockerAuthzMasked"
ALLOW_PATH = "docker.authz.allow"
CONFIG_PATH = "docker.authz.config"
# Reasons of the always-on part of the policy (default deny of what it does not understand).
DEFAULT_DENY = ("input", "request", "body")
DEFAULT_DENY_HEADING = 'Default deny: what "understood" means'
EXTRA_RULES = {"trusted_registries": "docker_authz_trusted_registries"}


class ExplainError(RuntimeError):
    """The policy cannot be evaluated (no engine, a parse error): the message names the fix."""


# --------------------------------------------------------------------------- rules and docs


def github_anchor(heading: str) -> str:
    """The anchor GitHub (and most Markdown renderers) give a heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def rule_heading(rule_id: str) -> str | None:
    if rule_id in RULES:
        return f"{rule_id} — `{RULES[rule_id][0]}`"
    if rule_id in EXTRA_RULES:
        return f"{rule_id} — `{EXTRA_RULES[rule_id]}`"
    if rule_id in DEFAULT_DENY:
        return DEFAULT_DENY_HEADING
    return None


def rule_info(reason: str) -> dict[str, Any]:
    """A deny reason -> {rule, reason, variable, doc}."""
    rule_id = reason.split(":", 1)[0].strip() if ":" in reason else ""
    heading = rule_heading(rule_id)
    if rule_id in RULES:
        variable: str | None = RULES[rule_id][0]
    elif rule_id in EXTRA_RULES:
        variable = EXTRA_RULES[rule_id]
    elif rule_id in DEFAULT_DENY:
        variable = None  # always on: the policy denies what it does not understand
    else:
        variable = None
    return {
        "rule": rule_id or "unknown",
        "reason": reason,
        "variable": variable,
        "always_on": rule_id in DEFAULT_DENY,
        "doc": f"{DOCS}#{github_anchor(heading)}" if heading else None,
    }


# --------------------------------------------------------------------------- the engine


def _set_members(value: Any) -> list[str]:
    if isinstance(value, dict):  # regopy prints a set as {member: true}
        return sorted(str(k) for k in value)
    if isinstance(value, list):
        return sorted(str(v) for v in value)
    return []


def policy_sha256(files: Mapping[str, str]) -> str:
    """The sha256 of a single policy file (what policy-file mode logs as config_hash)."""
    if len(files) == 1:
        return hashlib.sha256(next(iter(files.values())).encode("utf-8", "surrogateescape")).hexdigest()
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name].encode("utf-8", "surrogateescape") + b"\0")
    return digest.hexdigest()


class PolicyEvaluator:
    """One policy (a file or a bundle's files), compiled once, evaluated for many inputs."""

    def __init__(self, files: Mapping[str, str]) -> None:
        modules = {k: v for k, v in files.items() if k.endswith(".rego") or ("/" not in k and "." not in k)}
        if not modules:
            modules = {k: v for k, v in files.items() if not k.endswith((".json", ".manifest"))}
        if not modules:
            raise ExplainError("the policy read back from the host holds no Rego module")
        self.data = [
            (k, json.loads(v)) for k, v in files.items() if k.rsplit("/", 1)[-1] == "data.json" and v.strip()
        ]
        self.has_audit = defines_audit(modules)
        self.engine_name = ""
        self._opa: Any = None
        self._rego: Any = None
        self.error: str | None = None
        try:
            from opa_bindings import OpaEngine, OpaError
        except ImportError:
            OpaEngine = None
            OpaError = Exception
        opa_error = None
        if OpaEngine is not None:
            engine = OpaEngine()
            try:
                for name, text in sorted(modules.items()):
                    engine.add_policy(name, text)
                for name, value in self.data:
                    prefix = name.rsplit("/", 1)[0] if "/" in name else ""
                    engine.add_data(value, prefix.replace("/", "."))
                self._opa = engine
                self.engine_name = "OPA (opa_bindings)"
                return
            except OpaError as exc:  # a v0 policy: OPA 1.x parses only v1
                engine.close()
                opa_error = str(exc)
        try:
            import regopy
        except ImportError:
            raise ExplainError(
                "no Rego engine on the controller: "
                + (f"OPA rejected the policy ({opa_error[:300]}) and " if opa_error else "")
                + "install opa-golib-python-bindings (OPA 1.x, v1 policies) and regopy (v0 policies) "
                "into the controller's Python (scripts/setup.sh does)"
            ) from None
        interp = regopy.Interpreter()
        try:
            for name, text in sorted(modules.items()):
                interp.add_module(name, text)
            if self.data:
                merged: dict[str, Any] = {}
                for name, value in self.data:
                    node = merged
                    for part in [p for p in name.rsplit("/", 1)[0].split("/") if p] if "/" in name else []:
                        node = node.setdefault(part, {})
                    node.update(value if isinstance(value, dict) else {})
                interp.add_data_json(json.dumps(merged))
        except Exception as exc:
            raise ExplainError(
                f"the policy read back from the host does not compile: {str(exc)[:500]}"
                + (f" (OPA: {opa_error[:300]})" if opa_error else "")
            ) from None
        self._rego = interp
        self.engine_name = "regopy (rego-cpp)"

    def close(self) -> None:
        if self._opa is not None:
            self._opa.close()
            self._opa = None

    def _doc(self, path: str, input_doc: Any) -> tuple[bool, Any]:
        """(defined, value) of data.<path>."""
        if self._opa is not None:
            from opa_bindings import OpaUndefinedError

            try:
                return True, self._opa.eval_document(path, input_doc)
            except OpaUndefinedError:
                return False, None
        self._rego.set_input_term(json.dumps(input_doc))
        out = self._rego.query(f"x = data.{path}")
        if not out.ok():
            raise ExplainError(f"evaluating data.{path}: {str(out)[:300]}")
        text = str(out)
        if text == "undefined" or '"bindings"' not in text:
            return False, None
        try:
            return True, json.loads(text)["bindings"]["x"]
        except (ValueError, KeyError, TypeError):
            return False, None

    def _allow_deny(self, input_doc: Any) -> tuple[Any, Any]:
        """allow and deny in one query (OPA caches the rules both read: about half the cost)."""
        if self._opa is not None:
            rows = self._opa.eval_query(f"a := data.{ALLOW_PATH}; d := data.{DENY_PATH}", input_doc)
            if rows:
                return rows[0].get("a"), rows[0].get("d")
        return self._doc(ALLOW_PATH, input_doc)[1], self._doc(DENY_PATH, input_doc)[1]

    def evaluate(self, input_doc: Any) -> dict[str, Any]:
        """{allow, deny, audit, error} for one input."""
        try:
            allow, deny = self._allow_deny(input_doc)
            audit_defined, audit = self._doc(AUDIT_PATH, input_doc) if self.has_audit else (False, None)
        except Exception as exc:
            return {"allow": None, "deny": [], "audit": [], "error": str(exc)[:500]}
        return {
            "allow": allow if isinstance(allow, bool) else None,
            "deny": _set_members(deny),
            "audit": _set_members(audit) if audit_defined else [],
            "error": None,
        }

    def config(self) -> dict[str, Any]:
        try:
            defined, value = self._doc(CONFIG_PATH, {})
        except Exception:
            return {}
        return value if defined and isinstance(value, dict) else {}


# --------------------------------------------------------------------------- one host


def _keywords(config: Mapping[str, Any]) -> list[str]:
    words = list(DEFAULT_SENSITIVE_ENV_KEYWORDS)
    for w in config.get("sensitive_env_keywords") or []:
        if isinstance(w, str) and w.lower() not in words:
            words.append(w.lower())
    return words


def _text_masked(text: str | None, secrets: Iterable[str]) -> str | None:
    if text is None:
        return None
    for s in secrets:
        if s and len(s) >= 3:
            text = text.replace(s, "<masked>")
    return text


def explain_entry(
    entry: Mapping[str, Any],
    evaluator: PolicyEvaluator | None,
    host: str,
    keywords: Sequence[str],
    current_sha: str | None,
    current_revision: str | None = None,
) -> dict[str, Any]:
    """One collected entry -> its explanation (status, reasons with variables and docs)."""
    masked_input, masked_again = mask_input(entry.get("input"), keywords)
    request = dict(entry.get("request") or {})
    request.pop("user_agent", None)
    out: dict[str, Any] = {
        "host": host,
        "time": entry.get("time"),
        "decision_id": entry.get("decision_id"),
        "mode": entry.get("mode"),
        "logged": entry.get("kind"),
        "request": request,
        "status": entry.get("kind"),
        "reasons": [],
        "audit": [],
        "now_allowed": None,
        "policy_changed": None,
        "error": entry.get("error"),
        "probe": bool(entry.get("probe")),
        "masked": sorted(set(entry.get("masked") or []) | set(masked_again)),
        "input": masked_input,
    }
    if entry.get("config_hash") and current_sha:
        out["policy_changed"] = entry["config_hash"] != current_sha
    elif entry.get("bundle_revisions") and current_revision:
        out["policy_changed"] = current_revision not in entry["bundle_revisions"].values()
    if entry.get("kind") == "fail_open":
        return out
    if evaluator is None or not isinstance(masked_input, dict):
        out["note"] = (
            "the input of this decision is not in the log"
            if not isinstance(masked_input, dict)
            else "no policy to evaluate it with"
        )
        return out
    recorded = masked_input.get(TRIMMED_KEY)
    if isinstance(recorded, Mapping):
        # bundle mode's mask_decision (system/log.rego) trimmed an oversized input and recorded
        # the verdict the host's policy gave on the full input: show it, do not re-evaluate
        out["reasons"] = [rule_info(str(r)) for r in recorded.get("deny") or []]
        out["audit"] = [rule_info(str(r)) for r in recorded.get("audit") or []]
        out["trimmed"] = recorded.get("characters")
        out["note"] = (
            f"the host logged this input trimmed (its JSON was {recorded.get('characters')} characters, "
            "docs/explain.md 'Log volume'): the reasons are those the host's policy gave at decision "
            "time, not re-evaluated"
        )
        if entry.get("kind") == "allowed":
            out["status"] = "would_be_denied" if out["audit"] else "allowed"
        return out
    verdict = evaluator.evaluate(masked_input)
    if verdict["error"]:
        out["note"] = f"re-evaluation failed: {verdict['error']}"
        return out
    out["reasons"] = [rule_info(r) for r in verdict["deny"]]
    out["audit"] = [rule_info(r) for r in verdict["audit"]]
    now_allowed = verdict["allow"] is True
    out["now_allowed"] = now_allowed
    kind = entry.get("kind")
    if kind == "denied":
        out["status"] = "now_allowed" if now_allowed else "denied"
    elif kind == "allowed":
        out["status"] = "would_be_denied" if out["audit"] else "allowed"
    return out


def _revision(files: Mapping[str, str]) -> str | None:
    """A bundle's .manifest revision (what config-file mode logs under bundles.<name>.revision)."""
    try:
        manifest = json.loads(files.get(".manifest") or "null")
    except ValueError:
        return None
    rev = manifest.get("revision") if isinstance(manifest, dict) else None
    return rev if isinstance(rev, str) and rev else None


def explain_host(
    host: str,
    decisions: Mapping[str, Any] | None,
    policy: Mapping[str, Any] | None,
    cache: dict[str, PolicyEvaluator] | None = None,
) -> dict[str, Any]:
    """What authz_decisions returned for one host -> {host, status, message, items, counts}."""
    result: dict[str, Any] = {
        "host": host,
        "status": "ok",
        "message": "",
        "items": [],
        "engine": None,
        "policy": None,
        "source": None,
        "counts": {},
        "truncated": 0,
    }
    if not decisions:
        result.update(status="unreachable", message="no decision log was collected from this host")
        return result
    result["source"] = decisions.get("source")
    result["sources"] = decisions.get("sources") or []
    result["counts"] = decisions.get("counts") or {}
    result["truncated"] = decisions.get("truncated") or 0
    result["probes_skipped"] = decisions.get("probes_skipped") or 0
    files = (policy or {}).get("files") or {}
    evaluator = None
    current_sha = None
    if files:
        current_sha = policy_sha256(files)
        result["policy"] = {
            "path": (policy or {}).get("path"),
            "kind": (policy or {}).get("kind"),
            "sha256": current_sha,
        }
        cache = cache if cache is not None else {}
        if current_sha not in cache:
            cache[current_sha] = PolicyEvaluator(files)
        evaluator = cache[current_sha]
        result["engine"] = evaluator.engine_name
        keywords = _keywords(evaluator.config())
    else:
        keywords = list(DEFAULT_SENSITIVE_ENV_KEYWORDS)
        result["policy"] = {
            "path": (policy or {}).get("path"),
            "kind": None,
            "sha256": None,
            "error": (policy or {}).get("error"),
        }
    result["items"] = [
        explain_entry(e, evaluator, host, keywords, current_sha, _revision(files))
        for e in decisions.get("entries") or []
    ]
    stalls = decisions.get("log_stalls") or []
    result["log_stalls"] = stalls
    if not result["items"]:
        result["status"] = "empty"
        result["message"] = decisions.get("message") or "no denied request in the window"
    if stalls:
        result["warning"] = (
            f"dockerd stopped reading the plugin's log at {stalls[-1].get('time')} "
            "('bufio.Scanner: token too long': a decision line over 64 KiB, dockerd up to 24.0.2): "
            "decisions after it are missing, and the plugin blocks once the pipe is full, hanging "
            "the Docker API. Restart the plugin (docker plugin disable/enable) and bound the lines: "
            "docs/explain.md 'Log volume'"
        )
    if not files and result["items"]:
        result["message"] = "the host's policy could not be read back: reasons are not available"
    return result


def explain_fleet(hosts: Mapping[str, Mapping[str, Any]], keep_allowed: bool = True) -> dict[str, Any]:
    """{host: {decisions, policy, status?, message?}} -> the explain document (JSON file)."""
    cache: dict[str, PolicyEvaluator] = {}
    out = []
    try:
        for name in sorted(hosts):
            entry = hosts[name]
            if entry.get("status") in ("unreachable", "no-plugin", "no-log", "failed"):
                out.append(
                    {
                        "host": name,
                        "status": entry["status"],
                        "message": entry.get("message") or "",
                        "items": [],
                        "counts": {},
                        "truncated": 0,
                    }
                )
                continue
            res = explain_host(name, entry.get("decisions"), entry.get("policy"), cache)
            if not keep_allowed:  # allowed decisions were collected for the audit rules' would-be denials
                res["items"] = [i for i in res["items"] if i["status"] != "allowed"]
                if not res["items"] and res["status"] == "ok":
                    res["status"] = "empty"
                    res["message"] = res["message"] or "no denied request in the window"
            if entry.get("message") and not res["message"]:
                res["message"] = entry["message"]
            out.append(res)
    finally:
        for ev in cache.values():
            ev.close()
    return {
        "hosts": out,
        "denied": sum(1 for h in out for i in h["items"] if i["status"] in ("denied", "now_allowed")),
        "would_be_denied": sum(1 for h in out for i in h["items"] if i["status"] == "would_be_denied"),
    }


# --------------------------------------------------------------------------- text


STATUS_LINE = {
    "denied": "DENIED",
    "now_allowed": "DENIED then; the policy the host runs now ALLOWS it (the policy changed since)",
    "would_be_denied": "ALLOWED, would be denied (rules in audit mode)",
    "error": "ERROR (the plugin answered with an error)",
    "fail_open": "ALLOWED without evaluation (policy file missing: the plugin fails open)",
    "allowed": "ALLOWED",
}


def _what(req: Mapping[str, Any]) -> str:
    parts = [f"{req.get('method') or '?'} {req.get('endpoint') or '?'}"]
    if req.get("image"):
        parts.append(f"image {req['image']}")
    if req.get("container"):
        parts.append(f"name {req['container']}")
    if req.get("container_user") not in (None, ""):
        parts.append(f"as user {req['container_user']}")
    return ", ".join(parts)


def render_text(doc: Mapping[str, Any]) -> str:
    lines: list[str] = []
    for h in doc.get("hosts") or []:
        counts = h.get("counts") or {}
        head = f"== {h['host']}: "
        if h["status"] in ("unreachable", "no-plugin", "no-log", "failed"):
            lines.append(head + f"{h['status']}: {h.get('message')}")
            continue
        pol = h.get("policy") or {}
        lines.append(
            head
            + f"{len(h['items'])} decision(s) explained"
            + (f" (log: {', '.join(h.get('sources') or []) or h.get('source')})" if h.get("source") else "")
            + (
                f"; policy {pol.get('path')} sha256 {str(pol.get('sha256'))[:12]}, engine {h.get('engine')}"
                if pol.get("sha256")
                else ""
            )
        )
        if counts:
            lines.append(
                "   in the window: " + (", ".join(f"{v} {k}" for k, v in counts.items() if v) or "nothing")
            )
        if h.get("truncated"):
            lines.append(f"   {h['truncated']} older matching decision(s) left out (output bound)")
        if h.get("message"):
            lines.append(f"   {h['message']}")
        if h.get("warning"):
            lines.append(f"   WARNING: {h['warning']}")
        for item in h["items"]:
            req = item.get("request") or {}
            lines.append(
                f"-- {item.get('time')} {h['host']} user {req.get('user') or '(unix socket)'}: {_what(req)}"
            )
            lines.append(f"   {STATUS_LINE.get(item['status'], item['status'])}")
            if item.get("policy_changed"):
                lines.append("   the policy file has changed since this decision (its sha256 differs)")
            for r in item.get("reasons") or []:
                ctl = r["variable"] or "always on (default deny)"
                lines.append(f"   - {r['reason']}\n     controlled by {ctl}; see {r['doc']}")
            for r in item.get("audit") or []:
                lines.append(
                    f"   - (audit) {r['reason']}\n     controlled by {r['variable']}; see {r['doc']}"
                )
            if item.get("error"):
                lines.append(f"   error: {item['error']}")
            if item.get("note"):
                lines.append(f"   note: {item['note']}")
            if item.get("masked"):
                lines.append(f"   masked: {', '.join(item['masked'])}")
    return "\n".join(lines) + "\n"
