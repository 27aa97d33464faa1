"""Real distributions' network stacks as guests behind vmnet's tap.

A Debian 12 image (`vmnet.testing.distro`, built offline from the machine's
own Debian archive) boots under qemu on the tap of a pod plugged by vmnet's
bridge binding, and configures its NIC the way such an image does, with
nothing written by hand beyond that. What its own stack configured is
reported from inside the guest: the pod's address and prefix, the pod's
gateway as default route, the pod's MTU, and the DNS server vmnet handed
out as the guest's resolver reads it; for NetworkManager also the search
list and the host name, which it applies and networkd (as built) does not.
"""

from __future__ import annotations

import pytest

from vmnet.testing import distro
from vmnet.testing.cni import bridge_config
from vmnet.testing.plugging import Plugged, bridge_manifest

pytestmark = [
    pytest.mark.netns,
    pytest.mark.qemu,
    pytest.mark.cni("bridge", "host-local"),
    pytest.mark.skipif(distro.available() is not None, reason=str(distro.available())),
]


@pytest.mark.parametrize("stack", distro.STACKS)
def test_a_debian_cloud_style_guest_configures_the_pod_network(node, stack: str) -> None:
    pod = node.add_pod(bridge_config())
    plugged = Plugged(pod, bridge_manifest("bridge", "debvm"))
    try:
        with distro.DistroGuest(pod.netns, plugged.tap, str(plugged.mac), stack) as guest:
            seen = guest.report()
        assert seen["addr"] == str(pod.address), seen
        assert seen["route"].startswith(f"default via {pod.gateway} dev {seen['nic']}"), seen
        assert int(seen["mtu"]) == pod.mtu
        assert seen["dns"].split() == ["10.96.0.10"], seen  # the pod's resolv.conf, via DHCP
        if stack == "networkmanager":  # NetworkManager applies options 119 and 12 as well
            assert seen["search"].split() == list(plugged.configs[0][1].search), seen
            assert seen["hostname"] == "debvm", seen
        stats = plugged.responders[0].stats
        assert stats.offered >= 1 and stats.acked >= 1 and stats.nak == 0
        print(f"\n{stack} guest configured in {guest.boot_seconds:.0f} s: {seen}")
    finally:
        plugged.close()
