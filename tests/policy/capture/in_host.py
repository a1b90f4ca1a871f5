"""Capture the CLI scenarios with another Debian release's docker.io, inside its DinD host.

    .venv/bin/python -m tests.policy.capture.in_host bullseye|trixie [--only TEXT] [--out DIR]

The engine matrix (docs/engines.md): each release's own CLI against that release's own
dockerd, so the corpus holds what Docker 20.10.5 (API 1.41, Debian 11) and 26.1.5 (API 1.45,
Debian 13) really send to an authorization plugin. It starts one disposable host of
local/dind-host-<suite> (tests/lib/dind.py), copies this capture tool and the machine's static
busybox into it, and runs `python3 -m tests.policy.capture` there with
HARDENING_CAPTURE_CLIS={"cli-<version>": "/usr/bin/docker"} (the private dockerd of the capture
is the release's own /usr/sbin/dockerd). Only the CLI scenarios run (SDK and raw requests are the
same bytes whatever the CLI). The files land in tests/policy/corpus as <id>.cli-<version>.json;
the host is removed afterwards, whatever happened. The host shares the machine's loopback
(--network host): the registry on 127.0.0.1:5000 must be up (scripts/testenv.sh up).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.images import build as images  # noqa: E402
from tests.lib import dind  # noqa: E402

# The client id of each release's CLI (its docker.io's major.minor(.patch) line).
CLIENTS = {"bullseye": "cli-20.10.5", "trixie": "cli-26.1"}
DEFAULT_OUT = ROOT / "tests" / "policy" / "corpus"


def log(msg: str) -> None:
    print(f"[capture-in-host] {msg}", flush=True)


def capture(suite: str, out: Path, only: Sequence[str] = ()) -> int:
    client = CLIENTS[suite]
    images.build([dind.builder(suite), "busybox"])
    key = dind.generate_key(dind.CLI_DIR / "id_ed25519")
    host = dind.start_host(key, image=dind.suite_image(suite))
    try:
        host.wait_ready(load=())
        cli = host.docker("version", "--format", "{{.Client.Version}} {{.Server.Version}}").stdout.split()
        log(f"{host.name}: Debian {suite}, CLI {cli[0]}, dockerd {cli[1]}")
        # The host's own dockerd is not needed: the capture starts a private one.
        host.stop_dockerd()
        subprocess.run(["docker", "cp", "/bin/busybox", f"{host.name}:/bin/busybox"], check=True)
        host.exec("mkdir", "-p", "/opt/capture/tests/policy")
        subprocess.run(
            ["docker", "cp", str(ROOT / "tests/policy/capture"), f"{host.name}:/opt/capture/tests/policy/"],
            check=True,
        )
        host.exec("mkdir", "-p", "/opt/capture/out")
        args = ["--keep-old", "--out", "/opt/capture/out"]
        for text in only or [f".{client}"]:
            args += ["--only", text]
        t0 = time.monotonic()
        env = json.dumps({client: "/usr/bin/docker"})
        proc = subprocess.run(
            [
                "docker",
                "exec",
                "-w",
                "/opt/capture",
                "-e",
                f"HARDENING_CAPTURE_CLIS={env}",
                "-e",
                "PYTHONDONTWRITEBYTECODE=1",
                host.name,
                "python3",
                "-m",
                "tests.policy.capture",
                *args,
            ],
            check=False,
            timeout=1800,
        )
        log(f"capture in {host.name} exited {proc.returncode} after {time.monotonic() - t0:.0f}s")
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["docker", "cp", f"{host.name}:/opt/capture/out/.", tmp], check=True)
            files = sorted(Path(tmp).glob(f"*.{client}.json"))
            out.mkdir(parents=True, exist_ok=True)
            for f in files:
                (out / f.name).write_bytes(f.read_bytes())
        log(f"{len(files)} scenario files written to {out}")
        return proc.returncode
    finally:
        host.remove()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.policy.capture.in_host", description=__doc__)
    ap.add_argument("suite", choices=sorted(CLIENTS))
    ap.add_argument(
        "--only", action="append", default=[], help="ids to capture (default: all CLI ones)"
    )
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    try:
        return capture(args.suite, args.out, args.only)
    except (dind.DindError, images.BuildError) as e:
        print(f"[capture-in-host] ERROR: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
