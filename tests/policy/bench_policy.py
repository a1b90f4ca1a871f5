"""Benchmark (not a test): per-request cost of the restricted policy vs the original how-to's.

opa-docker-authz reads and compiles its policy file again on EVERY Docker API call, so the
price of a policy is compile + evaluate, paid per request. This measures exactly that with
regopy (rego-cpp): a fresh interpreter, add the module, set the input, query allow, for each
request - for the full restricted rendering (both dialects) and for the three-rule policy of
the original how-to. It also reports evaluation alone (compiled once into a bundle).

    make bench-policy            # or: .venv/bin/python -m tests.policy.bench_policy [--rounds N]

regopy is not OPA: absolute numbers for the plugin's Go OPA differ, the ratio is the point.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

import regopy

from tests.opa_docker_authz_double.opa_input import build_input
from tests.policy.harness import render
from tests.policy.requests import create, read, write

# The how-to's policy (three rules, Rego v0 as opa-docker-authz 0.4 needs it).
HOWTO_POLICY = """package docker.authz

default allow = false

allow {
    not deny
}

deny {
    seccomp_unconfined
}

deny {
    privileged
}

seccomp_unconfined {
    input.Body.HostConfig.SecurityOpt[_] == "seccomp:unconfined"
}

privileged {
    input.Body.HostConfig.Privileged == true
}
"""

REQUESTS = {
    "GET /containers/json (docker ps)": read("/v1.41/containers/json?all=1"),
    "POST /containers/create (compliant)": create(),
    "POST /containers/create (privileged)": create(host_config={"Privileged": True}),
    "POST /containers/{id}/start": write("POST", "/v1.41/containers/0123abcd/start"),
}


def per_request(text: str, doc: dict[str, Any]) -> Callable[[], Any]:
    def run() -> Any:
        rego = regopy.Interpreter()
        rego.add_module("authz.rego", text)
        rego.set_input(doc)
        return rego.query("x := data.docker.authz.allow")

    return run


def eval_only(text: str, doc: dict[str, Any]) -> Callable[[], Any]:
    rego = regopy.Interpreter()
    rego.add_module("authz.rego", text)
    bundle = rego.build("x := data.docker.authz.allow", [])

    def run() -> Any:
        interp = regopy.Interpreter()
        interp.set_input(doc)
        return interp.query_bundle(bundle)

    return run


def median_ms(func: Callable[[], Any], rounds: int) -> float:
    func()  # warm-up
    samples = []
    gc.disable()
    try:
        for _ in range(rounds):
            start = time.perf_counter()
            func()
            samples.append((time.perf_counter() - start) * 1000)
    finally:
        gc.enable()
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    policies = {
        "how-to (3 rules, v0)": HOWTO_POLICY,
        "restricted v1": render("v1", profile="restricted"),
        "restricted v0": render("v0", profile="restricted"),
    }
    print(f"regopy {regopy.__version__}; median of {args.rounds} rounds; ms per request")
    print("policy sizes: " + ", ".join(f"{k}: {len(v.splitlines())} lines" for k, v in policies.items()))
    header = f"{'request':40} {'mode':22}" + "".join(f"{k:>22}" for k in policies)
    header += f"{'ratio v1/how-to':>17}"
    print(header)
    print("-" * len(header))
    for label, req in REQUESTS.items():
        doc = build_input(req)
        for mode, factory in (("compile+evaluate", per_request), ("evaluate (compiled)", eval_only)):
            times = [median_ms(factory(text, doc), args.rounds) for text in policies.values()]
            ratio = times[1] / times[0]
            print(f"{label:40} {mode:22}" + "".join(f"{t:22.2f}" for t in times) + f"{ratio:16.1f}x")


if __name__ == "__main__":
    main()
