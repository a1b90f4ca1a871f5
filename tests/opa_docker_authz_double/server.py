"""TEST DOUBLE of opa-docker-authz v0.10, in Python around OPA's own engine.

The official plugin (ghcr.io/open-policy-agent/opa-docker-authz:v0.10) cannot be pulled in
this project's test environment, so the tests install this double as a Docker managed plugin
(tests/images/build.py pushes it as 127.0.0.1:5000/opa-docker-authz-double:v0.10-linux-amd64).
Rego is evaluated by OPA itself: OPA 1.20.2's Go engine through opa-golib-python-bindings
(`opa_bindings`), parsing Rego v1 only, as v0.10's OPA 1.3.0 does. It reproduces what the real
plugin does as documented in work/shared/reference/opa-docker-authz.md and v0.10's main.go:

- serves /Plugin.Activate (Implements authz), /AuthZPlugin.AuthZReq and /AuthZPlugin.AuthZRes
  on the unix socket /run/docker/plugins/<-plugin-name>.sock (default opa-docker-authz.sock);
- parses its arguments (the plugin's `opa-args`) with Go `flag` semantics: -policy-file,
  -config-file (never both: the real plugin's fatal error), -allowPath (default
  data.docker.authz.allow), -skip-ping (default true), -quiet, -log-only-denied, -check
  (compile the policy file, exit 0/1), -version, -plugin-name;
- policy-file mode: reads and compiles the policy file again on EVERY request (a fresh OPA
  engine each time); a missing file (or no args at all) ALLOWS every request (fails open),
  logging that it does; undefined -> deny (Msg "request rejected by administrative policy"),
  non-boolean -> Err "administrative policy decision invalid", parse/compile/eval errors -> Err;
  each decision logged as ONE line "Returning OPA policy decision: B: {decision JSON}" unless
  -quiet, or -log-only-denied and allowed; errors always logged as
  "Returning OPA policy decision: B (error: '<err>'; input: '<input JSON>')";
- config-file mode (OPA's configuration, JSON or YAML): bundles from `file:///` resources (a
  directory or a .tar.gz, read ONCE) or from `services` over HTTP with `polling` (new revisions
  activate without a restart, a failed download/verification/compile keeps the old one), bundle
  signatures (.signatures.json, `keys` with RS256 or HS256, `signing` with keyid/scope/
  exclude_files); the socket is served only once every bundle has activated; the policy is
  compiled once per activation; undefined -> Err
  "opa_undefined_error: /docker/authz/allow decision was undefined", non-boolean -> deny;
  `decision_logs: {console: true}` logs one JSON line per decision ("msg":"Decision Log"),
  after OPA's drop_decision and mask_decision policies (default /system/log/drop and /mask);
- builds the input with opa_input.build_input (the real makeInput); AuthZRes always allows.

Known differences: see README.md in this directory.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import http.server
import io
import json
import os
import random
import re
import signal
import socketserver
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

if __package__:
    from .opa_input import InputError, _go_url_parse, build_input, skips_evaluation
    from .opa_input import _decode_authz_request as _decode_old
else:  # run as a script inside the plugin: the modules sit next to this file
    from opa_input import (  # type: ignore[no-redef]
        InputError,
        _go_url_parse,  # type: ignore[no-redef]
        build_input,
        skips_evaluation,
    )
    from opa_input import _decode_authz_request as _decode_old  # type: ignore[no-redef]

PLUGIN_VERSION = "0.10"
OPA_VERSION = "1.3.0"  # what v0.10 embeds (and reports in its labels)
ENGINE = "OPA 1.20.2 (opa-golib-python-bindings 0.4.4)"  # what the double runs
DENY_MSG = "request rejected by administrative policy"
INVALID_DECISION = "administrative policy decision invalid"
PLUGIN_DIR = os.environ.get("OPA_DOUBLE_PLUGIN_DIR", "/run/docker/plugins")
CONTENT_TYPE = "application/vnd.docker.plugins.v1+json"  # go-plugins-helpers sdk
# Old-tag mode: OPA_DOUBLE_TAG=0.8 in the plugin's environment (the :0.8 image's config.json sets
# it) makes the double behave as tag 0.8 (OPA 0.30.0, Rego v0, evaluated with regopy) where 0.8
# differs from v0.10. Unset: v0.10, unchanged.
OLD_TAGS = {"0.8": "0.30.0"}
OLD_TAG_ENGINE = "regopy (rego-cpp), Rego v0 only"


def emulated_tag() -> str:
    """The old tag the double emulates ("" for v0.10)."""
    tag = os.environ.get("OPA_DOUBLE_TAG", "")
    if tag and tag not in OLD_TAGS:
        raise SystemExit(
            f"OPA_DOUBLE_TAG={tag!r}: the double emulates v0.10 (unset) or {', '.join(OLD_TAGS)}"
        )
    return tag


# ------------------------------------------------------------------ Go flag emulation


class FlagError(Exception):
    """A Go flag.Parse error: the program prints it with the usage and exits 2."""


@dataclass
class Options:
    plugin_name: str = "opa-docker-authz"
    allow_path: str = "data.docker.authz.allow"
    config_file: str = ""
    policy_file: str = ""
    skip_ping: bool = True
    version: bool = False
    check: bool = False
    quiet: bool = False
    log_only_denied: bool = False
    help: bool = False


_STRING_FLAGS = {
    "plugin-name": "plugin_name",
    "allowPath": "allow_path",
    "config-file": "config_file",
    "policy-file": "policy_file",
}
_BOOL_FLAGS = {
    "skip-ping": "skip_ping",
    "version": "version",
    "check": "check",
    "quiet": "quiet",
    "log-only-denied": "log_only_denied",
}
_GO_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_GO_FALSE = {"0", "f", "F", "FALSE", "false", "False"}

USAGE = """Usage of opa-docker-authz:
  -allowPath string
    \tsets the path of the allow decision in OPA (default "data.docker.authz.allow")
  -check
    \tchecks the syntax of the policy-file
  -config-file string
    \tsets the path of the config file to load
  -log-only-denied
    \tonly log denied requests (policy-file mode)
  -plugin-name string
    \tsets the plugin name that will be registered with Docker (default "opa-docker-authz")
  -policy-file string
    \tsets the path of the policy file to load
  -quiet
    \tdisable logging of each HTTP request (policy-file mode)
  -skip-ping
    \tskip policy evaluation for requests to /_ping endpoint (default true)
  -version
    \tprint the version of the plugin
