"""Single-lease policy: message table, destinations (RFC 2131 §4.1), options, size limits."""

from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest

from vmnet.core.addr import MacAddress
from vmnet.protocols.dhcp4 import options
from vmnet.protocols.dhcp4.codec import BOOTREPLY, DhcpMessage, encode
from vmnet.protocols.dhcp4.config import DhcpConfig, Route
from vmnet.protocols.dhcp4.responder import (
    BROADCAST_IP,
    BROADCAST_MAC,
    SingleLeaseResponder,
    effective_routes,
)

MAC = MacAddress.parse("12:34:56:78:90:ab")
OTHER = MacAddress.parse("12:34:56:78:90:ac")
LEASE = IPv4Address("10.222.222.1")
SERVER = IPv4Address("169.254.75.10")
ZERO = IPv4Address(0)
CONFIG = DhcpConfig(
    client_mac=MAC,
    address=IPv4Interface("10.222.222.1/30"),
    server_id=SERVER,
    router=IPv4Address("10.222.222.2"),
    dns=(IPv4Address("10.96.0.10"),),
    search=("default.svc.cluster.local", "svc.cluster.local", "cluster.local"),
    hostname="vm1",
    mtu=1410,
)


def request(
    kind: int, *, mac: MacAddress = MAC, opts: tuple[tuple[int, bytes], ...] = (), **fields: object
) -> DhcpMessage:
    return DhcpMessage(xid=42, chaddr=mac.packed, options=((53, bytes([kind])), *opts), **fields)  # type: ignore[arg-type]


def req_ip(ip: IPv4Address) -> tuple[int, bytes]:
    return (50, ip.packed)


def sid(ip: IPv4Address) -> tuple[int, bytes]:
    return (54, ip.packed)


@pytest.fixture
def responder() -> SingleLeaseResponder:
    return SingleLeaseResponder(CONFIG, now=lambda: 1234.5)


# kind, options, fields, expected reply type (None = silence), counter
POLICY = [
    ("discover", 1, (), {}, 2, "offered"),
    ("selecting-ours", 3, (sid(SERVER), req_ip(LEASE)), {}, 5, "acked"),
    ("selecting-ours-wrong-ip", 3, (sid(SERVER), req_ip(IPv4Address("10.0.0.9"))), {}, 6, "nak"),
    (
        "selecting-other-server",
        3,
        (sid(IPv4Address("10.0.0.1")), req_ip(LEASE)),
        {},
        None,
        "ignored_other_server",
    ),
    ("init-reboot-right", 3, (req_ip(LEASE),), {}, 5, "acked"),
    ("init-reboot-stale", 3, (req_ip(IPv4Address("10.1.1.1")),), {}, 6, "nak"),
    ("renewing-right", 3, (), {"ciaddr": LEASE}, 5, "acked"),
    ("renewing-wrong", 3, (), {"ciaddr": IPv4Address("10.1.1.1")}, 6, "nak"),
    ("rebinding-right", 3, (), {"ciaddr": LEASE, "flags": 0x8000}, 5, "acked"),
    ("request-nothing", 3, (), {}, 6, "nak"),
    ("inform", 8, (), {"ciaddr": LEASE}, 5, "informed"),
    ("decline", 4, (req_ip(LEASE), sid(SERVER)), {}, None, "declined"),
    ("release", 7, (sid(SERVER),), {"ciaddr": LEASE}, None, "released"),
    ("offer-from-client", 2, (), {}, None, "ignored_other"),
    ("unknown-type", 99, (), {}, None, "ignored_other"),
]


@pytest.mark.parametrize(
    ("name", "kind", "opts", "fields", "reply", "counter"), POLICY, ids=[p[0] for p in POLICY]
)
def test_policy_table(
    responder: SingleLeaseResponder,
    name: str,
    kind: int,
    opts: tuple,  # type: ignore[type-arg]
    fields: dict,
    reply: int | None,
    counter: str,
) -> None:  # type: ignore[type-arg]
    out = responder.respond(request(kind, opts=opts, **fields))
    assert (out and out.message.message_type) == reply
    assert getattr(responder.stats, counter) == 1
    if out is not None:
        assert out.message.op == BOOTREPLY and out.message.xid == 42
        assert out.message.server_id == SERVER
        assert out.src_ip == SERVER


