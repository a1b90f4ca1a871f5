"""Tool (not a test): every decision of the rendered policy, to compare two versions of it.

A change of the policy's Rego that must not change what it decides (a faster formulation, a
table-driven rule) is proven here request for request: dump the decisions of the checkout before
the change and of the one after, then compare. Inputs: every request of the corpus
(tests/policy/corpus) and every probe of the verification's table (module_utils/probes.py) for
both profiles. Renderings: restricted, baseline, every rule off, restricted with the optional
parameters set, audit mode, and each rule alone; each as the single file (policy-file mode) and
as the bundle (bundle mode), on OPA's own engine. A decision is allow, the deny set and the audit
set.

    git worktree add /tmp/before <commit>   # the version to compare against
    (cd /tmp/before && PYTHONPATH=. python -m tests.policy.decision_diff dump /tmp/before.json)
    PYTHONPATH=. .venv/bin/python -m tests.policy.decision_diff dump /tmp/after.json
    .venv/bin/python -m tests.policy.decision_diff compare /tmp/before.json /tmp/after.json

It takes about two minutes on two cores (about 1,000 inputs x 50 renderings x 2 modes).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path
from typing import Any
from unittest import mock

from opa_bindings import OpaEngine

from module_utils import probes
from module_utils.policy import RULES
from tests.opa_docker_authz_double.opa_input import InputError, build_input, skips_evaluation
from tests.policy.harness import bundle_files, render

CORPUS = Path(__file__).resolve().parent / "corpus"
QUERY = (
    "allow := data.docker.authz.allow; deny := data.docker.authz.deny; "
    "audit := {m | m := data.docker.authz.audit[_]}"
)
ALL_OFF = {var: False for var, _b, _r in RULES.values()}


def requests() -> list[dict[str, Any]]:
    """The authorization requests: the corpus's, then the probes' (as the plugin receives them)."""
    out = []
    for path in sorted(CORPUS.glob("*.json")):
        out += [r for r in json.loads(path.read_text())["requests"] if not skips_evaluation(r)]
    # the probes name their volumes with random tokens: fixed here, so that two dumps compare
    with mock.patch.object(probes.secrets, "token_hex", lambda n=4: "0" * 2 * n):
        table = [
            probe
            for profile in ("baseline", "restricted")
            for probe in probes.build_probes(probes.normalize_rules({}, profile))
        ]
    for probe in table:
        body = probe.body_bytes()
        headers = {"Content-Type": probe.content_type} if probe.content_type and body is not None else {}
        req: dict[str, Any] = {
            "RequestMethod": probe.method,
            "RequestUri": probe.request_target("1.41"),
            "RequestHeaders": headers,
        }
        if body is not None:
            req["RequestBody"] = base64.b64encode(body).decode("ascii")
        out.append(req)
    return out


def inputs() -> list[dict[str, Any]]:
    docs = []
    for req in requests():
        try:
            docs.append(build_input(req))
        except InputError:  # the plugin refuses the body; the endpoint alone must still decide
            docs.append(build_input({k: v for k, v in req.items() if k != "RequestBody"}))
    return docs


def renderings() -> dict[str, dict[str, Any]]:
    configs: dict[str, dict[str, Any]] = {
        "restricted": {"profile": "restricted"},
        "baseline": {"profile": "baseline"},
        "all_off": {"profile": "restricted", **ALL_OFF},
        "restricted_options": {
            "profile": "restricted",
            "trusted_registries": ["127.0.0.1:5000", "docker.io/library"],
            "max_memory_bytes": 1073741824,
            "max_nano_cpus": 2000000000,
            "allowed_host_ips": ["127.0.0.1"],
            "require_readonly_rootfs": True,
        },
        "audit": {"profile": "restricted", "enforcement": "audit"},
    }
    for rule_id, (var, _b, _r) in RULES.items():
        configs[f"only_{rule_id}"] = {"profile": "restricted", **ALL_OFF, var: True}
    return configs


def _decide(engine: OpaEngine, docs: list[dict[str, Any]]) -> list[list[Any]]:
    out = []
    for doc in docs:
        row = engine.eval_query(QUERY, doc)[0]
        out.append([row["allow"], sorted(row["deny"]), sorted(row["audit"])])
    return out


def dump(dest: str) -> None:
    docs = inputs()
    decisions: dict[str, list[list[Any]]] = {}
    for name, overrides in renderings().items():
        with OpaEngine() as engine:
            engine.add_policy("authz.rego", render("v1", **overrides))
            decisions[f"{name}/file"] = _decide(engine, docs)
        with OpaEngine() as engine:
            for path, content in sorted(bundle_files(**overrides).items()):
                if path.endswith(".rego"):
                    engine.add_policy(path, content)
                elif path.rsplit("/", 1)[-1] == "data.json":
                    prefix = path.rsplit("/", 1)[0] if "/" in path else ""
                    engine.add_data(json.loads(content), prefix.replace("/", "."))
            decisions[f"{name}/bundle"] = _decide(engine, docs)
        print(name, file=sys.stderr, flush=True)
    Path(dest).write_text(json.dumps({"inputs": docs, "decisions": decisions}))
    print(f"{len(docs)} inputs x {len(decisions)} renderings -> {dest}")


def compare(before: str, after: str, show: int = 10) -> int:
    a, b = json.loads(Path(before).read_text()), json.loads(Path(after).read_text())
    if a["inputs"] != b["inputs"]:
        print("the two dumps have different inputs (corpus or probe table changed): compare like with like")
        return 2
    differences = 0
    for key in sorted(set(a["decisions"]) | set(b["decisions"])):
        old, new = a["decisions"].get(key), b["decisions"].get(key)
        if old is None or new is None:
            print(f"{key}: only in {'after' if old is None else 'before'}")
            differences += 1
            continue
        for i, (x, y) in enumerate(zip(old, new, strict=True)):
            if x != y:
                differences += 1
                if differences <= show:
                    doc = a["inputs"][i]
                    where = f"{doc.get('Method')} {doc.get('PathPlain')}"
                    print(f"{key} input {i} ({where}):\n  before {x}\n  after  {y}")
    total = sum(len(v) for v in a["decisions"].values())
    print(f"{differences} of {total} decisions differ")
    return 1 if differences else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("dump", help="write this checkout's decisions to a JSON file").add_argument("dest")
    cmp = sub.add_parser("compare", help="compare two dumps; exit 1 when a decision differs")
    cmp.add_argument("before")
    cmp.add_argument("after")
    args = parser.parse_args(argv)
    if args.command == "dump":
        dump(args.dest)
        return 0
    return compare(args.before, args.after)


if __name__ == "__main__":
    sys.exit(main())
