"""`VMNET_CRASH_AT` parsing (the crash itself is exercised by test_crash_loop.py)."""

import pytest

from vmnet.core.faults import crash_hook


@pytest.mark.parametrize("value", ["", "0", "-3", "x", "1.5", " "])
def test_values_that_inject_nothing(value):
    assert crash_hook({"VMNET_CRASH_AT": value}) is None


def test_unset_injects_nothing():
    assert crash_hook({}) is None


def test_a_positive_count_gives_a_hook():
    hook = crash_hook({"VMNET_CRASH_AT": "3"})
    assert callable(hook)
    hook("link add bridge k6t-eth0")
    hook("link up k6t-eth0")
