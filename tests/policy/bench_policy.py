"""Benchmark (not a test): what the policy costs per Docker API call, in OPA's own engine.

opa-docker-authz has two ways to run a policy, and they cost very different things:

- policy-file mode (``-policy-file``): the plugin reads and compiles the policy file again on
  EVERY Docker API call, so a request pays compile + evaluate. Measured here as the plugin does
  it: a fresh OPA engine, add the one policy file, evaluate ``data.docker.authz.allow``. The role
  ships the compact file (specialised to the config, no comments, no unreachable helpers); the
  "restr. whole file" column is the same policy assembled from the whole sources.
- bundle mode (``-config-file`` with a bundle): OPA compiles the bundle once per activation and
  prepares the query once; a request pays evaluation only. Measured here as: one engine with the
  bundle's .rego files and data added once, then ``data.docker.authz.allow`` per request.

Both are measured with OPA's own Go engine (``opa-golib-python-bindings``, the engine family of
opa-docker-authz v0.10), for the restricted and baseline renderings of this project's policy,
BESIDE the original how-to's three rules (as Rego v1, which OPA 1.x needs) in the same run, so
the ratios compare like with like. ``--regopy`` adds regopy's (rego-cpp) compile + evaluate
figures beside them: regopy is not the plugin's engine; they are kept for comparison with older
numbers only.

    make bench-policy            # or: .venv/bin/python -m tests.policy.bench_policy [--rounds N]
                                 #     [--eval-rounds N] [--regopy]
                                 #     [--clock cpu] [--stat min]  (steadier on a loaded machine)
                                 #     [--breakdown]  (where policy-file mode's cost comes from)
    make bench-policy BENCH_ARGS="--breakdown --rounds 31"

The columns of one request are measured interleaved, round by round (the how-to, each file mode,
each bundle), so that a change of the machine's load during the run weighs on all of them alike
and the ratios stay comparable: the how-to and the bundles, which cost about a millisecond, every
round (``--eval-rounds``, default 200), the file modes, which cost tens, ``--rounds`` times spread
evenly over the same rounds. Measured one column after the other, the restricted bundle's
creates came out at 1.2x-3.4x the how-to in runs minutes apart; interleaved, three runs in a
row gave 1.65x-1.72x (docs/policy.md).

``--breakdown`` adds, for policy-file mode and the restricted profile, what the library costs
alone (every rule off: the checks of the input, the request and the body that are always on)
and what each rule adds to it when it is the only one on, beside the how-to, in the same run:
the floor any policy built on this library pays per request.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from opa_bindings import OpaEngine

from ansible_collections.hardening.docker_authz.plugins.filter.policy import _sources, policy_config
from module_utils.policy import POLICY_VARIABLES, assemble_policy
from module_utils.probes import RULE_DEFAULTS
from tests.opa_docker_authz_double.opa_input import build_input
from tests.policy.harness import bundle_files, render, variables
from tests.policy.requests import create, read, write

ALLOW = "docker.authz.allow"
# The rule switches (docker_authz_deny_privileged, ...), without the prefix.
RULE_VARIABLES = tuple(RULE_DEFAULTS)

# The how-to's policy, three rules, in Rego v1 as OPA 1.x (opa-docker-authz v0.10) needs it.
HOWTO_POLICY_V1 = """package docker.authz

default allow := false

allow if {
    not deny
}

deny if {
    seccomp_unconfined
}

deny if {
    privileged
}

seccomp_unconfined if {
    input.Body.HostConfig.SecurityOpt[_] == "seccomp:unconfined"
}

privileged if {
    input.Body.HostConfig.Privileged == true
}
"""

# The same three rules in Rego v0, as the how-to wrote them for opa-docker-authz 0.4 (regopy only).
HOWTO_POLICY_V0 = """package docker.authz

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


