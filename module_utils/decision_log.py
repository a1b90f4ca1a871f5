# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""The authorization plugin's decision log, read on a managed host (module authz_decisions).

opa-docker-authz writes every decision on its stderr; dockerd copies each line into its own
log as ``level=error msg="<the line, quoted>" plugin=<plugin id>`` (text format) or as a JSON
object (``--log-format json``). Two plugin modes write two line formats:

- policy-file mode (``-policy-file``), Go's ``log`` prefix then
  ``Returning OPA policy decision: false: {"config_hash":...,"decision_id":...,"input":{...},
  "labels":{...},"result":false,"timestamp":"..."}``; an evaluation error is
  ``Returning OPA policy decision: false (error: '<err>'; input: '<input JSON>')``; a missing
  policy file is ``OPA policy file <path> does not exist, failing open and allowing request``;
- config-file mode (``-config-file``, console decision logs): one JSON object
  ``{"decision_id":...,"input":{...},"msg":"Decision Log","path":"/docker/authz/allow",
  "result":true,...}`` (numbers in the input printed as floats: ``6.7108864e+07``).

This module finds those lines in journald (``journalctl -u docker -o json``) or in the daemon's
log file and its rotations (``docker.log.1``, ``docker.log.2.gz``, ``docker.log-20261205``),
parses them into entries, masks secrets (the values of secret-looking environment variables,
registry credentials, secret-looking build arguments) BEFORE anything leaves the host, filters
them by time, kind, container name, image and user, and bounds the output.

Stdlib only (runs on managed hosts).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import glob
import gzip
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, quote

# datetime.UTC is Python 3.11+; managed hosts may run an older Python.
UTC = dt.timezone.utc  # noqa: UP017
MASK = "<masked>"
DECISION_PREFIX = "Returning OPA policy decision: "
FAIL_OPEN_RE = re.compile(r"OPA policy file (.*) does not exist, failing open and allowing request")
GO_LOG_PREFIX_RE = re.compile(r"^(\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)?) ")
# `Returning OPA policy decision: false (error: '<err>'; input: '<json>')` (v0.10); the
# opa-docker-authz test double once printed the input as Go's byte slice `[123 34 ...]`.
ERROR_RE = re.compile(r"^(true|false) \(error: '?(.*?)'?; input: (.*)\)$", re.S)
# The user agent of this collection's own Engine API client (authz_verify probes, authz_facts).
PROBE_USER_AGENT = "hardening.docker_authz"
# What the role's policy treats as secret-looking by default (PARAMETER_DEFAULTS in policy.py;
# duplicated so that this file imports nothing else on the host; a unit test compares them).
DEFAULT_SENSITIVE_ENV_KEYWORDS: tuple[str, ...] = (
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "access_key",
    "private_key",
    "credential",
)
# Keys (lower case) whose string values are registry credentials wherever they appear
# (/auth bodies, AuthConfig objects of plugin pulls and service specs, headers).
CREDENTIAL_KEYS = frozenset(
    {
        "password",
        "auth",
        "identitytoken",
        "registrytoken",
        "x-registry-auth",
        "x-registry-config",
        "authorization",
    }
)
DEFAULT_LOG_FILES = ("/var/log/docker.log", "/var/log/dockerd.log", "/var/log/upstart/docker.log")
KINDS = ("denied", "allowed", "error", "fail_open")
# dockerd up to 24.0.2 (logrus < 1.9.3) logs this when a line of a plugin's stderr exceeds 64 KiB,
# and stops reading that stderr: later decisions are not logged and the plugin soon blocks on a
# full pipe, hanging the Docker API (docs/explain.md "Log volume").
STALL_MARK = "Error while reading from Writer: bufio.Scanner: token too long"
MAX_ERROR_LINES = 200


class DecisionLogError(ValueError):
    """Invalid options (a bad time, a negative count): the message names the fix."""


# --------------------------------------------------------------------------- time


