"""Real distributions' network stacks as guests behind vmnet's tap.

Debian 12 images (`vmnet.testing.distro`, built offline from the machine's
own Debian archive) boot under qemu on the tap of a pod plugged by vmnet,
and configure the NIC the way such an image does, with nothing written by
hand beyond what its installer writes. What the guest's own stack
configured is reported from inside it over the serial console.

Stacks: systemd-networkd, NetworkManager, ifupdown with dhclient, and
cloud-init (NoCloud seed, netplan, networkd). The matrix: every stack on
the bridge binding (IPv4, IPv6-only and
dual-stack pods) and masquerade (IPv4 and dual-stack), all from the real
CNI bridge plugin. Each asserts the address and prefix, the default route
(IPv4 and IPv6), the MTU, the DNS servers as the guest's resolver reads
them, a ping to the CNI's IPv6 gateway from inside, and what each stack
does with the search list and host name. On the dual-stack bridge pod each
stack also lives a while: a renewal at T1 (short leases) is ACKed on both
families, NetworkManager renews after a link-refresh, and after a reboot
the guest has its addresses again with no NAK, the DHCP exchanges read from
a capture on the tap.
"""

from __future__ import annotations

import ipaddress
import time

import pytest

from tests.guest.dhcpwire import kinds, messages
from vmnet.core.addr import eui64_link_local
from vmnet.testing import distro
from vmnet.testing.capture import capture
from vmnet.testing.plugging import Plugged, bridge_manifest

pytestmark = [
    pytest.mark.netns,
    pytest.mark.qemu,
    pytest.mark.cni("bridge", "host-local"),
    pytest.mark.skipif(distro.available() is not None, reason=str(distro.available())),
]

V4 = [{"subnet": "10.31.0.0/24"}]
V6 = [{"subnet": "fd00:31::/64"}]
SHAPES = {
    "bridge-ipv4": ("bridge", [V4]),
    "bridge-ipv6": ("bridge", [V6]),
    "bridge-dual": ("bridge", [V4, V6]),
    "masquerade-ipv4": ("masquerade", [V4]),
    "masquerade-dual": ("masquerade", [V4, V6]),
}
DNS4, DNS6 = "10.96.0.10", "fd00:10:96::a"  # vmnet.testing.plugging.RESOLV
MASQUERADE_ROUTER6 = ipaddress.ip_address("fe80::ff:fe00:0")  # from k6t-eth0's fixed MAC
LEASE = 60  # seconds: T1 at 30 s; still valid when the guest is back from its reboot
SEARCH = {"networkmanager", "ifupdown"}  # networkd (UseDomains=no) does not apply it
HOSTNAME = {"networkmanager", "ifupdown"}  # from DHCPv4 option 12; networkd leaves localhost
SEEDED_HOSTNAME = {"cloud-init"}  # from the NoCloud seed's meta-data, whatever the pod
# Debian's dhclient-script rewrites resolv.conf for each family: the last one wins
ONE_FAMILY_OF_DNS = {"ifupdown"}
# What each stack says across a reboot (from the capture): the DHCPv4 messages
# it must send, and the DHCPv6 message it starts with. NetworkManager keeps its
# DHCPv4 lease and asks for it again (INIT-REBOOT, RFC 2131 §3.2); networkd
# and dhclient release at shutdown and start over; dhclient -6 confirms an
# address whose lease is still valid (RFC 8415 §18.2.3) and solicits otherwise.
ACROSS_REBOOT = {
    "networkd": ({"release", "discover", "selecting", "ack"}, {"solicit"}),
    "networkmanager": ({"init-reboot", "ack"}, {"solicit"}),
    "ifupdown": ({"release", "discover", "selecting", "ack"}, {"confirm", "solicit"}),
    "cloud-init": ({"release", "discover", "selecting", "ack"}, {"solicit"}),
}


def _pod(node, ranges):
    return node.add_pod(
        {
            "type": "bridge",
            "bridge": "cbr31",
            "isGateway": True,
            "isDefaultGateway": True,
            "ipam": {"type": "host-local", "ranges": ranges},
        }
    )


def _ips(pod, version):
    return [ip for ip in pod.result.ips if ip.address.version == version]


def _expected(pod, binding):
    """(IPv4 interface, its gateway, IPv6 address, its router) the guest must end up with."""
    v4, v6 = _ips(pod, 4), _ips(pod, 6)
    cni_bridge = next(i for i in pod.result.interfaces if i.name == "cbr31")
    if binding == "bridge":
        return (
            v4[0].address if v4 else None,
            v4[0].gateway if v4 else None,
            v6[0].address.ip if v6 else None,
            eui64_link_local(cni_bridge.mac) if v6 else None,
        )
    return (
        ipaddress.ip_interface("10.0.2.2/24"),
        ipaddress.ip_address("10.0.2.1"),
        ipaddress.ip_address("fd10:0:2::2") if v6 else None,
        MASQUERADE_ROUTER6 if v6 else None,
    )


