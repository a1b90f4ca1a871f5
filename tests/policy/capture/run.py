"""Capture the corpus: run every scenario against a private dockerd and write one JSON per scenario.

Usage: ``.venv/bin/python -m tests.policy.capture [--only SUBSTRING] [--out DIR]``
(see tests/policy/corpus/README.md). Needs root, dockerd, both docker CLIs, busybox-static and
the registry on 127.0.0.1:5000 (``scripts/testenv.sh up``). Everything it starts is stopped at
the end, whatever happens.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
import traceback
from pathlib import Path
from typing import Any

from . import scenarios as sc
from .env import (
    DATA_PATH_PORT,
    DOCKER_HOST,
    STATE,
    SWARM_PORT,
    LoggingPlugin,
    PrivateDaemon,
    api,
    raw_http,
    wipe_state,
)

ROOT = Path(__file__).resolve().parents[3]
DEFAULT_OUT = ROOT / "tests" / "policy" / "corpus"
FIXTURE_LABEL = "hardening.capture.fixture"
# The CLI that sets up fixtures (CLI 28 here; the only CLI of an in-host capture).
CLI28 = sc.CLIS.get("cli-28") or next(iter(sc.CLIS.values()))


def log(msg: str) -> None:
    print(f"[capture] {msg}", flush=True)


def docker(
    args: list[str],
    *,
    binary: str = CLI28,
    env: dict[str, str] | None = None,
    check: bool = True,
    stdin: bytes | None = None,
    timeout: float = 180,
) -> subprocess.CompletedProcess[bytes]:
    full_env = dict(os.environ, DOCKER_HOST=DOCKER_HOST, DOCKER_CONFIG=str(STATE / "docker-config"))
    full_env.pop("DOCKER_CONTEXT", None)
    full_env.update(env or {})
    proc = subprocess.run(
        [binary, *args], env=full_env, input=stdin, capture_output=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"{binary} {shlex.join(args)} failed: {proc.stderr.decode(errors='replace')[-800:]}"
        )
    return proc


# --------------------------------------------------------------------------- set-up


def prepare_files() -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    (STATE / "docker-config").mkdir(exist_ok=True)
    (STATE / "shared").mkdir(exist_ok=True)
    (STATE / "plugin-etc").mkdir(exist_ok=True)
    link = Path(sc.LINK_TO_ROOT)
    if not link.is_symlink():
        link.symlink_to("/")
    busybox_dir = STATE / "busybox-rootfs"
    (busybox_dir / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2("/bin/busybox", busybox_dir / "bin" / "busybox")
    applets = subprocess.run(
        ["/bin/busybox", "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        target = busybox_dir / "bin" / applet
        if applet != "busybox" and not target.exists():
            target.symlink_to("busybox")
    for sub in ("tmp", "etc", "proc", "sys", "dev"):
        (busybox_dir / sub).mkdir(exist_ok=True)
    (busybox_dir / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/tmp:/bin/sh\n"
    )
    (busybox_dir / "etc" / "group").write_text("root:x:0:\nuser:x:1000:\n")
    ctx = Path(sc.BUILD_CTX)
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(
        f"FROM {sc.IMG}\nLABEL org.example.capture=1\nCOPY hello.txt /hello.txt\n"
    )
    (ctx / "hello.txt").write_text("hello\n")
    with tarfile.open(sc.IMPORT_TAR, "w") as tar:
        tar.add(ctx / "hello.txt", arcname="hello.txt")
    src = STATE / "plugin-src"
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(busybox_dir, src / "rootfs", symlinks=True)
    (src / "config.json").write_text(
        json.dumps(
            {
                "description": "hardening capture test plugin (never answers)",
                "documentation": "https://example.invalid/capture",
                "entrypoint": ["/bin/sleep", "3600"],
                "interface": {"types": ["docker.authz/1.0"], "socket": "capture.sock"},
                "network": {"type": "host"},
                "mounts": [
                    {
                        "name": "policy",
                        "source": str(STATE / "plugin-etc"),
                        "destination": "/opa",
                        "type": "none",
                        "options": ["rbind", "ro"],
                        "settable": ["source"],
                    }
                ],
                "env": [{"name": "DEBUG", "description": "debug", "settable": ["value"], "value": "0"}],
                "args": {"name": "opa-args", "description": "args", "settable": ["value"], "value": []},
            },
            indent=2,
        )
    )


def setup_daemon_content() -> None:
    log("importing busybox")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(STATE / "busybox-rootfs", arcname=".")
    docker(
        ["import", "--change", "ENV PATH=/bin", "--change", 'CMD ["sh"]', "-", sc.IMG], stdin=buf.getvalue()
    )
    for ref in (sc.HUB_IMG, sc.QUAY_IMG):
        docker(["tag", sc.IMG, ref])
    log("pushing busybox and the test plugin to the local registry")
    docker(["push", sc.IMG])
    for ref in (sc.PLUGIN_REF_1, sc.PLUGIN_REF_2):
        docker(["plugin", "create", ref, str(STATE / "plugin-src")])
        docker(["plugin", "push", ref])
        docker(["plugin", "rm", "-f", ref])
    log("starting fixture containers")
    docker(
        [
            "run",
            "-d",
            "--name",
            sc.EXEC_C,
            "--label",
            f"{FIXTURE_LABEL}=1",
            *sc.RESTRICTED,
            sc.IMG,
            "sleep",
            "3600",
        ]
    )
    docker(
        [
            "create",
            "--name",
            sc.UPDATE_C,
            "--label",
            f"{FIXTURE_LABEL}=1",
            *sc.RESTRICTED,
            "--memory-swap",
            "128m",
            sc.IMG,
            "sleep",
            "3600",
        ]
    )
    log("swarm init")
    addr = f"127.0.0.1:{SWARM_PORT}"
    proc = docker(
        [
            "swarm",
            "init",
            "--advertise-addr",
            addr,
            "--listen-addr",
            addr,
            "--data-path-port",
            str(DATA_PATH_PORT),
        ],
        check=False,
    )
    if proc.returncode != 0:
        log(f"swarm init failed (service scenarios will fail): {proc.stderr.decode(errors='replace')[-300:]}")


# --------------------------------------------------------------------------- between scenarios


def cleanup(*, services: bool = False) -> None:
    _, containers = api("GET", "/containers/json?all=1")
    for c in containers or []:
        if FIXTURE_LABEL in (c.get("Labels") or {}):
            continue
        if "com.docker.swarm.service.id" in (c.get("Labels") or {}) and not services:
            continue
        api("DELETE", f"/containers/{c['Id']}?force=1&v=1")
    if services:
        _, svcs = api("GET", "/services")
        for s in svcs if isinstance(svcs, list) else []:
            api("DELETE", f"/services/{s['ID']}")
    _, nets = api("GET", "/networks")
    for n in nets if isinstance(nets, list) else []:
        if n["Name"] not in ("bridge", "host", "none", "ingress", "docker_gwbridge"):
            api("DELETE", f"/networks/{n['Id']}")
    _, vols = api("GET", "/volumes")
    for v in (vols or {}).get("Volumes") or []:
        api("DELETE", f"/volumes/{v['Name']}?force=1")


def effective() -> list[dict[str, Any]]:
    """What the daemon actually created: the settings a policy cares about, non-default ones only."""
    out: list[dict[str, Any]] = []
    _, containers = api("GET", "/containers/json?all=1")
    for c in containers or []:
        labels = c.get("Labels") or {}
        if FIXTURE_LABEL in labels or "com.docker.swarm.service.id" in labels:
            continue
        _, info = api("GET", f"/containers/{c['Id']}/json")
        if not isinstance(info, dict):
            continue
        hc, cfg = info.get("HostConfig") or {}, info.get("Config") or {}
        item: dict[str, Any] = {}
        for key in (
            "Privileged",
            "CapAdd",
            "SecurityOpt",
            "NetworkMode",
            "PidMode",
            "IpcMode",
            "UTSMode",
            "UsernsMode",
            "CgroupnsMode",
            "Binds",
            "Devices",
            "DeviceCgroupRules",
            "ReadonlyRootfs",
            "Memory",
            "MemorySwap",
            "NanoCpus",
            "PidsLimit",
            "PortBindings",
            "PublishAllPorts",
        ):
            val = hc.get(key)
            if val not in (None, False, "", [], {}, 0, "default", "private"):
                item[key] = val
        if item.get("MemorySwap") == 2 * item.get("Memory", -1):
            del item["MemorySwap"]  # the daemon's default: twice Memory
        if hc.get("MaskedPaths") == []:
            item["MaskedPaths"] = []
        mounts = [f"{m.get('Type')}:{m.get('Source')}" for m in hc.get("Mounts") or []]
        if mounts:
            item["Mounts"] = mounts
        item["User"] = cfg.get("User", "")
        env_names = [e.split("=", 1)[0] for e in cfg.get("Env") or [] if not e.startswith("PATH=")]
        if env_names:
            item["Env"] = env_names
        out.append(item)
    _, vols = api("GET", "/volumes")
    for v in (vols or {}).get("Volumes") or []:
        out.append({"volume": v["Name"], "Options": v.get("Options") or {}})
    return out


_NOISE = [
    (re.compile(r"SWMTKN-1-[0-9a-z]+-[0-9a-z]+"), "<join-token>"),
    (re.compile(r"sha256:[0-9a-f]{64}"), "sha256:<digest>"),
    (re.compile(r"\b[0-9a-f]{64}\b"), "<id>"),
    (re.compile(r"\b[0-9a-z]{25}\b"), "<swarm-id>"),
    (re.compile(r"\b[0-9a-f]{12}\b"), "<short-id>"),
]


def denoise(text: str) -> str:
    for pattern, repl in _NOISE:
        text = pattern.sub(repl, text)
    return text


def outcome_text(head: str) -> str:
    made = effective()
    text = head if not made else f"{head}; daemon state: {json.dumps(made, sort_keys=True)}"
    return denoise(text)


# --------------------------------------------------------------------------- scenario actions


def _last_line(data: bytes) -> str:
    lines = [ln.strip() for ln in data.decode(errors="replace").splitlines() if ln.strip()]
    return lines[-1][:400] if lines else ""


def cli_action(binary: str, args: list[str], env: dict[str, str]) -> Any:
    def run(_: Any) -> str:
        proc = docker(args, binary=binary, env=env, check=False)
        if proc.returncode == 0:
            return f"exit 0: {_last_line(proc.stdout)[:200]}"
        return f"exit {proc.returncode}: {_last_line(proc.stderr)}"

    return run


def sdk_action(code: str) -> Any:
    def run(_: Any) -> str:
        import docker as docker_sdk

        client = docker_sdk.DockerClient(base_url=DOCKER_HOST, version="auto", timeout=120)
        try:
            exec(code, {"client": client, "docker": docker_sdk, "IMG": sc.IMG})
            head = "ok"
        except Exception as exc:
            head = f"error: {type(exc).__name__}: {str(exc)[:300]}"
        finally:
            client.close()
        return head

    return run


def build_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in ("Dockerfile", "hello.txt"):
            tar.add(Path(sc.BUILD_CTX) / name, arcname=name)
    return buf.getvalue()


def raw_request_bytes(spec: sc.RawSpec, *, for_display: bool = False) -> bytes:
    body = spec.body
    if body is None:
        is_tar = spec.content_type == "application/x-tar"
        body = (b"<tar>" if for_display else build_tar()) if is_tar else b""
    lines = [f"{spec.method} {spec.path} HTTP/1.1", "Host: docker", "User-Agent: hardening-capture-raw/1"]
    if spec.content_type:
        lines.append(f"Content-Type: {spec.content_type}")
    lines += [f"{k}: {v}" for k, v in spec.extra_headers]
    if spec.chunked:
        lines.append("Transfer-Encoding: chunked")
        payload = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    else:
        lines.append(f"Content-Length: {len(body)}")
        payload = body
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


def raw_command_text(spec: sc.RawSpec) -> str:
    request = raw_request_bytes(spec, for_display=True)
    head, _, body = request.partition(b"\r\n\r\n")
    shown = spec.command_body or body.decode(errors="replace")
    return head.decode() + "\n\n" + shown


def raw_action(spec: sc.RawSpec) -> Any:
    def run(_: Any) -> str:
        status, body = raw_http(raw_request_bytes(spec))
        return f"HTTP {status}: {body.decode(errors='replace').strip()[:300]}"

    return run


# --------------------------------------------------------------------------- the list


def build_scenarios() -> list[tuple[sc.Scenario, dict[str, Any]]]:
    """All scenarios in run order, each with its group flags (cleanup of services etc.)."""
    out: list[tuple[sc.Scenario, dict[str, Any]]] = []

    def add_cli(spec: sc.CliSpec, client: str, binary: str, fmt: dict[str, str], group: str) -> None:
        args = [a.format(**fmt) for a in spec.args]
        env_prefix = " ".join(f"{k}={v}" for k, v in spec.env.items())
        command = (env_prefix + " " if env_prefix else "") + shlex.join([binary, *args])
        out.append(
            (
                sc.Scenario(
                    id=f"{spec.base_id}.{client}",
                    description=spec.description,
                    client=client,
                    command=command,
                    rules=list(spec.rules),
                    compliant=spec.compliant,
                    action=cli_action(binary, args, spec.env),
                    bypass_class=spec.bypass_class,
                    fs_links=spec.fs_links,
                ),
                {"group": group},
            )
        )

    for client, binary in sc.CLIS.items():
        short = client.replace("cli-", "").replace(".", "")
        fmt = {"alias": f"capture-plugin-{short}", "svc": f"capture-svc-{short}"}
        for spec in sc.CLI_SPECS:
            if spec.only in (None, client):
                add_cli(spec, client, binary, fmt, "cli")
        for spec in sc.PLUGIN_SPECS:
            add_cli(spec, client, binary, fmt, "plugin")
        for spec in sc.SERVICE_SPECS:
            add_cli(spec, client, binary, fmt, "service")
        out[-1][1]["end_of_services"] = True

    for sid, desc, code, rules, compliant in sc.SDK_SPECS:
        out.append(
            (
                sc.Scenario(
                    id=sid,
                    description=desc,
                    client="sdk",
                    command=code,
                    rules=rules,
                    compliant=compliant,
                    action=sdk_action(code),
                ),
                {"group": "sdk"},
            )
        )
    restricted_host = (
        ", mem_limit='64m', nano_cpus=500_000_000, pids_limit=100, "
        "security_opt=['no-new-privileges'], cap_drop=['ALL'], read_only=True"
    )
    for sid, desc, extra_host, extra_create, rules in (
        (
            "sdk-compose-sequence",
            "compose-like: network, volume, two labelled containers started",
            "",
            "",
            [sc.NNP, sc.LIMITS, sc.ROOT, sc.RO],
        ),
        (
            "sdk-compose-sequence-restricted",
            "compose-like sequence whose services comply with restricted",
            restricted_host,
            ", user='1000:1000'",
            [],
        ),
    ):
        code = sc.COMPOSE_CODE.replace("{extra_host}", extra_host).replace("{extra_create}", extra_create)
        out.append(
            (
                sc.Scenario(
                    id=sid, description=desc, client="sdk", command=code, rules=rules, action=sdk_action(code)
                ),
                {"group": "sdk"},
            )
        )

    for spec in sc.RAW_SPECS:
        out.append(
            (
                sc.Scenario(
                    id=spec.id,
                    description=spec.description,
                    client="raw",
                    command=raw_command_text(spec),
                    rules=list(spec.rules),
                    compliant=spec.compliant,
                    action=raw_action(spec),
                    crafted=spec.crafted,
                    bypass_class=spec.bypass_class,
                    policy_can_stop=spec.policy_can_stop,
                    always_deny=spec.always_deny,
                ),
                {"group": "raw", "services": spec.path.startswith(f"{sc.API}/services")},
            )
        )
    return out


def write_scenario(out_dir: Path, scen: sc.Scenario, outcome: str, requests: list[dict[str, Any]]) -> None:
    doc: dict[str, Any] = {
        "id": scen.id,
        "description": scen.description,
        "client": scen.client,
        "command": scen.command,
        "rules": scen.rules,
        "compliant": scen.profiles(),
        "crafted": scen.crafted,
        "daemon_outcome": outcome,
    }
    if scen.bypass_class:
        doc["bypass_class"] = scen.bypass_class
    if not scen.policy_can_stop:
        doc["policy_can_stop"] = False
    if scen.always_deny:
        doc["always_deny"] = True
    if scen.fs_links:
        doc["fs_links"] = scen.fs_links
    # One key per line, one request per line: reviewable diffs, small files.
    lines = [f" {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}," for k, v in doc.items()]
    reqs = [f"  {json.dumps(r, separators=(',', ':'), ensure_ascii=False)}" for r in requests]
    text = (
        "{\n"
        + "\n".join(lines)
        + '\n "requests": ['
        + ("\n" + ",\n".join(reqs) + "\n " if reqs else "")
        + "]\n}\n"
    )
    json.loads(text)
    (out_dir / f"{scen.id}.json").write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.policy.capture", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="corpus folder (default: %(default)s)")
    parser.add_argument("--only", action="append", default=[], help="capture only ids containing this text")
    parser.add_argument("--keep-old", action="store_true", help="do not delete corpus files first")
    opts = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("capture needs root (it starts a private dockerd)", file=sys.stderr)
        return 2
    opts.out.mkdir(parents=True, exist_ok=True)
    scenario_list = [
        (s, g) for s, g in build_scenarios() if not opts.only or any(o in s.id for o in opts.only)
    ]
    if not opts.only and not opts.keep_old:
        for old in opts.out.glob("*.json"):
            old.unlink()

    started = time.monotonic()
    wipe_state()
    prepare_files()
    plugin = LoggingPlugin()
    daemon = PrivateDaemon()
    failures = 0
    try:
        daemon.start()
        setup_daemon_content()
        for scen, group in scenario_list:
            mark = plugin.mark()
            try:
                head = scen.action(scen)
            except Exception as exc:
                head = f"capture error: {type(exc).__name__}: {exc}"
                traceback.print_exc()
                failures += 1
            time.sleep(0.05)
            requests = plugin.since(mark)  # before outcome_text() makes API calls of its own
            outcome = outcome_text(head)
            write_scenario(opts.out, scen, outcome, requests)
            log(f"{scen.id}: {len(requests)} requests; {outcome[:120]}")
            try:
                cleanup(services=bool(group.get("end_of_services") or group.get("services")))
            except Exception as exc:
                log(f"cleanup after {scen.id} failed: {exc}")
    finally:
        try:
            docker(["swarm", "leave", "--force"], check=False, timeout=60)
        except Exception as exc:
            log(f"swarm leave failed: {exc}")
        daemon.stop()
        plugin.stop()
        wipe_state()
        log(
            f"stopped everything; {len(scenario_list)} scenarios in {time.monotonic() - started:.0f} s, "
            f"{failures} capture errors"
        )
    return 1 if failures else 0
