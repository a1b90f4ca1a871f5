"""pytest fixtures for real, disposable Docker hosts (registered in tests/conftest.py).

- ``dind_image`` (session): builds or finds local/dind-host and local/busybox; removes test
  hosts left behind by killed runs first. Fails loudly (never skips) without Docker.
- ``plugin_double`` (session): builds or finds the opa-docker-authz test double and pushes it to
  127.0.0.1:5000; returns its reference (``...opa-docker-authz-double:v0.10-linux-amd64``).
- ``dind_ssh_key`` (session): an ed25519 key generated for this run.
- ``dind_host`` (function): one ready host (dockerd, sshd, local/busybox loaded), removed after.
- ``dind_hosts`` (function): a factory ``dind_hosts(n) -> list[DindHost]``; all removed after.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.images import build as images
from tests.lib import dind


def _build(names: list[str]) -> dict[str, images.Built]:
    try:
        return images.build(names)
    except images.BuildError as e:
        pytest.fail(f"test images could not be built (run `make env` first?): {e}", pytrace=False)


@pytest.fixture(scope="session")
def dind_image() -> str:
    dind.cleanup_stale()
    return _build(["dind-host", "busybox"])["dind-host"].ref


@pytest.fixture(scope="session")
def plugin_double() -> str:
    return _build(["plugin-double"])["plugin-double"].ref


@pytest.fixture(scope="session")
def dind_ssh_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return dind.generate_key(tmp_path_factory.mktemp("dind-ssh") / "id_ed25519")


@pytest.fixture
def dind_hosts(dind_image: str, dind_ssh_key: Path) -> Iterator[Callable[[int], list[dind.DindHost]]]:
    started: list[dind.DindHost] = []

    def factory(n: int = 1) -> list[dind.DindHost]:
        hosts = dind.start_hosts(n, dind_ssh_key, image=dind_image)
        started.extend(hosts)
        return hosts

    yield factory
    for host in started:
        dind.remove_host(host.name)


@pytest.fixture
def dind_host(dind_hosts: Callable[[int], list[dind.DindHost]]) -> dind.DindHost:
    return dind_hosts(1)[0]
