"""Fixtures shared by the unit tests of module_utils/daemon_config.py and its callers."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.hardening.docker_authz.plugins.module_utils import daemon_config as dc


@pytest.fixture
def env(tmp_path: Path) -> dc.HostEnv:
    """An empty host: no units, no env files, no processes, no systemd, and a dockerd older than
    23.0 (it cannot check a daemon.json: the machine's own dockerd is never asked)."""
    root = tmp_path / "hostroot"
    proc = tmp_path / "hostproc"
    root.mkdir()
    proc.mkdir()

    def no_systemctl(args):
        raise AssertionError("systemctl must not run where systemd does not run")

    def dockerd_before_23(text: str) -> tuple[int, str]:
        return 1, "Status: unknown flag: --validate\nSee 'dockerd --help'., Code: 125"

    return dc.HostEnv(
        root=str(root), proc=str(proc), systemctl=no_systemctl, dockerd_validate=dockerd_before_23
    )
