"""IPv6 on the bridge binding: the guest gets the pod's own IPv6 address and router.

Real CNI bridge pods (host-local IPv6 ranges, IPv6-only and dual-stack),
vmnet's bridge binding, and unmodified DHCPv6 clients in a guest namespace
behind the tap. A tcpdump on the node side of the pod's veth checks that
nothing vmnet sends for the VM leaves the pod.
"""

from __future__ import annotations

import ipaddress
import struct

import pytest

from vmnet.core.addr import MacAddress, eui64_link_local
from vmnet.testing.capture import capture
from vmnet.testing.dhcpclients6 import run_client6
from vmnet.testing.plugging import bridge_manifest

pytestmark = [pytest.mark.netns, pytest.mark.cni("bridge", "host-local")]


def _bridge_pod(ranges: list[list[dict[str, str]]]) -> dict[str, object]:
    return {
        "type": "bridge",
        "bridge": "cbr6",
        "isGateway": True,
        "isDefaultGateway": True,
        "ipMasq": False,
        "ipam": {"type": "host-local", "ranges": ranges},
    }


IPV6_ONLY = _bridge_pod([[{"subnet": "fd00:23::/64"}]])
DUAL_STACK = _bridge_pod([[{"subnet": "10.23.0.0/24"}], [{"subnet": "fd00:24::/64"}]])
SHAPES = [
    pytest.param({"manifest": bridge_manifest("bridge"), "pod": IPV6_ONLY}, id="ipv6-only"),
    pytest.param({"manifest": bridge_manifest("bridge"), "pod": DUAL_STACK}, id="dual-stack"),
]


def _node_side(plugged) -> tuple[str, str]:
    """(node netns, the pod veth's node end): where the pod NIC meets the CNI bridge."""
    pod = plugged.pod
    veths = [i.name for i in pod.result.interfaces if not i.sandbox and i.name != "cbr6"]
    assert len(veths) == 1, pod.result
    return pod.node.netns, veths[0]


def _cni_bridge(plugged) -> tuple[ipaddress.IPv6Address, MacAddress]:
    """The CNI bridge's link-local address and MAC, as the node reports them."""
    bridge = next(i for i in plugged.pod.result.interfaces if i.name == "cbr6")
    assert bridge.mac is not None
    return eui64_link_local(bridge.mac), bridge.mac


def _pod_v6(plugged) -> tuple[ipaddress.IPv6Interface, ipaddress.IPv6Address]:
    ips = [ip for ip in plugged.pod.result.ips if ip.address.version == 6]
    assert ips and ips[0].gateway is not None, plugged.pod.result
    return ips[0].address, ips[0].gateway


def _from_vmnet(frame: bytes, vm_mac: MacAddress) -> str | None:
    """'ra' or 'dhcp6 reply' for an IPv6 frame of that kind, else None."""
    if len(frame) < 58 or struct.unpack_from("!H", frame, 12)[0] != 0x86DD:
        return None
    next_header = frame[20]
    if next_header == 58 and frame[54] == 134:
        return "ra"
    if next_header == 17 and struct.unpack_from("!H", frame, 54)[0] == 547:
        return "dhcp6 reply"
    return None


def _sent_by(frame: bytes, mac: MacAddress) -> bool:
    return len(frame) >= 12 and frame[6:12] == mac.packed


@pytest.mark.parametrize("client", ["dhclient", "dhcpcd"])
@pytest.mark.parametrize("plugged", SHAPES, indirect=True)
def test_the_guest_gets_the_pod_address_and_router_and_nothing_leaves_the_pod(
    plugged, guest_factory, client, tmp_path
):
    address, gateway = _pod_v6(plugged)
    router_ll, router_mac = _cni_bridge(plugged)
    record = plugged.cache.network("default")
    assert record.pod_nic.router6 is not None
    assert (record.pod_nic.router6.address, record.pod_nic.router6.mac) == (router_ll, router_mac)
    netns, veth = _node_side(plugged)
    guest = guest_factory(plugged, plugged.tap, plugged.mac)
    with capture(netns, veth) as seen:
        lease = run_client6(client, guest.netns, "eth0", workdir=str(tmp_path), timeout=30)
        assert lease.address == address.ip
        routes = guest.check("ip -6 route")
        assert f"default via {router_ll} dev eth0" in routes, routes
        assert f"{address.network} dev eth0" in routes, routes  # the RA's on-link prefix
        assert guest.ping(gateway, timeout=10)  # the CNI's gateway, the pod's own router
        if plugged.configs:  # dual-stack: IPv4 as before
            assert guest.dhcp("udhcpc", workdir=str(tmp_path)).address == plugged.address
    assert plugged.responders6[0].stats.ra_sent >= 1
    kinds = [_from_vmnet(f, plugged.mac) for f in seen.frames]
    assert not [k for k in kinds if k], f"vmnet's frames left the pod: {kinds}"
    # the capture works: the guest's own solicit and echo requests crossed the veth
    assert any(_sent_by(f, plugged.mac) for f in seen.frames), len(seen.frames)


