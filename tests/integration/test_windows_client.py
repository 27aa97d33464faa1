"""What a Windows guest's DHCP client sends, and what it needs back, on the wire.

Windows cannot run here, so a scapy client in a namespace whose veth is a
port of the pod's bridge (with the VM's MAC, as the guest's frames would
come through the tap) sends what Windows 10/11 and Windows Server send,
to vmnet's responder serving a real CNI pod plugged with the bridge binding:

- option 61 as a hardware client identifier (type 1 + MAC), option 60
  "MSFT 5.0", option 12 (host name), option 81 (client FQDN, RFC 4702),
  option 116 (auto-configure, RFC 2563), option 55 with 249 (Microsoft's
  classless static routes) and 252 (WPAD) next to the usual codes, and the
  broadcast flag clear ([MS-DHCPE], Microsoft's DHCP extensions: Windows
  asks for 249 and 252 and sends 60 "MSFT 5.0");
- after a reboot, INIT-REBOOT: a REQUEST with its previous address in
  option 50, no server identifier, ciaddr zero (RFC 2131 §4.3.2);
- to renew, an ARP request for the server identifier, then a REQUEST
  unicast to it with ciaddr set (RFC 2131 §4.4.5);
- DHCPINFORM from its configured address (RFC 2131 §4.3.5).

And it asserts what Windows needs (the failures KubeVirt users report with
Windows guests: offers ignored, a stale address kept after a move, no
renewal): 4-byte IPv4 option values, OFFER and ACK to its MAC with the flag
clear, ACK for the right INIT-REBOOT and NAK for a wrong one, an ARP reply
for the server identifier, and an INFORM ACK that carries no lease.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
import time
from collections.abc import Iterator

import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether

from vmnet.core.netns import run_in
from vmnet.testing import namespaces as ns
from vmnet.testing.plugging import Plugged, bridge_manifest

pytestmark = [pytest.mark.netns, pytest.mark.cni("bridge", "host-local")]
ETH_P_ALL = 0x0003
HOSTNAME = b"WIN-VMNET01"
PRL = [1, 3, 6, 15, 31, 33, 43, 44, 46, 47, 119, 121, 249, 252]  # Windows 10/11's list


class Wire:
    """The Windows-shaped client: raw frames on `cli0` in its own namespace."""

    def __init__(self, netns: str, mac: str) -> None:
        self.mac = mac
        self.raw = bytes.fromhex(mac.replace(":", ""))

        def open_socket() -> socket.socket:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            sock.bind(("cli0", 0))
            return sock

        self.sock = run_in(netns, open_socket)
        self.sock.settimeout(0.2)

    def options(self, kind: str, *extra: tuple[str, object]) -> list[object]:
        return [
            ("message-type", kind),
            ("client_id", b"\x01" + self.raw),  # hardware type 1 + MAC
            ("hostname", HOSTNAME),
            *extra,
            (81, b"\x00\x00\x00" + HOSTNAME),  # FQDN: flags, two rcodes, name
            ("vendor_class_id", b"MSFT 5.0"),
            ("param_req_list", PRL),
            "end",
        ]

    def frame(
        self,
        opts: list[object],
        *,
        ciaddr: str = "0.0.0.0",
        dst: str = "255.255.255.255",
        dst_mac: str = "ff:ff:ff:ff:ff:ff",
        xid: int | None = None,
    ) -> tuple[bytes, int]:
        xid = xid if xid is not None else secrets.randbits(32)
        pkt = (
            Ether(src=self.mac, dst=dst_mac)
            / IP(src=ciaddr, dst=dst)
            / UDP(sport=68, dport=67)
            / BOOTP(chaddr=self.raw, xid=xid, ciaddr=ciaddr, flags=0, secs=3)
            / DHCP(options=opts)
        )
        return bytes(pkt), xid

    def exchange(self, data: bytes, xid: int, timeout: float = 5.0) -> Ether:
        """Send `data`; the first DHCP reply with `xid`."""
        self.sock.send(data)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                got = Ether(self.sock.recv(4096))
            except TimeoutError:
                continue
            if got.haslayer(BOOTP) and got[BOOTP].op == 2 and got[BOOTP].xid == xid:
                return got
        raise TimeoutError(f"no reply to xid {xid:#x}")

    def arp(self, target: str, sender: str, timeout: float = 5.0) -> Ether:
        pkt = Ether(src=self.mac, dst="ff:ff:ff:ff:ff:ff") / ARP(
            op=1, hwsrc=self.mac, psrc=sender, pdst=target
        )
        self.sock.send(bytes(pkt))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                got = Ether(self.sock.recv(4096))
            except TimeoutError:
                continue
            if got.haslayer(ARP) and got[ARP].op == 2 and got[ARP].psrc == target:
                return got
        raise TimeoutError(f"no ARP reply for {target}")


def _options(reply: Ether) -> dict[object, object]:
    return {o[0]: o[1] for o in reply[DHCP].options if isinstance(o, tuple)}


def _raw_lengths(reply: Ether) -> dict[int, int]:
    """option code -> length, read from the bytes (scapy decodes the values)."""
    data, pos, out = bytes(reply[BOOTP])[240:], 0, {}
    while pos < len(data) and data[pos] != 255:
        if data[pos] == 0:
            pos += 1
            continue
        out[data[pos]] = data[pos + 1]
        pos += 2 + data[pos + 1]
    return out


@pytest.fixture
def windows(node) -> Iterator[tuple[Plugged, Wire]]:
    pod = node.add_pod()
    plugged = Plugged(pod, bridge_manifest("bridge", "winvm"))
    client = ns.create_netns()
    try:
        ns.create_veth(ns.VethEnd(client, "cli0", mac=plugged.mac), ns.VethEnd(pod.netns, "wp0"))
        ns.ip_batch(pod.netns, ["link set wp0 master k6t-eth0"])
        yield plugged, Wire(client, str(plugged.mac))
    finally:
        ns.remove_netns(client)
        plugged.close(check_restored=False)


def test_discover_and_request_with_windows_options_get_four_byte_answers(windows) -> None:
    plugged, wire = windows
    lease = plugged.configs[0][1]
    offer = wire.exchange(*wire.frame(wire.options("discover")))
    opts = _options(offer)
    assert opts["message-type"] == 2 and offer[BOOTP].yiaddr == str(lease.address.ip)
    # the broadcast flag was clear: to the client's MAC and its new address
    assert offer[Ether].dst == wire.mac and offer[IP].dst == str(lease.address.ip)
    lengths = _raw_lengths(offer)
    for code in (1, 3, 51, 54, 58, 59):
        assert lengths.get(code) == 4, (code, lengths)
    assert opts["server_id"] == str(lease.server_id)
    assert 121 in lengths  # classless routes, which Windows asks for (and 249)

    request = wire.options(
        "request", ("requested_addr", str(lease.address.ip)), ("server_id", str(lease.server_id))
    )
    ack = wire.exchange(*wire.frame(request))
    opts = _options(ack)
    assert opts["message-type"] == 5 and ack[BOOTP].yiaddr == str(lease.address.ip)
    assert ack[Ether].dst == wire.mac
    assert all(_raw_lengths(ack).get(code) == 4 for code in (1, 3, 51, 54))
    assert opts["subnet_mask"] == str(lease.address.netmask)


def test_init_reboot_gets_ack_for_its_address_and_nak_for_another(windows) -> None:
    plugged, wire = windows
    lease = plugged.configs[0][1]
    mine = wire.options("request", ("requested_addr", str(lease.address.ip)))  # no server id
    ack = wire.exchange(*wire.frame(mine))
    assert _options(ack)["message-type"] == 5 and ack[BOOTP].yiaddr == str(lease.address.ip)

    stale = str(ipaddress.ip_address("10.22.0.250"))
    nak = wire.exchange(*wire.frame(wire.options("request", ("requested_addr", stale))))
    assert _options(nak)["message-type"] == 6
    assert nak[BOOTP].yiaddr == "0.0.0.0" and nak[Ether].dst == "ff:ff:ff:ff:ff:ff"
    stats = plugged.responders[0].stats
    assert stats.nak == 1 and stats.acked == 1


def test_renewal_arps_for_the_server_then_unicasts_and_gets_ack(windows) -> None:
    plugged, wire = windows
    lease = plugged.configs[0][1]
    server, address = str(lease.server_id), str(lease.address.ip)
    reply = wire.arp(server, address)
    bridge_mac = reply[ARP].hwsrc
    assert reply[Ether].dst == wire.mac and bridge_mac != wire.mac
    renew = wire.options("request")  # RENEWING: ciaddr set, no option 50 or 54
    data, xid = wire.frame(renew, ciaddr=address, dst=server, dst_mac=bridge_mac)
    ack = wire.exchange(data, xid)
    assert _options(ack)["message-type"] == 5 and ack[BOOTP].ciaddr == address
    assert ack[IP].dst == address and ack[Ether].dst == wire.mac  # unicast back
    assert plugged.responders[0].stats.received_unicast >= 1


def test_inform_from_a_configured_address_gets_an_ack_without_a_lease(windows) -> None:
    plugged, wire = windows
    lease = plugged.configs[0][1]
    address = str(lease.address.ip)
    ack = wire.exchange(*wire.frame(wire.options("inform"), ciaddr=address))
    opts = _options(ack)
    assert opts["message-type"] == 5
    assert ack[BOOTP].yiaddr == "0.0.0.0"  # RFC 2131 §4.3.5: no address is leased
    assert "lease_time" not in opts and "renewal_time" not in opts
    assert opts["router"] == str(lease.router) and "name_server" in opts
    assert plugged.responders[0].stats.informed == 1
