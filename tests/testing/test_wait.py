"""wait_until: returns the first truthy value, times out with a description."""

from __future__ import annotations

import itertools

import pytest

from vmnet.testing.wait import wait_until


def test_returns_first_truthy_value() -> None:
    calls = itertools.count()
    assert wait_until(lambda: next(calls) >= 3 and "ready", timeout=5, interval=0.001) == "ready"


def test_timeout_names_what_was_awaited() -> None:
    ticks = iter(range(100))
    with pytest.raises(TimeoutError, match=r"timed out after 3s waiting for tap0 carrier"):
        wait_until(
            lambda: False,
            timeout=3,
            interval=0,
            what="tap0 carrier",
            clock=lambda: float(next(ticks)),
        )


def test_predicate_runs_at_least_once_with_zero_timeout() -> None:
    assert wait_until(lambda: 7, timeout=0) == 7