def _load(engine: OpaEngine, files: dict[str, str]) -> None:
    """Add a bundle's files to an engine: .rego files as modules, data.json files at their path."""
    for path, content in sorted(files.items()):
        if path.endswith(".rego"):
            engine.add_policy(path, content)
        elif path.rsplit("/", 1)[-1] in ("data.json",):
            prefix = path.rsplit("/", 1)[0] if "/" in path else ""
            engine.add_data(json.loads(content), prefix.replace("/", "."))


def file_mode(text: str, doc: dict[str, Any]) -> Callable[[], Any]:
    """Policy-file mode: a fresh engine compiles the policy for this one request."""

    def run() -> Any:
        with OpaEngine() as engine:
            engine.add_policy("authz.rego", text)
            return engine.eval_document(ALLOW, doc)

    return run


def bundle_mode(files: dict[str, str], doc: dict[str, Any]) -> Callable[[], Any]:
    """Bundle mode: compiled once (the engine keeps the prepared query), evaluated per request."""
    engine = OpaEngine()
    _load(engine, files)
    engine.eval_document(ALLOW, doc)  # compile and prepare once, outside the timing

    def run() -> Any:
        return engine.eval_document(ALLOW, doc)

    return run


@contextlib.contextmanager
def _native_stdout_silenced() -> Iterator[None]:
    """rego-cpp prints its internal passes' diagnostics (``Pass rego_to_json failed ...``) to the
    process's stdout while it answers correctly; keep them out of the table."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def regopy_file_mode(text: str, doc: dict[str, Any]) -> Callable[[], Any]:
    import regopy

    def run() -> Any:
        rego = regopy.Interpreter()
        rego.add_module("authz.rego", text)
        rego.set_input(doc)
        return rego.query("x := data.docker.authz.allow")

    return run


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
CLOCK = CLOCKS["wall"]
STATS: dict[str, Callable[[list[float]], float]] = {"median": statistics.median, "min": min}
STAT = STATS["median"]


def schedule(counts: dict[str, int]) -> list[list[str]]:
    """The order of an interleaved measurement: one step per round of the most-measured column,
    each column measured ``counts[name]`` times, spread evenly over the steps. (``step * n //
    steps`` goes from 0 to n over the steps, by n increments: a column is measured at each.)"""
    steps = max(counts.values(), default=0)
    return [
        [name for name, n in counts.items() if (step * n) // steps != ((step + 1) * n) // steps]
        for step in range(steps)
    ]


def interleaved_ms(funcs: dict[str, tuple[Callable[[], Any], int]]) -> dict[str, float]:
    """Measure several functions round by round (``funcs[name] = (func, rounds)``): each one's
    samples are taken across the same span of time. Returns STAT of each one's samples, in ms."""
    for func, _ in funcs.values():
        func()  # warm-up
    samples: dict[str, list[float]] = {name: [] for name in funcs}
    gc.disable()
    try:
        for names in schedule({name: rounds for name, (_, rounds) in funcs.items()}):
            for name in names:
                func = funcs[name][0]
                start = CLOCK()
                func()
                samples[name].append((CLOCK() - start) * 1000)
    finally:
        gc.enable()
    return {name: STAT(values) for name, values in samples.items()}


def _version() -> str:
    try:
        from importlib.metadata import version

        return f"opa-golib-python-bindings {version('opa-golib-python-bindings')}"
    except Exception:  # pragma: no cover - informational only
        return "opa-golib-python-bindings"


def _rego(files: dict[str, str]) -> list[str]:
    return [content for path, content in files.items() if path.endswith(".rego")]