"""


def parse_flags(argv: Sequence[str], tag: str = "") -> Options:
    """Go's flag.CommandLine.Parse: stops at the first non-flag argument or after `--`.
    ``tag`` "0.8": that tag's flags (no -log-only-denied)."""
    opts = Options()
    bool_flags = {k: v for k, v in _BOOL_FLAGS.items() if not (tag and k == "log-only-denied")}
    args = list(argv)
    while args:
        arg = args[0]
        if len(arg) < 2 or arg[0] != "-":
            break
        dashes = 2 if arg[1] == "-" else 1
        if dashes == 2 and len(arg) == 2:
            args.pop(0)
            break
        name = arg[dashes:]
        if not name or name[0] in "-=":
            raise FlagError(f"bad flag syntax: {arg}")
        args.pop(0)
        value: str | None = None
        if "=" in name:
            name, value = name.split("=", 1)
        if name in ("help", "h"):
            opts.help = True
            raise FlagError("flag: help requested")
        if name in bool_flags:
            if value is None:
                setattr(opts, bool_flags[name], True)
            elif value in _GO_TRUE or value in _GO_FALSE:
                setattr(opts, bool_flags[name], value in _GO_TRUE)
            else:
                raise FlagError(f'invalid boolean value "{value}" for -{name}: parse error')
        elif name in _STRING_FLAGS:
            if value is None:
                if not args:
                    raise FlagError(f"flag needs an argument: -{name}")
                value = args.pop(0)
            setattr(opts, _STRING_FLAGS[name], value)
        else:
            raise FlagError(f"flag provided but not defined: -{name}")
    return opts


# ------------------------------------------------------------------ Go-style logging


_LOG_LOCK = threading.Lock()


def go_log(msg: str, stream: Any = None) -> None:
    """Go's log.Printf: `2006/01/02 15:04:05 msg` on stderr."""
    stamp = dt.datetime.now().strftime("%Y/%m/%d %H:%M:%S")
    with _LOG_LOCK:
        print(f"{stamp} {msg}", file=stream or sys.stderr, flush=True)


def go_json(value: Any) -> str:
    """encoding/json.Marshal: sorted map keys, no spaces, HTML-safe escapes, UTF-8 kept."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for ch, esc in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(ch, esc)
    return text


def rfc3339nano(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    base = now.strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{now.microsecond:06d}".rstrip("0")
    off = now.strftime("%z")
    zone = "Z" if off in ("+0000", "") else f"{off[:3]}:{off[3:]}"
    return f"{base}{'.' + frac if frac else ''}{zone}"


# ------------------------------------------------------------------ Rego via OPA's own engine


class PolicyError(Exception):
    """A parse, compile or evaluation error; str() is what the plugin puts in Err."""


def _opa() -> Any:
    """opa_bindings, imported lazily: unit tests of the flag parsing need no Rego engine."""
    import opa_bindings

    return opa_bindings


def opa_message(exc: Exception) -> str:
    """OPA's error text. The bindings compile on the first evaluation and prefix compile errors
    with "bundle activation failed: "; rego.Eval reports the compiler's errors alone."""
    message = getattr(exc, "message", None) or str(exc)
    return message.removeprefix("bundle activation failed: ")


def document_path(query: str) -> str | None:
    """`data.a.b` -> `a.b` (eval_document's path); None for a query that is not a plain ref."""
    if query == "data":
        return ""
    if re.fullmatch(r"data(\.[A-Za-z_][A-Za-z0-9_]*)+", query):
        return query[len("data.") :]
    return None


def eval_query_value(engine: Any, query: str, input_doc: Any) -> Any:
    """The value of `query` (None when undefined): a plain data ref or any Rego expression."""
    opa = _opa()
    path = document_path(query)
    if path is not None:
        try:
            return engine.eval_document(path, input_doc)
        except opa.OpaUndefinedError:
            return None
    rows = engine.eval_query(f"__double_result__ := {query}", input_doc)
    return rows[0]["__double_result__"] if rows else None


def evaluate_policy(path: str, source: str, input_doc: Any, query: str) -> Any:
    """Compile `source` (Rego v1) in a fresh engine and evaluate `query`; None when undefined."""
    opa = _opa()
    engine = opa.OpaEngine()
    try:
        engine.add_policy(path, source)
        return eval_query_value(engine, query, input_doc)
    except opa.OpaError as e:
        raise PolicyError(opa_message(e)) from None
    finally:
        engine.close()


def check_policy(path: str) -> tuple[int, str]:
    """-check: (exit code, stderr text). Compile errors print one per line, success is silent."""
    try:
        with open(path, encoding="utf-8") as fh:
            source = fh.read()
    except OSError as e:
        return 1, _go_path_error("stat" if isinstance(e, FileNotFoundError) else "open", path, e) + "\n"
    opa = _opa()
    engine = opa.OpaEngine()
    try:
        engine.add_policy(path, source)
        engine.eval_query("true")  # compiles every module
    except opa.OpaError as e:
        text = opa_message(e)
        if e.code == "parse_error":  # loader.AllRegos fails: its error is printed whole
            return 1, text + "\n"
        # the compiler's errors, one per line (fmt.Fprintln of each)
        first, _, rest = text.partition("\n")
        if first.endswith("errors occurred:"):
            lines = rest.split("\n")
        else:
            lines = [text.removeprefix("1 error occurred: ")]
        return 1, "\n".join(lines) + "\n"
    finally:
        engine.close()
    return 0, ""


# ------------------------------------------------------------------ config-file mode


class ConfigError(Exception):
    """An invalid OPA configuration: sdk.New fails and the plugin exits (log.Fatal)."""


class BundleError(Exception):
    """A bundle that cannot be downloaded, read, verified or compiled: it is not activated."""


@dataclass
class Service:
    name: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class BundleConfig:
    name: str
    resource: str
    service: Service | None
    min_delay: float
    max_delay: float
    signing: dict[str, Any] | None


@dataclass
class OpaConfig:
    bundles: list[BundleConfig]
    keys: dict[str, dict[str, Any]]
    console: bool
    labels: dict[str, str]
    drop_decision: str = "/system/log/drop"
    mask_decision: str = "/system/log/mask"


