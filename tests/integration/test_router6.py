"""Phase 1 finds the pod's IPv6 router on the pod's link (vmnet.apply.drivers.router6).

Real CNI bridge pods: the CNI bridge is the router. Its link-local address
is the EUI-64 one Linux makes, or, once replaced, an arbitrary one (as a
stable-privacy router has), or nothing answers at all.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess

import pytest

from vmnet.apply.drivers import real
from vmnet.core.addr import MacAddress, eui64_link_local
from vmnet.phases import phase1
from vmnet.store.cache import Cache
from vmnet.testing.plugging import bridge_manifest

pytestmark = [pytest.mark.netns, pytest.mark.cni("bridge", "host-local")]

POD = {
    "type": "bridge",
    "bridge": "cbr7",
    "isGateway": True,
    "isDefaultGateway": True,
    "ipam": {"type": "host-local", "ranges": [[{"subnet": "fd00:27::/64"}]]},
}
GATEWAY = ipaddress.IPv6Address("fd00:27::1")


def _ip(netns: str, *args: str) -> str:
    return subprocess.run(
        ["ip", "-n", netns, *args], check=True, capture_output=True, text=True
    ).stdout


def _bridge_mac(pod) -> MacAddress:
    bridge = next(i for i in pod.result.interfaces if i.name == "cbr7")
    assert bridge.mac is not None
    return bridge.mac


def _find(pod, gateway=GATEWAY):
    drivers = real(pod.netns)
    try:
        index = drivers.netlink.link(name="eth0").index
        assert drivers.router6 is not None
        return drivers.router6.find(index, gateway)
    finally:
        drivers.close()


def test_the_cni_bridge_is_found_by_its_eui64_link_local(node):
    pod = node.add_pod(POD)
    mac = _bridge_mac(pod)
    found = _find(pod)
    assert found is not None
    assert (found.address, found.mac) == (eui64_link_local(mac), mac)
    assert str(found.address) in _ip(node.netns, "-6", "addr", "show", "dev", "cbr7")


def test_a_router_with_another_link_local_is_found_by_asking_all_nodes(node):
    pod = node.add_pod(POD)
    mac = _bridge_mac(pod)
    _ip(node.netns, "-6", "addr", "del", f"{eui64_link_local(mac)}/64", "dev", "cbr7")
    _ip(node.netns, "-6", "addr", "add", "fe80::3c2a:91ff:1e:7/64", "dev", "cbr7", "nodad")
    found = _find(pod)
    assert found is not None
    assert (found.address, found.mac) == (ipaddress.IPv6Address("fe80::3c2a:91ff:1e:7"), mac)


def test_the_neighbour_dump_is_what_ip_neigh_lists(node):
    pod = node.add_pod(POD)
    assert _find(pod) is not None  # fills the neighbour table
    drivers = real(pod.netns)
    try:
        index = drivers.netlink.link(name="eth0").index
        ours = {(str(ip), str(mac)) for ip, mac in drivers.netlink.neighbours(index)}
    finally:
        drivers.close()
    listed = json.loads(_ip(pod.netns, "-j", "-6", "neigh", "show", "dev", "eth0"))
    theirs = {(n["dst"], n["lladdr"]) for n in listed if "lladdr" in n}
    assert ours == theirs and len(ours) >= 2


def test_a_silent_gateway_plugs_with_a_warning_and_no_default_route(node, tmp_path, caplog):
    pod = node.add_pod(POD)
    _ip(pod.netns, "-6", "route", "replace", "default", "via", "fd00:27::99", "dev", "eth0")
    assert _find(pod, ipaddress.IPv6Address("fd00:27::99")) is None
    vmi = phase1_vmi()
    cache = Cache(str(tmp_path / "cache"))
    phase1.plug(vmi, pod.netns, cache)
    try:
        assert "fd00:27::99 did not answer" in caplog.text
        from vmnet.phases import leases

        config = leases.lease6(cache, "default")
        assert config is not None and config.tap_only
        assert (config.router, config.router_lifetime) == (None, 0)
        assert config.address == ipaddress.IPv6Interface("fd00:27::2/64")
    finally:
        phase1.unplug(vmi, pod.netns, cache)


def phase1_vmi():
    import yaml

    from vmnet import manifest

    return manifest.parse_text(yaml.safe_dump(bridge_manifest("bridge")))
