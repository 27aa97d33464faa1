"""Fixtures for the qemu guest tests; pods and DHCP servers live in pods.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vmnet.testing.qemu import available

from .pods import Pod, make_pod


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reason = None
    for item in items:
        if item.get_closest_marker("qemu") is not None:
            reason = reason or available() or ""
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def pod() -> Iterator[Pod]:
    """Name: pod. Scope: function. Depends: root. A pod netns with k6t-eth0 + tap0."""
    with make_pod() as made:
        yield made
