"""Polling with a deadline: the only way vmnet tests wait.

Tests never sleep for a fixed time. They poll a predicate until it holds
or a deadline passes; the short pause between polls is the interval of
that poll, not a guess at how long the system needs.

A timeout names what was awaited and how long, so a failing test reads
"timed out after 5s waiting for tap0 to have carrier".

Time comes from an injectable monotonic clock (injected, for tests).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    interval: float = 0.05,
    what: str = "condition",
    *,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Call `predicate` until it returns a truthy value and return that value.

    Args:
        predicate: called once at once, then every `interval` seconds.
        timeout: seconds after the first call before giving up.
        interval: pause between two calls.
        what: what is awaited, for the error message.
        clock: monotonic clock (injectable for tests).

    Returns:
        The first truthy value the predicate returned.

    Raises:
        TimeoutError: the predicate stayed falsy for `timeout` seconds.
    """
    deadline = clock() + timeout
    while True:
        result = predicate()
        if result:
            return result
        remaining = deadline - clock()
        if remaining <= 0:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(min(interval, remaining))
