import ipaddress

import pytest

from vmnet.apply.drivers.fake import fake_drivers
from vmnet.core.addr import MacAddress
from vmnet.plan.state import AddrState, LinkState, RouteState

POD_MAC = MacAddress.parse("12:34:56:78:90:ab")


def cni_pod_nic(addresses=("10.222.222.1/30", "2001::1/64"), routes=None):
    """The pod NIC of docs/kubevirt.md, Test vectors, as a CNI plugin leaves it."""
    link = LinkState(
        0,
        "eth0",
        "veth",
        POD_MAC,
        1500,
        True,
        addresses=tuple(AddrState(ipaddress.ip_interface(a)) for a in addresses),
    )
    if routes is None:
        routes = (
            RouteState(
                ipaddress.ip_network("0.0.0.0/0"),
                ipaddress.ip_address("10.222.222.254"),
                protocol=3,
            ),
            RouteState(ipaddress.ip_network("10.222.222.0/30"), None, protocol=2, scope=253),
            RouteState(ipaddress.ip_network("2001::/64"), None, protocol=2, priority=256),
            RouteState(ipaddress.ip_network("fe80::/64"), None, protocol=2, priority=256),
        )
    return link, routes


@pytest.fixture
def drivers():
    """Fake drivers with a CNI-made pod eth0 (no dummy driver, like CI)."""
    d = fake_drivers()
    link, routes = cni_pod_nic()
    d.netlink.add_existing(LinkState(0, "lo", None, None, 65536, True))
    d.netlink.add_existing(link, routes)
    return d
