"""Benchmark (not a test): wall time of harden.yml against a floor, on fleets of 1, 4 and 8 hosts.

    .venv/bin/python -m tests.bench.bench_fleet [--hosts 1,4,8] [--repeat 3] [--out results.json]
                                                [--policy-mode file|bundle] [--first-repeat 3]
    make bench-fleet BENCH_ARGS="--hosts 1,8 --repeat 5"

--policy-mode sets docker_authz_policy_mode for every host (default: the role's default, policy-file
mode). In policy-file mode the plugin compiles the policy on every request, so the verification's
probes cost a compile each; in bundle mode it compiles once per activation (docs/policy.md).

For each fleet size N: start N fresh Docker-in-Docker hosts (in parallel, not timed), run the
floor playbook (tests/bench/floor.yml: ten trivial module calls - file, stat, copy, command,
slurp, twice each - with harden.yml's play settings), then the real `ansible-playbook
playbooks/harden.yml` over SSH (first converge), then --repeat times alternately the floor
and harden.yml again (no-change re-runs: floor, harden, floor, harden ...), and remove the
hosts; with --first-repeat K, K-1 more first converges follow, each on N new hosts (the first
converge is one run per fleet, and one run is noisy: the table gives the median of K). The
controller's compile cache starts empty for each fleet size and each first converge (its own
XDG_CACHE_HOME), whatever the user's cache holds. Forks = max(N, 5), so every host of a fleet
runs in parallel. The machine is shared and noisy: the table gives medians and the 1-minute load
average before each kind of run.

Ratios printed: no-change re-run / floor (median of each, same fleet, same run), and the goal
of the first converge: first(8) <= 1.5 x floor(8) + first(1) (when 1 and 8 were measured).

Per host it counts, from the test callback's JSON lines (tests/lib/callback_plugins):
- tasks: task results reported for the host, split ok / changed / skipped / failed;
- module calls: executed (not skipped) tasks whose action runs a module on the managed host,
  i.e. not a controller-only action (set_fact, debug, assert, fail, meta, include/import)
  and not delegated to the controller (the policy compile runs on localhost, once per play);
- probes: how many the verification sent (2 for the quick proof, the table otherwise).
It also prints the five slowest tasks of each run (result time minus task start time, the
slowest host).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.images import build as images  # noqa: E402
from tests.lib import dind  # noqa: E402
from tests.lib.ansible_run import run_playbook  # noqa: E402

CONTROLLER_ACTIONS = {
    "set_fact",
    "debug",
    "assert",
    "fail",
    "meta",
    "include_tasks",
    "import_tasks",
    "include_role",
    "import_role",
    "include_vars",
    "add_host",
    "group_by",
    "validate_argument_spec",  # the role's meta/argument_specs.yml check, in the controller
}


def _short(action: str) -> str:
    return action.rsplit(".", 1)[-1]


def count(results: list[dict[str, Any]], host: str) -> dict[str, int]:
    mine = [r for r in results if r["host"] == host]
    out = {"tasks": len(mine), "ok": 0, "changed": 0, "skipped": 0, "failed": 0, "module_calls": 0}
    for r in mine:
        status = r["status"]
        if status == "ok" and r["result"].get("changed"):
            out["changed"] += 1
        elif status in out:
            out[status] += 1
        if status != "skipped" and _short(r["action"]) not in CONTROLLER_ACTIONS and not r.get("delegated"):
            out["module_calls"] += 1
    return out


def slowest(results: list[dict[str, Any]], n: int = 5) -> list[tuple[str, float]]:
    per_task: dict[str, float] = defaultdict(float)
    for r in results:
        if r.get("task_start") and r["status"] != "skipped":
            per_task[r["task"]] = max(per_task[r["task"]], r["time"] - r["task_start"])
    return sorted(per_task.items(), key=lambda kv: -kv[1])[:n]


def docker_version() -> str:
    return subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True, check=False
    ).stdout.strip()


def ansible_version() -> str:
    out = subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), "--version"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return out.splitlines()[0] if out else "?"


FLOOR = ROOT / "tests" / "bench" / "floor.yml"


def _probes(results: list[dict[str, Any]]) -> int | None:
    sent = [
        r["result"].get("counts", {}).get("total")
        for r in results
        if r["action"].endswith("authz_verify") and r["status"] != "skipped"
    ]
    return max(sent) if sent else None


def run_size(
    n: int,
    key: Path,
    plugin_ref: str,
    work: Path,
    repeat: int,
    policy_mode: str | None = None,
    first_repeat: int = 1,
) -> dict[str, Any]:
    t0 = time.monotonic()
    hosts = dind.start_hosts(n, key)
    started = time.monotonic() - t0
    try:
        host_vars: dict[str, Any] = {"docker_authz_plugin_image": plugin_ref}
        if policy_mode:
            host_vars["docker_authz_policy_mode"] = policy_mode
        inventory = dind.write_inventory(work / f"inventory-{n}.yml", hosts, **host_vars)
        # the controller's compile cache of this size's runs starts empty, whatever the user's holds
        env = {"ANSIBLE_FORKS": str(max(n, 5)), "XDG_CACHE_HOME": str(work / f"cache-{n}")}
        row: dict[str, Any] = {
            "hosts": n,
            "forks": max(n, 5),
            "policy_mode": policy_mode or "file (role default)",
            "hosts_ready_s": round(started, 1),
        }
        times: dict[str, list[float]] = defaultdict(list)
        loads: dict[str, list[float]] = defaultdict(list)
        plan = ["floor", "first"] + ["floor", "rerun"] * repeat
        for i, label in enumerate(plan):
            out = work / f"{label}-{n}-{i}"
            out.mkdir()
            loads[label].append(round(os.getloadavg()[0], 2))
            playbook = FLOOR if label == "floor" else ROOT / "playbooks" / "harden.yml"
            t = time.monotonic()
            run = run_playbook(playbook, out, inventory=inventory, env=env, timeout=1800)
            times[label].append(round(time.monotonic() - t, 1))
            if run.returncode != 0:
                raise SystemExit(f"{playbook.name} failed on {n} host(s) ({label}):\n{run.stdout[-4000:]}")
            if label == "rerun":
                row.setdefault("rerun_changed_runs", []).append(
                    sum(1 for r in run.results if r["status"] != "skipped" and r["result"].get("changed"))
                )
            if label == "floor" or f"{label}_counts" in row:
                continue
            counts = [count(run.results, h.name) for h in hosts]
            row[f"{label}_counts"] = counts[0] if len({json.dumps(c) for c in counts}) == 1 else counts
            row[f"{label}_changed_total"] = sum(c["changed"] for c in counts)
            row[f"{label}_probes"] = _probes(run.results)
            row[f"{label}_slowest"] = [(t, round(s, 1)) for t, s in slowest(run.results)]
        # more first converges, each on new hosts with an empty compile cache: one run is noisy
        for k in range(1, first_repeat):
            for h in hosts:
                h.remove()
            hosts = dind.start_hosts(n, key)
            inventory = dind.write_inventory(work / f"inventory-{n}-{k}.yml", hosts, **host_vars)
            out = work / f"first-{n}-again-{k}"
            out.mkdir()
            loads["first"].append(round(os.getloadavg()[0], 2))
            t = time.monotonic()
            first_env = {**env, "XDG_CACHE_HOME": str(work / f"cache-{n}-first-{k}")}
            run = run_playbook(
                ROOT / "playbooks" / "harden.yml", out, inventory=inventory, env=first_env, timeout=1800
            )
            times["first"].append(round(time.monotonic() - t, 1))
            if run.returncode != 0:
                raise SystemExit(
                    f"harden.yml failed on {n} new host(s) (first converge {k + 1}):\n{run.stdout[-4000:]}"
                )
        # the floor's first run creates its files: the medians use the runs after it
        floor = times["floor"][1:] or times["floor"]
        row.update(
            floor_s=statistics.median(floor),
            floor_runs=times["floor"],
            first_s=statistics.median(times["first"]),
            first_runs=times["first"],
            rerun_s=statistics.median(times["rerun"]),
            rerun_runs=times["rerun"],
            load_floor=statistics.median(loads["floor"]),
            load_first=statistics.median(loads["first"]),
            load_rerun=statistics.median(loads["rerun"]),
        )
        row["rerun_ratio"] = round(row["rerun_s"] / row["floor_s"], 2)
        return row
    finally:
        for h in hosts:
            h.remove()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.bench.bench_fleet", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--hosts", default="1,4,8", help="fleet sizes, comma-separated (default 1,4,8)")
    ap.add_argument("--repeat", type=int, default=3, help="no-change re-runs (each after a floor run)")
    ap.add_argument(
        "--first-repeat",
        type=int,
        default=1,
        help="first converges per size, each on new hosts with an empty compile cache (median; default 1)",
    )
    ap.add_argument("--out", help="also write the results as JSON here")
    ap.add_argument(
        "--policy-mode",
        choices=("file", "bundle"),
        help="docker_authz_policy_mode for every host (default: the role's default, file)",
    )
    args = ap.parse_args(argv)
    sizes = [int(x) for x in args.hosts.split(",") if x.strip()]
    if args.repeat < 1:
        raise SystemExit("--repeat must be at least 1")
    if args.first_repeat < 1:
        raise SystemExit("--first-repeat must be at least 1")
    built = images.build(["dind-host", "busybox", "plugin-double"])
    plugin_ref = built["plugin-double"].ref
    env = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "ansible": ansible_version(),
        "docker": docker_version(),
        "policy_mode": args.policy_mode or "file (role default)",
    }
    print(f"[bench] {env}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        work = Path(tmp)
        key = dind.generate_key(work / "id_ed25519")
        for n in sizes:
            what = f"floor, first converge, then floor / re-run x {args.repeat}"
            print(f"[bench] {n} host(s): {what} ...", flush=True)
            rows.append(run_size(n, key, plugin_ref, work, args.repeat, args.policy_mode, args.first_repeat))
            print(f"[bench] {json.dumps(rows[-1])}", flush=True)
    print()
    print("| hosts | forks | floor (median) | first converge | no-change re-run (median) "
          "| re-run / floor | probes (first / re-run) | tasks/host (first: ok/changed/skipped) "
          "| module calls/host (first / re-run) | changed on re-run "
          "| load (floor / first / re-run) |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---|")
    for r in rows:
        f, s = r["first_counts"], r["rerun_counts"]
        f = f if isinstance(f, dict) else f[0]
        s = s if isinstance(s, dict) else s[0]
        print(
            f"| {r['hosts']} | {r['forks']} | {r['floor_s']} s | {r['first_s']} s | {r['rerun_s']} s "
            f"| {r['rerun_ratio']}x | {r['first_probes']} / {r['rerun_probes']} "
            f"| {f['tasks']} ({f['ok']}/{f['changed']}/{f['skipped']}) "
            f"| {f['module_calls']} / {s['module_calls']} | {r['rerun_changed_total']} "
            f"| {r['load_floor']:.1f} / {r['load_first']:.1f} / {r['load_rerun']:.1f} |"
        )
    by_size = {r["hosts"]: r for r in rows}
    print()
    for r in rows:
        verdict = "meets" if r["rerun_ratio"] <= 1.5 else "misses"
        print(f"{r['hosts']} host(s): no-change re-run {r['rerun_s']} s = {r['rerun_ratio']}x "
              f"the floor {r['floor_s']} s ({verdict} <= 1.5x); "
              f"runs {r['rerun_runs']} (tasks changed: {r['rerun_changed_runs']}), "
              f"floor {r['floor_runs']}")  # fmt: skip
    if 1 in by_size and 8 in by_size:
        budget = 1.5 * by_size[8]["floor_s"] + by_size[1]["first_s"]
        verdict = "meets" if by_size[8]["first_s"] <= budget else "misses"
        print(f"first converge of 8 hosts {by_size[8]['first_s']} s vs 1.5 x floor(8) "
              f"{by_size[8]['floor_s']} s + first(1) {by_size[1]['first_s']} s = {budget:.1f} s "
              f"({verdict}: {by_size[8]['first_s'] / budget:.2f}x the budget); "
              f"first converges: 8 hosts {by_size[8]['first_runs']}, "
              f"1 host {by_size[1]['first_runs']}")  # fmt: skip
    for r in rows:
        for label in ("first", "rerun"):
            print(f"\nslowest tasks, {r['hosts']} host(s), {label}:")
            for task, secs in r[f"{label}_slowest"]:
                print(f"  {secs:6.1f} s  {task}")
    if args.out:
        Path(args.out).write_text(json.dumps({"environment": env, "runs": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
