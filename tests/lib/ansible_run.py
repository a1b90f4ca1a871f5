"""Run real ansible-playbook processes from tests and read back their task results."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CALLBACKS = Path(__file__).resolve().parent / "callback_plugins"


@dataclass
class PlaybookRun:
    returncode: int
    stdout: str
    stderr: str
    results: list[dict[str, Any]] = field(default_factory=list)

    def recap(self, host: str = "localhost") -> dict[str, int]:
        m = re.search(rf"^{re.escape(host)}\s+:\s+(.*)$", self.stdout, re.M)
        if not m:
            raise AssertionError(f"no PLAY RECAP line for {host}:\n{self.stdout}\n{self.stderr}")
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1))}

    def task(self, name: str, host: str | None = None) -> dict[str, Any]:
        found = [r for r in self.results if r["task"] == name and (host is None or r["host"] == host)]
        if not found:
            raise AssertionError(f"no result for task {name!r}; have {[r['task'] for r in self.results]}")
        return found[-1]


def ansible_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "ANSIBLE_CALLBACK_PLUGINS": str(CALLBACKS),
            "ANSIBLE_CALLBACKS_ENABLED": "jsonl_results",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_LOCAL_TEMP": "/tmp/.ansible-tests/tmp",
            "ANSIBLE_REMOTE_TEMP": "/tmp/.ansible-tests/remote",
            "PATH": f"{BIN}:{env.get('PATH', '')}",
        }
    )
    env.update(extra or {})
    return env


def run_playbook(
    playbook: str | Path,
    tmp_path: Path,
    *,
    extra_vars: dict[str, Any] | None = None,
    args: list[str] | None = None,
    inventory: str | Path | None = None,
    env: dict[str, str] | None = None,
    timeout: int = 600,
    ansible_playbook: str | Path | None = None,
) -> PlaybookRun:
    """Run ansible-playbook. `playbook` is a path, or YAML text written to tmp_path."""
    if isinstance(playbook, str) and "\n" in playbook:
        path = tmp_path / f"play-{len(list(tmp_path.glob('play-*.yml')))}.yml"
        path.write_text(playbook)
        playbook = path
    results_file = tmp_path / f"results-{os.getpid()}-{len(list(tmp_path.glob('results-*')))}.jsonl"
    cmd = [str(ansible_playbook or BIN / "ansible-playbook"), str(playbook)]
    if inventory is not None:
        cmd += ["-i", str(inventory)]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    cmd += args or []
    proc = subprocess.run(
        cmd,
        cwd=ROOT,
        env=ansible_env({"HARDENING_RESULTS_FILE": str(results_file), **(env or {})}),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    results = []
    if results_file.exists():
        results = [json.loads(line) for line in results_file.read_text().splitlines() if line.strip()]
    return PlaybookRun(proc.returncode, proc.stdout, proc.stderr, results)