@pytest.mark.parametrize("plugged", SHAPES, indirect=True)
def test_a_second_plug_changes_nothing(plugged):
    from vmnet.phases import phase1

    again = phase1.plug(plugged.vmi, plugged.netns, plugged.cache)
    assert again.mutations == []


def test_the_commands_serve_ipv6_on_the_tap(node, guest_factory, tmp_path):
    """docs/ipv6.md, Bridge binding: `vmnet plug`, then `vmnet dhcp`, on an IPv6-only pod."""
    from tests.integration.conftest import BRIDGE_VM, vmnet, vmnet_dhcp
    from vmnet.store.cache import Cache

    pod = node.add_pod(IPV6_ONLY)
    vm, cache_dir = tmp_path / "vmi.yaml", tmp_path / "cache"
    vm.write_text(BRIDGE_VM)
    done = vmnet("plug", "--netns", pod.netns, "--vmi", str(vm), "--cache-dir", str(cache_dir))
    assert done.returncode == 0, done.stderr
    record = Cache(str(cache_dir)).network("default")
    address = next(ip.address for ip in pod.result.ips if ip.address.version == 6)
    try:
        with vmnet_dhcp(pod.netns, vm, cache_dir, "nameserver fd00:10:96::a\n") as server:
            guest = guest_factory(pod, "tap0", record.vm_mac)
            lease = run_client6("dhcpcd", guest.netns, "eth0", workdir=str(tmp_path))
            assert lease.address == address.ip
            assert lease.dns == (ipaddress.IPv6Address("fd00:10:96::a"),)
            assert guest.ping(next(ip.gateway for ip in pod.result.ips), timeout=10)
        assert server.returncode == 0
    finally:
        done = vmnet(
            "unplug", "--netns", pod.netns, "--vmi", str(vm), "--cache-dir", str(cache_dir)
        )
        assert done.returncode == 0, done.stderr


def test_the_node_learns_the_vm_mac_for_the_moved_addresses(node):
    """The node cached the pod's original MAC for both addresses; after the plug
    its neighbour entries name the VM's MAC, and no bridge learnt the VM's MAC
    on the pod's port (the announcements come from the pod NIC's own MAC)."""
    import json
    import subprocess

    from vmnet.testing.plugging import Plugged

    pod = node.add_pod(DUAL_STACK)
    for ip in pod.result.ips:  # the node talks to the pod first, as kubelet would
        subprocess.run(
            ["ip", "netns", "exec", node.netns, "ping", "-c1", "-W2", str(ip.address.ip)],
            check=True,
            capture_output=True,
        )
    plugged = Plugged(pod, bridge_manifest("bridge"))
    try:
        listed = subprocess.run(
            ["ip", "-n", node.netns, "-j", "neigh", "show", "dev", "cbr6"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        macs = {n["dst"]: n.get("lladdr") for n in json.loads(listed)}
        for ip in pod.result.ips:
            assert macs[str(ip.address.ip)] == str(plugged.mac), macs
        fdb = subprocess.run(
            ["bridge", "-n", node.netns, "fdb", "show", "br", "cbr6"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        assert str(plugged.mac) not in fdb, fdb
    finally:
        plugged.close()


@pytest.mark.parametrize("plugged", SHAPES[:1], indirect=True)
def test_a_guest_back_with_another_pods_address_is_told_not_on_link(
    plugged, guest_factory, tmp_path
):
    """A VM restarted in a pod with a new IPv6 (its IPAM did not keep the IP):
    dhclient -6 CONFIRMs the old address, gets NotOnLink (RFC 8415 §18.3.3),
    drops it and takes the pod's."""
    from tests.integration.test_dhcp6_clients import STALE_LEASE6

    address, _ = _pod_v6(plugged)
    stale = STALE_LEASE6.replace("fd10:0:2::77", "fd00:23::77")
    guest = guest_factory(plugged, plugged.tap, plugged.mac)
    lease = run_client6(
        "dhclient", guest.netns, "eth0", workdir=str(tmp_path), timeout=30, lease_file_text=stale
    )
    assert plugged.responders6[0].stats.not_on_link >= 1
    assert lease.address == address.ip
    assert "fd00:23::77" not in guest.check("ip -6 addr show dev eth0")
