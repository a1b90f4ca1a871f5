"""TEST DOUBLE of opa-docker-authz v0.10 (policy-file mode), in Python with regopy.

The official plugin (ghcr.io/open-policy-agent/opa-docker-authz:v0.10) cannot be pulled in
this project's test environment, so the tests install this double as a Docker managed plugin
(tests/images/build.py pushes it as 127.0.0.1:5000/opa-docker-authz-double:v0.10-linux-amd64).
It reproduces what the real plugin does as documented in
work/shared/reference/opa-docker-authz.md:

- serves /Plugin.Activate (Implements authz), /AuthZPlugin.AuthZReq and /AuthZPlugin.AuthZRes
  on the unix socket /run/docker/plugins/<-plugin-name>.sock (default opa-docker-authz.sock);
- parses its arguments (the plugin's `opa-args`) with Go `flag` semantics: -policy-file,
  -allowPath (default data.docker.authz.allow), -skip-ping (default true), -quiet,
  -log-only-denied, -check (compile the policy file, exit 0/1), -version, -plugin-name,
  -config-file (refused: the double has no OPA SDK; both -config-file and -policy-file is the
  real plugin's fatal error);
- reads and compiles the policy file again on EVERY request; a missing file (or no args at
  all) ALLOWS every request (fails open), logging that it does;
- builds the input with opa_input.build_input (the real makeInput);
- parses the policy in OPA 1.x v1 mode: regopy accepts v0 too, so rego_v1.py rejects v0-only
  syntax first with OPA's messages; every request then gets an error answer;
- result undefined -> deny (Msg "request rejected by administrative policy"); a non-boolean
  result -> Err "administrative policy decision invalid"; parse/compile/eval errors -> Err;
- AuthZRes always allows;
- logs like the real one with Go's `log` prefix on stderr: "Returning OPA policy decision: B"
  followed by the decision as one JSON line (config_hash, decision_id, input, labels, result,
  timestamp), unless -quiet, or -log-only-denied and allowed; errors are always logged.

Known differences (regopy is not OPA): error texts after the `file:row: code:` prefix are
regopy's; regopy accepts re-assigning a variable with `:=` in one body and some strict-mode
errors; its built-in set is rego-cpp's.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import http.server
import json
import os
import re
import signal
import socketserver
import sys
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

if __package__:
    from .opa_input import InputError, build_input, skips_evaluation
    from .rego_v1 import Issue, format_errors, v1_issues
else:  # run as a script inside the plugin: the modules sit next to this file
    from opa_input import InputError, build_input, skips_evaluation  # type: ignore[no-redef]
    from rego_v1 import Issue, format_errors, v1_issues  # type: ignore[no-redef]

PLUGIN_VERSION = "0.10"
OPA_VERSION = "1.3.0"
DENY_MSG = "request rejected by administrative policy"
INVALID_DECISION = "administrative policy decision invalid"
PLUGIN_DIR = os.environ.get("OPA_DOUBLE_PLUGIN_DIR", "/run/docker/plugins")
CONTENT_TYPE = "application/vnd.docker.plugins.v1+json"  # go-plugins-helpers sdk


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


def parse_flags(argv: Sequence[str]) -> Options:
    """Go's flag.CommandLine.Parse: stops at the first non-flag argument or after `--`."""
    opts = Options()
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
        if name in _BOOL_FLAGS:
            if value is None:
                setattr(opts, _BOOL_FLAGS[name], True)
            elif value in _GO_TRUE or value in _GO_FALSE:
                setattr(opts, _BOOL_FLAGS[name], value in _GO_TRUE)
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


# ------------------------------------------------------------------ Rego via regopy


class PolicyError(Exception):
    """A parse, compile or evaluation error; str() is what the plugin puts in Err."""


_ERRMSG = re.compile(r"\(errormsg (\d+):")
_ERRLOC = re.compile(r"\(error (\d+):")


def _sexpr_errors(text: str, source: str) -> list[tuple[int, str]]:
    """(row, message) pairs out of rego-cpp's `(error N:file|offset|len (errormsg N:msg) ...)`."""
    out: list[tuple[int, str]] = []
    for block in re.split(r"(?=\(error[ \n])", text):
        row = 0
        loc = _ERRLOC.search(block)
        if loc:
            start = loc.end() + int(loc.group(1))
            m = re.match(r"\|(\d+)\|", block[start:])
            if m:
                row = source.count("\n", 0, int(m.group(1))) + 1
        msg = _ERRMSG.search(block)
        if msg:
            n = int(msg.group(1))
            out.append((row, block[msg.end() : msg.end() + n]))
    return out


