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
2. :func:`compile_policy` - compile and evaluate on sample inputs: ``data.docker.authz.allow``
   must be a boolean and ``data.docker.authz.deny`` a set. Rego v1 is compiled by OPA's own
   engine when ``opa_bindings`` (opa-golib-python-bindings, OPA 1.20.2) is importable, by
   regopy (rego-cpp) otherwise; the v0 dialect (which OPA 1.x cannot parse) always by regopy.

:func:`check_bundle` does both for a whole OPA bundle directory (several .rego files, data
files, a .manifest), as the plugin loads it in config-file mode.

The engines are controller-side requirements, imported lazily so the scan works without them.
Pure functions apart from the engines; stdlib only otherwise (PyYAML, which Ansible itself
needs on the controller, only for data.yaml files).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Mapping
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
        "BindMounts": None,
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


def scan_rego(
    text: str, dialect: str, *, require_package: bool = True, functions: frozenset[str] = frozenset()
) -> list[str]:
    """Problems that keep ``text`` from running on its dialect's OPA; ``[]`` when none.

    ``require_package=False`` for a module of a bundle (only one needs ``package docker.authz``);
    ``functions``: functions the other modules define (``lib.f(`` is allowed when ``f`` is one).
    """
    code = strip_comments_and_strings(text)
    problems: list[str] = []
    lines = code.splitlines()
    if require_package and not re.search(r"^package\s+docker\.authz\s*$", code, re.M):
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
        if name in functions or name.rsplit(".", 1)[-1] in functions:
            continue  # a function of another module of the bundle
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


def _import_opa() -> Any:
    """opa_bindings (OPA's own engine) or None when it is not installed."""
    try:
        import opa_bindings  # optional: a controller-side requirement
    except ImportError:
        return None
    return opa_bindings


def engine_for(dialect: str) -> str:
    """``opa`` (OPA's own engine) for Rego v1 when opa_bindings is importable, else ``regopy``."""
    if dialect == "v1" and _import_opa() is not None:
        return "opa"
    return "regopy"


def _result(allow: Any, deny: Any) -> dict[str, Any]:
    if not isinstance(allow, bool):
        raise RegoCheckError(f"data.docker.authz.allow must be a boolean, got {allow!r}")
    # A set comes back as a JSON array; regopy returns an OPA v0 partial set
    # (deny[msg] { ... }) as an object of msg: true, which OPA itself evaluates to a set.
    if isinstance(deny, dict) and all(v is True for v in deny.values()):
        deny = sorted(deny)
    if not isinstance(deny, list) or not all(isinstance(x, str) for x in deny):
        raise RegoCheckError(f"data.docker.authz.deny must be a set of strings, got {deny!r}")
    return {"allow": allow, "deny": sorted(deny)}


def _compile_opa(
    modules: dict[str, str], data: dict[str, Any], samples: tuple[dict[str, Any], ...]
) -> list[dict[str, Any]]:
    opa = _import_opa()
    if opa is None:
        raise RegoCheckError(
            "opa_bindings is not installed for the Python that runs Ansible on the controller: "
            "'pip install --ignore-requires-python opa-golib-python-bindings==0.4.4'"
        )
    engine = opa.OpaEngine()
    try:
        for name, text in modules.items():
            engine.add_policy(name, text)
        if data:
            engine.add_data(data)
        results = []
        for sample in samples:
            values = []
            for what in ("allow", "deny"):
                try:
                    values.append(engine.eval_document(f"docker.authz.{what}", sample))
                except opa.OpaUndefinedError:
                    values.append(None)
            results.append(_result(*values))
        return results
    except opa.OpaError as exc:
        message = str(getattr(exc, "message", exc)).removeprefix("bundle activation failed: ")
        raise RegoCheckError(f"the policy does not compile or evaluate: {message}") from None
    finally:
        engine.close()


def _compile_regopy(
    modules: dict[str, str], data: dict[str, Any], samples: tuple[dict[str, Any], ...]
) -> list[dict[str, Any]]:
    regopy = _import_regopy()
    from regopy.interpreter import rego_query
    from regopy.output import rego_output_ok, rego_output_string

    results = []
    for sample in samples:
        with _captured_stdout() as printed:
            try:
                rego = regopy.Interpreter()
                for name, text in modules.items():
                    rego.add_module(name, text)
                if data:
                    rego.add_data_json(json.dumps(data))
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
        results.append(_result(bindings.get("allow"), bindings.get("deny")))
    return results