def _configured(want):
    v4, _, v6, _ = want

    def done(seen):
        ok4 = v4 is None or seen.get("addr") == str(v4)
        ok6 = v6 is None or str(v6) in [a.split("/")[0] for a in seen.get("addr6", "").split()]
        return ok4 and ok6 and bool(seen.get("route") or v4 is None)

    return done


def _check(seen, pod, want, stack, plugged):
    v4, gw4, v6, router6 = want
    nic = seen["nic"]
    if v4 is not None:
        assert seen["addr"] == str(v4), seen
        assert seen["route"].startswith(f"default via {gw4} dev {nic}"), seen
    else:
        assert seen["addr"] == "", seen
    if v6 is not None:
        assert str(v6) in [a.split("/")[0] for a in seen["addr6"].split()], seen
        assert seen["route6"].startswith(f"default via {router6} dev {nic}"), seen
    assert int(seen["mtu"]) == pod.mtu, seen
    dns = seen["dns"].split()
    assert dns and set(dns) <= {DNS4, DNS6}, seen
    if stack in ONE_FAMILY_OF_DNS and v4 is not None and v6 is not None:
        assert len(dns) == 1, seen  # whichever client wrote resolv.conf last
    else:
        assert (DNS4 in dns, DNS6 in dns) == (v4 is not None, v6 is not None), seen
    if stack in SEARCH and v4 is not None:
        search = plugged.configs[0][1].search  # dhclient writes them as FQDNs, dot-terminated
        assert [d.rstrip(".") for d in seen["search"].split()] == list(search), seen
    if (stack in HOSTNAME and v4 is not None) or stack in SEEDED_HOSTNAME:
        assert seen["hostname"] == "debvm", seen


def _await_frames(seen_on_tap, after, predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = messages(seen_on_tap.so_far()[after:])
        if predicate(found):
            return found
        time.sleep(0.5)  # polling the capture file
    raise AssertionError(f"no {what} within {timeout} s: {[(m.family, m.kind) for m in found]}")


def _lives_on(guest, seen_on_tap, stack, want, first):
    """Renewal at T1, link-refresh for NetworkManager, reboot: the same addresses throughout."""
    mark = len(seen_on_tap.so_far())

    def renewed(found):
        ok4 = "ack" in kinds(found, 4) and {"renewing", "rebinding"} & set(kinds(found, 4))
        ok6 = "reply" in kinds(found, 6) and {"renew", "rebind"} & set(kinds(found, 6))
        return ok4 and ok6

    _await_frames(seen_on_tap, mark, renewed, 3 * LEASE, "renewal on both families")
    if stack == "networkmanager":
        mark = len(seen_on_tap.so_far())
        guest.link_refresh()

        def refreshed(found):
            return "ack" in kinds(found, 4)

        _await_frames(seen_on_tap, mark, refreshed, 60, "DHCPv4 ACK after the link-refresh")
    mark = len(seen_on_tap.so_far())
    guest.reboot()
    again = guest.report(until=lambda r: r.get("boot") != first["boot"] and _configured(want)(r))
    assert again["boot"] != first["boot"], again
    found = messages(seen_on_tap.so_far()[mark:])
    assert "nak" not in kinds(found, 4), found
    want4, first6 = ACROSS_REBOOT[stack]
    v6 = [k for k in kinds(found, 6) if k not in ("advertise", "reply")]
    assert want4 <= set(kinds(found, 4)), found
    assert v6 and v6[0] in first6 and "reply" in kinds(found, 6), found
    for key in ("addr", "addr6", "route", "route6"):
        assert again[key] == first[key], (key, first, again)
    return kinds(found, 4), kinds(found, 6)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("stack", distro.STACKS)
def test_a_debian_guest_configures_the_pod_network(node, stack: str, shape: str) -> None:
    binding, ranges = SHAPES[shape]
    pod = _pod(node, ranges)
    lifecycle = shape == "bridge-dual"
    lease = LEASE if lifecycle else None
    plugged = Plugged(pod, bridge_manifest(binding, "debvm"), lease_time=lease)
    want = _expected(pod, binding)
    try:
        with (
            capture(pod.netns, plugged.tap) as seen_on_tap,
            distro.DistroGuest(pod.netns, plugged.tap, str(plugged.mac), stack) as guest,
        ):
            seen = guest.report(until=_configured(want))
            _check(seen, pod, want, stack, plugged)
            if want[2] is not None:  # the CNI's IPv6 gateway, from inside the guest
                gateway6 = _ips(pod, 6)[0].gateway
                if not guest.ping(gateway6):
                    state = guest.run(
                        "ip -6 addr; ip -6 route; ip -6 neigh; ping -c1 -W2 " + str(gateway6)
                    )
                    raise AssertionError(f"no answer from {gateway6}: {state}")
            boot = guest.boot_seconds
            after_reboot = _lives_on(guest, seen_on_tap, stack, want, seen) if lifecycle else None
        if want[0] is not None:
            stats = plugged.responders[0].stats
            assert stats.acked >= 1 and stats.nak == 0, stats
        print(f"\n{stack} on {shape}: {boot:.0f} s: {seen}; after reboot: {after_reboot}")
    finally:
        plugged.close()