def evaluate_policy(path: str, source: str, input_doc: Any, query: str) -> Any:
    """Compile `source` in OPA v1 mode and evaluate `query`; return the value or None (undefined)."""
    import regopy  # imported lazily: unit tests of the flag parsing need no Rego engine
    from regopy import rego_shared as rs

    issues = v1_issues(source)
    if issues:
        raise PolicyError(format_errors(path, issues))
    interp = regopy.Interpreter()
    interp.log_level = regopy.LogLevel.NONE
    try:
        interp.add_module(path, source)
    except regopy.RegoError as e:
        errs = _sexpr_errors(str(e), source) or [(0, str(e).strip())]
        raise PolicyError(format_errors(path, [Issue(r, "rego_parse_error", m) for r, m in errs])) from None
    interp.set_input_term(json.dumps(input_doc))
    out = rs.rego_query(interp._impl, query)
    try:
        ok = rs.rego_output_ok(out)
        text = rs.rego_output_string(out)
    finally:
        rs.rego_free_output(out)
    if not ok:
        raise PolicyError(
            f"1 error occurred: {path}: rego_compile_error: {text.strip() or 'compilation failed'}"
        )
    if text.startswith("(error"):
        errs = _sexpr_errors(text, source) or [(0, text.strip())]
        raise PolicyError(
            format_errors(
                path, [Issue(r, "eval_builtin_error" if r else "rego_type_error", m) for r, m in errs]
            )
        )
    if text == "undefined":
        return None
    doc = json.loads(text)
    results = doc if isinstance(doc, list) else [doc]
    exprs = results[0].get("expressions") if results and isinstance(results[0], dict) else None
    if not exprs:
        return None
    return exprs[0]


def check_policy(path: str) -> tuple[int, str]:
    """-check: (exit code, stderr text). Compile errors print one per line, success is silent."""
    try:
        with open(path, encoding="utf-8") as fh:
            source = fh.read()
    except OSError as e:
        return 1, _go_path_error("stat" if isinstance(e, FileNotFoundError) else "open", path, e) + "\n"
    pkg = re.search(r"^\s*package\s+([A-Za-z_][\w.]*)", source, re.M)
    try:
        evaluate_policy(path, source, {}, f"data.{pkg.group(1)}" if pkg else "data")
    except PolicyError as e:
        text = str(e)
        lines = (
            text.split("\n")[1:]
            if text.split("\n", 1)[0].endswith("errors occurred:")
            else [text.removeprefix("1 error occurred: ")]
        )
        return 1, "\n".join(lines) + "\n"
    return 0, ""


# ------------------------------------------------------------------ the plugin


class Plugin:
    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.instance_id = str(uuid.uuid4())

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
        return self.evaluate_policy_file(req)

    def evaluate_policy_file(self, req: Any) -> tuple[bool, str | None]:
        path = self.opts.policy_file
        if _enoent(path):
            go_log(f"OPA policy file {path} does not exist, failing open and allowing request")
            return True, None
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
        except OSError as e:
            return False, _go_path_error("read" if os.path.isdir(path) else "open", path, e)
        try:
            input_doc = build_input(req)
        except InputError as e:
            return False, str(e)
        err: str | None = None
        allowed = False
        try:
            result = evaluate_policy(path, raw.decode("utf-8", "replace"), input_doc, self.opts.allow_path)
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
        if err is not None:
            as_bytes = " ".join(str(b) for b in go_json(input_doc).encode())
            go_log(
                f"Returning OPA policy decision: {str(allowed).lower()} (error: {err}; input: [{as_bytes}])"
            )
        elif not self.opts.quiet and not (self.opts.log_only_denied and allowed):
            go_log(f"Returning OPA policy decision: {str(allowed).lower()}")
            go_log(go_json(decision))
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


def serve(opts: Options, socket_dir: str = PLUGIN_DIR) -> _Server:
    """Bind the plugin socket and return the server (call serve_forever on it)."""
    os.makedirs(socket_dir, exist_ok=True)
    path = os.path.join(socket_dir, f"{opts.plugin_name}.sock")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    handler = type("Handler", (_Handler,), {"plugin": Plugin(opts)})
    return _Server(path, handler)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        opts = parse_flags(sys.argv[1:] if argv is None else argv)
    except FlagError as e:
        if str(e) != "flag: help requested":
            print(e, file=sys.stderr)
        print(USAGE, end="", file=sys.stderr)
        return 0 if str(e) == "flag: help requested" else 2
    if opts.version:
        print(f"Version: {PLUGIN_VERSION} (opa-docker-authz-double: a Python/regopy TEST DOUBLE)")
        print(f"OPA Version: {OPA_VERSION} (emulated)")
        return 0
    if opts.config_file:
        if opts.policy_file:
            go_log("Only one of config-file and policy-file arguments allowed")
            return 1
        go_log(
            "-config-file (OPA configuration: bundles, decision logs, status) is not supported by "
            "opa-docker-authz-double, the test double; use -policy-file"
        )
        return 1
    if opts.check and opts.policy_file:
        code, text = check_policy(opts.policy_file)
        sys.stderr.write(text)
        return code
    server = serve(opts)
    # A Go binary exits on SIGTERM even as PID 1 (the Go runtime installs the handler); a
    # Python PID 1 would ignore it and make every `docker plugin disable` wait 10 s for SIGKILL.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    go_log("Starting server.")
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
