"""A running VM live-migrated between two pods, with its downtime measured.

`vmnet.testing.migration.live_migrate` does it as KubeVirt does (see its
docstring): two pods with the same IP on one node, qemu's own migration
from A's qemu into B's while a client on the node holds one TCP connection
to the guest and pings it, then pod A deleted. Here, for both bindings that
carry the pod's network to a tap: the same connection still carries data,
the guest keeps its IP and MAC, pod B's responder never saw a DISCOVER,
and the guest's renewal got pod B's ACK; the downtime, three ways, is
printed (docs/migration.md has a run's figures).
"""

from __future__ import annotations

import pytest

from vmnet.testing.migration import MASQUERADE_GUEST_IP, live_migrate
from vmnet.testing.qemu import available

pytestmark = [
    pytest.mark.netns,
    pytest.mark.qemu,
    pytest.mark.cni("bridge", "host-local", "static"),
    pytest.mark.skipif(available() is not None, reason=str(available())),
]


@pytest.mark.parametrize("binding", ["bridge", "masquerade"])
def test_live_migration_keeps_tcp_ip_mac_and_lease(node, binding: str) -> None:
    steps: list[str] = []
    moved = live_migrate(node, binding, say=steps.append)
    assert moved.guest_ip == (MASQUERADE_GUEST_IP if binding == "masquerade" else moved.address)
    assert moved.discovers_to_target == 0  # the guest never started over
    assert moved.renewal_acked  # unicast REQUEST, ACK from pod B, no NAK
    assert moved.qemu.downtime_ms > 0 and moved.qemu.total_ms >= moved.qemu.downtime_ms
    # the streams saw the guest pause and come back: a gap, but a bounded one
    assert 0 < moved.ping_gap_ms < 10_000 and 0 < moved.tcp_stall_ms < 10_000
    assert any("renewal ACKed by pod B" in line for line in steps), steps
    print(
        f"\nlive migration ({binding}): qemu downtime {moved.qemu.downtime_ms:.0f} ms, "
        f"total {moved.qemu.total_ms:.0f} ms, longest ping gap {moved.ping_gap_ms:.0f} ms, "
        f"TCP stall {moved.tcp_stall_ms:.0f} ms"
    )