_RELATIVE_RE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(value: Any, name: str, now: dt.datetime | None = None) -> dt.datetime | None:
    """``2026-12-06T01:50:16Z``, ``2026-12-06 01:50``, ``@1796953816``, ``90m``/``24h``/``7d`` ago."""
    if value is None or value == "":
        return None
    now = now or dt.datetime.now(UTC)
    text = str(value).strip()
    m = _RELATIVE_RE.match(text)
    if m:
        return now - dt.timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])
    if text.startswith("@") and re.fullmatch(r"@\d+(\.\d+)?", text):
        return dt.datetime.fromtimestamp(float(text[1:]), UTC)
    parsed = parse_rfc3339(text)
    if parsed is None:
        raise DecisionLogError(
            f"{name}: {value!r} is not a time. Give an ISO 8601 time (2026-12-06T01:50:00Z; without a "
            "zone it is UTC), @<unix seconds>, or an age such as 30m, 24h, 7d"
        )
    return parsed


def parse_rfc3339(text: str) -> dt.datetime | None:
    """RFC 3339 with up to nanoseconds (Go's RFC3339Nano); no zone means UTC."""
    m = re.fullmatch(
        r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2})?)(?:\.(\d+))?\s*(Z|z|[+-]\d{2}:?\d{2})?", text.strip()
    )
    if not m:
        return None
    clock = m.group(2) if m.group(2).count(":") == 2 else m.group(2) + ":00"
    frac = (m.group(3) or "0")[:6].ljust(6, "0")
    zone = m.group(4) or "Z"
    if zone in ("Z", "z"):
        tz = UTC
    else:
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        tz = dt.timezone(sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    try:
        stamp = dt.datetime.strptime(f"{m.group(1)}T{clock}", "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return None
    return stamp.replace(microsecond=int(frac), tzinfo=tz).astimezone(UTC)


def iso(stamp: dt.datetime | None) -> str | None:
    if stamp is None:
        return None
    return stamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --------------------------------------------------------------------------- daemon log lines


_GO_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
    "'": "'",
}


_NON_JSON_ESCAPE = re.compile(r"\\[^\"\\/bfnrtu]|\\u(?![0-9a-fA-F]{4})")


def go_unquote(body: str) -> str:
    """The inside of a Go ``strconv.Quote`` string (what logrus writes for msg="...")."""
    if "\\" not in body:
        return body
    if not _NON_JSON_ESCAPE.search(body):  # fast path: the escapes are JSON's (\" \\ \n \t \uXXXX)
        try:
            value = json.loads('"' + body + '"')
            return value if isinstance(value, str) else body
        except ValueError:
            pass
    out = bytearray()
    i = 0
    n = len(body)
    while i < n:
        ch = body[i]
        if ch != "\\" or i + 1 >= n:
            out += ch.encode("utf-8", "surrogateescape")
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in _GO_ESCAPES:
            out += _GO_ESCAPES[nxt].encode()
            i += 2
        elif nxt == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", body[i + 2 : i + 4]):
            out.append(int(body[i + 2 : i + 4], 16))  # a raw byte (invalid UTF-8 in the original)
            i += 4
        elif nxt in "uU":
            width = 4 if nxt == "u" else 8
            digits = body[i + 2 : i + 2 + width]
            if re.fullmatch(r"[0-9a-fA-F]+", digits or "-") and len(digits) == width:
                out += chr(int(digits, 16)).encode("utf-8", "surrogatepass")
                i += 2 + width
            else:
                out += b"\\"
                i += 1
        elif re.fullmatch(r"[0-7]{3}", body[i + 1 : i + 4]):
            out.append(int(body[i + 1 : i + 4], 8) & 0xFF)
            i += 4
        else:
            out += b"\\"
            i += 1
    return out.decode("utf-8", "replace")


_LOGFMT_RE = re.compile(r'(\w+)=("[^"\\]*(?:\\.[^"\\]*)*"|\S*)')  # unrolled: fast on 4 KiB values


def parse_daemon_line(line: str) -> dict[str, str] | None:
    """dockerd's logrus line -> its fields (time, level, msg, plugin, ...), msg unquoted.

    Text format ``time="..." level=error msg="..." plugin=<id>`` or, with ``--log-format json``,
    ``{"level":"error","msg":"...","plugin":"...","time":"..."}``. None for anything else.
    """
    line = line.rstrip("\r\n")
    start = line.find("{")
    if start == 0 or (start > 0 and line[:start].strip() == ""):
        try:
            doc = json.loads(line)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("msg"), str):
            return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in doc.items()}
    if "msg=" not in line:
        return None
    fields: dict[str, str] = {}
    for key, raw in _LOGFMT_RE.findall(line):
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            fields[key] = go_unquote(raw[1:-1])
        else:
            fields[key] = raw
    return fields if "msg" in fields else None


