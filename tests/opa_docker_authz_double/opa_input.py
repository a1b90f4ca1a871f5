"""Build the OPA input document exactly as opa-docker-authz v0.10 does.

The Docker daemon (moby ``pkg/authorization``) sends each API request to the authorization
plugin as an ``AuthZReq`` JSON object::

    {"User": "", "UserAuthNMethod": "", "RequestMethod": "POST",
     "RequestUri": "/v1.41/containers/create?name=x",
     "RequestBody": "<base64>", "RequestHeaders": {"Content-Type": "application/json", ...}}

(empty fields are omitted: the daemon's Go struct uses ``omitempty``). opa-docker-authz
(``makeInput`` in its ``main.go``) turns that into the ``input`` the Rego policy sees:

=============  ================================================================================
``Headers``    ``RequestHeaders`` unchanged (``None`` when absent).
``Path``       ``RequestUri`` unchanged: optional ``/vX.Y`` prefix, not decoded, with the query.
``PathPlain``  Go ``url.Parse(RequestUri).Path``: percent-decoded, without query or fragment.
``PathArr``    ``PathPlain.split("/")`` (first element ``""``).
``Query``      Go ``url.Values`` of the raw query: ``{name: [values...]}``, ``{}`` when none.
``Method``     ``RequestMethod``.
``Body``       the body parsed as a JSON object, only when ``RequestHeaders["Content-Type"]`` is
               exactly ``application/json`` and the body is not empty; else ``None``.
``User``       ``User`` (TLS client certificate CN; ``""`` on the unix socket).
``AuthMethod`` ``UserAuthNMethod``.
``BindMounts`` ``[{Source, ReadOnly, Resolved}]`` for ``HostConfig.Binds`` entries whose host
               part starts with ``/`` and ``HostConfig.Mounts`` of type bind.
=============  ================================================================================

Errors the plugin returns as ``Response{Err: ...}`` (the client then sees
``plugin NAME failed with error: AuthZPlugin.AuthZReq: <message>``) are raised here as
:class:`InputError`, whose message imitates Go's.

Where the headers come from: the header rule ("one value per name, the last; without
Authorization and X-Registry-*") is NOT applied by the plugin but by the daemon before it
sends the AuthZReq (moby ``pkg/authorization/authz.go`` ``headers()``): Go's HTTP server has
already canonicalised every name (``content-type`` -> ``Content-Type``), ``headers()`` drops
``Authorization``, ``X-Registry-Auth`` and ``X-Registry-Config`` (compared case-insensitively;
other ``X-Registry-*`` names ARE forwarded) and keeps the last value of each name. The plugin
passes the map through. So :func:`build_input` leaves ``RequestHeaders`` alone, exactly like the
plugin, and :func:`daemon_headers` / :func:`make_authz_request` reproduce the daemon's side for
tests that craft requests by hand.

Read from the sources (open-policy-agent/opa-docker-authz ``main.go`` at the policy-file
versions before BindMounts, the fork mikroskeem/opa-docker-authz from which BindMounts came,
the upstream README's "Input Processing" section, moby ``pkg/authorization``, Go's
``net/url``, ``encoding/json``, ``path/filepath``). The v0.10 ``makeInput`` itself was not
available to read; the places where this module therefore had to GUESS are:

1. ``Body`` for a JSON value that is not an object (array, string, number): an error, as the
   project's reference says (the BindMounts code needs ``map[string]interface{}``, and Go's
   ``json.Unmarshal`` of an array into a map fails). JSON ``null`` is not an error: ``Body`` is
   ``None`` (Go leaves the map nil).
2. ``BindMounts[].Source`` is the host part exactly as sent (not cleaned). A policy must clean
   it itself (it must anyway: ``Resolved`` is ``""`` for paths missing in the plugin's view).
3. ``BindMounts[].ReadOnly`` for a Bind is true only when the entry has exactly three
   ``:``-separated fields and the third is ``ro`` (``/a:/b:ro``; ``/a:/b:ro,z`` is false). For a
   Mount it is the value of the ``ReadOnly`` key when that is the JSON ``true`` (the fork read
   ``Readonly``, a key the CLI never sends, which made every Mount writable).
4. ``Resolved`` is Go's ``filepath.EvalSymlinks`` of the raw host path (``..`` is applied after
   the symlinks before it, as Go does), or ``""`` on any failure. ``fs_root`` emulates the
   plugin's view of the filesystem: absolute symlink targets are taken relative to it.
5. Malformed ``HostConfig``/``Binds``/``Mounts`` entries (wrong JSON types, a Mount without a
   string ``Type``/``Source``) are skipped. The fork type-asserted them and would panic (an
   error for the client, i.e. a stricter real system); a policy must not rely on either.
6. Every ``HostConfig`` key is looked up with Go map semantics: exact, case-sensitive. A body
   that spells ``hostconfig``/``binds`` gets ``BindMounts: []`` although the daemon honours it.
7. Strings decoded from the URL are Go byte strings; invalid UTF-8 becomes U+FFFD here.
8. JSON numbers: Go decodes them as float64. Integers beyond 2**53 are rounded like a float64,
   integral values are ``int`` and numbers outside float64's range are an error, as in Go.
   Nesting deeper than Python's recursion limit (Go allows 10000 levels) is an error here.
9. Go's ``url.Parse`` is reproduced for paths, queries, fragments and the error cases that can
   occur in a request URI; host/userinfo validation (``//host/...`` URIs) is approximated.

The plugin skips evaluation for ``HEAD /_ping`` (``-skip-ping``, default true) before it builds
any input: see :func:`skips_evaluation`.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import stat
from typing import Any

__all__ = [
    "InputError",
    "build_input",
    "canonical_header_key",
    "daemon_headers",
    "go_clean",
    "make_authz_request",
    "skips_evaluation",
]

MAX_BODY_SIZE = 1048576  # moby pkg/authorization maxBodySize (1 MiB)

_AUTHZ_FIELDS = ("User", "UserAuthNMethod", "RequestMethod", "RequestUri", "RequestBody", "RequestHeaders")


class InputError(ValueError):
    """The plugin could not build an input: it answers ``{"Err": str(error)}`` (not a deny)."""


# --------------------------------------------------------------------------- AuthZReq decoding


def _go_json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _decode_authz_request(authz_req: dict) -> dict[str, Any]:
    """Decode the AuthZReq like Go's encoding/json into the plugin helper's Request struct.

    Go matches JSON keys to struct fields exactly or, failing that, case-insensitively, and a
    later key overwrites an earlier one; JSON null leaves the zero value.
    """
    if not isinstance(authz_req, dict):
        raise InputError(
            f"json: cannot unmarshal {_go_json_type(authz_req)} into Go value of type authorization.Request"
        )
    fields: dict[str, Any] = {
        "User": "",
        "UserAuthNMethod": "",
        "RequestMethod": "",
        "RequestUri": "",
        "RequestBody": b"",
        "RequestHeaders": None,
    }
    folded = {name.casefold(): name for name in _AUTHZ_FIELDS}
    for key, value in authz_req.items():
        name = key if key in fields else folded.get(str(key).casefold())
        if name is None or value is None:
            continue
        where = f"Go struct field Request.{name}"
        if name == "RequestBody":
            if not isinstance(value, str):
                raise InputError(
                    f"json: cannot unmarshal {_go_json_type(value)} into {where} of type []uint8"
                )
            try:
                fields[name] = base64.b64decode(value.replace("\r", "").replace("\n", ""), validate=True)
            except (binascii.Error, ValueError) as exc:
                raise InputError(f"illegal base64 data in {where}: {exc}") from exc
        elif name == "RequestHeaders":
            if not isinstance(value, dict):
                raise InputError(
                    f"json: cannot unmarshal {_go_json_type(value)} into {where} of type map[string]string"
                )
            for hval in value.values():
                if not isinstance(hval, str):
                    raise InputError(
                        f"json: cannot unmarshal {_go_json_type(hval)} into {where} of type string"
                    )
            headers = fields["RequestHeaders"] or {}
            headers.update(value)  # Go decodes into the existing map
            fields[name] = headers
        else:
            if not isinstance(value, str):
                raise InputError(f"json: cannot unmarshal {_go_json_type(value)} into {where} of type string")
            fields[name] = value
    return fields


# --------------------------------------------------------------------------- JSON body (Go rules)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid character '{name[0]}' looking for beginning of value")


def _go_float(text: str) -> int | float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"json: cannot unmarshal number {text} into Go value of type float64")
    if value.is_integer():
        return int(value)
    return value


def _go_int(text: str) -> int | float:
    value = int(text)
    if abs(value) <= 2**53:
        return value
    return _go_float(text)


def _parse_body(raw: bytes) -> dict | None:
    text = raw.decode("utf-8", errors="replace")
    try:
        body = json.loads(text, parse_constant=_reject_constant, parse_float=_go_float, parse_int=_go_int)
    except RecursionError as exc:
        raise InputError("exceeded max depth") from exc
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise InputError(msg) from exc
    if body is None or isinstance(body, dict):
        return body
    raise InputError(
        f"json: cannot unmarshal {_go_json_type(body)} into Go value of type map[string]interface {{}}"
    )


# --------------------------------------------------------------------------- Go net/url


def _go_quote(value: str) -> str:
    out = ['"']
    for ch in value:
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
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


_HEX = b"0123456789abcdefABCDEF"
_HOST_OK = set(b"!$&'()*+,;=:[]<>\"-_.~")
_USERINFO_OK = set(b"-._:~!$&'()*+,;=%@")


def _is_alnum(c: int) -> bool:
    return 0x30 <= c <= 0x39 or 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A


def _unescape(s: bytes, mode: str) -> bytes:
    """Go net/url unescape for the modes path, query (component), fragment, host, zone, user."""
    out = bytearray()
    i = 0
    while i < len(s):
        c = s[i]
        if c == 0x25:  # %
            if i + 2 >= len(s) or s[i + 1] not in _HEX or s[i + 2] not in _HEX:
                bad = s[i : i + 3]
                raise InputError(f"invalid URL escape {_go_quote(bad.decode('utf-8', 'replace'))}")
            if mode == "host" and int(chr(s[i + 1]), 16) < 8 and s[i : i + 3] != b"%25":
                raise InputError(f"invalid URL escape {_go_quote(s[i : i + 3].decode())}")
            out.append(int(s[i + 1 : i + 3].decode(), 16))
            i += 3
            continue
        if c == 0x2B and mode == "query":  # + in a query component is a space
            out.append(0x20)
        else:
            if mode in ("host", "zone") and c < 0x80 and not (_is_alnum(c) or c in _HOST_OK):
                raise InputError(f"invalid character {_go_quote(chr(c))} in host name")
            out.append(c)
        i += 1
    return bytes(out)


def _valid_optional_port(port: bytes) -> bool:
    if port == b"":
        return True
    if port[:1] != b":":
        return False
    return all(0x30 <= b <= 0x39 for b in port[1:])


def _check_authority(authority: bytes) -> None:
    at = authority.rfind(b"@")
    host = authority[at + 1 :] if at >= 0 else authority
    if host.startswith(b"["):
        close = host.rfind(b"]")
        if close < 0:
            raise InputError("missing ']' in host")
        port = host[close + 1 :]
        if not _valid_optional_port(port):
            raise InputError(f"invalid port {_go_quote(port.decode('utf-8', 'replace'))} after host")
        zone = host[:close].find(b"%25")
        if zone >= 0:
            _unescape(host[:zone], "host")
            _unescape(host[zone:close], "zone")
            _unescape(host[close:], "host")
        else:
            _unescape(host, "host")
    else:
        colon = host.rfind(b":")
        if colon >= 0 and not _valid_optional_port(host[colon:]):
            port = host[colon:].decode("utf-8", "replace")
            raise InputError(f"invalid port {_go_quote(port)} after host")
        _unescape(host, "host")
    if at >= 0:
        userinfo = authority[:at]
        if not all(_is_alnum(b) or b in _USERINFO_OK for b in userinfo):
            raise InputError("net/url: invalid userinfo")
        _unescape(userinfo, "user")


def _split_scheme(raw: bytes) -> tuple[bytes, bytes]:
    for i, c in enumerate(raw):
        if 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A:
            continue
        if 0x30 <= c <= 0x39 or c in b"+-.":
            if i == 0:
                return b"", raw
            continue
        if c == 0x3A:  # :
            if i == 0:
                raise InputError("missing protocol scheme")
            return raw[:i], raw[i + 1 :]
        return b"", raw
    return b"", raw


def _parse_query(raw_query: bytes) -> dict[str, list[str]]:
    """Go ``url.ParseQuery`` as used by ``URL.Query()``: bad pairs are silently dropped."""
    values: dict[str, list[str]] = {}
    for pair in raw_query.split(b"&"):
        if b";" in pair or pair == b"":
            continue
        key, _, value = pair.partition(b"=")
        try:
            k = _unescape(key, "query").decode("utf-8", "replace")
            v = _unescape(value, "query").decode("utf-8", "replace")
        except InputError:
            continue
        values.setdefault(k, []).append(v)
    return values


def _go_url_parse(request_uri: str) -> tuple[str, dict[str, list[str]]]:
    """Return (Path, Query()) of Go ``url.Parse(request_uri)`` or raise its error."""
    raw_all = request_uri.encode("utf-8", "surrogatepass")
    raw, hash_sign, frag = raw_all.partition(b"#")
    try:
        path, raw_query = _go_url_parse_nofrag(raw)
    except InputError as exc:
        raise InputError(f"parse {_go_quote(raw.decode('utf-8', 'replace'))}: {exc}") from exc
    if hash_sign and frag:
        try:
            _unescape(frag, "fragment")
        except InputError as exc:
            raise InputError(f"parse {_go_quote(request_uri)}: {exc}") from exc
    return path.decode("utf-8", "replace"), _parse_query(raw_query)


def _go_url_parse_nofrag(raw: bytes) -> tuple[bytes, bytes]:
    if any(b < 0x20 or b == 0x7F for b in raw):
        raise InputError("net/url: invalid control character in URL")
    if raw == b"*":
        return b"*", b""
    scheme, rest = _split_scheme(raw)
    if rest.endswith(b"?") and rest.count(b"?") == 1:
        rest, raw_query = rest[:-1], b""
    else:
        rest, _, raw_query = rest.partition(b"?")
    if not rest.startswith(b"/"):
        if scheme:
            return b"", raw_query  # opaque URL: Path stays empty
        if b":" in rest.partition(b"/")[0]:
            raise InputError("first path segment in URL cannot contain colon")
    if (scheme or not rest.startswith(b"///")) and rest.startswith(b"//"):
        authority, slash, tail = rest[2:].partition(b"/")
        _check_authority(authority)
        rest = slash + tail
    return _unescape(rest, "path"), raw_query


# --------------------------------------------------------------------------- paths (Go filepath)


def go_clean(path: str) -> str:
    """Go ``path.Clean``/``filepath.Clean`` on Unix (unlike posixpath.normpath, ``//x`` is ``/x``)."""
    if path == "":
        return "."
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(part)
    joined = "/".join(parts)
    if rooted:
        return "/" + joined
    return joined or "."


def _lstat_in_root(fs_root: str, path: str) -> os.stat_result:
    return os.lstat(os.path.join(fs_root, go_clean(path).lstrip("/")))


def _eval_symlinks(path: str, fs_root: str) -> str:
    """Go ``filepath.EvalSymlinks`` (walkSymlinks, Unix) with ``fs_root`` as the root directory."""
    vol_len = 1 if path.startswith("/") else 0
    vol = path[:vol_len]
    dest = vol
    links = 0
    start = end = vol_len
    while start < len(path):
        while start < len(path) and path[start] == "/":
            start += 1
        end = start
        while end < len(path) and path[end] != "/":
            end += 1
        if end == start:
            break
        comp = path[start:end]
        if comp == ".":
            start = end
            continue
        if comp == "..":
            r = len(dest) - 1
            while r >= vol_len and dest[r] != "/":
                r -= 1
            if r < vol_len or dest[r + 1 :] == "..":
                if len(dest) > vol_len:
                    dest += "/"
                dest += ".."
            else:
                dest = dest[:r]
            start = end
            continue
        if len(dest) > 0 and not dest.endswith("/"):
            dest += "/"
        dest += comp
        st = _lstat_in_root(fs_root, dest)
        if not stat.S_ISLNK(st.st_mode):
            if not stat.S_ISDIR(st.st_mode) and end < len(path):
                raise NotADirectoryError(dest)
            start = end
            continue
        links += 1
        if links > 255:
            raise OSError("EvalSymlinks: too many links")
        link = os.readlink(os.path.join(fs_root, go_clean(dest).lstrip("/")))
        path = link + path[end:]
        if link.startswith("/"):
            dest = vol = "/"
            vol_len = 1
            start = end = 1
        else:
            r = len(dest) - 1
            while r >= vol_len and dest[r] != "/":
                r -= 1
            dest = vol if r < vol_len else dest[:r]
            start = end = 0
    return go_clean(dest)


def _resolve(path: str, fs_root: str) -> str:
    try:
        return _eval_symlinks(path, fs_root)
    except (OSError, ValueError):
        return ""


def _bind_mounts(body: dict | None, fs_root: str) -> list[dict[str, Any]] | None:
    """listBindMounts: a nil Go slice (JSON null) when there is no bind mount."""
    mounts: list[dict[str, Any]] = []
    host_config = body.get("HostConfig") if isinstance(body, dict) else None
    if not isinstance(host_config, dict):
        return None
    binds = host_config.get("Binds")
    if isinstance(binds, list):
        for bind in binds:
            if not isinstance(bind, str):
                continue
            parts = bind.split(":")
            source = parts[0]
            if not source.startswith("/"):
                continue
            mounts.append(
                {
                    "Source": source,
                    "ReadOnly": len(parts) == 3 and parts[2] == "ro",
                    "Resolved": _resolve(source, fs_root),
                }
            )
    entries = host_config.get("Mounts")
    if isinstance(entries, list):
        for mount in entries:
            if not isinstance(mount, dict):
                continue
            mtype, source = mount.get("Type"), mount.get("Source")
            if not isinstance(mtype, str) or mtype.casefold() != "bind":
                continue
            if not isinstance(source, str) or not source.startswith("/"):
                continue
            mounts.append(
                {
                    "Source": source,
                    "ReadOnly": mount.get("ReadOnly") is True,
                    "Resolved": _resolve(source, fs_root),
                }
            )
    return mounts or None


# --------------------------------------------------------------------------- public API


def build_input(authz_req: dict, *, fs_root: str = "/") -> dict:
    """Return the ``input`` document opa-docker-authz v0.10 evaluates for this AuthZReq.

    ``authz_req`` is the JSON object the daemon POSTs to ``/AuthZPlugin.AuthZReq``
    (``RequestBody`` base64). ``fs_root`` is the directory that plays the plugin's ``/`` when
    bind-mount sources are resolved. Raises :class:`InputError` where the plugin answers with an
    error (invalid JSON body, a JSON body that is not an object, an unparsable URI, ...).
    """
    req = _decode_authz_request(authz_req)
    headers: dict[str, str] | None = req["RequestHeaders"]
    raw_body: bytes = req["RequestBody"]
    body: dict | None = None
    if headers is not None and headers.get("Content-Type") == "application/json" and len(raw_body) > 0:
        body = _parse_body(raw_body)
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
        "BindMounts": _bind_mounts(body, fs_root),
    }


