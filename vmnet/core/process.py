"""How vmnet's commands end.

A command is a short process per pod (a CNI plugin, a launcher's `vmnet
plug`). Once it has done its work and closed what it opened, Python's own
teardown (every module's objects freed, one by one) costs 25-40 ms on a
small node, about a sixth of a plug; `exit_now` skips it. It flushes
standard output and error first, so nothing printed is lost, and falls back
to a normal exit when a tracer, a profiler or coverage is running, whose data is written
at that teardown.
"""

from __future__ import annotations

import gc
import os
import sys

TYPE_CHECKING = False  # typing is not imported at run time
if TYPE_CHECKING:
    from typing import NoReturn


def short_lived() -> None:
    """For a command's process: no cyclic garbage collection while it starts.
    Imports make many objects and few cycles; the collector's passes over
    them cost about 5% of a plug. A serving command calls `serving()`."""
    gc.disable()


def serving() -> None:
    """For a command that goes on serving: what it loaded stays for its life
    (gc.freeze, never scanned again), and collection resumes for the rest."""
    gc.freeze()
    gc.enable()


def exit_now(code: int) -> NoReturn:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: what was lost is lost either way
            code = code or 1
    if sys.gettrace() is not None or sys.getprofile() is not None or "coverage" in sys.modules:
        raise SystemExit(code)
    os._exit(code)
