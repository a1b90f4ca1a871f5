"""Fixtures shared by the unit tests of module_utils/daemon_config.py and its callers."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.hardening.docker_authz.plugins.module_utils import daemon_config as dc


@pytest.fixture
def env(tmp_path: Path) -> dc.HostEnv:
    """An empty host: no units, no env files, no processes, no systemd."""
    root = tmp_path / "hostroot"
    proc = tmp_path / "hostproc"
    root.mkdir()
    proc.mkdir()

    def no_systemctl(args):
        raise AssertionError("systemctl must not run where systemd does not run")

    return dc.HostEnv(root=str(root), proc=str(proc), systemctl=no_systemctl)
