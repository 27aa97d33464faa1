"""The DHCPv4 path a hostile guest can reach, as one pure function, for fuzzers.

`handle(data)` drives `vmnet.protocols.dhcp4.exchange.Exchange.handle`, the
function the server runs on every datagram, and checks what it returns. The
invariants every fuzzer checks (Hypothesis in the suite, atheris in
`tox -e fuzz`):

1. Nothing escapes; only a datagram that does not decode is dropped as
   malformed (the responder never fails on a message that decodes).
2. No reply to a client other than the configured MAC (Ethernet, hlen 6).
3. A reply goes to that MAC or to broadcast, echoes xid and chaddr, offers
   no address but the lease (or none), fits the client's maximum message
   size, and decodes back to itself.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from vmnet.core.addr import MacAddress
from vmnet.core.errors import DhcpDecodeError
from vmnet.protocols.dhcp4.codec import IP_UDP_HEADERS, decode, encode, frame_ipv4_udp
from vmnet.protocols.dhcp4.config import DhcpConfig, Route
from vmnet.protocols.dhcp4.exchange import Exchange
from vmnet.protocols.dhcp4.responder import BROADCAST_MAC, SERVER_PORT, SingleLeaseResponder

VM_MAC = MacAddress.parse("52:54:00:12:34:56")
CONFIGS = {
    "bridge": DhcpConfig(
        VM_MAC,
        IPv4Interface("10.22.0.2/24"),
        IPv4Address("169.254.75.10"),
        router=IPv4Address("10.22.0.1"),
        routes=(Route(IPv4Network("0.0.0.0/0"), IPv4Address("10.22.0.1")),),
        dns=(IPv4Address("10.96.0.10"),),
        search=("tenant1.svc.cluster.local", "cluster.local"),
        hostname="testvm",
        mtu=1450,
        ntp=(IPv4Address("192.0.2.123"),),
        tftp_server="tftp.example",
        boot_file="pxelinux.0",
        private_options=((240, b"private"), (254, b"x" * 200)),
    ),
    "calico": DhcpConfig(
        VM_MAC,
        IPv4Interface("10.27.0.5/32"),
        IPv4Address("169.254.75.10"),
        router=IPv4Address("169.254.1.1"),
        routes=(
            Route(IPv4Network("169.254.1.1/32"), None),
            Route(IPv4Network("0.0.0.0/0"), IPv4Address("169.254.1.1")),
        ),
    ),
    "masquerade": DhcpConfig(
        VM_MAC,
        IPv4Interface("10.0.2.2/24"),
        IPv4Address("10.0.2.1"),
        router=IPv4Address("10.0.2.1"),
        lease_time=0xFFFFFFFF,
    ),
}
_ZERO = IPv4Address(0)


class Violation(AssertionError):
    """An invariant of the module docstring does not hold."""


def handle(data: bytes, target: SingleLeaseResponder | Exchange) -> bytes | None:
    """One datagram through the server's own byte path (`Exchange.handle`);
    the IPv4 packet it would send, or None. Raises Violation when an
    invariant of the module docstring does not hold."""
    exchange = target if isinstance(target, Exchange) else Exchange(target)
    stats = exchange.responder.stats
    malformed = stats.dropped_malformed
    out = exchange.handle(data)  # nothing may escape
    try:
        msg = decode(data)
    except DhcpDecodeError:
        if out is not None:
            raise Violation("replied to a datagram that does not decode") from None
        return None
    if stats.dropped_malformed != malformed:
        raise Violation("the responder failed on a message that decodes")
    if out is None:
        return None
    config = exchange.responder.config
    if config.client_mac is not None and msg.client_mac != config.client_mac:
        raise Violation(f"replied to foreign client {msg.chaddr[: msg.hlen].hex(':')}")
    if out.dest_mac not in (BROADCAST_MAC, msg.client_mac):
        raise Violation(f"reply sent to {out.dest_mac}, not the client or broadcast")
    payload = out.packet[IP_UDP_HEADERS:]
    sent = decode(payload)
    if sent.xid != msg.xid or sent.chaddr != msg.chaddr:
        raise Violation("reply does not echo xid and chaddr")
    if sent.yiaddr not in (_ZERO, config.address.ip):
        raise Violation(f"reply offers {sent.yiaddr}, the lease is {config.address.ip}")
    limit = max(msg.max_message_size or 576, 576) - IP_UDP_HEADERS
    if len(payload) > limit:
        raise Violation(f"reply of {len(payload)} bytes exceeds the client's {limit}")
    if encode(sent) != payload:
        raise Violation("reply does not encode back to itself")
    reply = out.reply
    ports = (SERVER_PORT, reply.dest_port)
    if frame_ipv4_udp(reply.src_ip, reply.dest_ip, ports, payload) != out.packet:
        raise Violation("the frame is not the reply's IPv4 and UDP headers")
    return out.packet