def breakdown(rounds: int, eval_rounds: int) -> None:
    """Policy-file mode, restricted profile, a compliant create: the library alone, each rule
    alone on top of it, and the whole policy, in ms and as multiples of the how-to (all of them
    measured interleaved, round by round)."""
    doc = build_input(REQUESTS["POST /containers/create (compliant)"])
    off = {name: False for name in RULE_VARIABLES}
    library_text = render("v1", profile="restricted", **off)
    whole_text = render("v1", profile="restricted")
    texts: dict[str, str] = {}
    for name in sorted(RULE_VARIABLES):
        on = dict(off)
        on.pop(name)
        text = render("v1", profile="restricted", **on)
        if text != library_text:  # (equal: the rule is off in the restricted profile)
            texts[name] = text
    measured = interleaved_ms({
        "how-to": (file_mode(HOWTO_POLICY_V1, doc), eval_rounds),
        "library": (file_mode(library_text, doc), rounds),
        "whole": (file_mode(whole_text, doc), rounds),
        **{name: (file_mode(text, doc), rounds) for name, text in texts.items()},
    })
    howto, library, whole = measured["how-to"], measured["library"], measured["whole"]
    print()
    print(
        f"policy-file mode, restricted profile, compliant create: where the compile + evaluate goes "
        f"({STAT.__name__} of {rounds}, the how-to of {eval_rounds}, interleaved; ms)"
    )
    header = f"{'policy':44}{'lines':>7}{'ms':>10}{'x how-to':>10}{'adds':>10}"
    print(header)
    print("-" * len(header))
    print(f"{'how-to (3 rules)':44}{len(HOWTO_POLICY_V1.splitlines()):7}{howto:10.3f}{1:9.1f}x")
    print(f"{'library alone (every rule off)':44}{len(library_text.splitlines()):7}{library:10.3f}"
          f"{library / howto:9.1f}x")
    added = 0.0
    for name, text in texts.items():
        ms = measured[name]
        added += ms - library
        label = f"library + {name}"
        print(f"{label:44}{len(text.splitlines()):7}{ms:10.3f}{ms / howto:9.1f}x{ms - library:+10.3f}")
    print(f"{'the restricted policy':44}{len(whole_text.splitlines()):7}{whole:10.3f}{whole / howto:9.1f}x"
          f"{whole - library:+10.3f}")
    print(
        f"the library alone is {library / howto:.1f}x the how-to (the goal for the whole policy is <= 20x); "
        f"the rules add {whole - library:.1f} ms together, {added:.1f} ms one by one (each one alone also "
        "pulls in the library's helpers it shares with others)"
    )