def _load_config_text(text: str) -> Any:
    """OPA reads its configuration as YAML (JSON is YAML); without PyYAML, JSON only."""
    try:
        import yaml
    except ImportError:
        try:
            return json.loads(text)
        except ValueError as e:
            raise ConfigError(f"config error: {e} (this double reads YAML only with python3-yaml)") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"config error: {e}") from None


def _services(raw: Any) -> dict[str, Service]:
    """`services` as a map {name: {url}} or a list [{name, url}] (both OPA forms)."""
    items: list[tuple[str, Any]]
    if raw is None:
        return {}
    if isinstance(raw, dict):
        items = list(raw.items())
    elif isinstance(raw, list):
        items = [(str((s or {}).get("name", "")), s) for s in raw]
    else:
        raise ConfigError("invalid configuration: services must be a map or a list")
    out: dict[str, Service] = {}
    for name, spec in items:
        if not isinstance(spec, dict) or not spec.get("url"):
            raise ConfigError(f'invalid configuration for service "{name}": missing url')
        headers = {str(k): str(v) for k, v in (spec.get("headers") or {}).items()}
        token = ((spec.get("credentials") or {}).get("bearer") or {}).get("token")
        if token:
            scheme = ((spec.get("credentials") or {}).get("bearer") or {}).get("scheme", "Bearer")
            headers["Authorization"] = f"{scheme} {token}"
        out[name] = Service(name, str(spec["url"]), headers)
    return out


_DATA_PATH = re.compile(r"/?(data/)?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*")


def parse_config(text: str) -> OpaConfig:
    doc = _load_config_text(text)
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError("config error: the configuration must be an object")
    services = _services(doc.get("services"))
    keys = doc.get("keys") or {}
    if not isinstance(keys, dict):
        raise ConfigError("invalid configuration: keys must be a map")
    bundles: list[BundleConfig] = []
    for name, spec in (doc.get("bundles") or {}).items():
        spec = spec or {}
        resource = str(spec.get("resource") or f"bundles/{name}")
        service: Service | None = None
        if not resource.startswith("file://"):
            svc = spec.get("service")
            if not svc:
                raise ConfigError(f'invalid configuration for bundle "{name}": service name must be set')
            if svc not in services:
                raise ConfigError(f'invalid configuration for bundle "{name}": unknown service name "{svc}"')
            service = services[svc]
        polling = spec.get("polling") or {}
        min_delay = float(polling.get("min_delay_seconds", 60))
        max_delay = float(polling.get("max_delay_seconds", 120))
        if max_delay < min_delay:
            raise ConfigError(
                f'invalid configuration for bundle "{name}": max polling delay must be >= min polling delay'
            )
        signing = spec.get("signing")
        if signing is not None and not isinstance(signing, dict):
            raise ConfigError(f'invalid configuration for bundle "{name}": signing must be a map')
        if signing is not None:
            keyid = signing.get("keyid")
            if keyid and keyid not in keys:
                raise ConfigError(f'invalid configuration for bundle "{name}": key "{keyid}" not found')
        bundles.append(BundleConfig(str(name), resource, service, min_delay, max_delay, signing))
    decision_logs = doc.get("decision_logs") or {}
    labels = {str(k): str(v) for k, v in (doc.get("labels") or {}).items()}
    paths = {}
    for key, default in (("drop_decision", "/system/log/drop"), ("mask_decision", "/system/log/mask")):
        value = decision_logs.get(key, default)
        if not isinstance(value, str) or not _DATA_PATH.fullmatch(value):
            raise ConfigError(f"invalid {key} in decision_logs: {value!r}")
        paths[key] = "/" + value.strip("/").removeprefix("data/")
    return OpaConfig(bundles, keys, bool(decision_logs.get("console")), labels, **paths)


# ------------------------------------------------------------------ bundles


@dataclass
class Bundle:
    name: str
    revision: str
    roots: list[str]
    modules: list[tuple[str, str]]  # (module name, source)
    data: dict[str, Any]


def _norm(path: str) -> str:
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    return "/".join(parts)


def read_bundle_dir(root: str) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            full = os.path.join(dirpath, name)
            if os.path.isfile(full):
                with open(full, "rb") as fh:
                    files[_norm(os.path.relpath(full, root))] = fh.read()
    return files


def read_bundle_tar(raw: bytes) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
            for member in tar:
                if member.isfile():
                    fh = tar.extractfile(member)
                    if fh is not None:
                        files[_norm(member.name)] = fh.read()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise BundleError(f"bundle read failed: {e}") from None
    return files


class _Num(str):
    """A JSON number kept as its text (OPA hashes json.Number's text)."""


