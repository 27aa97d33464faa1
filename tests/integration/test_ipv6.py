"""A dual-stack pod with masquerade: DHCPv6 and router advertisements to real clients."""

import ipaddress

import pytest

from vmnet.testing.dhcpclients6 import run_client6
from vmnet.testing.plugging import bridge_manifest

pytestmark = [pytest.mark.netns, pytest.mark.cni("bridge", "host-local")]

DUAL_STACK = {
    "type": "bridge",
    "bridge": "cbr0",
    "isGateway": True,
    "isDefaultGateway": True,
    "ipMasq": False,
    "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "10.22.0.0/24"}], [{"subnet": "fd00:22::/64"}]],
    },
}
BRIDGE_LL = ipaddress.ip_address("fe80::ff:fe00:0")  # from the bridge MAC 02:00:00:00:00:00


@pytest.mark.parametrize("client", ["dhclient", "dhcpcd"])
@pytest.mark.parametrize(
    "plugged",
    [{"manifest": bridge_manifest("masquerade"), "pod": DUAL_STACK}],
    indirect=True,
    ids=["dual-stack"],
)
def test_guest_gets_fd10_0_2_2_a_default_route_and_reaches_outside(
    plugged, guest_factory, client, tmp_path
):
    pod_v6 = [ip for ip in plugged.pod.result.ips if ip.address.version == 6]
    assert pod_v6, plugged.pod.result
    gateway6 = pod_v6[0].gateway
    guest = guest_factory(plugged, plugged.tap, plugged.mac)
    assert guest.dhcp("udhcpc", workdir=str(tmp_path)).address == plugged.address
    lease = run_client6(client, guest.netns, "eth0", workdir=str(tmp_path), timeout=30)
    assert lease.address == ipaddress.ip_address("fd10:0:2::2")
    assert lease.dns == (ipaddress.ip_address("fd00:10:96::a"),)
    addrs = guest.check("ip -6 addr show dev eth0")
    assert "fd10:0:2::2" in addrs
    routes = guest.check("ip -6 route")
    assert f"default via {BRIDGE_LL} dev eth0" in routes, routes
    assert guest.ping(gateway6)  # the CNI's IPv6 gateway, outside the pod, through NAT66
    assert plugged.responders6[0].stats.ra_sent >= 1