def skips_evaluation(authz_req: dict, *, skip_ping: bool = True) -> bool:
    """True when the plugin allows the request without building an input (``HEAD /_ping``)."""
    req = _decode_authz_request(authz_req)
    return skip_ping and req["RequestMethod"] == "HEAD" and req["RequestUri"] == "/_ping"


_TOKEN_EXTRA = set("!#$%&'*+-.^_`|~")


def canonical_header_key(key: str) -> str:
    """Go ``textproto.CanonicalMIMEHeaderKey``: ``content-type`` -> ``Content-Type``.

    A name holding a byte that is not an HTTP token character is returned unchanged.
    """
    if not key or any(not (ch.isascii() and (ch.isalnum() or ch in _TOKEN_EXTRA)) for ch in key):
        return key
    out = []
    upper = True
    for ch in key:
        out.append(ch.upper() if upper else ch.lower())
        upper = ch == "-"
    return "".join(out)


_DROPPED_HEADERS = ("authorization", "x-registry-config", "x-registry-auth")


def daemon_headers(raw_headers: list[tuple[str, str]] | dict[str, str]) -> dict[str, str]:
    """The daemon's ``RequestHeaders`` for these request headers (moby ``headers()``).

    Names are canonicalised (Go's HTTP server), ``Authorization``, ``X-Registry-Config`` and
    ``X-Registry-Auth`` dropped, and the last value of a repeated name kept.
    """
    pairs = raw_headers.items() if isinstance(raw_headers, dict) else raw_headers
    out: dict[str, str] = {}
    for name, value in pairs:
        canon = canonical_header_key(name)
        if canon.casefold() in _DROPPED_HEADERS:
            continue
        out[canon] = value
    return out


