"""Fault injection for crash tests.

With `VMNET_CRASH_AT=N` in the environment, phase 1 (plug and unplug) kills
its own process with SIGKILL right after its N-th mutation (1-based), so a
test can prove that running it again converges. Unset or 0: no effect.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable


def crash_hook(env: dict[str, str] | None = None) -> Callable[[str], None] | None:
    raw = (env if env is not None else os.environ).get("VMNET_CRASH_AT", "")
    try:
        limit = int(raw)
    except ValueError:
        return None
    if limit <= 0:
        return None
    count = 0

    def hook(_what: str) -> None:
        nonlocal count
        count += 1
        if count >= limit:
            os.kill(os.getpid(), signal.SIGKILL)

    return hook
