"""The preflight's engine check (tasks/preflight.yml), run as it is written under ansible-playbook.

The task is taken from the role's file and run on localhost with the role's vars/main.yml (where
the engine facts are derived from __docker_authz_version) and crafted answers to GET /version:
an engine that does not answer, one without an API version, Podman, an API older than 1.40, and
a usable engine. Nothing is read from or written to a Docker host.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.lib.ansible_run import run_playbook

ROLE = Path(__file__).resolve().parents[2] / "roles" / "opa_authz"
TASK = "Fail when the Docker Engine does not answer or cannot run authorization plugins"


def _task() -> dict[str, Any]:
    tasks = yaml.safe_load((ROLE / "tasks" / "preflight.yml").read_text())
    found = [t for t in tasks if t.get("name") == TASK]
    assert len(found) == 1, f"preflight.yml has no single task named {TASK!r}"
    return found[0]


def _answer(version: str, api: str, components: list[str] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"Version": version, "ApiVersion": api, "Arch": "amd64"}
    if components is not None:
        doc["Components"] = [{"Name": name} for name in components]
    return {"status": 200, "json": doc}


CASES = {
    "down": (
        {"status": -1, "msg": "connection refused"},
        "does not answer GET /version (connection refused)",
    ),
    "no-api": ({"status": 200, "json": {"Version": "x"}}, "answers without an API version"),
    "podman": (_answer("4.9.3", "1.41", ["Podman Engine"]), "is Podman: this role needs a Docker"),
    "old": (_answer("18.09.1", "1.39"), "is Docker Engine 18.09.1 (API 1.39): this role needs a Docker"),
    "usable": (_answer("20.10.24+dfsg1", "1.41", ["Engine", "containerd"]), None),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_engine_check(case: str, tmp_path: Path) -> None:
    answer, message = CASES[case]
    play = [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "vars_files": [str(ROLE / "defaults" / "main.yml"), str(ROLE / "vars" / "main.yml")],
            "vars": {"__docker_authz_version": answer},
            "tasks": [
                _task(),
                {
                    "name": "Show the engine facts",
                    "ansible.builtin.debug": {
                        "msg": "{{ [__docker_authz_engine_version, __docker_authz_engine_api, "
                        "__docker_authz_engine_arch] }}"
                    },
                },
            ],
        }
    ]
    run = run_playbook(yaml.safe_dump(play, sort_keys=False) + "\n", tmp_path)
    result = next(r for r in run.results if r["task"] == TASK)
    if message is None:
        assert run.returncode == 0 and result["status"] == "ok", run.stdout[-3000:]
        shown = next(r for r in run.results if r["task"] == "Show the engine facts")["result"]["msg"]
        assert shown == ["20.10.24+dfsg1", "1.41", "amd64"], shown
    else:
        assert run.returncode != 0 and result["status"] == "failed", run.stdout[-3000:]
        msg = result["result"]["msg"]
        assert message in msg, msg
        assert "Traceback" not in run.stdout + run.stderr