def _daemon_sends_body(request_uri: str, content_type: str) -> bool:
    """moby ``sendBody`` (23.0+ form; 20.10 behaves the same for these inputs)."""
    try:
        path, _ = _go_url_parse(request_uri)
    except InputError:
        return False
    if go_clean(path).endswith("/auth"):
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json"


def make_authz_request(
    method: str,
    request_uri: str,
    headers: list[tuple[str, str]] | dict[str, str],
    body: bytes | None = None,
    *,
    user: str = "",
    auth_method: str = "",
) -> dict:
    """Craft the AuthZReq the daemon would send for this HTTP request (for hand-made tests).

    The body is forwarded when its media type is ``application/json`` (parameters such as
    ``charset`` allowed), it is not ``/auth`` and it is non-empty and under 1 MiB.
    """
    hdrs = daemon_headers(headers)
    req: dict[str, Any] = {}
    if user:
        req["User"] = user
    if auth_method:
        req["UserAuthNMethod"] = auth_method
    req["RequestMethod"] = method
    req["RequestUri"] = request_uri
    if body and len(body) < MAX_BODY_SIZE and _daemon_sends_body(request_uri, hdrs.get("Content-Type", "")):
        req["RequestBody"] = base64.b64encode(body).decode("ascii")
    if hdrs:
        req["RequestHeaders"] = hdrs
    return req
