"""Reject what OPA 1.x (v1 mode, as embedded in opa-docker-authz v0.10) refuses to parse.

regopy (rego-cpp) accepts both Rego v0 and v1, so the test double checks the v1-only rules
itself before handing the policy to regopy. What is checked (stdlib only, on a token stream
with comments and strings removed):

- every rule body `{ ... }` at the top level must follow the `if` keyword; a v0 body
  (`allow { ... }`, `f(x) = y { ... }`, `else = v { ... }`, a second body `} { ... }`) gives
  OPA's own message "`if` keyword is required before rule body";
- a v0 partial set rule `deny[msg] { ... }` gives "`contains` keyword is required for
  partial set rules";
- the built-ins that OPA 1.0 removed (`any`, `all`, `re_match`, `net.cidr_overlap`,
  `set_diff`, `cast_*`) give "undefined function".

A `{` at the top level that follows `:=` or `=` is a value (`x := {"a": 1}`), not a body.
Not emulated (regopy accepts them, OPA would not): re-assigning a variable with `:=` inside
one body, and the v1 strict checks on shadowing `input`/`data`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

REMOVED_BUILTINS = frozenset(
    {
        "any",
        "all",
        "re_match",
        "net.cidr_overlap",
        "set_diff",
        "cast_array",
        "cast_set",
        "cast_string",
        "cast_boolean",
        "cast_null",
        "cast_object",
    }
)

_TOKEN = re.compile(
    r"""
    (?P<comment>\#[^\n]*)
  | (?P<string>"(?:\\.|[^"\\\n])*")
  | (?P<raw>`[^`]*`)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<op>:=|==|!=|<=|>=|[{}\[\]().,;:=|&<>+\-*/%])
  | (?P<newline>\n)
  | (?P<space>[ \t\r]+)
  | (?P<other>.)
    """,
    re.X,
)


@dataclass(frozen=True)
class Issue:
    row: int
    code: str
    message: str


@dataclass(frozen=True)
class Tok:
    kind: str
    text: str
    row: int


def tokenize(source: str) -> list[Tok]:
    out: list[Tok] = []
    row = 1
    for m in _TOKEN.finditer(source):
        kind = m.lastgroup or "other"
        text = m.group()
        if kind == "newline":
            out.append(Tok("nl", text, row))
        elif kind not in ("comment", "space"):
            out.append(Tok(kind, text, row))
        row += text.count("\n")
    return out


def v1_issues(source: str) -> list[Issue]:
    toks = tokenize(source)
    issues: list[Issue] = []
    depth = 0
    line_start = True
    head_start = 0  # index of the first token of the current top-level statement
    prev: Tok | None = None  # previous significant token
    for i, t in enumerate(toks):
        if t.kind == "nl":
            line_start = True
            continue
        if depth == 0 and line_start:
            head_start = i
        line_start = False
        if t.text in ("{", "[", "("):
            if t.text == "{" and depth == 0:
                issue = _body_issue(toks, head_start, i, prev)
                if issue:
                    issues.append(issue)
            depth += 1
        elif t.text in ("}", "]", ")"):
            depth = max(0, depth - 1)
        elif t.kind == "ident":
            name = _dotted_name(toks, i)
            last = i + 2 * (len(name.split(".")) - 1)
            after_dot = prev is not None and prev.text == "."
            if name in REMOVED_BUILTINS and _next_sig(toks, last) == "(" and not after_dot:
                issues.append(Issue(t.row, "rego_type_error", f"undefined function {name}"))
        prev = t
    return issues


def _dotted_name(toks: list[Tok], i: int) -> str:
    parts = [toks[i].text]
    j = i + 1
    while j + 1 < len(toks) and toks[j].text == "." and toks[j + 1].kind == "ident":
        parts.append(toks[j + 1].text)
        j += 2
    return ".".join(parts)


def _next_sig(toks: list[Tok], i: int) -> str:
    j = i + 1
    while j < len(toks) and toks[j].kind == "nl":
        j += 1
    return toks[j].text if j < len(toks) else ""


def _body_issue(toks: list[Tok], head_start: int, i: int, prev: Tok | None) -> Issue | None:
    if prev is None or prev.text in (":=", "=", "if"):
        return None
    row = toks[i].row
    head = [t for t in toks[head_start:i] if t.kind != "nl"]
    # name[...] { ... } is a v0 partial set rule
    if (
        prev.text == "]"
        and head
        and head[0].kind == "ident"
        and not any(t.text in (":=", "=", "if", "contains", "else") for t in head)
        and any(t.text == "[" for t in head)
    ):
        return Issue(row, "rego_parse_error", "`contains` keyword is required for partial set rules")
    return Issue(row, "rego_parse_error", "`if` keyword is required before rule body")


def format_errors(path: str, issues: list[Issue]) -> str:
    """OPA's ast.Errors text: `1 error occurred: F:R: code: msg` or `N errors occurred:\\n...`."""
    lines = [f"{path}{f':{i.row}' if i.row else ''}: {i.code}: {i.message}" for i in issues]
    if len(lines) == 1:
        return f"1 error occurred: {lines[0]}"
    return f"{len(lines)} errors occurred:\n" + "\n".join(lines)
