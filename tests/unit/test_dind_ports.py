"""Test hosts' SSH ports under pytest-xdist (tests/lib/dind.py): each worker picks from its own
slice of the range, so two workers starting hosts at once never race for one port."""

from __future__ import annotations

import pytest

from tests.lib import dind


@pytest.mark.parametrize(
    ("worker", "count", "expected"),
    [
        (None, None, dind.PORT_RANGE),  # no xdist: the whole range
        ("gw0", "1", dind.PORT_RANGE),
        ("gw0", "2", (22000, 22499)),
        ("gw1", "2", (22500, 22999)),
        ("gw2", "3", (22666, 22998)),
        ("master", "2", dind.PORT_RANGE),
    ],
)
def test_each_worker_has_its_own_ports(
    monkeypatch: pytest.MonkeyPatch, worker: str | None, count: str | None, expected: tuple[int, int]
) -> None:
    for name, value in (("PYTEST_XDIST_WORKER", worker), ("PYTEST_XDIST_WORKER_COUNT", count)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert dind.port_range() == expected


def test_the_slices_of_the_workers_are_disjoint_and_in_the_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "4")
    seen: set[int] = set()
    for n in range(4):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{n}")
        low, high = dind.port_range()
        ports = set(range(low, high + 1))
        assert not ports & seen and dind.PORT_RANGE[0] <= low <= high <= dind.PORT_RANGE[1]
        seen |= ports
