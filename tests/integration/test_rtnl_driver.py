"""vmnet's own rtnetlink codec against pyroute2's, on real kernels.

`RtnlNetlink` (what vmnet runs) and `Pyroute2Netlink` (an independent codec
of the same kernel messages) read the same namespace into values that must
be equal: every link with its addresses, MTU, master and bridge-port
learning flag, and every route of the main table. This is checked on pods
made by real CNI plugins, plugged and unplugged by vmnet, and after each
mutation verb issued through `RtnlNetlink` alone.
"""

from __future__ import annotations

import errno
import ipaddress
import subprocess
import time

import pytest

from vmnet import manifest
from vmnet.apply.drivers import real
from vmnet.apply.drivers.netlink import Pyroute2Netlink
from vmnet.apply.drivers.rtnl import RtnlNetlink
from vmnet.core.addr import MacAddress
from vmnet.core.errors import DriverError
from vmnet.phases import phase1
from vmnet.plan.state import RouteState
from vmnet.store.cache import Cache
from vmnet.testing.cnidata import bridge_config

pytestmark = [pytest.mark.netns, pytest.mark.cni("bridge", "host-local")]

DUAL_STACK = bridge_config(
    ipam={
        "type": "host-local",
        "ranges": [[{"subnet": "10.23.0.0/24"}], [{"subnet": "fd00:23::/64"}]],
    }
)


def _both(netns: str) -> tuple[RtnlNetlink, Pyroute2Netlink]:
    return RtnlNetlink(f"/run/netns/{netns}"), Pyroute2Netlink(f"/run/netns/{netns}")


def _agree(ours: RtnlNetlink, theirs: Pyroute2Netlink) -> None:
    """Both codecs read the same kernel state. The kernel changes some of it
    on its own (IPv6 DAD clears an address's tentative flag, link-local
    addresses appear with carrier), so the comparison is made on a state
    that our codec reads the same before and after pyroute2's read."""
    deadline = time.monotonic() + 10
    while True:
        before = (ours.links(), ours.routes())
        seen = (theirs.links(), theirs.routes())
        after = (ours.links(), ours.routes())
        if before == after or time.monotonic() > deadline:
            break
        time.sleep(0.05)  # the kernel is still settling (DAD, carrier)
    assert before == after, "the namespace never settled"
    assert before == seen
    assert [link.learning for link in before[0]] == [link.learning for link in seen[0]]
    for link in seen[0]:
        assert ours.link(name=link.name) == theirs.link(name=link.name)
        assert ours.link(index=link.index, addresses=False) == theirs.link(
            index=link.index, addresses=False
        )
        assert ours.learning(link.index) == theirs.learning(link.index)


def _vmi(binding: str) -> manifest.Vmi:
    return manifest.parse(
        {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {"name": "vm1", "namespace": "ns1"},
            "spec": {
                "domain": {"devices": {"interfaces": [{"name": "default", binding: {}}]}},
                "networks": [{"name": "default", "pod": {}}],
            },
        }
    )


@pytest.mark.parametrize("pod", ["bridge", DUAL_STACK], ids=["ipv4", "dual-stack"], indirect=True)
@pytest.mark.parametrize("binding", ["bridge", "masquerade"])
def test_both_codecs_read_a_plugged_pod_the_same(pod, tmp_path, binding: str) -> None:
    ours, theirs = _both(pod.netns)
    try:
        _agree(ours, theirs)
        cache = Cache(str(tmp_path / "cache"))
        changes = phase1.plug(_vmi(binding), f"/run/netns/{pod.netns}", cache).mutations
        assert changes
        _agree(ours, theirs)
        if binding == "bridge":
            bridge = ours.link(name="k6t-eth0")
            assert bridge is not None and bridge.kind == "bridge"
            ports = {link.name: link.learning for link in ours.links() if link.master}
            assert ports["tap0"] is True and False in ports.values()  # the pod NIC's port
        phase1.unplug(_vmi(binding), f"/run/netns/{pod.netns}", cache)
        _agree(ours, theirs)
    finally:
        ours.close()
        theirs.close()


