"""Test-only callback: append every task result as one JSON line to $HARDENING_RESULTS_FILE.

Lets tests assert on module return values (changed, diff, config, ...) of real
ansible-playbook runs without scraping the human-readable output.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: jsonl_results
type: aggregate
short_description: write task results as JSON lines (tests only)
description: Appends one JSON object per task result to the file named by HARDENING_RESULTS_FILE.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "jsonl_results"
    CALLBACK_NEEDS_ENABLED = True

    def _write(self, result: Any, status: str) -> None:
        path = os.environ.get("HARDENING_RESULTS_FILE")
        if not path:
            return
        record = {
            "host": result._host.get_name(),
            "task": result._task.get_name(),
            "action": result._task.action,
            "status": status,
            "result": result._result,
            "delegated": bool(result._result.get("_ansible_delegated_vars")),
            "task_start": self._task_start.get(result._task._uuid),
            "time": time.time(),
        }
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, default=str) + "\n")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._task_start: dict[str, float] = {}

    def v2_playbook_on_task_start(self, task: Any, is_conditional: bool) -> None:
        self._task_start[task._uuid] = time.time()

    def v2_playbook_on_handler_task_start(self, task: Any) -> None:
        self._task_start[task._uuid] = time.time()

    def v2_runner_on_ok(self, result: Any) -> None:
        self._write(result, "ok")

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._write(result, "failed")

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._write(result, "skipped")

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._write(result, "unreachable")
