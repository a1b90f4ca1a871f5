"""Extract the Engine API's writes, and every query parameter and body field they take, from
moby's swagger files into the compact tests/policy/coverage_api.json that test_coverage.py
checks docs/coverage.md against.

    .venv/bin/python -m tests.policy.coverage_api SWAGGER.yaml [SWAGGER.yaml ...]
    .venv/bin/python -m tests.policy.coverage_api --git-dir /path/to/moby.git

With --git-dir the files are read from the bare repository's HEAD: ``api/docs/v1.41.yaml`` up to
the newest ``api/docs/v1.N.yaml``, and ``api/swagger.yaml`` (the newest version). Each file's
version is its ``info.version``. Versions below --min-version (default 1.41) are ignored.

A write is every operation whose method is not GET or HEAD. Its fields are named like this:

- ``query:NAME``, ``header:NAME`` for parameters (path parameters are not fields);
- ``body`` for a body that is not a JSON object (a tar stream, a JSON string);
- ``A.B`` for an object's property, ``A[]`` for an array's items, ``A.*`` for the values of a map
  (``additionalProperties``) whose values are objects or arrays; a map of strings is one field.

Each field records the first and last version (of those read) that have it, so a field the newest
version dropped but an older API version still takes (a client may send /v1.41/...) keeps its row.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

OUT = Path(__file__).resolve().parent / "coverage_api.json"
READ_METHODS = {"get", "head", "options"}
METHODS = ("get", "head", "post", "put", "delete", "patch", "options")


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


class Walker:
    """Field paths of one swagger document's schemas ($ref, allOf, arrays, maps resolved)."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.definitions = doc.get("definitions") or {}

    def resolve(self, schema: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        ref = schema.get("$ref")
        if not ref:
            return schema, None
        name = ref.rsplit("/", 1)[-1]
        return self.definitions[name], name

    def properties(self, schema: dict[str, Any], seen: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        schema, _ = self.resolve(schema)
        props: dict[str, dict[str, Any]] = {}
        for part in schema.get("allOf") or []:
            props.update(self.properties(part, seen))
        props.update(schema.get("properties") or {})
        return props

    def kind(self, schema: dict[str, Any]) -> str:
        schema, _ = self.resolve(schema)
        if schema.get("allOf") or schema.get("properties"):
            return "object"
        kind = schema.get("type")
        if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
            inner = self.kind(schema["additionalProperties"])
            return "map" if inner in ("object", "array") else "object"
        return kind or "any"

    def walk(self, schema: dict[str, Any], prefix: str, seen: tuple[str, ...], out: set[str]) -> None:
        resolved, name = self.resolve(schema)
        if name and name in seen:  # recursive schemas (none in practice): stop
            return
        if name:
            seen = (*seen, name)
        if resolved.get("allOf") or resolved.get("properties"):
            for key, sub in self.properties(resolved, seen).items():
                path = f"{prefix}.{key}" if prefix else key
                out.add(path)
                self.walk(sub, path, seen, out)
            return
        kind = resolved.get("type")
        nested = ("object", "array", "map")
        items = resolved.get("items")
        if kind == "array" and isinstance(items, dict) and self.kind(items) in nested:
            self.walk(items, f"{prefix}[]", seen, out)
            return
        values = resolved.get("additionalProperties")
        if kind == "object" and isinstance(values, dict) and self.kind(values) in nested:
            self.walk(values, f"{prefix}.*", seen, out)


def endpoint_path(path: str) -> str:
    """``/containers/{id}/exec`` -> ``/containers/*/exec`` (parameter names vary by version; the
    policy's write_endpoints table spells them the same way)."""
    return re.sub(r"\{[^}]+\}", "*", path)


def extract(doc: dict[str, Any]) -> dict[str, set[str]]:
    walker = Walker(doc)
    result: dict[str, set[str]] = {}
    for path, item in (doc.get("paths") or {}).items():
        shared = item.get("parameters") or []
        for method in METHODS:
            if method not in item or method in READ_METHODS:
                continue
            op = item[method]
            fields: set[str] = set()
            for param in [*shared, *(op.get("parameters") or [])]:
                where = param.get("in")
                if where in ("query", "header"):
                    fields.add(f"{where}:{param['name']}")
                elif where == "body":
                    schema = param.get("schema") or {}
                    if walker.kind(schema) == "object":
                        walker.walk(schema, "", (), fields)
                    else:
                        fields.add("body")
            result[f"{method.upper()} {endpoint_path(path)}"] = fields
    return result


def load_git(git_dir: str) -> list[tuple[str, dict[str, Any]]]:
    def show(path: str) -> str:
        return subprocess.run(
            ["git", f"--git-dir={git_dir}", "show", f"HEAD:{path}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    names = subprocess.run(
        ["git", f"--git-dir={git_dir}", "ls-tree", "--name-only", "HEAD", "api/docs/"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    texts = [show(n) for n in names if re.fullmatch(r"api/docs/v1\.\d+\.yaml", n)]
    texts.append(show("api/swagger.yaml"))
    return [(str(d["info"]["version"]), d) for d in (yaml.safe_load(t) for t in texts)]


def build(docs: list[tuple[str, dict[str, Any]]], min_version: str) -> dict[str, Any]:
    docs = sorted(
        ((v, d) for v, d in docs if version_key(v) >= version_key(min_version)),
        key=lambda vd: version_key(vd[0]),
    )
    if not docs:
        raise SystemExit(f"no swagger file of version {min_version} or later was given")
    versions = [v for v, _ in docs]
    spans: dict[str, dict[str, list[str]]] = {}
    for version, doc in docs:
        for endpoint, fields in extract(doc).items():
            entry = spans.setdefault(endpoint, {})
            entry.setdefault("", [version, version])[1] = version
            for field in fields:
                entry.setdefault(field, [version, version])[1] = version
    endpoints = {}
    for endpoint in sorted(spans):
        entry = spans[endpoint]
        first, last = entry.pop("")
        endpoints[endpoint] = {
            "versions": [first, last],
            "fields": {field: entry[field] for field in sorted(entry)},
        }
    return {
        "source": "moby api/docs/v1.N.yaml and api/swagger.yaml (tests/policy/coverage_api.py)",
        "versions": versions,
        "newest": versions[-1],
        "endpoints": endpoints,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", help="swagger files (any order; the version is read from each)")
    parser.add_argument(
        "--git-dir", help="a moby git directory: read api/docs/v1.*.yaml and api/swagger.yaml"
    )
    parser.add_argument("--min-version", default="1.41")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    if not args.files and not args.git_dir:
        parser.error("give swagger files or --git-dir")
    docs = load_git(args.git_dir) if args.git_dir else []
    for name in args.files:
        doc = yaml.safe_load(Path(name).read_text())
        docs.append((str(doc["info"]["version"]), doc))
    data = build(docs, args.min_version)
    Path(args.out).write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    count = sum(len(e["fields"]) for e in data["endpoints"].values())
    span = f"{data['versions'][0]}-{data['newest']}"
    print(f"{args.out}: {len(data['endpoints'])} writes, {count} fields, API {span}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