def compile_modules(
    modules: dict[str, str],
    data: dict[str, Any] | None = None,
    samples: tuple[dict[str, Any], ...] = SAMPLE_INPUTS,
    *,
    engine: str = "",
    dialect: str = "v1",
) -> list[dict[str, Any]]:
    """Compile ``modules`` ({name: source}) with ``data`` and evaluate allow/deny on each sample.

    ``engine``: ``opa`` or ``regopy``; empty picks :func:`engine_for` the dialect. Returns
    ``[{"allow": bool, "deny": [reasons]}, ...]``; raises :class:`RegoCheckError` with the
    engine's message when the policy does not compile or evaluates wrongly.
    """
    engine = engine or engine_for(dialect)
    if engine == "opa":
        if dialect != "v1":
            raise RegoCheckError("OPA 1.x parses Rego v1 only: check the v0 dialect with regopy")
        return _compile_opa(modules, data or {}, samples)
    if engine == "regopy":
        return _compile_regopy(modules, data or {}, samples)
    raise ValueError(f"unknown Rego engine {engine!r} (expected opa or regopy)")


def compile_policy(
    text: str, samples: tuple[dict[str, Any], ...] = SAMPLE_INPUTS, *, engine: str = "", dialect: str = "v1"
) -> list[dict[str, Any]]:
    """One policy file (``authz.rego``): see :func:`compile_modules`."""
    return compile_modules({"authz.rego": text}, None, samples, engine=engine, dialect=dialect)


def _docker_ps_allowed(samples: list[dict[str, Any]]) -> None:
    if samples[0]["allow"] is not True:
        raise RegoCheckError(f"the policy denies GET /containers/json (docker ps): {samples[0]['deny']}")


def check_policy(text: str, dialect: str, *, engine: str = "") -> dict[str, Any]:
    """Scan, then compile. Raises :class:`RegoCheckError` naming every problem."""
    problems = scan_rego(text, dialect)
    if problems:
        raise RegoCheckError(
            f"the policy uses syntax or builtins that Rego {dialect}'s OPA does not have:\n- "
            + "\n- ".join(problems)
        )
    engine = engine or engine_for(dialect)
    samples = compile_policy(text, engine=engine, dialect=dialect)
    _docker_ps_allowed(samples)
    code = strip_comments_and_strings(text)
    return {
        "dialect": dialect,
        "engine": engine,
        "builtins": sorted(called_names(code) - defined_functions(code)),
        "samples": samples,
    }


# ---------------------------------------------------------------------------- bundles

DATA_FILES = ("data.json", "data.yaml", "data.yml")


def _covered(path: str, roots: list[str]) -> bool:
    return any(r == "" or path == r or path.startswith(r + "/") for r in roots)


def _merge_data(into: dict[str, Any], path: list[str], value: Any, where: str) -> None:
    """Merge ``value`` at ``path`` into ``into`` as OPA merges bundle data (no overwrites)."""
    if not path:
        if not isinstance(value, dict):
            raise RegoCheckError(f"{where}: the root data document must be an object")
        for key, val in value.items():
            _merge_data(into, [key], val, where)
        return
    node = into
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise RegoCheckError(f"{where}: data conflict at /{'/'.join(path)}")
    last = path[-1]
    if last not in node:
        node[last] = value
    elif isinstance(node[last], dict) and isinstance(value, dict):
        for key, val in value.items():
            _merge_data(node[last], [key], val, where)
    else:
        raise RegoCheckError(f"{where}: data conflict at /{'/'.join(path)}")


def _bundle_tree(bundle_dir: str) -> dict[str, bytes]:
    """{path relative to ``bundle_dir``: raw content} of every file below it."""
    if not os.path.isdir(bundle_dir):
        raise RegoCheckError(f"{bundle_dir} is not a directory (bundle_dir must be an OPA bundle directory)")
    tree: dict[str, bytes] = {}
    for dirpath, dirnames, names in os.walk(bundle_dir):
        dirnames.sort()
        for name in sorted(names):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, bundle_dir).replace(os.sep, "/")
            try:
                with open(full, "rb") as handle:
                    tree[rel] = handle.read()
            except OSError as exc:
                raise RegoCheckError(f"cannot read {full}: {exc}") from exc
    return tree


