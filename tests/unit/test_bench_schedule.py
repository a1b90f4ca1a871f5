"""The interleaving of `make bench-policy`: every column measured as often as asked, the cheap
ones every round, the expensive ones spread evenly over the same rounds (not bunched at one end,
where a change of the machine's load would weigh on them alone)."""

from __future__ import annotations

import itertools

import pytest

from tests.policy.bench_policy import schedule


@pytest.mark.parametrize(
    "counts",
    [
        {"how-to": 200, "file": 15, "bundle": 200},
        {"how-to": 7, "file": 3},
        {"a": 1, "b": 1},
        {"a": 5, "b": 1, "c": 4},
        {"only": 12},
    ],
)
def test_each_column_is_measured_as_often_as_asked(counts: dict[str, int]) -> None:
    plan = schedule(counts)
    assert len(plan) == max(counts.values())
    for name, n in counts.items():
        assert sum(names.count(name) for names in plan) == n


def test_columns_keep_their_order_within_a_round() -> None:
    plan = schedule({"how-to": 4, "file": 4, "bundle": 4})
    assert plan == [["how-to", "file", "bundle"]] * 4


def test_expensive_columns_are_spread_over_the_whole_run() -> None:
    plan = schedule({"how-to": 200, "file": 15})
    steps = [i for i, names in enumerate(plan) if "file" in names]
    gaps = [b - a for a, b in itertools.pairwise(steps)]
    assert min(gaps) >= 13 and max(gaps) <= 14  # 200 / 15 = 13.3 rounds apart
    assert steps[0] <= 13 and steps[-1] == 199
    assert all("how-to" in names for names in plan)


def test_nothing_to_measure() -> None:
    assert schedule({}) == []
    assert schedule({"a": 0}) == []
