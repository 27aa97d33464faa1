"""Small statistics helpers: percentiles and interleaved timing.

Rule: every variant of a comparison is timed in the same loop, one sample
of each per round (round-robin), so machine noise lands on all of them
alike and the ratios stay meaningful on a busy machine.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any


def percentile(samples: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0..100) by nearest rank; NaN for no samples."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def p50(samples: Sequence[float]) -> float:
    return percentile(samples, 50)


def timed_ms(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def interleaved(
    variants: dict[
        str, tuple[Callable[[], Any], Callable[[Any], Callable[[], Any]], Callable[[Any], None]]
    ],
    rounds: int,
) -> dict[str, list[float]]:
    """Time each variant `rounds` times, round-robin.

    A variant is (setup, run, teardown): `setup()` builds the object the
    timed `run(obj)()` acts on; only `run` is timed; `teardown(obj)` always
    runs.
    """
    out: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, (setup, run, teardown) in variants.items():
            obj = setup()
            try:
                out[name].append(timed_ms(run(obj)))
            finally:
                teardown(obj)
    return out


def ratio(a: float, b: float) -> float:
    return a / b if b else math.nan
