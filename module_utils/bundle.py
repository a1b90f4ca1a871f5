# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""Bundle mode of the opa_authz role: which plugin tags can run it, and OPA bundle signing.

opa-docker-authz gained ``-config-file`` (the OPA SDK) in 0.8, with OPA 0.30.0; OPA loads a
local bundle DIRECTORY (``file:///...``) from 0.36 on, and the role's bundle is Rego v1 (every
file has ``import rego.v1``, which OPA 0.59+ reads). So bundle mode needs plugin 0.9 (OPA
0.60.0), v0.10 (OPA 1.3.0) or later, ``edge`` or ``latest``: the tags whose policy dialect is
v1 (module_utils/policy.py ``rego_dialect``).

Standard library only.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import posixpath
import tarfile
from typing import Any

from ansible_collections.hardening.docker_authz.plugins.module_utils.opa_args import release_of, tag_of

OPA_OF_TAG = {(0, 8): "0.30.0"}


def bundle_support_problem(image: str) -> str:
    """'' when the plugin image can run bundle mode, else why not (a sentence naming the fix)."""
    tag = tag_of(str(image))
    if tag in ("", "latest", "edge"):
        return ""
    version = release_of(str(image))
    if version is None:
        return (
            f"cannot tell from the plugin image tag {tag!r} whether it supports bundle mode; use a "
            "versioned tag (v0.10 or later) or keep docker_authz_policy_mode: file"
        )
    if version < (0, 8):
        why = f"opa-docker-authz {tag} has no -config-file (it came in 0.8)"
    elif version < (0, 9):
        why = (
            f"opa-docker-authz {tag} embeds OPA {OPA_OF_TAG[version]}, which cannot load a bundle "
            "directory (OPA 0.36+) and reads only Rego v0, while the role's bundle is Rego v1"
        )
    else:
        return ""
    return (
        f"{why}. Bundle mode needs opa-docker-authz 0.9 or later: set docker_authz_plugin_image to "
        "ghcr.io/open-policy-agent/opa-docker-authz:v0.10-linux-{arch} (or your mirror of it), or keep "
        "docker_authz_policy_mode: file"
    )


V0_BUNDLE = (
    "docker_authz_rego_version is v0: a bundle is Rego v1 only (plugin 0.9 or later); set "
    "docker_authz_rego_version to auto or v1, or keep docker_authz_policy_mode: file"
)


def bundle_mode_problem(image: str, dialect: str) -> str:
    """'' when bundle mode can run with this plugin image and Rego dialect, else the whole error
    message (what is wrong and the fix)."""
    problem = bundle_support_problem(image) or (V0_BUNDLE if dialect != "v1" else "")
    return f"docker_authz_policy_mode is bundle, but {problem}. Nothing was changed." if problem else ""


# ------------------------------------------------------------------ signing (OPA bundle format)
SIGNATURES_FILE = ".signatures.json"


class _Num(str):
    """A JSON number kept as its text (OPA hashes json.Number's text)."""


def _canonical(value: Any) -> str:
    """OPA's hash input for a JSON file: keys sorted, no spaces, HTML and non-ASCII not escaped."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{_canonical(str(k))}:{_canonical(value[k])}" for k in sorted(value)) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_canonical(v) for v in value) + "]"
    if isinstance(value, _Num):
        return str.__str__(value)
    return json.dumps(value, ensure_ascii=False)


def file_hash(name: str, raw: bytes) -> str:
    """SHA-256 of a bundle file as OPA computes it for signatures (JSON files canonicalised)."""
    if name.endswith(".json") or posixpath.basename(name) == ".manifest":
        value = json.loads(raw, parse_float=_Num, parse_int=_Num)
        return hashlib.sha256(_canonical(value).encode()).hexdigest()
    return hashlib.sha256(raw).hexdigest()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signing_input(files: dict[str, bytes], keyid: str) -> str:
    """The JWS signing input (header.payload) listing every file but .signatures.json."""
    entries = [
        {"name": name, "hash": file_hash(name, raw), "algorithm": "SHA-256"}
        for name, raw in sorted(files.items())
        if name != SIGNATURES_FILE
    ]
    header = {"alg": "RS256", "kid": keyid}
    payload = {"files": entries}
    return b64url(json.dumps(header, separators=(",", ":")).encode()) + "." + b64url(
        json.dumps(payload, separators=(",", ":")).encode()
    )


def signatures_document(signed_input: str, signature: bytes) -> str:
    return json.dumps({"signatures": [f"{signed_input}.{b64url(signature)}"]}) + "\n"


def read_bundle_dir(root: str) -> dict[str, bytes]:
    """{path relative to root, '/'-separated: content} of every file below root."""
    files: dict[str, bytes] = {}
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            with open(full, "rb") as fh:
                files[rel] = fh.read()
    return files


def write_tarball(files: dict[str, bytes], dest: str) -> None:
    """A gzipped tar of the bundle as `opa build` writes it (members named /path), reproducible."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for name, raw in sorted(files.items()):
            info = tarfile.TarInfo("/" + name)
            info.size = len(raw)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(raw))
    tmp = dest + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(buf.getvalue())
    os.replace(tmp, dest)