def read_bundle(bundle_dir: str) -> dict[str, Any]:
    """The modules, data, manifest and file list of an OPA bundle directory, as OPA reads it:
    ``*.rego`` anywhere, ``data.json``/``data.yaml`` at the data path of their directory,
    ``.manifest`` (roots enforced). Raises :class:`RegoCheckError` naming the problem."""
    return parse_bundle(_bundle_tree(bundle_dir), bundle_dir)


def parse_bundle(tree: Mapping[str, bytes | str], where: str = "the bundle") -> dict[str, Any]:
    """:func:`read_bundle` of a bundle given as ``{path inside the bundle: content}`` (the files the
    role writes, before they are written); ``where`` names the bundle in messages."""
    modules: dict[str, str] = {}
    data: dict[str, Any] = {}
    files: list[str] = []
    manifest: dict[str, Any] = {}
    data_files: list[tuple[str, Any]] = []
    for rel in sorted(tree):
        raw = tree[rel]
        raw = raw.encode("utf-8") if isinstance(raw, str) else raw
        full = f"{where}/{rel}"
        name = rel.rsplit("/", 1)[-1]
        if rel == ".manifest":
            try:
                manifest = json.loads(raw)
            except ValueError as exc:
                raise RegoCheckError(f"{full} is not valid JSON: {exc}") from exc
            if not isinstance(manifest, dict):
                raise RegoCheckError(f"{full} must be a JSON object")
            files.append(rel)
        elif name.endswith(".rego"):
            modules[rel] = raw.decode("utf-8", "replace")
            files.append(rel)
        elif name in DATA_FILES:
            try:
                if name == "data.json":
                    value = json.loads(raw)
                else:
                    import yaml  # Ansible's own dependency on the controller

                    value = yaml.safe_load(raw)
            except Exception as exc:
                raise RegoCheckError(f"{full} does not parse: {exc}") from exc
            data_files.append((rel, value))
            files.append(rel)
    if not modules:
        raise RegoCheckError(f"the bundle {where} holds no .rego file")
    roots = [str(r).strip("/") for r in manifest.get("roots", [""])]
    for rel, text in modules.items():
        pkg = re.search(r"^\s*package\s+([A-Za-z_][\w.]*)", strip_comments_and_strings(text), re.M)
        if pkg and not _covered(pkg.group(1).replace(".", "/"), roots):
            raise RegoCheckError(f"{rel}: package {pkg.group(1)} is outside the manifest roots {roots}")
    for rel, value in data_files:
        path = [p for p in rel.split("/")[:-1] if p]
        if path and not _covered("/".join(path), roots):
            raise RegoCheckError(f"{rel}: data path /{'/'.join(path)} is outside the manifest roots {roots}")
        _merge_data(data, path, value, rel)
    return {"modules": modules, "data": data, "manifest": manifest, "files": files}


def check_bundle(bundle_dir: str, dialect: str, *, engine: str = "") -> dict[str, Any]:
    """Scan every module of the bundle for the dialect, then compile them all with the data."""
    return _check_parsed_bundle(read_bundle(bundle_dir), dialect, engine=engine)


def check_bundle_files(
    files: Mapping[str, bytes | str], dialect: str, *, engine: str = "", where: str = "the bundle"
) -> dict[str, Any]:
    """:func:`check_bundle` of a bundle given as ``{path inside the bundle: content}``."""
    return _check_parsed_bundle(parse_bundle(files, where), dialect, engine=engine)


def bundle_text(files: Mapping[str, str]) -> str:
    """One text that stands for a bundle given as ``{path: content}`` in the compile cache (the
    paths and contents, in a canonical order; never a valid Rego module, so no policy text can
    share its key)."""
    return "# OPA bundle\n" + json.dumps({str(k): str(v) for k, v in files.items()}, sort_keys=True)


