"""vmnet's own single-lease DHCP server leasing to real guest clients in qemu.

The pod looks like the bridge binding's: `k6t-eth0` holds only the
link-local /32 169.254.75.10 (dnsmasq refuses to serve such a bridge), and
the guest must get the pod's address and gateway from vmnet's responder.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest
from pyroute2 import IPRoute

from vmnet.core.addr import MacAddress
from vmnet.protocols.dhcp4.config import DhcpConfig, Route
from vmnet.protocols.dhcp4.responder import SingleLeaseResponder
from vmnet.serve.dhcp4 import open_endpoint, serve
from vmnet.testing.qemu import QemuGuest

from .pods import VM_MAC, Pod, make_pod, pids_in

pytestmark = [pytest.mark.netns, pytest.mark.qemu]

BRIDGE_IP = IPv4Interface("169.254.75.10/32")
POD_IP = IPv4Interface("10.244.1.7/24")
POD_GW = IPv4Address("10.244.1.1")
CONFIG = DhcpConfig(
    client_mac=MacAddress.parse(VM_MAC),
    address=POD_IP,
    server_id=BRIDGE_IP.ip,
    router=POD_GW,
    routes=(Route(IPv4Network("10.100.0.0/16"), POD_GW),),
    dns=(IPv4Address("10.96.0.10"),),
    search=("default.svc.cluster.local", "cluster.local"),
    hostname="vmi-guest",
    mtu=1400,
    lease_time=7200,
)
ROUTES = (
    (IPv4Network("169.254.75.10/32"), IPv4Address("0.0.0.0")),
    (IPv4Network("10.100.0.0/16"), POD_GW),
    (IPv4Network("0.0.0.0/0"), POD_GW),
)


@contextmanager
def vmnet_dhcp(pod: Pod) -> Iterator[SingleLeaseResponder]:
    responder = SingleLeaseResponder(CONFIG)
    endpoint = open_endpoint(pod.netns, pod.bridge)
    stop = threading.Event()
    thread = threading.Thread(target=serve, args=([(endpoint, responder)], stop), daemon=True)
    thread.start()
    try:
        yield responder
    finally:
        stop.set()
        thread.join(5)
        endpoint.close()


def test_vmnet_server_leases_pod_ip_to_udhcpc_and_ipconfig() -> None:
    with make_pod(BRIDGE_IP) as pod, vmnet_dhcp(pod) as responder:
        with IPRoute(netns=pod.netns, flags=0) as ipr:
            (bridge,) = ipr.link_lookup(ifname=pod.bridge)
            ipr.route("add", dst=f"{POD_IP.ip}/32", oif=bridge)
        with QemuGuest(pod.netns, pod.tap, VM_MAC) as guest:
            lease = guest.dhcp("udhcpc")

            assert lease.address == POD_IP and lease.server_id == BRIDGE_IP.ip
            assert (lease.mtu, lease.hostname, lease.lease_time) == (1400, "vmi-guest", 7200)
            assert lease.dns == CONFIG.dns and lease.search == CONFIG.search
            assert lease.routes == ROUTES
            routes = guest.ip_route()
            assert "169.254.75.10 dev eth0 scope link" in routes
            assert "default via 10.244.1.1 dev eth0" in routes
            assert guest.mtu() == 1400
            assert guest.ping(str(BRIDGE_IP.ip))

            guest.check("ip -4 addr flush dev eth0; ip link set eth0 mtu 1500")
            lease = guest.dhcp("ipconfig")

            assert lease.address == POD_IP
            assert lease.router is None  # option 121 present: RFC 3442 says ignore option 3
            assert lease.routes == ROUTES
            assert (lease.hostname, lease.lease_time) == ("vmi-guest", 7200)
            assert lease.dns == CONFIG.dns
            assert lease.domain == "default.svc.cluster.local"
            assert guest.ip_addr()[0] == POD_IP
            assert guest.mtu() == 1400
            assert "default via 10.244.1.1 dev eth0" in guest.ip_route()
            assert guest.ping(str(BRIDGE_IP.ip))
        assert responder.stats.offered == 2
        assert pids_in(pod.netns) == set()
