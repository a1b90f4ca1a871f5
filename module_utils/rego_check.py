# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""Check a rendered authz.rego before it goes anywhere: dialect scan, then a real compile.

Two independent checks, both needed because the plugin's OPA (0.9.1 in opa-docker-authz 0.4,
1.3.0 in v0.10) is not the engine the controller has:

1. :func:`scan_rego` - a structural scan of the text: the rule-head syntax of the dialect
   (v0: no ``if``/``contains``/``some``/``in``/``every``, no ``:=`` in rule heads or defaults,
   no ``import rego.v1``/``future``; v1: ``import rego.v1``, ``if`` before every body,
   ``contains`` for set rules) and every called name against the builtins of the dialect's
   OPA version (module_utils/policy.py, from the project's builtins-by-version reference).
2. :func:`compile_policy` - compile and evaluate with regopy (rego-cpp) on sample inputs:
   ``data.docker.authz.allow`` must be a boolean and ``data.docker.authz.deny`` a set.

regopy is a controller-side requirement (``pip install regopy``); it is imported lazily so the
scan works without it. Pure functions apart from regopy; stdlib only otherwise.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ansible_collections.hardening.docker_authz.plugins.module_utils.policy import allowed_builtins

SAMPLE_INPUTS: tuple[dict[str, Any], ...] = (
    {
        "Headers": {"User-Agent": "rego_check"},
        "Path": "/v1.41/containers/json",
        "PathPlain": "/v1.41/containers/json",
        "PathArr": ["", "v1.41", "containers", "json"],
        "Query": {},
        "Method": "GET",
        "Body": None,
        "User": "",
        "AuthMethod": "",
        "BindMounts": [],
    },
    {
        "Headers": {"Content-Type": "application/json"},
        "Path": "/v1.41/containers/create",
        "PathPlain": "/v1.41/containers/create",
        "PathArr": ["", "v1.41", "containers", "create"],
        "Query": {},
        "Method": "POST",
        "Body": {"Image": "busybox", "HostConfig": {"Privileged": True, "Binds": ["/etc:/host-etc"]}},
        "User": "",
        "AuthMethod": "",
        "BindMounts": [{"Source": "/etc", "ReadOnly": False, "Resolved": "/etc"}],
    },
)

QUERY = "allow := data.docker.authz.allow; deny := data.docker.authz.deny"
_KEYWORDS = frozenset({"not", "if", "else", "with", "as", "some", "in", "every", "contains", "default"})


class RegoCheckError(Exception):
    """The policy does not compile, or does not evaluate as the plugin needs."""


def strip_comments_and_strings(text: str) -> str:
    """The text with comments removed and string literals emptied (``"..."`` -> ``""``)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "#":
            while i < n and text[i] != "\n":
                i += 1
            continue
        if ch == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            out.append('""')
            i += 1
            continue
        if ch == "`":
            end = text.find("`", i + 1)
            i = n if end < 0 else end + 1
            out.append('""')
            continue
        out.append(ch)
        i += 1
    return "".join(out)


_HEAD = re.compile(r"^(?!package\b|import\b|default\b)([A-Za-z_]\w*)\b(.*)$")
_CALL = re.compile(r"(?<![\w.])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\s*\(")


def defined_functions(code: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^([A-Za-z_]\w*)\(", code, re.M)}


def called_names(code: str) -> set[str]:
    """Names called as functions (``name(`` or ``a.b.c(``), keywords excluded."""
    return {m.group(1) for m in _CALL.finditer(code) if m.group(1) not in _KEYWORDS}


def scan_rego(text: str, dialect: str) -> list[str]:
    """Problems that keep ``text`` from running on its dialect's OPA; ``[]`` when none."""
    code = strip_comments_and_strings(text)
    problems: list[str] = []
    lines = code.splitlines()
    if not re.search(r"^package\s+docker\.authz\s*$", code, re.M):
        problems.append(
            "the policy must declare 'package docker.authz' (the plugin queries data.docker.authz.allow)"
        )
    has_v1_import = bool(re.search(r"^import\s+rego\.v1\s*$", code, re.M))
    for number, line in enumerate(lines, 1):
        where = f"line {number}: {line.strip()[:80]}"
        if dialect == "v0":
            if re.match(r"^import\s+(rego\.v1|future\.)", line):
                problems.append(f"{where}: imports need OPA 0.34+, OPA 0.9.1 rejects them")
            if re.match(r"^default\s+\w+\s*:=", line):
                problems.append(f"{where}: 'default x :=' needs OPA 0.40+, use 'default x ='")
            for word in ("if", "some", "every", "in"):
                if re.search(rf"(?<![\w.]){word}(?![\w(])", line):
                    problems.append(f"{where}: the keyword '{word}' does not exist in OPA 0.9.1")
            if re.search(r"(?<![\w.])contains(?!\s*\()\b", line):
                problems.append(f"{where}: 'contains' as a keyword does not exist in OPA 0.9.1")
            head = _HEAD.match(line)
            if head and re.match(r"^[^{]*?:=", line) and not line.startswith(("\t", " ")):
                problems.append(f"{where}: ':=' in a rule head needs a newer OPA than 0.9.1: use '='")
        elif dialect == "v1":
            if line.startswith(("\t", " ", "}", "]")) or not line.strip():
                continue
            head = _HEAD.match(line)
            if not head:
                continue
            rest = head.group(2)
            if re.match(r"^\s*:=", rest) and not re.search(r"\bif\b", rest):
                continue  # a constant: name := value
            if "{" in rest and not re.search(r"\bif\b", rest.split("{", 1)[0]):
                problems.append(f"{where}: OPA 1.x requires 'if' before a rule body")
            if re.match(r"^\[", rest):
                problems.append(f"{where}: OPA 1.x requires 'contains' for set rules (x contains y if ...)")
            if re.match(r"^(\([^)]*\))?\s*=[^=]", rest):
                problems.append(f"{where}: use ':=' in rule heads")
        else:
            raise ValueError(f"unknown Rego dialect {dialect!r} (expected v0 or v1)")
    if dialect == "v1" and not has_v1_import:
        problems.append(
            "the policy must 'import rego.v1' (opa-docker-authz 0.9 embeds OPA 0.60, which needs it)"
        )
    allowed = allowed_builtins(dialect) | defined_functions(code)
    for name in sorted(called_names(code) - allowed):
        version = "0.9.1" if dialect == "v0" else "1.3.0 (v1 mode, deprecated builtins rejected)"
        problems.append(f"'{name}' is not a builtin of OPA {version} nor a function of the policy")
    return problems


@contextmanager
def _captured_stdout() -> Iterator[list[str]]:
    """rego-cpp prints compile errors on file descriptor 1; keep them out of module output."""
    captured: list[str] = []
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = os.dup(1)
        os.dup2(sink.fileno(), 1)
        try:
            yield captured
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read().decode("utf-8", "replace"))


def _import_regopy() -> Any:
    try:
        import regopy  # optional: a controller-side requirement
    except ImportError as exc:
        raise RegoCheckError(
            "regopy is not installed for the Python that runs Ansible on the controller: "
            "'pip install regopy' (the policy is compiled on the controller before any host gets it)"
        ) from exc
    return regopy


def compile_policy(text: str, samples: tuple[dict[str, Any], ...] = SAMPLE_INPUTS) -> list[dict[str, Any]]:
    """Compile ``text`` with regopy and evaluate allow/deny on each sample input.

    Returns ``[{"allow": bool, "deny": [reasons]}, ...]``; raises :class:`RegoCheckError` with
    the engine's message when the policy does not compile or evaluates wrongly.
    """
    regopy = _import_regopy()
    from regopy.interpreter import rego_query
    from regopy.output import rego_output_ok, rego_output_string

    results = []
    for sample in samples:
        with _captured_stdout() as printed:
            try:
                rego = regopy.Interpreter()
                rego.add_module("authz.rego", text)
                rego.set_input(sample)
                impl = rego_query(rego._impl, QUERY)
                ok, raw = bool(rego_output_ok(impl)), rego_output_string(impl)
                error = None
            except Exception as exc:  # regopy raises RegoError with the parse errors
                ok, raw, error = False, "", str(exc)
        if error is not None or not ok or raw.startswith("(error") or raw == "undefined":
            detail = "\n".join(x for x in (printed[0].strip(), error, raw if raw != "undefined" else "") if x)
            raise RegoCheckError(f"the policy does not compile or evaluate: {detail or 'no result'}")
        try:
            bindings = json.loads(raw)["bindings"]
        except (ValueError, KeyError, TypeError) as exc:
            raise RegoCheckError(f"unexpected result from the Rego engine: {raw[:500]}") from exc
        allow, deny = bindings.get("allow"), bindings.get("deny")
        if not isinstance(allow, bool):
            raise RegoCheckError(f"data.docker.authz.allow must be a boolean, got {allow!r}")
        # A set comes back as a JSON array; regopy returns an OPA v0 partial set
        # (deny[msg] { ... }) as an object of msg: true, which OPA itself evaluates to a set.
        if isinstance(deny, dict) and all(v is True for v in deny.values()):
            deny = sorted(deny)
        if not isinstance(deny, list) or not all(isinstance(x, str) for x in deny):
            raise RegoCheckError(f"data.docker.authz.deny must be a set of strings, got {deny!r}")
        results.append({"allow": allow, "deny": sorted(deny)})
    return results


def check_policy(text: str, dialect: str) -> dict[str, Any]:
    """Scan, then compile. Raises :class:`RegoCheckError` naming every problem."""
    problems = scan_rego(text, dialect)
    if problems:
        raise RegoCheckError(
            f"the policy uses syntax or builtins that Rego {dialect}'s OPA does not have:\n- "
            + "\n- ".join(problems)
        )
    samples = compile_policy(text)
    if samples[0]["allow"] is not True:
        raise RegoCheckError(f"the policy denies GET /containers/json (docker ps): {samples[0]['deny']}")
    code = strip_comments_and_strings(text)
    return {
        "dialect": dialect,
        "builtins": sorted(called_names(code) - defined_functions(code)),
        "samples": samples,
    }