def _canonical(value: Any) -> str:
    """OPA's bundle file hash input for JSON/YAML: keys sorted, no spaces, HTML not escaped."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{_canonical(str(k))}:{_canonical(value[k])}" for k in sorted(value)) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_canonical(v) for v in value) + "]"
    if isinstance(value, _Num):
        return str.__str__(value)
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return json.dumps(value, ensure_ascii=False)


def _file_hash(name: str, raw: bytes) -> str:
    """OPA's VerifyBundleFile: structured documents (IsStructuredDoc: data.json, data.yaml,
    .manifest, .signatures.json) are hashed over their canonical JSON, other files as bytes."""
    if os.path.basename(name) in ("data.json", ".manifest", ".signatures.json"):
        value = json.loads(raw, parse_float=_Num, parse_int=_Num)
        return hashlib.sha256(_canonical(value).encode()).hexdigest()
    if os.path.basename(name) in ("data.yaml", "data.yml"):
        import yaml

        value = yaml.safe_load(raw)
        return hashlib.sha256(_canonical(value).encode()).hexdigest()
    return hashlib.sha256(raw).hexdigest()


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify_signatures(
    files: dict[str, bytes], signing: dict[str, Any], keys: dict[str, dict[str, Any]]
) -> None:
    """OPA's bundle verification: one JWT in .signatures.json, signed with the configured key,
    whose `files` list every file of the bundle (but .signatures.json and exclude_files) with
    its SHA-256 hash, and whose `scope` matches."""
    raw = files.get(".signatures.json")
    if raw is None:
        raise BundleError("bundle missing .signatures.json file")
    try:
        sigs = json.loads(raw).get("signatures") or []
    except (ValueError, AttributeError) as e:
        raise BundleError(f"bundle verification failed: .signatures.json: {e}") from None
    if len(sigs) != 1:
        raise BundleError("bundle verification failed: expected exactly one signature")
    try:
        head_b64, payload_b64, sig_b64 = str(sigs[0]).split(".")
        header = json.loads(_b64url(head_b64))
        payload = json.loads(_b64url(payload_b64))
        signature = _b64url(sig_b64)
    except ValueError as e:
        raise BundleError(f"bundle verification failed: malformed JWT: {e}") from None
    keyid = signing.get("keyid") or header.get("kid") or payload.get("keyid") or ""
    key = keys.get(keyid)
    if not keyid or key is None:
        raise BundleError(f"verification key corresponding to ID {keyid} not found")
    alg = str(key.get("algorithm") or "RS256")
    if header.get("alg") != alg:
        raise BundleError(f"bundle verification failed: JWT algorithm {header.get('alg')} is not {alg}")
    signed = f"{head_b64}.{payload_b64}".encode()
    secret = str(key.get("key") or "")
    if alg == "HS256":
        ok = hmac.compare_digest(hmac.new(secret.encode(), signed, hashlib.sha256).digest(), signature)
    elif alg == "RS256":
        try:
            from cryptography.exceptions import InvalidSignature
            from cryptography.hazmat.primitives import hashes, serialization
            from cryptography.hazmat.primitives.asymmetric import padding
        except ImportError:
            raise BundleError("RS256 needs python3-cryptography in the double") from None
        try:
            public = serialization.load_pem_public_key(secret.encode())
            public.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr,call-arg]
            ok = True
        except InvalidSignature:
            ok = False
        except (ValueError, TypeError) as e:
            raise BundleError(f"bundle verification failed: bad public key {keyid}: {e}") from None
    else:
        raise BundleError(f"bundle verification failed: algorithm {alg} is not supported by the double")
    if not ok:
        raise BundleError("bundle verification failed: failed to verify the JWT signature")
    scope = signing.get("scope") or key.get("scope") or ""
    if scope and payload.get("scope") != scope:
        raise BundleError("bundle verification failed: scope mismatch")
    listed = {_norm(str(f.get("name", ""))): f for f in payload.get("files") or []}
    excluded = set(signing.get("exclude_files") or [])
    for name, content in files.items():
        if name == ".signatures.json" or name in excluded:
            continue
        entry = listed.pop(name, None)
        if entry is None:
            raise BundleError(f"file {name} not included in bundle signature")
        if str(entry.get("algorithm", "SHA-256")).upper() != "SHA-256":
            raise BundleError(f"{name}: unsupported hashing algorithm {entry.get('algorithm')}")
        got = _file_hash(name, content)
        if got != entry.get("hash"):
            raise BundleError(f"{name}: digest mismatch (want: {entry.get('hash')}, got: {got})")
    if listed:
        raise BundleError(
            f"file(s) {sorted(listed)} specified in signature but not found in the target bundle"
        )


def _covered(path: str, roots: list[str]) -> bool:
    return any(r == "" or path == r or path.startswith(r + "/") for r in roots)


def _merge(into: dict[str, Any], path: list[str], value: Any, where: str) -> None:
    node = into
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise BundleError(f"{where}: merge error: data conflict at /{'/'.join(path)}")
    if not path:
        if not isinstance(value, dict):
            raise BundleError(f"{where}: root data document must be an object")
        for k, v in value.items():
            _merge(into, [k], v, where)
        return
    last = path[-1]
    if last in node and isinstance(node[last], dict) and isinstance(value, dict):
        for k, v in value.items():
            _merge(node[last], [k], v, where)
    elif last in node:
        raise BundleError(f"{where}: merge error: data conflict at /{'/'.join(path)}")
    else:
        node[last] = value


def parse_bundle(name: str, files: dict[str, bytes], base: str = "") -> Bundle:
    """The bundle's manifest, Rego modules (`*.rego` anywhere) and data (`data.json`,
    `data.yaml`/`data.yml` at the path of their directory), with the manifest roots enforced."""
    manifest: dict[str, Any] = {}
    if ".manifest" in files:
        try:
            manifest = json.loads(files[".manifest"])
        except ValueError as e:
            raise BundleError(f"bundle {name}: .manifest: {e}") from None
        if not isinstance(manifest, dict):
            raise BundleError(f"bundle {name}: .manifest must be an object")
    rego_version = manifest.get("rego_version")
    if rego_version not in (None, 1):
        raise BundleError(f"bundle {name}: rego_version {rego_version}: this double parses Rego v1 only")
    roots_raw = manifest.get("roots")
    roots = [""] if roots_raw is None else [str(r).strip("/") for r in roots_raw]
    modules: list[tuple[str, str]] = []
    data: dict[str, Any] = {}
    for path in sorted(files):
        raw = files[path]
        base_name = os.path.basename(path)
        dir_parts = [p for p in os.path.dirname(path).split("/") if p]
        if path.endswith(".rego"):
            text = raw.decode("utf-8", "replace")
            pkg = re.search(r"^\s*package\s+([A-Za-z_][\w.]*)", text, re.M)
            pkg_path = pkg.group(1).replace(".", "/") if pkg else ""
            if pkg and not _covered(pkg_path, roots):
                raise BundleError(
                    f"manifest roots {roots} do not permit 'package {pkg.group(1)}' in module file '/{path}'"
                )
            modules.append((f"{base}/{path}" if base else f"/{name}/{path}", text))
        elif base_name in ("data.json", "data.yaml", "data.yml"):
            try:
                if base_name == "data.json":
                    value = json.loads(raw)
                else:
                    import yaml

                    value = yaml.safe_load(raw)
            except Exception as e:
                raise BundleError(f"bundle {name}: {path}: {e}") from None
            data_path = "/".join(dir_parts)
            if data_path and not _covered(data_path, roots):
                raise BundleError(
                    f"manifest roots {roots} do not permit data at path '/{data_path}' "
                    "(hint: check bundle directory structure)"
                )
            if not data_path and isinstance(value, dict):
                for key in value:
                    if not _covered(str(key), roots):
                        raise BundleError(f"manifest roots {roots} do not permit data at path '/{key}'")
            _merge(data, dir_parts, value, f"bundle {name}")
        elif base_name == "patch.json":
            raise BundleError(f"bundle {name}: delta bundles are not supported by the double")
    return Bundle(name, str(manifest.get("revision") or ""), roots, modules, data)


@dataclass
class Activation:
    """The engine of the active bundles (compiled once) and their revisions."""

    engine: Any
    revisions: dict[str, str]


def compile_bundles(bundles: Sequence[Bundle], warm: Sequence[str] = ()) -> Activation:
    """One engine for the active bundles, compiled now; the ``warm`` queries are prepared now
    too (OPA prepares a decision's query once and reuses it until the next activation)."""
    opa = _opa()
    engine = opa.OpaEngine()
    try:
        for b in bundles:
            for mod_name, text in b.modules:
                engine.add_policy(mod_name, text)
        merged: dict[str, Any] = {}
        for b in bundles:
            _merge(merged, [], b.data, f"bundle {b.name}")
        if merged:
            engine.add_data(merged)
        engine.eval_query("true")  # compiles (OPA compiles at activation, not per request)
        for query in warm:
            with contextlib.suppress(opa.OpaError):  # an input-dependent eval error is no compile error
                eval_query_value(engine, query, {})
    except opa.OpaError as e:
        engine.close()
        raise BundleError(opa_message(e)) from None
    return Activation(engine, {b.name: b.revision for b in bundles})


class BundleManager:
    """Downloads/reads the configured bundles, verifies and compiles them, activates them."""

    def __init__(
        self,
        config: OpaConfig,
        on_error: Callable[[str, str], None] | None = None,
        warm: Sequence[str] = (),
    ) -> None:
        self.config = config
        self.warm = tuple(warm)
        self.current: dict[str, Bundle] = {}
        self.active: Activation | None = None
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.etags: dict[str, str] = {}
        self.on_error = on_error or (lambda _name, _msg: None)  # the SDK's logger is off
        self.threads: list[threading.Thread] = []

    # -- loading one bundle

    def fetch(self, bc: BundleConfig) -> dict[str, bytes] | None:
        """The bundle's files; None when the server answers 304 (unchanged)."""
        if bc.service is None:
            parsed = urllib.parse.urlparse(bc.resource)
            path = urllib.parse.unquote(parsed.path)
            if parsed.netloc not in ("", "localhost"):
                raise BundleError(f"bundle {bc.name}: file URL must be absolute: {bc.resource}")
            if os.path.isdir(path):
                return read_bundle_dir(path)
            try:
                with open(path, "rb") as fh:
                    return read_bundle_tar(fh.read())
            except OSError as e:
                raise BundleError(f"bundle {bc.name}: {e}") from None
        url = bc.service.url.rstrip("/") + "/" + bc.resource.lstrip("/")
        headers = dict(bc.service.headers)
        if bc.name in self.etags:
            headers["If-None-Match"] = self.etags[bc.name]
        req = urllib.request.Request(url, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                body = resp.read()
                etag = resp.headers.get("ETag")
        except urllib.error.HTTPError as e:
            if e.code == 304:
                return None
            raise BundleError(f"bundle {bc.name}: server replied with HTTP {e.code}") from None
        except (OSError, ValueError) as e:
            raise BundleError(f"bundle {bc.name}: request failed: {e}") from None
        files = read_bundle_tar(body)
        if etag:
            self.etags[bc.name] = etag
        return files

    def load(self, bc: BundleConfig) -> bool:
        """Fetch, verify, parse and activate one bundle; True when something new activated."""
        files = self.fetch(bc)
        if files is None:
            return False
        if bc.signing is not None:
            verify_signatures(files, bc.signing, self.config.keys)
        base = urllib.parse.urlparse(bc.resource).path.rstrip("/") if bc.service is None else ""
        if base and not os.path.isdir(base):
            base = ""
        bundle = parse_bundle(bc.name, files, base)
        with self.lock:
            candidate = dict(self.current)
            candidate[bc.name] = bundle
            if len(candidate) == len(self.config.bundles):
                activation = compile_bundles([candidate[b.name] for b in self.config.bundles], self.warm)
                old, self.active = self.active, activation
                if old is not None:
                    old.engine.close()
            self.current = candidate
            if len(self.current) == len(self.config.bundles):
                self.ready.set()
        return True

    # -- the plugin's lifecycle

    def start(self) -> None:
        if not self.config.bundles:
            self.ready.set()
            return
        for bc in self.config.bundles:
            t = threading.Thread(target=self._run, args=(bc,), name=f"bundle-{bc.name}", daemon=True)
            t.start()
            self.threads.append(t)

    def _run(self, bc: BundleConfig) -> None:
        retry = 0
        while not self.stopping.is_set():
            try:
                self.load(bc)
                retry = 0
                if bc.service is None:
                    return  # a file:// bundle is read once
                delay = random.uniform(bc.min_delay, bc.max_delay)
            except BundleError as e:
                self.on_error(bc.name, str(e))
                if bc.service is None:
                    return  # never activates: the plugin never serves
                retry += 1
                delay = min(bc.max_delay, 0.1 * 2 ** min(retry, 20)) * random.uniform(0.8, 1.0)
            if self.stopping.wait(delay):
                return

    def stop(self) -> None:
        self.stopping.set()


# ------------------------------------------------------------------ decision log output


def go_float_v(value: float) -> str:
    """Go's %v of a float64 (strconv 'g', shortest): 67108864 -> 6.7108864e+07."""
    if value == 0:
        return "-0" if str(value).startswith("-") else "0"
    sign, digits, exponent = Decimal(repr(float(value))).normalize().as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits))
    exp = len(digits) + exponent - 1
    neg = "-" if sign else ""
    if exp < -4 or exp >= 6:
        mant = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{neg}{mant}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    point = exp + 1
    if point <= 0:
        return f"{neg}0.{'0' * -point}{text}"
    if point >= len(text):
        return f"{neg}{text}{'0' * (point - len(text))}"
    return f"{neg}{text[:point]}.{text[point:]}"