def restricted_config() -> dict[str, Any]:
    values = variables(profile="restricted")
    return policy_config({k: v for k, v in values.items() if k in POLICY_VARIABLES})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="rounds of each policy-file mode column")
    parser.add_argument(
        "--eval-rounds", type=int, default=200,
        help="rounds of the how-to and of each bundle, interleaved with the policy-file columns",
    )
    parser.add_argument("--regopy", action="store_true", help="add regopy's compile + evaluate figures")
    parser.add_argument(
        "--breakdown", action="store_true",
        help="add policy-file mode's cost by part: the library alone, each rule alone on top of it",
    )
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="wall time (default), or this process's CPU time (all its threads, Go's garbage "
        "collector included): steadier than wall time on a machine other work is loading",
    )
    parser.add_argument(
        "--stat", choices=sorted(STATS), default="median",
        help="median of the rounds (default), or the fastest round (least disturbed by other work)",
    )
    args = parser.parse_args()
    global CLOCK, STAT
    CLOCK = CLOCKS[args.clock]
    STAT = STATS[args.stat]

    singles = {
        "restricted": render("v1", profile="restricted"),
        "baseline": render("v1", profile="baseline"),
        # the same restricted policy assembled from the whole sources (comments, every helper,
        # the branches this config disables): what the compact file is measured against
        "restricted whole": assemble_policy(_sources(), restricted_config(), "v1", compact=False),
    }
    bundles = {
        "restricted": bundle_files(profile="restricted"),
        "baseline": bundle_files(profile="baseline"),
    }
    print(
        f"OPA's engine ({_version()}, OPA 1.20.2); {platform.machine()}; {args.stat} of {args.rounds} "
        f"(file modes) and of {args.eval_rounds} (how-to, bundles), interleaved; "
        f"{args.clock} time; load average {os.getloadavg()[0]:.1f}"
    )
    print("milliseconds per request")
    print(
        "policy sizes: how-to: "
        + f"{len(HOWTO_POLICY_V1.splitlines())} lines; "
        + "; ".join(f"{k} single file: {len(v.splitlines())} lines" for k, v in singles.items())
        + "; "
        + "; ".join(
            f"{k} bundle: {sum(len(c.splitlines()) for c in _rego(v))} lines of Rego in {len(_rego(v))} files"
            for k, v in bundles.items()
        )
    )
    cols = ["how-to file", "restricted file", "baseline file", "restr. whole file", "restricted bundle",
            "baseline bundle"]
    header = f"{'request':38}" + "".join(f"{c:>19}" for c in cols)
    header += f"{'file/how-to':>13}{'bundle/how-to':>15}"
    print(header)
    print("-" * len(header))
    worst_file = worst_bundle = 0.0
    for label, req in REQUESTS.items():
        doc = build_input(req)
        measured = interleaved_ms({
            "how-to": (file_mode(HOWTO_POLICY_V1, doc), args.eval_rounds),
            "restricted file": (file_mode(singles["restricted"], doc), args.rounds),
            "baseline file": (file_mode(singles["baseline"], doc), args.rounds),
            "whole file": (file_mode(singles["restricted whole"], doc), args.rounds),
            "restricted bundle": (bundle_mode(bundles["restricted"], doc), args.eval_rounds),
            "baseline bundle": (bundle_mode(bundles["baseline"], doc), args.eval_rounds),
        })
        howto = measured["how-to"]
        restricted_file, baseline_file = measured["restricted file"], measured["baseline file"]
        whole_file = measured["whole file"]
        restricted_bundle, baseline_bundle = measured["restricted bundle"], measured["baseline bundle"]
        ratio_file = restricted_file / howto
        ratio_bundle = restricted_bundle / howto
        worst_file = max(worst_file, ratio_file)
        worst_bundle = max(worst_bundle, ratio_bundle)
        times = [howto, restricted_file, baseline_file, whole_file, restricted_bundle, baseline_bundle]
        print(
            f"{label:38}"
            + "".join(f"{t:19.3f}" for t in times)
            + f"{ratio_file:12.1f}x{ratio_bundle:14.2f}x"
        )
    print(
        f"worst ratios: restricted policy-file mode {worst_file:.1f}x the how-to's compile + evaluate "
        f"(goal <= 20x); restricted bundle mode {worst_bundle:.2f}x (goal <= 2x)"
    )
    if args.regopy:
        print()
        print(f"regopy (rego-cpp, not the plugin's engine), compile + evaluate, "
              f"{args.stat} of {args.rounds}:")
        v0_restricted = render("v0", profile="restricted")
        header = f"{'request':38}{'how-to v0':>14}{'restricted v1':>16}{'restricted v0':>16}{'ratio v1':>10}"
        print(header)
        print("-" * len(header))
        for label, req in REQUESTS.items():
            doc = build_input(req)
            with _native_stdout_silenced():
                measured = interleaved_ms({
                    "how-to": (regopy_file_mode(HOWTO_POLICY_V0, doc), args.rounds),
                    "v1": (regopy_file_mode(singles["restricted"], doc), args.rounds),
                    "v0": (regopy_file_mode(v0_restricted, doc), args.rounds),
                })
            howto, v1, v0 = measured["how-to"], measured["v1"], measured["v0"]
            print(f"{label:38}{howto:14.2f}{v1:16.2f}{v0:16.2f}{v1 / howto:9.1f}x")
    if args.breakdown:
        breakdown(args.rounds, args.eval_rounds)


if __name__ == "__main__":
    main()
