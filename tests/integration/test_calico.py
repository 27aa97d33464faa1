"""A Calico-style pod: address /32, default via the off-subnet 169.254.1.1.

KubeVirt users hit this (user-issues rows 8, 9, 26): the guest must get the
/32 address and still a working default route. vmnet's option 121 carries an
on-link /32 route to 169.254.1.1 and the default route via it.
"""

import pytest

from vmnet.testing.plugging import bridge_manifest

pytestmark = [pytest.mark.netns]

NODE_ADDRESS = "192.168.255.1"  # the node's uplink, routed back to the pod's /32


@pytest.mark.parametrize("client", ["udhcpc", "dhclient", "dhcpcd"])
@pytest.mark.parametrize(
    "plugged",
    [{"manifest": bridge_manifest("bridge"), "pod": "calico"}],
    indirect=True,
    ids=["calico"],
)
def test_bridge_guest_on_a_calico_pod_has_a_working_default_route(
    plugged, guest_factory, client, tmp_path
):
    assert plugged.address.network.prefixlen == 32
    guest = guest_factory(plugged, plugged.tap, plugged.mac)
    lease = guest.dhcp(client, workdir=str(tmp_path), timeout=20)
    assert lease.address == plugged.address
    routes = guest.check("ip -4 route")
    assert "default via 169.254.1.1 dev eth0" in routes
    assert "169.254.1.1 dev eth0" in routes
    assert guest.ping(NODE_ADDRESS)