def console_json(value: Any) -> str:
    """The console decision logger's JSON: sorted keys, HTML-escaped strings, and numbers of the
    input printed as Go floats (`"Memory":6.7108864e+07`, as seen from the real plugin)."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{go_json(str(k))}:{console_json(value[k])}" for k in sorted(value)) + "}"
    if isinstance(value, list):
        return "[" + ",".join(console_json(v) for v in value) + "]"
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return go_json(value)
    if isinstance(value, (int, float)):
        return go_float_v(float(value))
    return go_json(value)


# ------------------------------------------------------------------ the plugin


class MaskError(Exception):
    """A mask_decision result OPA rejects as a whole (the event is then not logged)."""


def _mask_rule(rule: Any) -> tuple[str, list[str], Any]:
    """(op, path parts, value) of one mask rule as OPA's newMaskRule reads it."""
    op, value = "remove", None
    if isinstance(rule, str):
        path = rule
    elif isinstance(rule, dict):
        op = rule.get("op", "remove")
        path = rule.get("path", "")
        value = rule.get("value")
        if not isinstance(op, str) or not op or not isinstance(path, str) or ("path" in rule and not path):
            raise MaskError(f"invalid mask rule {rule!r}")
    else:
        raise MaskError(f"invalid mask rule format encountered: {type(rule).__name__}")
    if not path:
        raise MaskError("mask must be non-empty")
    if not path.startswith("/"):
        raise MaskError("mask must be slash-prefixed")
    parts = path[1:].split("/")
    if parts[0] not in ("input", "result", "nd_builtin_cache"):
        raise MaskError(f"mask prefix not allowed: {parts[0]}")
    if op not in ("remove", "upsert"):
        raise MaskError(f"mask op is not supported: {op}")
    # OPA keeps url.PathEscape(part): a key with characters it escapes never matches
    return op, [urllib.parse.quote(urllib.parse.unquote(p), safe="!$&'()*+,;=:@") for p in parts], value