# --------------------------------------------------------------------------- plugin lines


def _json_object_at(text: str, start: int) -> dict[str, Any] | None:
    try:
        doc, _end = json.JSONDecoder().raw_decode(text, start)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _int_floats(value: Any) -> Any:
    """Config-file mode prints numbers as floats (6.7108864e+07): whole ones back to int."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, dict):
        return {k: _int_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_int_floats(v) for v in value]
    return value


def _go_bytes(text: str) -> str | None:
    """``[123 34 ...]`` (a Go byte slice printed with %v) -> the text it holds."""
    if not re.fullmatch(r"\[(\d{1,3}( \d{1,3})*)?\]", text):
        return None
    try:
        return bytes(int(b) for b in text[1:-1].split()).decode("utf-8", "replace")
    except ValueError:
        return None


def parse_plugin_message(msg: str) -> dict[str, Any] | None:
    """One line the plugin wrote -> a raw decision (not yet masked), or None when it is not one.

    Returns ``{"mode", "kind", "decision_id", "timestamp", "input", "result", "error",
    "config_hash", "path", "labels"}``; ``input`` is None when it could not be read.
    """
    text = msg.strip()
    go_time = None
    m = GO_LOG_PREFIX_RE.match(text)
    if m:
        go_time = m.group(1)
        text = text[m.end() :]
    if text.startswith(DECISION_PREFIX):
        rest = text[len(DECISION_PREFIX) :]
        if rest.startswith(("true: ", "false: ")):
            doc = _json_object_at(rest, rest.index(":") + 2)
            if doc is None:
                return None
            return _policy_file_decision(doc, go_time)
        em = ERROR_RE.match(rest)
        if em:
            raw_input = em.group(3).strip()
            if raw_input.startswith("'") and raw_input.endswith("'"):
                raw_input = raw_input[1:-1]
            as_text = _go_bytes(raw_input)
            input_doc = _json_object_at(as_text if as_text is not None else raw_input, 0)
            return {
                "mode": "policy-file",
                "kind": "error",
                "decision_id": None,
                "timestamp": None,
                "go_time": go_time,
                "input": input_doc,
                "result": em.group(1) == "true",
                "error": em.group(2),
                "config_hash": None,
                "path": None,
                "labels": None,
            }
        if rest.startswith(("true (error: ", "false (error: ")):
            return {"incomplete": True}  # a multi-line error message: the next lines complete it
        return None  # "Returning OPA policy decision: false" alone (its JSON follows on a line of its own)
    fo = FAIL_OPEN_RE.search(text)
    if fo:
        return {
            "mode": "policy-file",
            "kind": "fail_open",
            "decision_id": None,
            "timestamp": None,
            "go_time": go_time,
            "input": None,
            "result": True,
            "config_hash": None,
            "path": None,
            "labels": None,
            "error": f"policy file {fo.group(1)} does not exist: the plugin allowed the request",
        }
    if text.startswith("{"):
        doc = _json_object_at(text, 0)
        if doc is None or "decision_id" not in doc or "input" not in doc:
            return None
        if doc.get("msg") == "Decision Log" or ("path" in doc and "config_hash" not in doc):
            return _config_file_decision(doc)
        return _policy_file_decision(doc, go_time)
    return None


def _unfinished_error(text: str) -> dict[str, Any]:
    """An error line whose input never came (cut by the daemon or the log)."""
    body = text.split(DECISION_PREFIX, 1)[-1]
    err = body.split("(error: ", 1)[-1].lstrip("'")
    return {
        "mode": "policy-file",
        "kind": "error",
        "decision_id": None,
        "timestamp": None,
        "go_time": None,
        "input": None,
        "result": False,
        "error": err.split("'; input: ", 1)[0],
        "config_hash": None,
        "path": None,
        "labels": None,
    }


def _policy_file_decision(doc: Mapping[str, Any], go_time: str | None) -> dict[str, Any]:
    result = doc.get("result")
    return {
        "mode": "policy-file",
        "kind": "allowed" if result is True else "denied",
        "decision_id": doc.get("decision_id"),
        "timestamp": doc.get("timestamp"),
        "go_time": go_time,
        "input": doc.get("input") if isinstance(doc.get("input"), dict) else None,
        "result": result,
        "error": None,
        "config_hash": doc.get("config_hash"),
        "path": None,
        "labels": doc.get("labels"),
    }


def _config_file_decision(doc: Mapping[str, Any]) -> dict[str, Any]:
    result = doc.get("result")
    error = doc.get("error")
    if "result" not in doc and error is None:
        error = "the policy's decision was undefined (config-file mode answers with an error)"
    if isinstance(error, dict):
        error = error.get("message") or json.dumps(error)
    kind = "error" if error else ("allowed" if result is True else "denied")
    raw_input = doc.get("input")
    return {
        "mode": "config-file",
        "kind": kind,
        "decision_id": doc.get("decision_id"),
        "timestamp": doc.get("timestamp") or doc.get("time"),
        "go_time": None,
        "input": _int_floats(raw_input) if isinstance(raw_input, dict) else None,
        "result": result,
        "error": str(error) if error else None,
        "config_hash": None,
        "path": doc.get("path"),
        "labels": doc.get("labels"),
        "bundles": doc.get("bundles"),
    }


# --------------------------------------------------------------------------- masking


def _secret_name(name: str, keywords: Sequence[str]) -> bool:
    low = name.lower()
    return any(k and k in low for k in keywords)


def _mask_env_list(values: list[Any], where: str, keywords: Sequence[str], masked: list[str]) -> list[Any]:
    out = []
    for i, item in enumerate(values):
        if isinstance(item, str) and "=" in item:
            name, _sep, value = item.partition("=")
            if value and _secret_name(name, keywords):
                masked.append(f"{where}[{i}] ({name})")
                out.append(f"{name}={MASK}")
                continue
        out.append(item)
    return out


def _mask(value: Any, where: str, keywords: Sequence[str], masked: list[str]) -> Any:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            low = str(key).lower()
            if low in ("env", "environment") and isinstance(item, list):
                out[key] = _mask_env_list(item, path, keywords, masked)
            elif item and (
                (low in CREDENTIAL_KEYS and isinstance(item, (str, list)))
                or (isinstance(item, str) and (low == "authconfig" or _secret_name(str(key), keywords)))
            ):
                masked.append(path)
                out[key] = MASK
            else:
                out[key] = _mask(item, path, keywords, masked)
        return out
    if isinstance(value, list):
        return [_mask(v, f"{where}[{i}]", keywords, masked) for i, v in enumerate(value)]
    return value


def _mask_buildargs(text: str, keywords: Sequence[str], masked: list[str], where: str) -> str:
    try:
        args = json.loads(text)
    except ValueError:
        return text
    if not isinstance(args, dict):
        return text
    changed = False
    for key in list(args):
        if args[key] and _secret_name(str(key), keywords):
            args[key] = MASK
            masked.append(f"{where} ({key})")
            changed = True
    return json.dumps(args, separators=(",", ":")) if changed else text


def mask_input(doc: Any, keywords: Iterable[str] = DEFAULT_SENSITIVE_ENV_KEYWORDS) -> tuple[Any, list[str]]:
    """A copy of a logged input with secrets replaced by ``<masked>``, and where they were.

    Masked: values of environment variables whose NAME contains a keyword (any ``Env`` list:
    containers, exec, services, plugins), values of keys that are credentials (``password``,
    ``auth``, ``identitytoken``, ``registrytoken``, an ``authconfig`` string) or whose name
    contains a keyword, secret-looking ``buildargs`` of /build (in ``Query`` and ``Path``).
    Names stay, so the policy's verdict on the masked input is the verdict on the original.
    """
    kw = [str(k).lower() for k in keywords if str(k).strip()]
    masked: list[str] = []
    if not isinstance(doc, dict):
        return doc, masked
    out = _mask(doc, "", kw, masked)
    query = out.get("Query")
    if isinstance(query, dict):
        for key, values in query.items():
            if str(key).lower() == "buildargs" and isinstance(values, list):
                query[key] = [
                    _mask_buildargs(v, kw, masked, f"Query.{key}") if isinstance(v, str) else v
                    for v in values
                ]
            elif _secret_name(str(key), kw) and values:
                query[key] = [MASK for _ in values] if isinstance(values, list) else MASK
                masked.append(f"Query.{key}")
    path = out.get("Path")
    if isinstance(path, str) and "?" in path:
        base, _q, raw_query = path.partition("?")
        pairs = parse_qsl(raw_query, keep_blank_values=True)
        changed = False
        new_pairs = []
        for key, val in pairs:
            if key.lower() == "buildargs":
                new = _mask_buildargs(val, kw, [], "Path")
            elif _secret_name(key, kw) and val:
                new = MASK
            else:
                new = val
            changed = changed or new != val
            new_pairs.append((key, new))
        if changed:
            out["Path"] = (
                base + "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in new_pairs)
            )
    return out, masked


# --------------------------------------------------------------------------- what was asked


def _api_path(doc: Mapping[str, Any]) -> str:
    path = doc.get("PathPlain")
    if not isinstance(path, str):
        raw = doc.get("Path")
        path = raw.split("?", 1)[0] if isinstance(raw, str) else ""
    return re.sub(r"^/v\d+(\.\d+)?(?=/)", "", path)


def _image_of(doc: Mapping[str, Any], path: str) -> str | None:
    body = doc.get("Body") if isinstance(doc.get("Body"), dict) else {}
    query = doc.get("Query") if isinstance(doc.get("Query"), dict) else {}

    def q(name: str) -> str | None:
        values = query.get(name)
        return values[0] if isinstance(values, list) and values and isinstance(values[0], str) else None

    if isinstance(body.get("Image"), str):
        return body["Image"]
    spec = body.get("TaskTemplate") if isinstance(body.get("TaskTemplate"), dict) else {}
    cspec = spec.get("ContainerSpec") if isinstance(spec.get("ContainerSpec"), dict) else {}
    if isinstance(cspec.get("Image"), str):
        return cspec["Image"]
    if path.startswith("/images/create") and q("fromImage"):
        tag = q("tag")
        image = q("fromImage") or ""
        return f"{image}:{tag}" if tag and ":" not in image.rsplit("/", 1)[-1] and "@" not in image else image
    if path.startswith("/plugins/pull") and q("remote"):
        return q("remote")
    if path.startswith("/build") and q("t"):
        return q("t")
    return None


def describe(doc: Any) -> dict[str, Any]:
    """What a request asked: method, endpoint (without /vX.Y), image, container name, users."""
    if not isinstance(doc, dict):
        return {
            "method": None,
            "endpoint": None,
            "image": None,
            "container": None,
            "user": None,
            "container_user": None,
            "user_agent": None,
        }
    path = _api_path(doc)
    query = doc.get("Query") if isinstance(doc.get("Query"), dict) else {}
    body = doc.get("Body") if isinstance(doc.get("Body"), dict) else {}
    container = None
    parts = path.split("/")
    names = query.get("name")
    if path.startswith("/containers/create") and isinstance(names, list) and names:
        container = str(names[0])
    elif len(parts) > 2 and parts[1] == "containers" and parts[2] not in ("create", "json", "prune"):
        container = parts[2]
    elif path.startswith("/services/create") and isinstance(body.get("Name"), str):
        container = body["Name"]
    headers = doc.get("Headers") if isinstance(doc.get("Headers"), dict) else {}
    agent = next((v for k, v in headers.items() if str(k).lower() == "user-agent"), None)
    cuser = body.get("User")
    if cuser is None:
        spec = body.get("TaskTemplate") if isinstance(body.get("TaskTemplate"), dict) else {}
        cspec = spec.get("ContainerSpec") if isinstance(spec.get("ContainerSpec"), dict) else {}
        cuser = cspec.get("User")
    return {
        "method": doc.get("Method") if isinstance(doc.get("Method"), str) else None,
        "endpoint": path or None,
        "image": _image_of(doc, path),
        "container": container,
        "user": doc.get("User") or None,
        "container_user": cuser if isinstance(cuser, str) else None,
        "user_agent": agent if isinstance(agent, str) else None,
    }


# --------------------------------------------------------------------------- entries


def make_entry(
    raw: Mapping[str, Any],
    daemon: Mapping[str, str],
    source: str,
    keywords: Sequence[str],
    fallback_time: dt.datetime | None = None,
) -> dict[str, Any]:
    """A raw decision and its daemon line -> the entry the module returns (masked)."""
    stamp = None
    if isinstance(raw.get("timestamp"), str):
        stamp = parse_rfc3339(raw["timestamp"])
    if stamp is None and isinstance(daemon.get("time"), str):
        stamp = parse_rfc3339(daemon["time"])
    if stamp is None:
        stamp = fallback_time
    masked_input, masked = mask_input(raw.get("input"), keywords)
    error = raw.get("error")
    if isinstance(error, str) and raw.get("input") is None and "input:" in error:
        error = error.split("input:", 1)[0].rstrip("; ")
    what = describe(masked_input)
    return {
        "time": iso(stamp),
        "decision_id": raw.get("decision_id"),
        "mode": raw.get("mode"),
        "kind": raw.get("kind"),
        "allowed": raw.get("result") is True and raw.get("kind") != "error",
        "result": raw.get("result"),
        "error": error,
        "config_hash": raw.get("config_hash"),
        "bundle_revisions": {
            str(k): v.get("revision") for k, v in (raw.get("bundles") or {}).items() if isinstance(v, dict)
        }
        or None,
        "plugin_id": daemon.get("plugin"),
        "source": source,
        "probe": what["user_agent"] == PROBE_USER_AGENT,
        "request": what,
        "input": masked_input,
        "masked": masked,
    }


def iter_messages_text(
    lines: Iterable[str], also: Mapping[str, Any] | None = None
) -> Iterator[tuple[dict[str, str], str]]:
    """Daemon log lines -> (daemon fields, plugin message) for lines that may be decisions.

    ``also``: plugin ids whose every line is wanted (the rest of a multi-line error).
    """
    for line in lines:
        if (
            "OPA" not in line
            and "decision_id" not in line
            and "Decision Log" not in line
            and not (also and any(f"plugin={k}" in line or f'"plugin":"{k}"' in line for k in also))
        ):
            continue  # cheap pre-filter: most daemon lines are not decisions
        fields = parse_daemon_line(line)
        if fields is None:
            continue
        yield fields, fields["msg"]


def _open_text(path: str) -> Iterator[str]:
    opener: Callable[..., Any] = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
        yield from fh


def rotated_files(path: str) -> list[str]:
    """The log file and its rotations, oldest first (logrotate's .1, .2.gz and -DATE spellings)."""
    found = {path} if os.path.exists(path) else set()
    for pattern in (path + ".*", path + "-*"):
        for cand in glob.glob(glob.escape(path) + pattern[len(path) :]):
            if os.path.isfile(cand):
                found.add(cand)
    return sorted(found, key=lambda p: (os.path.getmtime(p), p != path, p))


def default_log_file(defaults_file: str = "/etc/default/docker") -> str | None:
    """dockerd's log file: DOCKER_LOGFILE of /etc/default/docker (Debian's init script), else the usual."""
    try:
        with open(defaults_file, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                m = re.match(r"\s*(?:export\s+)?DOCKER_LOGFILE=(['\"]?)(.+?)\1\s*$", line)
                if m:
                    return m.group(2)
    except OSError:
        pass
    for cand in DEFAULT_LOG_FILES:
        if os.path.exists(cand):
            return cand
    return None


def journald_usable(unit: str, runner: Callable[..., Any] = subprocess.run) -> bool:
    """dockerd runs under systemd and journald has its unit."""
    if not shutil.which("journalctl") or not os.path.isdir("/run/systemd/system"):
        return False
    proc = runner(
        ["journalctl", "-u", unit, "-n", "1", "-o", "cat", "--no-pager", "-q"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    return proc.returncode == 0 and bool(proc.stdout.strip())


def journald_lines(
    unit: str, since: dt.datetime | None, until: dt.datetime | None
) -> Iterator[tuple[str, dt.datetime | None]]:
    """(daemon line, journal time) from ``journalctl -u UNIT -o json``."""
    cmd = ["journalctl", "-u", unit, "-o", "json", "--no-pager", "-q"]
    if since is not None:
        cmd += ["--since", "@" + str(int(since.timestamp()))]
    if until is not None:
        cmd += ["--until", "@" + str(int(until.timestamp()) + 1)]
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, encoding="utf-8", errors="replace"
    ) as proc:
        assert proc.stdout is not None
        for row in proc.stdout:
            try:
                doc = json.loads(row)
            except ValueError:
                continue
            message = doc.get("MESSAGE")
            if isinstance(message, list):  # journald stores non-UTF-8 messages as byte arrays
                message = bytes(b for b in message if isinstance(b, int)).decode("utf-8", "replace")
            if not isinstance(message, str):
                continue
            when = None
            stamp = doc.get("__REALTIME_TIMESTAMP")
            if isinstance(stamp, str) and stamp.isdigit():
                when = dt.datetime.fromtimestamp(int(stamp) / 1e6, UTC)
            yield message, when


# --------------------------------------------------------------------------- the collection


def _matches(value: str | None, patterns: Sequence[str]) -> bool:
    if not patterns:
        return True
    if not value:
        return False
    cands = {value, value.lstrip("/")}
    base = value.split("@", 1)[0]
    if ":" in base.rsplit("/", 1)[-1]:
        base = base.rsplit(":", 1)[0]
    cands.add(base)
    return any(fnmatch.fnmatchcase(c, p) for c in cands for p in patterns)


def entry_matches(entry: Mapping[str, Any], filters: Mapping[str, Sequence[str]]) -> bool:
    req = entry.get("request") or {}
    return (
        _matches(req.get("container"), filters.get("container") or [])
        and _matches(req.get("image"), filters.get("image") or [])
        and _matches(req.get("user") or "", filters.get("user") or [])
    )


def _entry_size(entry: Mapping[str, Any]) -> int:
    return len(json.dumps(entry, separators=(",", ":"), default=str))


def collect(
    sources: Sequence[tuple[str, Iterable[tuple[str, dt.datetime | None]]]],
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    kinds: Sequence[str] = ("denied", "error"),
    last: int = 0,
    filters: Mapping[str, Sequence[str]] | None = None,
    plugin_id: str | None = None,
    include_probes: bool = False,
    keywords: Sequence[str] = DEFAULT_SENSITIVE_ENV_KEYWORDS,
    max_entries: int = 200,
    max_bytes: int = 4 * 1024 * 1024,
) -> dict[str, Any]:
    """Read every source (oldest first) -> ``{entries, counts, truncated, ...}``.

    ``sources`` are (name, iterable of (daemon line, time or None)). ``last`` keeps the newest N
    matching entries; ``max_entries`` and ``max_bytes`` bound the output (the newest are kept,
    ``truncated`` says how many were left out).
    """
    filters = filters or {}
    counts = {k: 0 for k in KINDS}
    probes = 0
    lines_read = 0
    matched: list[dict[str, Any]] = []
    plugin_ids: set[str] = set()
    # A policy error can span lines (OPA's "2 errors occurred:\n..."): dockerd logs each line of the
    # plugin's stderr apart; they are joined again, per plugin, up to MAX_ERROR_LINES.
    pending: dict[str, tuple[str, int]] = {}
    # Lines whose daemon time (UTC, text format) is more than a minute before the window are
    # skipped unparsed: a window over a large log costs a string comparison per old line.
    floor = (since - dt.timedelta(minutes=1)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") if since else None
    stalls: list[dict[str, Any]] = []
    for name, lines in sources:
        for line, when in lines:
            lines_read += 1
            if floor and line.startswith('time="') and line[25:26] in ("Z", ".") and line[6:25] < floor:
                continue
            if STALL_MARK in line:
                fields = parse_daemon_line(line) or {}
                stall = {"time": fields.get("time") or iso(when), "plugin": fields.get("plugin")}
                stalls.append(stall)
                continue
            messages = []
            for daemon, msg in iter_messages_text([line], also=pending):
                key = daemon.get("plugin", "")
                if key in pending:
                    text, count = pending[key]
                    if GO_LOG_PREFIX_RE.match(msg) or msg.lstrip().startswith("{"):
                        # a new line of the plugin: the error's end never came
                        pending.pop(key)
                        messages.append((daemon, _unfinished_error(text)))
                    else:
                        text += "\n" + msg
                        raw = parse_plugin_message(text)
                        if raw is not None and raw.get("incomplete") and count < MAX_ERROR_LINES:
                            pending[key] = (text, count + 1)
                        else:
                            pending.pop(key)
                            messages.append(
                                (
                                    daemon,
                                    raw if raw and not raw.get("incomplete") else _unfinished_error(text),
                                )
                            )
                        continue
                parsed = parse_plugin_message(msg)
                if parsed is not None and parsed.get("incomplete"):
                    pending[key] = (msg, 1)
                elif parsed is not None:
                    messages.append((daemon, parsed))
            for daemon, raw in messages:
                if (
                    plugin_id
                    and daemon.get("plugin")
                    and not str(plugin_id).startswith(daemon["plugin"])
                    and not daemon["plugin"].startswith(str(plugin_id))
                ):
                    continue
                entry = make_entry(raw, daemon, name, keywords, when)
                stamp = parse_rfc3339(entry["time"]) if entry["time"] else None
                if since is not None and stamp is not None and stamp < since:
                    continue
                if until is not None and stamp is not None and stamp > until:
                    continue
                if entry["plugin_id"]:
                    plugin_ids.add(entry["plugin_id"])
                if entry["probe"] and not include_probes:
                    probes += 1
                    continue
                if not entry_matches(entry, filters):
                    continue
                counts[entry["kind"]] = counts.get(entry["kind"], 0) + 1
                if entry["kind"] in kinds:
                    matched.append(entry)
    matched.sort(key=lambda e: e["time"] or "")
    total = len(matched)
    if last and last > 0:
        matched = matched[-last:]
    kept: list[dict[str, Any]] = []
    size = 0
    for entry in reversed(matched):
        if len(kept) >= max_entries:
            break
        esize = _entry_size(entry)
        if size + esize > max_bytes and kept:
            break
        kept.append(entry)
        size += esize
    kept.reverse()
    return {
        "entries": kept,
        "counts": counts,
        "matched": total,
        "returned": len(kept),
        "truncated": len(matched) - len(kept),
        "probes_skipped": probes,
        "lines_read": lines_read,
        "plugin_ids": sorted(plugin_ids),
        "bytes": size,
        "log_stalls": stalls[-5:],
    }


def file_lines(path: str) -> Iterator[tuple[str, dt.datetime | None]]:
    for line in _open_text(path):
        yield line, None


def read_policy_files(path: str, max_bytes: int = 2 * 1024 * 1024) -> dict[str, Any]:
    """The policy the host runs: one file, or a bundle directory (its .rego files and data.json)."""
    out: dict[str, Any] = {"path": path, "exists": False, "kind": None, "files": {}, "error": None}
    if os.path.isdir(path):
        out["kind"] = "bundle"
        total = 0
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for fname in sorted(files):
                if not (fname.endswith(".rego") or fname in ("data.json", ".manifest")):
                    continue
                full = os.path.join(root, fname)
                try:
                    with open(full, "rb") as fh:
                        data = fh.read()
                except OSError as exc:
                    out["error"] = f"cannot read {full}: {exc.strerror}"
                    return out
                total += len(data)
                if total > max_bytes:
                    out["error"] = f"the bundle {path} is larger than {max_bytes} bytes"
                    return out
                out["files"][os.path.relpath(full, path)] = data.decode("utf-8", "replace")
        out["exists"] = bool(out["files"])
        return out
    try:
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except FileNotFoundError:
        return out
    except OSError as exc:
        out["error"] = f"cannot read {path}: {exc.strerror}"
        return out
    if len(data) > max_bytes:
        out["error"] = f"the policy {path} is larger than {max_bytes} bytes"
        return out
    out["exists"] = True
    out["kind"] = "file"
    out["files"] = {os.path.basename(path): data.decode("utf-8", "replace")}
    return out


_AUDIT_RULE_RE = re.compile(r"^\s*audit\s*(contains\b|\[|:=|=|if\b|\{)", re.M)


def defines_audit(files: Mapping[str, str]) -> bool:
    """Whether a policy's Rego defines a rule ``audit`` (the would-be denials of rules in audit mode)."""
    return any(_AUDIT_RULE_RE.search(text) for name, text in files.items() if not name.endswith(".json"))