# ------------------------------------------------------------------ a directory of text files
class BundleFilesError(Exception):
    """Bad input for sync_files (the message names it)."""


def _read_text_tree(root: str) -> dict[str, str]:
    return {name: raw.decode("utf-8", "replace") for name, raw in read_bundle_dir(root).items()}


def _safe_rel(rel: str) -> str:
    norm = posixpath.normpath(rel)
    if not rel or rel.startswith("/") or norm.startswith("..") or norm == ".":
        raise BundleFilesError(f"file name {rel!r} must be a relative path below the directory")
    return norm


def sync_files(
    path: str,
    files: dict[str, str] | None,
    *,
    absent: bool = False,
    read: bool = False,
    mode: int = 0o640,
    directory_mode: int = 0o750,
    check_mode: bool = False,
    only_bundles: bool = False,
) -> dict[str, Any]:
    """Make ``path`` hold exactly ``files`` (or remove it); the module result."""
    exists = os.path.isdir(path)
    if os.path.exists(path) and not exists:
        raise BundleFilesError(f"{path} exists and is not a directory")
    current = _read_text_tree(path) if exists else {}
    if only_bundles and current and ".manifest" not in current:
        raise BundleFilesError(
            f"{path} is not empty and holds no bundle (.manifest): it would lose {len(current)} file(s). "
            "Give a new or empty directory, or one a previous run wrote. Nothing was changed."
        )
    result: dict[str, Any] = {"changed": False, "exists": exists, "written": [], "removed": []}
    if read:
        result["files"] = current
    diff: list[dict[str, str]] = []
    if absent:
        if exists:
            result.update(changed=True, removed=sorted(current))
            diff.append({"before_header": path, "after_header": path, "before": "(directory)\n", "after": ""})
            if not check_mode:
                import shutil

                shutil.rmtree(path)
        result["diff"] = diff
        return result
    if files is None:
        result["diff"] = diff
        return result
    wanted = {_safe_rel(str(k)): str(v) for k, v in files.items()}
    write = sorted(n for n, text in wanted.items() if current.get(n) != text)
    remove = sorted(n for n in current if n not in wanted)
    for n in write:
        diff.append({"before_header": f"{path}/{n}", "after_header": f"{path}/{n}",
                     "before": current.get(n, ""), "after": wanted[n]})
    for n in remove:
        diff.append({"before_header": f"{path}/{n}", "after_header": f"{path}/{n}",
                     "before": current[n], "after": ""})
    result.update(changed=bool(write or remove or not exists), written=write, removed=remove, diff=diff)
    if check_mode:
        return result
    for d in sorted({path} | {posixpath.join(path, posixpath.dirname(n)) for n in wanted}):
        if not os.path.isdir(d):
            os.makedirs(d, mode=directory_mode, exist_ok=True)
            os.chmod(d, directory_mode)
    for n in write:
        dest = os.path.join(path, n)
        tmp = f"{dest}.tmp-{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(wanted[n])
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    for n in remove:
        os.remove(os.path.join(path, n))
    for n in wanted:
        full = os.path.join(path, n)
        if os.stat(full).st_mode & 0o7777 != mode:
            os.chmod(full, mode)
            result["changed"] = True
    return result