def _remove(node: Any, parts: list[str]) -> bool:
    for part in parts[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    last = parts[-1]
    if isinstance(node, dict) and last in node:
        del node[last]
        return True
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        del node[int(last)]
        return True
    return False


def _upsert(node: Any, parts: list[str], value: Any) -> bool:
    for part in parts[:-1]:
        if isinstance(node, dict):
            node = node.setdefault(part, {})
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    last = parts[-1]
    if isinstance(node, dict):
        node[last] = value
        return True
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        node[int(last)] = value
        return True
    return False


def apply_masks(event: dict[str, Any], rules: Any) -> dict[str, Any]:
    """Apply a mask_decision result to ``event`` (in place, on a deep copy of input/result) as
    OPA's maskRuleSet does; returns the ``erased``/``masked`` lists to add to the event."""
    if not isinstance(rules, list):
        raise MaskError(f"unexpected rule format {rules!r}")
    parsed = [_mask_rule(rule) for rule in rules]  # one bad rule rejects the whole set
    erased: list[str] = []
    masked: list[str] = []
    for op, parts, value in parsed:
        top = parts[0]
        if event.get(top) is None:
            continue
        event[top] = json.loads(json.dumps(event[top]))
        where = "/" + "/".join(parts)
        if op == "remove":
            if len(parts) == 1:
                del event[top]
            elif not _remove(event[top], parts[1:]):
                continue
            erased.append(where)
        else:
            if len(parts) == 1:
                event[top] = value
            elif not isinstance(event[top], dict) or not _upsert(event[top], parts[1:], value):
                continue
            masked.append(where)
    out: dict[str, Any] = {}
    if erased:
        out["erased"] = erased
    if masked:
        out["masked"] = masked
    return out


# ------------------------------------------------------------------ old-tag mode (0.8, Rego v0)

_NO_KEYWORD = "unexpected ident token: expected \\n or ; or }"
_V0_REJECTS = (
    (
        re.compile(r"^\s*import\s+(rego\.v1|future\.keywords)\b"),
        "unexpected import path, must begin with one of: {data, input}",
    ),
    (re.compile(r"(?<![\w.])if(?![\w(])"), _NO_KEYWORD),
    (re.compile(r"(?<![\w.])contains(?!\s*\()\b"), _NO_KEYWORD),
    (re.compile(r"(?<![\w.])every(?![\w(])"), _NO_KEYWORD),
    (re.compile(r"(?<![\w.])in(?![\w(])"), _NO_KEYWORD),
)


def _code_only(line: str) -> str:
    """The line without its comment and string literals (good enough for the v0 keyword check)."""
    line = re.sub(r'"(?:\\.|[^"\\])*"|`[^`]*`', '""', line)
    return line.split("#", 1)[0]


def v0_parse_errors(path: str, source: str) -> list[str]:
    """What OPA 0.30's parser says about v1-only syntax (the keywords `if`, `contains`, `every`,
    `in` and `import rego.v1`/`future.keywords` did not exist): OPA-style error lines. regopy
    itself accepts v1 syntax, so the double checks for it first."""
    errors = []
    for number, line in enumerate(source.splitlines(), 1):
        code = _code_only(line)
        for rx, msg in _V0_REJECTS:
            m = rx.search(code)
            if m:
                errors.append(f"{path}:{number}: rego_parse_error: {msg}")
                break
    return errors


def evaluate_policy_v0(path: str, source: str, input_doc: Any, query: str) -> Any:
    """Tag 0.8's rego.New(Query, Input, Module).Eval, with regopy in the v0 dialect; None when
    undefined. Raises PolicyError with OPA's style of text ("1 error occurred: ...")."""
    errors = v0_parse_errors(path, source)
    if errors:
        head = "1 error occurred" if len(errors) == 1 else f"{len(errors)} errors occurred"
        raise PolicyError(f"{head}: " + "\n".join(errors))
    import regopy

    rego = regopy.Interpreter()
    try:
        rego.add_module(path, source)
        rego.set_input(input_doc)
        raw = str(rego.query(f"__double_result__ = {query}"))
    except Exception as e:  # regopy.RegoError: parse/compile errors
        raise PolicyError(f"1 error occurred: {path}: rego_compile_error: {str(e).strip()[:2000]}") from None
    if raw == "undefined":
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        raise PolicyError(f"1 error occurred: {path}: eval_error: {raw[:2000]}") from None
    return doc.get("bindings", {}).get("__double_result__")


def build_input_v0(authz_req: dict) -> dict:
    """Tag 0.8's makeInput: the body of any JSON type (an array too, no error), no BindMounts,
    the daemon's headers as sent."""
    req = _decode_old(authz_req)
    headers = req["RequestHeaders"]
    raw_body = req["RequestBody"]
    body: Any = None
    if headers is not None and headers.get("Content-Type") == "application/json" and len(raw_body) > 0:
        try:
            body = json.loads(raw_body.decode("utf-8", "replace"))
        except ValueError as e:
            raise InputError(e.msg if isinstance(e, json.JSONDecodeError) else str(e)) from None
    path_plain, query = _go_url_parse(req["RequestUri"])
    return {
        "Headers": headers,
        "Path": req["RequestUri"],
        "PathPlain": path_plain,
        "PathArr": path_plain.split("/"),
        "Query": query,
        "Method": req["RequestMethod"],
        "Body": body,
        "User": req["User"],
        "AuthMethod": req["UserAuthNMethod"],
    }


class Plugin:
    def __init__(self, opts: Options, bundles: BundleManager | None = None) -> None:
        self.opts = opts
        self.instance_id = str(uuid.uuid4())
        self.tag = emulated_tag()
        self.bundles = bundles
        # normalizeAllowPath(allowPath, useConfig): data.docker.authz.allow -> /docker/authz/allow
        path = opts.allow_path
        if bundles is not None and path.startswith("data"):
            path = path.removeprefix("data").replace(".", "/")
        elif bundles is None and path.startswith("/"):
            path = "data" + path.replace("/", ".")
        self.allow_path = path

    def authz_req(self, req: Any) -> dict[str, Any]:
        try:
            allowed, err = self.evaluate(req)
        except Exception as e:
            allowed, err = False, f"{type(e).__name__}: {e}"
        if allowed:
            return {"Allow": True}
        if err:
            return {"Allow": False, "Err": err}
        return {"Allow": False, "Msg": DENY_MSG}

    def authz_res(self, req: Any) -> dict[str, Any]:
        return {"Allow": True}

    def evaluate(self, req: Any) -> tuple[bool, str | None]:
        try:
            if skips_evaluation(req, skip_ping=self.opts.skip_ping):
                return True, None
        except InputError as e:
            return False, str(e)
        if self.bundles is not None:
            return self.evaluate_config(req)
        if self.tag:
            return self.evaluate_policy_file_old(req)
        return self.evaluate_policy_file(req)

    def _read_policy_file(self, path: str) -> tuple[bytes | None, tuple[bool, str | None]]:
        """The policy file's bytes, or (None, the verdict) as every tag gives it: a missing file
        fails open, an unreadable one is an error."""
        if _enoent(path):
            go_log(f"OPA policy file {path} does not exist, failing open and allowing request")
            return None, (True, None)
        try:
            with open(path, "rb") as fh:
                return fh.read(), (False, None)
        except OSError as e:
            return None, (False, _go_path_error("read" if os.path.isdir(path) else "open", path, e))

    def evaluate_policy_file_old(self, req: Any) -> tuple[bool, str | None]:
        """Tag 0.8's evaluatePolicyFile: v0 Rego, its input, its two decision-log lines."""
        path = self.opts.policy_file
        raw, verdict = self._read_policy_file(path)
        if raw is None:
            return verdict
        try:
            input_doc = build_input_v0(req)
        except InputError as e:
            return False, str(e)
        err: str | None = None
        allowed = False
        try:
            result = evaluate_policy_v0(path, raw.decode("utf-8", "replace"), input_doc, self.opts.allow_path)
            if isinstance(result, bool):
                allowed = result
            elif result is not None:
                err = INVALID_DECISION
        except PolicyError as e:
            err = str(e)
        decision = {
            "config_hash": hashlib.sha256(raw).hexdigest(),
            "decision_id": str(uuid.uuid4()),
            "input": input_doc,
            "labels": {
                "app": "opa-docker-authz",
                "id": self.instance_id,
                "opa_version": OLD_TAGS[self.tag],
                "plugin_version": self.tag,
            },
            "result": allowed,
            "timestamp": rfc3339nano(),
        }
        verdict = str(allowed).lower()
        if err is not None:
            # log.Printf("... (error: %v; input: %v)", allowed, err, i) with i a []byte: Go prints
            # the bytes as decimal numbers
            as_bytes = " ".join(str(b) for b in go_json(input_doc).encode())
            go_log(f"Returning OPA policy decision: {verdict} (error: {err}; input: [{as_bytes}])")
        elif not self.opts.quiet:
            go_log(f"Returning OPA policy decision: {verdict}")
            go_log(go_json(decision))
        return allowed, err

    # -- config-file mode (sdk.Decision)

    def evaluate_config(self, req: Any) -> tuple[bool, str | None]:
        assert self.bundles is not None
        try:
            input_doc = build_input(req)
        except InputError as e:
            return False, str(e)
        opa = _opa()
        with self.bundles.lock:
            active = self.bundles.active
        assert active is not None  # the socket is served only once every bundle activated
        query = (
            "data" + self.allow_path.replace("/", ".") if self.allow_path.startswith("/") else self.allow_path
        )
        start = time.perf_counter_ns()
        result: Any = None
        err: str | None = None
        code = ""
        try:
            result = eval_query_value(active.engine, query, input_doc)
            if result is None:
                code, err = "opa_undefined_error", f"{self.allow_path} decision was undefined"
        except opa.OpaError as e:
            code, err = "internal_error", opa_message(e)
        took = time.perf_counter_ns() - start
        if self.bundles.config.console:
            self.log_console_decision(input_doc, result, code, err, took, active.revisions)
        if err is not None:
            return False, f"{code}: {err}" if code == "opa_undefined_error" else err
        return (result is True), None

    def log_console_decision(
        self, input_doc: Any, result: Any, code: str, err: str | None, took: int, revisions: dict[str, str]
    ) -> None:
        now = dt.datetime.now(dt.UTC)
        # OPA's logs plugin (v1/plugins/logs/plugin.go Log): the event without metrics and error
        # is the input of the drop_decision query, then of the mask_decision query; an error in
        # either logs nothing (the SDK's logger is off); a defined drop -> not logged.
        event: dict[str, Any] = {
            "bundles": {name: {"revision": rev} for name, rev in revisions.items()},
            "decision_id": str(uuid.uuid4()),
            "input": input_doc,
            "labels": {"id": self.instance_id, "version": OPA_VERSION, **self.bundles_labels()},
            "path": self.allow_path,
            "timestamp": rfc3339nano(now),
        }
        if err is None and result is not None:
            event["result"] = result
        assert self.bundles is not None
        config = self.bundles.config
        with self.bundles.lock:
            active = self.bundles.active
        assert active is not None
        try:
            drop = eval_query_value(active.engine, "data" + config.drop_decision.replace("/", "."), event)
            if drop is True:
                return
            rules = eval_query_value(active.engine, "data" + config.mask_decision.replace("/", "."), event)
            masked = apply_masks(event, rules) if rules is not None else {}
        except (_opa().OpaError, MaskError):
            return
        event.update(masked)
        event.update(
            {
                "level": "info",
                "metrics": {"timer_rego_query_eval_ns": took},
                "msg": "Decision Log",
                "time": now.astimezone().replace(microsecond=0).isoformat(),
                "type": "openpolicyagent.org/decision_logs",
            }
        )
        if err is not None:
            event["error"] = {"code": code, "message": err}
        with _LOG_LOCK:
            print(console_json(event), file=sys.stderr, flush=True)

    def bundles_labels(self) -> dict[str, str]:
        return dict(self.bundles.config.labels) if self.bundles is not None else {}

    # -- policy-file mode (rego.New per request)

    def evaluate_policy_file(self, req: Any) -> tuple[bool, str | None]:
        path = self.opts.policy_file
        raw, verdict = self._read_policy_file(path)
        if raw is None:
            return verdict
        try:
            input_doc = build_input(req)
        except InputError as e:
            return False, str(e)
        err: str | None = None
        allowed = False
        try:
            result = evaluate_policy(path, raw.decode("utf-8", "replace"), input_doc, self.allow_path)
            if result is None:
                allowed = False
            elif isinstance(result, bool):
                allowed = result
            else:
                err = INVALID_DECISION
        except PolicyError as e:
            err = str(e)
        decision = {
            "config_hash": hashlib.sha256(raw).hexdigest(),
            "decision_id": str(uuid.uuid4()),
            "input": input_doc,
            "labels": {
                "app": "opa-docker-authz",
                "id": self.instance_id,
                "opa_version": OPA_VERSION,
                "plugin_version": PLUGIN_VERSION,
            },
            "result": allowed,
            "timestamp": rfc3339nano(),
        }
        verdict = str(allowed).lower()
        if err is not None:
            go_log(
                f"Returning OPA policy decision: {verdict} (error: '{err}'; input: '{go_json(input_doc)}')"
            )
        elif not self.opts.quiet and not (self.opts.log_only_denied and allowed):
            go_log(f"Returning OPA policy decision: {verdict}: {go_json(decision)}")
        return allowed, err


def _enoent(path: str) -> bool:
    try:
        os.stat(path)
    except FileNotFoundError:  # Go os.IsNotExist: ENOENT only
        return True
    except OSError:
        return False
    return False


def _go_path_error(op: str, path: str, e: OSError) -> str:
    reason = (e.strerror or str(e)).lower()
    return f"{op} {path}: {reason}"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    plugin: Plugin

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def address_string(self) -> str:
        return "unix"

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            req = json.loads(raw or b"{}")
        except ValueError as e:
            self._send(400, {"Err": str(e)})
            return
        if self.path == "/Plugin.Activate":
            self._send(200, {"Implements": ["authz"]})
        elif self.path == "/AuthZPlugin.AuthZReq":
            answer = self.plugin.authz_req(req)
            # go-plugins-helpers sdk.EncodeResponse: an answer with Err is sent as HTTP 500, which the
            # daemon turns into "plugin NAME failed with error: AuthZPlugin.AuthZReq: <Err>"
            self._send(500 if answer.get("Err") else 200, answer)
        elif self.path == "/AuthZPlugin.AuthZRes":
            self._send(200, self.plugin.authz_res(req))
        else:
            self._send(404, {"Err": "404 page not found"})

    def _send(self, status: int, doc: dict[str, Any]) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def serve(opts: Options, socket_dir: str = PLUGIN_DIR, *, bundles: BundleManager | None = None) -> _Server:
    """Bind the plugin socket and return the server (call serve_forever on it)."""
    os.makedirs(socket_dir, exist_ok=True)
    path = os.path.join(socket_dir, f"{opts.plugin_name}.sock")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    handler = type("Handler", (_Handler,), {"plugin": Plugin(opts, bundles)})
    return _Server(path, handler)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    tag = emulated_tag()
    try:
        opts = parse_flags(sys.argv[1:] if argv is None else argv, tag)
    except FlagError as e:
        if str(e) != "flag: help requested":
            print(e, file=sys.stderr)
        print(USAGE, end="", file=sys.stderr)
        return 0 if str(e) == "flag: help requested" else 2
    if opts.version:
        engine = OLD_TAG_ENGINE if tag else ENGINE
        print(f"Version: {tag or PLUGIN_VERSION} (opa-docker-authz-double: a TEST DOUBLE running {engine})")
        print(f"OPA Version: {OLD_TAGS[tag] if tag else OPA_VERSION} (emulated)")
        return 0
    if tag and opts.config_file:
        go_log(f"opa-docker-authz-double: -config-file is not emulated in the {tag} mode (policy-file only)")
        return 1
    # A Go binary exits on SIGTERM even as PID 1 (the Go runtime installs the handler); a
    # Python PID 1 would ignore it and make every `docker plugin disable` wait 10 s for SIGKILL.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    bundles: BundleManager | None = None
    if opts.config_file:
        if opts.policy_file:
            go_log("Only one of config-file and policy-file arguments allowed")
            return 1
        try:
            with open(opts.config_file, encoding="utf-8") as fh:
                config = parse_config(fh.read())
        except OSError as e:
            go_log(_go_path_error("open", opts.config_file, e))
            return 1
        except ConfigError as e:
            go_log(str(e))
            return 1
        debug = os.environ.get("OPA_DOUBLE_DEBUG") == "1"
        allow = opts.allow_path
        if not allow.startswith("data"):
            allow = "data" + allow.replace("/", ".")
        log_error = (lambda n, m: go_log(f"bundle {n}: {m}")) if debug else None
        bundles = BundleManager(config, on_error=log_error, warm=[allow])
        bundles.start()
        # sdk.New returns once every plugin is ready: until then the socket is not served.
        while not bundles.ready.wait(0.5):
            pass
    if opts.check and opts.policy_file and tag:
        try:
            with open(opts.policy_file, encoding="utf-8") as fh:
                evaluate_policy_v0(opts.policy_file, fh.read(), {}, "true")
        except OSError as e:
            print(_go_path_error("open", opts.policy_file, e), file=sys.stderr)
            return 1
        except PolicyError as e:
            print(str(e).removeprefix("1 error occurred: "), file=sys.stderr)
            return 1
        return 0
    if opts.check and opts.policy_file:
        code, text = check_policy(opts.policy_file)
        sys.stderr.write(text)
        return code
    server = serve(opts, bundles=bundles)
    go_log("Starting server.")
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