def _check_parsed_bundle(bundle: dict[str, Any], dialect: str, *, engine: str = "") -> dict[str, Any]:
    modules: dict[str, str] = bundle["modules"]
    codes = {rel: strip_comments_and_strings(text) for rel, text in modules.items()}
    functions = frozenset(f for code in codes.values() for f in defined_functions(code))
    problems = [
        f"{rel}: {p}"
        for rel, text in modules.items()
        for p in scan_rego(text, dialect, require_package=False, functions=functions)
    ]
    if not any(re.search(r"^package\s+docker\.authz\s*$", code, re.M) for code in codes.values()):
        problems.append(
            "no module declares 'package docker.authz' (the plugin queries data.docker.authz.allow)"
        )
    if problems:
        raise RegoCheckError(
            f"the bundle uses syntax or builtins that Rego {dialect}'s OPA does not have:\n- "
            + "\n- ".join(problems)
        )
    engine = engine or engine_for(dialect)
    samples = compile_modules(modules, bundle["data"], engine=engine, dialect=dialect)
    _docker_ps_allowed(samples)
    called = set().union(*(called_names(code) for code in codes.values()))
    return {
        "dialect": dialect,
        "engine": engine,
        "builtins": sorted(c for c in called - functions if c.rsplit(".", 1)[-1] not in functions),
        "samples": samples,
        "files": sorted(bundle["files"]),
        "revision": str(bundle["manifest"].get("revision", "")),
    }


# ---------------------------------------------------------------------------- cache

# A policy text that passed check_policy passes again as long as nothing the check depends on
# changed: the text, the dialect, the engine and its version, and this checker's own code (the
# scan, the samples, the builtins of each dialect). The role's compile step (render.yml) skips
# the texts remembered under that key (filter hardening.docker_authz.rego_uncached), so a run
# that renders the same policy as the last one does not compile it again. Only successes are
# remembered: a text that failed is checked (and fails) every time.
CACHE_FORMAT = 1
ENGINE_DISTRIBUTIONS = {"opa": "opa-golib-python-bindings", "regopy": "regopy"}


def cache_dir() -> str:
    """``$XDG_CACHE_HOME/hardening.docker_authz/rego_check`` (``~/.cache/...`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "hardening.docker_authz", "rego_check")


def _checker_fingerprint() -> str | None:
    """sha256 of this checker's source and of the builtins tables (module_utils/policy.py), as
    imported (a file, or the zip of a module run); None when a source cannot be read."""
    digest = hashlib.sha256()
    for name in (__name__, allowed_builtins.__module__):
        mod = sys.modules.get(name)
        loader = getattr(mod, "__loader__", None)
        try:
            source = loader.get_source(name) if loader is not None else None  # type: ignore[union-attr]
        except (ImportError, OSError):
            source = None
        if not source:
            return None
        # Ansible's collection loader answers bytes, the import system's loaders str
        digest.update(source if isinstance(source, bytes) else source.encode("utf-8"))
    return digest.hexdigest()


def likely_engine(dialect: str) -> str:
    """The engine :func:`engine_for` picks, without importing it (the key of a cache look-up;
    when the import would fail after all, the check runs with regopy and remembers that key)."""
    return "opa" if dialect == "v1" and importlib.util.find_spec("opa_bindings") is not None else "regopy"


def cache_key(text: str, dialect: str, engine: str) -> str | None:
    """The cache file name for ``text`` checked as ``dialect`` by ``engine``, or None (no cache)."""
    try:
        version = importlib.metadata.version(ENGINE_DISTRIBUTIONS[engine])
    except (KeyError, importlib.metadata.PackageNotFoundError):
        return None
    fingerprint = _checker_fingerprint()
    if fingerprint is None:
        return None
    text_sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    doc = [CACHE_FORMAT, dialect, engine, version, fingerprint, text_sha]
    return hashlib.sha256(json.dumps(doc).encode("utf-8")).hexdigest()


def is_cached(text: str, dialect: str, directory: str | None = None) -> bool:
    """Whether ``text`` passed :func:`check_policy` as ``dialect`` before (see :func:`remember`)."""
    key = cache_key(text, dialect, likely_engine(dialect))
    return key is not None and os.path.isfile(os.path.join(directory or cache_dir(), key))


def remember(text: str, result: dict[str, Any], directory: str | None = None) -> str | None:
    """Record that ``text`` passed (``result`` of :func:`check_policy`); the file's path, or None
    when it could not be written (the cache is an optimisation: never an error)."""
    key = cache_key(text, str(result.get("dialect")), str(result.get("engine")))
    if key is None:
        return None
    directory = directory or cache_dir()
    path = os.path.join(directory, key)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"dialect": result.get("dialect"), "engine": result.get("engine")}, handle)
        os.replace(tmp, path)
    except OSError:
        return None
    return path