def test_every_verb_seen_through_the_other_codec(netns) -> None:
    for key in ("all", "default"):  # no DAD: an address's flags do not change mid-test
        subprocess.run(
            ["ip", "netns", "exec", netns, "sysctl", "-qw", f"net.ipv6.conf.{key}.accept_dad=0"],
            check=True,
        )
    ours, theirs = _both(netns)
    try:
        mac = MacAddress.parse("02:00:00:00:aa:01")
        ours.link_add("vb0", "bridge", mac=mac)
        subprocess.run(
            ["ip", "-n", netns, "link", "add", "va0", "type", "veth", "peer", "va1"], check=True
        )
        bridge = ours.link(name="vb0")
        veth = ours.link(name="va0")
        assert bridge is not None and veth is not None
        assert bridge.kind == "bridge" and bridge.mac == mac
        ours.link_set(veth.index, mtu=1400, master=bridge.index, up=True)
        ours.link_set(bridge.index, up=True, name="vb1")
        ours.set_learning(veth.index, False)
        ours.set_alias(bridge.index, "vmnet-lease v1 10.9.0.5/24")
        ours.addr_add(bridge.index, ipaddress.ip_interface("10.9.0.1/24"))
        ours.addr_add(
            bridge.index,
            ipaddress.ip_interface("10.9.1.1/24"),
            broadcast=ipaddress.ip_address("10.9.1.255"),
        )
        ours.addr_add(bridge.index, ipaddress.ip_interface("fd00:9::1/64"))
        default = RouteState(
            ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_address("10.9.0.254"), bridge.index
        )
        second = RouteState(
            ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_address("10.9.1.254"), bridge.index
        )
        ours.route_add(default)
        ours.route_add(second)  # appended next to the first, as `ip route append`
        ours.route_add(
            RouteState(ipaddress.ip_network("fd00:99::/64"), ipaddress.ip_address("fd00:9::2"))
        )
        _agree(ours, theirs)
        got = theirs.link(name="vb1")
        assert got is not None and got.up and got.name == "vb1"
        assert {str(a.interface) for a in got.addresses} >= {"10.9.0.1/24", "fd00:9::1/64"}
        assert theirs.learning(veth.index) is False
        assert theirs.link(index=veth.index).mtu == 1400  # type: ignore[union-attr]
        alias = subprocess.run(
            ["ip", "netns", "exec", netns, "cat", "/sys/class/net/vb1/ifalias"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert alias.stdout.strip() == "vmnet-lease v1 10.9.0.5/24"
        defaults = [r for r in theirs.routes() if r.is_default and r.destination.version == 4]
        assert {str(r.gateway) for r in defaults} == {"10.9.0.254", "10.9.1.254"}

        with pytest.raises(DriverError) as exists:
            ours.addr_add(bridge.index, ipaddress.ip_interface("10.9.0.1/24"))
        assert exists.value.errno == errno.EEXIST
        ours.route_del(second)
        ours.addr_del(bridge.index, ipaddress.ip_interface("10.9.1.1/24"))
        ours.set_learning(veth.index, True)
        _agree(ours, theirs)
        ours.link_del(bridge.index)
        assert ours.link(name="vb1") is None and theirs.link(name="vb1") is None
        assert ours.link(index=bridge.index) is None
        _agree(ours, theirs)
    finally:
        ours.close()
        theirs.close()


def test_a_missing_namespace_is_an_error_not_created(tmp_path) -> None:
    with pytest.raises(DriverError) as missing:
        RtnlNetlink(str(tmp_path / "no-such-netns"))
    assert missing.value.errno == errno.ENOENT
    assert not (tmp_path / "no-such-netns").exists()


def test_real_drivers_use_the_project_codec(netns) -> None:
    drivers = real(f"/run/netns/{netns}")
    try:
        assert isinstance(drivers.netlink, RtnlNetlink)
        assert [link.name for link in drivers.netlink.links()] == ["lo"]
    finally:
        drivers.close()
