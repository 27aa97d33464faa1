"""The tap relay and Guest: a namespace wired to a tap that vmnet would make."""

from __future__ import annotations

import json
import shlex
import subprocess
import threading

import pytest

from vmnet.apply.drivers.tap import TunTap
from vmnet.core.addr import MacAddress
from vmnet.core.errors import DriverError
from vmnet.plan.state import TapSpec
from vmnet.testing import namespaces as ns
from vmnet.testing.guest import Guest
from vmnet.testing.relay import TapRelay, live_relays
from vmnet.testing.wait import wait_until

pytestmark = pytest.mark.netns

VM_MAC = "52:54:00:12:34:56"


def _tap_pod(netns: str, *taps: tuple[str, int]) -> None:
    """A pod shaped like vmnet's bridge binding: bridge with an address, taps enslaved."""
    for name, queues in taps:
        TunTap(netns).create(name, TapSpec(uid=107, gid=107, queues=queues))
    lines = [
        "link add k6t-eth0 type bridge",
        "link set k6t-eth0 up",
        "addr add 10.30.0.1/24 dev k6t-eth0",
    ]
    for name, _ in taps:
        lines += [f"link set {name} master k6t-eth0", f"link set {name} up"]
    ns.ip_batch(netns, lines)


def test_guest_pings_across_the_tap(netns: str, guest_factory) -> None:
    _tap_pod(netns, ("tap0", 1))
    guest = guest_factory(netns, "tap0", VM_MAC)
    assert str(guest.mac) == VM_MAC and guest.ifname == "eth0"
    links = json.loads(guest.check("ip -j link"))
    assert [(link["ifname"], link.get("address")) for link in links] == [
        ("lo", "00:00:00:00:00:00"),
        ("eth0", VM_MAC),
    ]
    guest.check("ip addr add 10.30.0.2/24 dev eth0")
    assert guest.ping("10.30.0.1", count=2)
    fdb = ns.exec_in(netns, ["bridge", "fdb", "show", "br", "k6t-eth0"]).stdout
    assert f"{VM_MAC} dev tap0" in fdb
    assert guest.relay.to_tap >= 2 and guest.relay.to_guest >= 2
    assert not guest.ping("10.30.0.99", timeout=1)


def test_guest_mtu_follows_the_tap(netns: str, guest_factory) -> None:
    _tap_pod(netns, ("tap0", 1))
    ns.ip_batch(netns, ["link set tap0 mtu 1400"])
    guest = guest_factory(netns)
    links = json.loads(guest.check("ip -j link show eth0"))
    assert links[0]["mtu"] == 1400


def test_tcp_through_the_relay(netns: str, guest_factory) -> None:
    _tap_pod(netns, ("tap0", 1))
    guest = guest_factory(netns)
    guest.check("ip addr add 10.30.0.2/24 dev eth0")
    script = (
        "import socket;s=socket.create_server(('10.30.0.1',5555));print('up',flush=True);"
        "c,_=s.accept();n=0\nwhile (d:=c.recv(65536)):n+=len(d)\nprint(n)"
    )
    server = ns.popen_in(netns, ["python3", "-c", script], stdout=-1, text=True)
    try:
        assert server.stdout.readline() == "up\n"
        client = (
            "import socket;s=socket.create_connection(('10.30.0.1',5555));"
            "s.sendall(b'x'*3000000);s.close()"
        )
        guest.check(shlex.join(["python3", "-c", client]))
        assert server.communicate(timeout=30)[0].strip() == "3000000"
    finally:
        server.kill()
        server.wait()


def test_multiqueue_tap_is_attached_too(netns: str, guest_factory) -> None:
    _tap_pod(netns, ("tap0", 1), ("tap1", 4))
    one = guest_factory(netns, "tap0")
    four = guest_factory(netns, "tap1")
    one.run(["ip", "addr", "add", "10.30.0.2/24", "dev", "eth0"])
    four.run(["ip", "addr", "add", "10.30.0.3/24", "dev", "eth0"])
    assert four.ping("10.30.0.2")


def test_attach_errors(netns: str, guest_factory) -> None:
    _tap_pod(netns, ("tap0", 1))
    with pytest.raises(DriverError, match=r"^link_lookup tap9: ENODEV"):
        Guest(netns, "tap9")
    guest_factory(netns, "tap0")
    with pytest.raises(DriverError, match=r"^tap_attach tap0 in vmt-\w+: EBUSY"):
        Guest(netns, "tap0")
    links = json.loads(ns.exec_in(netns, ["ip", "-j", "link"]).stdout)
    assert sorted(link["ifname"] for link in links) == ["k6t-eth0", "lo", "tap0"]


def test_close_stops_thread_and_removes_namespaces(netns: str) -> None:
    _tap_pod(netns, ("tap0", 1))
    guest = Guest(netns, "tap0", MacAddress.parse(VM_MAC))
    names = (guest.netns, guest.wire_netns)
    assert guest.relay.running
    assert any(t.name == "vmt-relay:tap0" for t in threading.enumerate())
    guest.close()
    guest.close()
    assert not guest.relay.running
    assert not any(t.name == "vmt-relay:tap0" for t in threading.enumerate())
    assert not set(names) & ns.created_netns()
    assert live_relays() == []

    def carrier():
        return "NO-CARRIER" in ns.exec_in(netns, ["ip", "link", "show", "tap0"]).stdout

    wait_until(carrier, 5, what="tap0 to lose carrier once the relay let go")


def test_relay_ends_by_itself_when_the_tap_goes(netns: str) -> None:
    _tap_pod(netns, ("tap0", 1))
    with ns.temp_netns() as wire:
        ns.create_veth(ns.VethEnd(wire, "w0"), ns.VethEnd(wire, "w1"))
        relay = TapRelay(netns, "tap0", wire, "w0")
        try:
            ns.ip_batch(netns, ["link del tap0"])
            wait_until(lambda: not relay.running, 5, what="the relay thread to end")
            assert isinstance(relay.error, OSError)
        finally:
            relay.stop()
    assert live_relays() == []


@pytest.mark.parametrize("client", ["udhcpc", "dhclient"])
def test_guest_dhcp_through_the_relay(netns: str, guest_factory, client: str) -> None:
    _tap_pod(netns, ("tap0", 1))
    dnsmasq = ns.popen_in(
        netns,
        [
            "dnsmasq",
            "--no-daemon",
            "--port=0",
            "--interface=k6t-eth0",
            "--bind-interfaces",
            "--dhcp-range=10.30.0.50,10.30.0.50,255.255.255.0,1h",
            f"--dhcp-host={VM_MAC},10.30.0.50",
            "--dhcp-authoritative",
            "--leasefile-ro",
            "--no-resolv",
            "--no-hosts",
            "--pid-file=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        guest = guest_factory(netns, "tap0", VM_MAC)
        lease = guest.dhcp(client, timeout=20)
        assert str(lease.address) == "10.30.0.50/24"
        assert "10.30.0.50/24" in guest.check("ip -4 addr show eth0")
        assert guest.ping("10.30.0.1")
    finally:
        dnsmasq.terminate()
        dnsmasq.wait(timeout=10)