def test_foreign_mac_bootp_and_replies_are_ignored(responder: SingleLeaseResponder) -> None:
    assert responder.respond(request(1, mac=OTHER)) is None
    assert responder.respond(request(3, mac=OTHER, opts=(req_ip(LEASE),))) is None
    assert responder.respond(DhcpMessage(chaddr=MAC.packed)) is None
    assert responder.respond(DhcpMessage(op=2, chaddr=MAC.packed, options=((53, b"\x01"),))) is None
    assert responder.respond(request(1, htype=6)) is None
    assert responder.stats.ignored_foreign == 3
    assert responder.stats.ignored_other == 2
    assert responder.stats.offered == 0


def test_any_client_when_no_mac_is_configured() -> None:
    cfg = DhcpConfig(
        None, IPv4Interface("10.0.2.2/24"), IPv4Address("10.0.2.1"), router=IPv4Address("10.0.2.1")
    )
    out = SingleLeaseResponder(cfg).respond(request(1, mac=OTHER))
    assert out is not None and out.message.yiaddr == IPv4Address("10.0.2.2")


def test_offer_and_ack_fields(responder: SingleLeaseResponder) -> None:
    offer = responder.respond(request(1, secs=9, hops=1)).message  # type: ignore[union-attr]
    assert (offer.yiaddr, offer.ciaddr, offer.siaddr, offer.secs, offer.hops) == (
        LEASE,
        ZERO,
        ZERO,
        0,
        0,
    )
    assert offer.chaddr[:6] == MAC.packed
    assert [c for c, _ in offer.options[:3]] == [53, 54, 51]
    assert offer.option(51) == options.u32(86313600)
    assert offer.option(58) == options.u32(86313600 // 2)
    assert offer.option(59) == options.u32(86313600 * 7 // 8)
    assert offer.option(1) == bytes([255, 255, 255, 252])
    assert offer.option(3) == bytes([10, 222, 222, 2])
    assert offer.option(6) == bytes([10, 96, 0, 10])
    assert offer.option(12) == b"vm1"
    assert offer.option(15) == b"default.svc.cluster.local"
    assert offer.option(26) == b"\x05\x82"
    assert offer.option(28) == bytes([10, 222, 222, 3])
    assert offer.option(119) == options.domain_search(CONFIG.search)
    renew = responder.respond(request(3, ciaddr=LEASE)).message  # type: ignore[union-attr]
    assert renew.ciaddr == LEASE and renew.yiaddr == LEASE
    assert responder.stats.last_ack == 1234.5 and responder.stats.last_ack_unicast


def test_inform_has_no_lease_and_no_yiaddr(responder: SingleLeaseResponder) -> None:
    ack = responder.respond(request(8, ciaddr=LEASE)).message  # type: ignore[union-attr]
    assert ack.message_type == 5
    assert ack.yiaddr == ZERO and ack.ciaddr == LEASE
    assert all(ack.option(c) is None for c in (51, 58, 59))
    assert ack.option(6) == bytes([10, 96, 0, 10])


def test_nak_is_minimal_and_broadcast(responder: SingleLeaseResponder) -> None:
    out = responder.respond(request(3, opts=(req_ip(IPv4Address("10.1.1.1")),)))
    assert out is not None
    assert [c for c, _ in out.message.options] == [53, 54, 56]
    assert out.message.yiaddr == ZERO and out.message.ciaddr == ZERO
    assert (out.dest_ip, out.dest_mac) == (BROADCAST_IP, BROADCAST_MAC)
    renew = responder.respond(request(3, ciaddr=IPv4Address("10.1.1.1")))
    assert renew is not None and renew.broadcast and renew.dest_ip == BROADCAST_IP


RELAY = IPv4Address("10.9.9.9")
DEST = [
    ("relay", 1, {"giaddr": RELAY}, (RELAY, BROADCAST_MAC, 67)),
    (
        "relay-nak",
        3,
        {"giaddr": RELAY, "ciaddr": IPv4Address("1.1.1.1")},
        (RELAY, BROADCAST_MAC, 67),
    ),
    ("ciaddr", 3, {"ciaddr": LEASE}, (LEASE, MAC, 68)),
    ("ciaddr-with-broadcast-flag", 3, {"ciaddr": LEASE, "flags": 0x8000}, (LEASE, MAC, 68)),
    ("broadcast-flag", 1, {"flags": 0x8000}, (BROADCAST_IP, BROADCAST_MAC, 68)),
    ("unicast-to-yiaddr", 1, {}, (LEASE, MAC, 68)),
    ("inform-no-ciaddr", 8, {}, (BROADCAST_IP, BROADCAST_MAC, 68)),
]


@pytest.mark.parametrize(("name", "kind", "fields", "expected"), DEST, ids=[d[0] for d in DEST])
def test_destination_rfc2131_4_1(
    responder: SingleLeaseResponder, name: str, kind: int, fields: dict, expected: tuple
) -> None:  # type: ignore[type-arg]
    out = responder.respond(request(kind, **fields))
    assert out is not None
    assert (out.dest_ip, out.dest_mac, out.dest_port) == expected


def test_relayed_nak_sets_broadcast_bit(responder: SingleLeaseResponder) -> None:
    out = responder.respond(request(3, giaddr=RELAY, opts=(req_ip(IPv4Address("1.1.1.1")),)))
    assert out is not None and out.message.broadcast and out.message.giaddr == RELAY


def test_prl_order_then_the_rest(responder: SingleLeaseResponder) -> None:
    out = responder.respond(request(1, opts=((55, bytes([26, 6, 3, 1, 200, 6])),)))
    codes = [c for c, _ in out.message.options]  # type: ignore[union-attr]
    assert codes[:7] == [53, 54, 51, 26, 6, 3, 1]
    assert set(codes[7:]) == {121, 12, 15, 28, 58, 59, 119}


def test_option_249_only_on_request_and_only_without_121(responder: SingleLeaseResponder) -> None:
    both = responder.respond(request(1, opts=((55, bytes([1, 121, 249])),))).message  # type: ignore[union-attr]
    assert both.option(249) is None and both.option(121) is not None
    ms = responder.respond(request(1, opts=((55, bytes([1, 3, 249])),))).message  # type: ignore[union-attr]
    assert ms.option(249) == ms.option(121)
    plain = responder.respond(request(1)).message  # type: ignore[union-attr]
    assert plain.option(249) is None


def test_configured_boot_options_and_private_options() -> None:
    cfg = DhcpConfig(
        MAC,
        IPv4Interface("10.0.0.5/24"),
        IPv4Address("10.0.0.1"),
        ntp=(IPv4Address("192.168.2.2"), IPv4Address("192.168.2.3")),
        tftp_server="10.0.0.7",
        boot_file="config",
        private_options=((240, b"private.options.kubevirt.io"),),
    )
    offer = SingleLeaseResponder(cfg).respond(request(1)).message  # type: ignore[union-attr]
    assert offer.option(42) == bytes([192, 168, 2, 2, 192, 168, 2, 3])
    assert offer.option(66) == b"10.0.0.7"
    assert offer.option(67) == b"config"
    assert offer.option(240) == b"private.options.kubevirt.io"
    assert offer.siaddr == IPv4Address("10.0.0.7")
    assert offer.file.rstrip(b"\0") == b"config"
    assert offer.option(3) is None and offer.option(121) is None and offer.option(6) is None


def test_infinite_lease_has_no_t1_t2() -> None:
    cfg = DhcpConfig(
        MAC, IPv4Interface("10.0.0.5/24"), IPv4Address("10.0.0.1"), lease_time=0xFFFFFFFF
    )
    offer = SingleLeaseResponder(cfg).respond(request(1)).message  # type: ignore[union-attr]
    assert offer.option(51) == b"\xff\xff\xff\xff" and offer.option(58) is None


def test_calico_routes_make_gateway_and_server_reachable() -> None:
    cfg = DhcpConfig(
        MAC,
        IPv4Interface("10.244.1.7/32"),
        SERVER,
        router=IPv4Address("169.254.1.1"),
        routes=(
            Route(IPv4Network("0.0.0.0/0"), IPv4Address("169.254.1.1")),
            Route(IPv4Network("169.254.1.1/32"), None),
        ),
    )
    assert options.classless_routes(effective_routes(cfg)) == bytes(
        [32, 169, 254, 75, 10, 0, 0, 0, 0, 32, 169, 254, 1, 1, 0, 0, 0, 0, 0, 169, 254, 1, 1]
    )
    bare = DhcpConfig(
        MAC, IPv4Interface("10.244.1.7/32"), SERVER, router=IPv4Address("169.254.1.1")
    )
    assert effective_routes(bare) == effective_routes(cfg)
    offer = SingleLeaseResponder(cfg).respond(request(1)).message  # type: ignore[union-attr]
    assert offer.option(1) == b"\xff\xff\xff\xff" and offer.option(28) is None


def test_plain_subnet_needs_no_option_121() -> None:
    cfg = DhcpConfig(
        None, IPv4Interface("10.0.2.2/24"), IPv4Address("10.0.2.1"), router=IPv4Address("10.0.2.1")
    )
    assert effective_routes(cfg) == ()
    offsubnet_server = DhcpConfig(
        None, IPv4Interface("10.0.2.2/24"), SERVER, router=IPv4Address("10.0.2.1")
    )
    assert options.classless_routes(effective_routes(offsubnet_server)) == bytes(
        [32, 169, 254, 75, 10, 0, 0, 0, 0, 0, 10, 0, 2, 1]
    )


def test_onlink_routes_sorted_before_routes_via_gateways() -> None:
    cfg = DhcpConfig(
        MAC,
        IPv4Interface("10.0.0.5/32"),
        SERVER,
        routes=(
            Route(IPv4Network("192.168.0.0/16"), IPv4Address("172.16.0.1")),
            Route(IPv4Network("169.254.0.0/16"), None),
        ),
    )
    assert [str(r.destination) for r in effective_routes(cfg)] == [
        "172.16.0.1/32",
        "169.254.0.0/16",
        "192.168.0.0/16",
    ]


def big_config() -> DhcpConfig:
    return DhcpConfig(
        MAC,
        IPv4Interface("10.0.0.5/24"),
        IPv4Address("10.0.0.1"),
        router=IPv4Address("10.0.0.1"),
        private_options=tuple((c, bytes([c]) * 120) for c in range(224, 229)),
    )


def test_reply_never_exceeds_576_and_drops_unrequested_options_first() -> None:
    responder = SingleLeaseResponder(big_config())
    out = responder.respond(request(1, opts=((55, bytes([1, 3, 228])),)))
    assert out is not None
    assert len(encode(out.message)) <= 548
    assert out.message.option(228) is not None and out.message.option(1) is not None
    assert responder.stats.options_dropped >= 2
    kept = [c for c, _ in out.message.options]
    assert kept[:6] == [53, 54, 51, 1, 3, 228]


def test_client_max_message_size_is_honoured() -> None:
    responder = SingleLeaseResponder(big_config())
    out = responder.respond(request(1, opts=((57, (1500).to_bytes(2, "big")),)))
    assert out is not None and responder.stats.options_dropped == 0
    assert all(out.message.option(c) is not None for c in range(224, 229))
    tiny = responder.respond(request(1, opts=((57, (300).to_bytes(2, "big")),)))
    assert tiny is not None and len(encode(tiny.message)) <= 548
