"""The applier on its own: each ensure, its order, its idempotence and its errors."""

from __future__ import annotations

import errno
import ipaddress

import pytest

from vmnet.apply.applier import Applier, apply
from vmnet.apply.drivers.fake import fake_drivers
from vmnet.core.addr import MacAddress
from vmnet.core.errors import DriverError
from vmnet.plan.state import LinkSpec, NetPlan, RouteState, TapSpec

MAC = MacAddress.parse("02:00:00:00:00:0a")
BRIDGE = LinkSpec(
    name="br0", kind="bridge", mac=MAC, up=True, addresses=(ipaddress.ip_interface("10.0.0.1/24"),)
)
TAP = LinkSpec(name="tap0", kind="tap", master="br0", mtu=1400, up=True, tap=TapSpec(107, 107))


def test_links_are_made_as_planned_and_a_second_run_changes_nothing() -> None:
    drivers = fake_drivers()
    plan = NetPlan(links=(BRIDGE, TAP), sysctls=(("net/ipv4/ip_forward", "1"),))
    first = apply(plan, drivers)
    bridge, tap = drivers.netlink.link(name="br0"), drivers.netlink.link(name="tap0")
    assert bridge.kind == "bridge" and bridge.mac == MAC and bridge.up
    assert [str(a.interface) for a in bridge.addresses] == ["10.0.0.1/24"]
    assert tap.kind == "tun" and tap.master == bridge.index and tap.mtu == 1400 and tap.up
    assert drivers.tap.created == [("tap0", TapSpec(107, 107))]
    assert (
        first.mutations[0] == "link add bridge br0"
        and "sysctl net/ipv4/ip_forward=1" in first.mutations
    )
    assert apply(plan, drivers).mutations == []


def test_every_mutation_goes_through_the_hook_in_order() -> None:
    seen: list[str] = []
    applier = apply(NetPlan(links=(BRIDGE, TAP)), fake_drivers(), on_mutation=seen.append)
    assert seen == applier.mutations and len(seen) >= 4


def test_a_link_of_another_kind_is_a_type_collision() -> None:
    drivers = fake_drivers()
    drivers.netlink.link_add("br0", "veth")
    with pytest.raises(DriverError, match=r"^type collision br0: exists as veth, not bridge$"):
        apply(NetPlan(links=(BRIDGE,)), drivers)


def test_absent_deletes_only_a_link_of_the_planned_kind() -> None:
    drivers = fake_drivers()
    drivers.netlink.link_add("eth0", "veth")
    applier = apply(NetPlan(links=(LinkSpec(name="eth0", kind="dummy", absent=True),)), drivers)
    assert applier.mutations == [] and drivers.netlink.link(name="eth0") is not None
    apply(NetPlan(links=(LinkSpec(name="eth0", kind="veth", absent=True),)), drivers)
    assert drivers.netlink.link(name="eth0") is None


def test_an_optional_link_the_kernel_cannot_make_is_a_warning() -> None:
    drivers = fake_drivers()  # no dummy driver, like this kernel
    applier = apply(NetPlan(links=(LinkSpec(name="d0", kind="dummy", optional=True),)), drivers)
    assert applier.mutations == [] and "kernel has no dummy driver" in applier.warnings[0]
    with pytest.raises(DriverError, match="Operation not supported"):
        apply(NetPlan(links=(LinkSpec(name="d0", kind="dummy"),)), drivers)


def test_a_pinned_link_that_is_gone_is_enodev() -> None:
    with pytest.raises(DriverError) as err:
        apply(NetPlan(links=(LinkSpec(name="x-nic", index=42),)), fake_drivers())
    assert err.value.errno == errno.ENODEV


def test_renaming_and_remacing_takes_the_link_down_first() -> None:
    drivers = fake_drivers()
    drivers.netlink.link_add("eth0", "veth")
    index = drivers.netlink.link(name="eth0").index
    drivers.netlink.link_set(index, up=True)
    applier = Applier(drivers)
    applier.apply(NetPlan(links=(LinkSpec(name="eth0-nic", index=index, mac=MAC, up=True),)))
    assert applier.mutations == ["link down eth0", "link set eth0-nic name,mac,up"]
    link = drivers.netlink.link(index=index)
    assert (link.name, link.mac, link.up) == ("eth0-nic", MAC, True)


def test_a_route_set_is_exact_and_on_link_routes_come_first() -> None:
    drivers = fake_drivers()
    drivers.netlink.link_add("eth0", "veth")
    index = drivers.netlink.link(name="eth0").index
    stray = RouteState(ipaddress.ip_network("192.0.2.0/24"), None, oif=index)
    drivers.netlink.route_add(stray)
    gw = ipaddress.ip_address("169.254.1.1")
    want = (
        RouteState(ipaddress.ip_network("0.0.0.0/0"), gw),
        RouteState(ipaddress.ip_network("169.254.1.1/32"), None, scope=253),
    )
    applier = apply(NetPlan(links=(LinkSpec(name="eth0", up=True, routes=want),)), drivers)
    added = [m for m in applier.mutations if m.startswith("route")]
    assert added == [
        "route del 192.0.2.0/24 eth0",
        "route add 169.254.1.1/32",
        "route add 0.0.0.0/0",
    ]
    # the kernel's own fe80::/64 route, added when the link came up, is left alone
    assert {str(r.destination) for r in drivers.netlink.routes()} == {
        "0.0.0.0/0",
        "169.254.1.1/32",
        "fe80::/64",
    }
