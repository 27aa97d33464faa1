"""The single-lease DHCPv4 policy: one request in, at most one reply out.

Pure: no I/O. Time and logging are injected; counters live in `stats`.

Only `config.client_mac` is answered (any Ethernet client when it is
None); other clients are ignored and counted.

Messages (RFC 2131 §4.3):
DISCOVER -> OFFER. REQUEST in SELECTING (server id present) -> ACK when
the server id is ours and the requested address is the lease, NAK when
ours and not the lease, silence when another server was selected.
INIT-REBOOT (requested address, no server id) and RENEWING/REBINDING
(ciaddr only) -> ACK when the address is the lease, else NAK (KubeVirt
never NAKs; a NAK is what makes a guest drop a stale address, issue #13601).
INFORM -> ACK with no yiaddr and no lease times (§4.3.5).
DECLINE, RELEASE -> logged and counted, no reply. Anything else -> ignored.

Where the reply goes (§4.1): a relay (giaddr) gets it on port 67; a NAK
is broadcast; a client with ciaddr gets unicast there; the broadcast flag
or an unknown address gives a broadcast; otherwise unicast to yiaddr at
chaddr (no ARP needed: the server sends link-layer frames).

Options 53, 54, 51 come first, then the requested options in Parameter
Request List order (RFC 2132 §9.8), then every other configured option
(`vmnet.protocols.dhcp4.options_for` decides which). A reply never exceeds the
client's maximum message size (option 57, at least 576 as RFC 2132 §9.10
requires) minus the IP and UDP headers; optional options are dropped from
the end of that order until it fits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from vmnet.core.addr import MacAddress
from vmnet.protocols.counters import Counters
from vmnet.protocols.dhcp4 import options as opt
from vmnet.protocols.dhcp4.codec import (
    BOOTREPLY,
    BOOTREQUEST,
    BROADCAST_FLAG,
    IP_UDP_HEADERS,
    DhcpMessage,
    encoded_length,
)
from vmnet.protocols.dhcp4.config import DhcpConfig, Route
from vmnet.protocols.dhcp4.options import MessageType, OptionCode, ipv4_list, u32

BROADCAST_IP = IPv4Address("255.255.255.255")
BROADCAST_MAC = MacAddress(b"\xff" * 6)
CLIENT_PORT = 68
SERVER_PORT = 67
MIN_MAX_MESSAGE = 576  # RFC 2132 §9.10
MEMO_OPTIONS = 32  # distinct (reply type, parameter request list) remembered
_Options = tuple[tuple[tuple[int, bytes], ...], int]  # the options, their encoded length
_ZERO = IPv4Address(0)

log = logging.getLogger("vmnet.protocols.dhcp4")


@dataclass(frozen=True, slots=True)
class Reply:
    """A reply and where to send it."""

    message: DhcpMessage
    src_ip: IPv4Address
    dest_ip: IPv4Address
    dest_mac: MacAddress
    dest_port: int = CLIENT_PORT

    @property
    def broadcast(self) -> bool:
        return self.dest_mac == BROADCAST_MAC


@dataclass(slots=True)
class Stats(Counters):
    """The DHCPv4 counters, updated by `respond` and the exchange."""

    received_unicast: int = 0
    answered_unicast: int = 0
    offered: int = 0
    acked: int = 0
    nak: int = 0
    informed: int = 0
    declined: int = 0
    released: int = 0
    options_dropped: int = 0
    last_ack: float | None = None
    last_ack_unicast: bool = False


@dataclass(slots=True)
class SingleLeaseResponder:
    """Answers one client with one lease (see the module rules)."""

    config: DhcpConfig
    now: Callable[[], float] = time.monotonic
    logger: logging.Logger = log
    stats: Stats = field(default_factory=Stats)
    catalog: Catalog = field(init=False)
    replies: dict[tuple[int, bool, tuple[int, ...]], _Options] = field(
        init=False, default_factory=dict, repr=False
    )  # the options of replies that fit whole, by (type, inform, parameter request list)

    def __post_init__(self) -> None:
        self.catalog = build_catalog(self.config)

    def respond(self, msg: DhcpMessage) -> Reply | None:
        """The reply to `msg`, or None when the policy says to stay silent."""
        self.stats.received += 1
        kind = msg.message_type
        if msg.op != BOOTREQUEST or kind is None:
            self.stats.ignored_other += 1
            return None
        if self.config.client_mac is not None and msg.client_mac != self.config.client_mac:
            self.stats.ignored_foreign += 1
            self.logger.debug("dhcp: ignoring %s from %s", kind, msg.chaddr[: msg.hlen].hex(":"))
            return None
        if kind == MessageType.DISCOVER:
            self.stats.offered += 1
            self.logger.info(
                "dhcp: DISCOVER from %s: OFFER %s", msg.client_mac, self.config.address
            )
            return self._reply(msg, MessageType.OFFER)
        if kind == MessageType.REQUEST:
            return self._request(msg)
        if kind == MessageType.INFORM:
            self.stats.informed += 1
            self.logger.info("dhcp: INFORM from %s: ACK", msg.client_mac)
            return self._reply(msg, MessageType.ACK, inform=True)
        self._note(msg, kind)
        return None

    def _request(self, msg: DhcpMessage) -> Reply | None:
        lease = self.config.address.ip
        if msg.server_id is not None and msg.server_id != self.config.server_id:
            self.stats.ignored_other_server += 1
            return None
        wanted = msg.requested_ip or msg.ciaddr
        if wanted != lease:
            self.stats.nak += 1
            self.logger.info("dhcp: NAK %s for %s (lease is %s)", msg.client_mac, wanted, lease)
            return self._reply(msg, MessageType.NAK)
        self.stats.acked += 1
        self.stats.last_ack = self.now()
        self.stats.last_ack_unicast = msg.ciaddr != _ZERO and msg.server_id is None
        how = "renewal" if msg.ciaddr != _ZERO else "selecting" if msg.server_id else "init-reboot"
        self.logger.info("dhcp: REQUEST (%s) from %s: ACK %s", how, msg.client_mac, lease)
        return self._reply(msg, MessageType.ACK)

    def _note(self, msg: DhcpMessage, kind: int) -> None:
        if kind == MessageType.DECLINE:
            self.stats.declined += 1
            self.logger.warning("dhcp: %s declined %s", msg.client_mac, msg.requested_ip)
        elif kind == MessageType.RELEASE:
            self.stats.released += 1
            self.logger.info("dhcp: %s released %s", msg.client_mac, msg.ciaddr)
        else:
            self.stats.ignored_other += 1

    def _reply(self, msg: DhcpMessage, kind: MessageType, *, inform: bool = False) -> Reply:
        nak = kind == MessageType.NAK
        options = self._options_for(msg, kind, inform)
        reply = DhcpMessage(
            op=BOOTREPLY,
            htype=msg.htype,
            hlen=msg.hlen,
            xid=msg.xid,
            flags=msg.flags | (BROADCAST_FLAG if nak and msg.giaddr != _ZERO else 0),
            ciaddr=msg.ciaddr if kind == MessageType.ACK else _ZERO,
            yiaddr=_ZERO if nak or inform else self.config.address.ip,
            siaddr=_ZERO if nak else self.catalog.next_server,
            giaddr=msg.giaddr,
            chaddr=msg.chaddr,
            file=b"" if nak else self.catalog.boot_file,
            options=options,
        )
        return self._address(msg, reply, nak)

    def _options_for(
        self, msg: DhcpMessage, kind: MessageType, inform: bool
    ) -> tuple[tuple[int, bytes], ...]:
        """The reply's options. They depend only on the (fixed) lease, the reply
        type and the client's parameter request list, unless they must be cut
        to the client's maximum size, so those that fit whole are remembered."""
        prl = msg.parameter_request_list
        key = (int(kind), inform, prl)
        limit = max(msg.max_message_size or MIN_MAX_MESSAGE, MIN_MAX_MESSAGE) - IP_UDP_HEADERS
        known = self.replies.get(key)
        if known is not None and known[1] <= limit:
            return known[0]
        head: list[tuple[int, bytes]] = [
            (int(OptionCode.MESSAGE_TYPE), bytes((kind,))),
            (int(OptionCode.SERVER_ID), ipv4_list([self.config.server_id])),
        ]
        if kind == MessageType.NAK:
            body = [(int(OptionCode.MESSAGE), b"requested address is not the lease")]
        else:
            if not inform:
                head.append((int(OptionCode.LEASE_TIME), u32(self.config.lease_time)))
            body = self.catalog.ordered(prl, inform=inform)
        whole = len(body)
        options = self._fit(head, body, msg.max_message_size)
        if len(options) == len(head) + whole and len(self.replies) < MEMO_OPTIONS:
            self.replies[key] = (options, encoded_length(options))
        return options

    def _fit(
        self, head: list[tuple[int, bytes]], body: list[tuple[int, bytes]], client_max: int | None
    ) -> tuple[tuple[int, bytes], ...]:
        limit = max(client_max or MIN_MAX_MESSAGE, MIN_MAX_MESSAGE) - IP_UDP_HEADERS
        while encoded_length(head + body) > limit and body:
            code, _ = body.pop()
            self.stats.options_dropped += 1
            self.logger.warning("dhcp: option %d dropped to fit %d bytes", code, limit)
        return tuple(head + body)

    def _address(self, msg: DhcpMessage, reply: DhcpMessage, nak: bool) -> Reply:
        src = self.config.server_id
        if msg.giaddr != _ZERO:
            return Reply(reply, src, msg.giaddr, BROADCAST_MAC, SERVER_PORT)
        mac = msg.client_mac
        if nak or mac is None:
            return Reply(reply, src, BROADCAST_IP, BROADCAST_MAC)
        if msg.ciaddr != _ZERO:
            return Reply(reply, src, msg.ciaddr, mac)
        if msg.broadcast or reply.yiaddr == _ZERO:
            return Reply(reply, src, BROADCAST_IP, BROADCAST_MAC)
        return Reply(reply, src, reply.yiaddr, mac)


INFINITE_LEASE = 0xFFFFFFFF
ON_REQUEST_ONLY = frozenset({OptionCode.MS_CLASSLESS_ROUTES})
LEASE_ONLY = frozenset({OptionCode.RENEWAL_TIME, OptionCode.REBINDING_TIME})


@dataclass(frozen=True, slots=True)
class Catalog:
    """Every option value a config yields, encoded once, in default order."""

    options: tuple[tuple[int, bytes], ...]
    next_server: IPv4Address
    boot_file: bytes

    def ordered(self, prl: Sequence[int], *, inform: bool) -> list[tuple[int, bytes]]:
        """Requested options in PRL order, then the rest."""
        available = {c: v for c, v in self.options if not (inform and c in LEASE_ONLY)}
        routes = available.get(OptionCode.CLASSLESS_ROUTES)
        if routes is not None and OptionCode.CLASSLESS_ROUTES not in prl:
            available[OptionCode.MS_CLASSLESS_ROUTES] = routes
        out = [(c, available.pop(c)) for c in dict.fromkeys(prl) if c in available]
        return out + [(c, v) for c, v in available.items() if c not in ON_REQUEST_ONLY]


def build_catalog(config: DhcpConfig) -> Catalog:
    """Encode every option `config` defines (order = drop priority, last first)."""
    net = config.address.network
    values: list[tuple[int, bytes | None]] = [
        (OptionCode.SUBNET_MASK, net.netmask.packed),
        (OptionCode.ROUTER, config.router.packed if config.router else None),
        (OptionCode.CLASSLESS_ROUTES, opt.classless_routes(effective_routes(config)) or None),
        (OptionCode.DNS, ipv4_list(config.dns) or None),
        (OptionCode.INTERFACE_MTU, None if config.mtu is None else opt.u16(config.mtu)),
        (OptionCode.HOSTNAME, config.hostname.encode() if config.hostname else None),
        (OptionCode.DOMAIN_NAME, config.domain.encode() if config.domain else None),
        (OptionCode.BROADCAST, net.broadcast_address.packed if net.prefixlen <= 30 else None),
    ]
    if config.lease_time != INFINITE_LEASE:
        values.append((OptionCode.RENEWAL_TIME, u32(config.lease_time // 2)))
        values.append((OptionCode.REBINDING_TIME, u32(config.lease_time * 7 // 8)))
    values += [
        (OptionCode.DOMAIN_SEARCH, opt.domain_search(config.search) or None),
        (OptionCode.NTP, ipv4_list(config.ntp) or None),
        (OptionCode.TFTP_SERVER, config.tftp_server.encode() if config.tftp_server else None),
        (OptionCode.BOOT_FILE, config.boot_file.encode() if config.boot_file else None),
        *config.private_options,
    ]
    boot = (config.boot_file or "").encode()
    return Catalog(
        options=tuple((int(c), v) for c, v in values if v is not None),
        next_server=_next_server(config.tftp_server),
        boot_file=boot if len(boot) < 128 else b"",
    )


def _next_server(tftp: str | None) -> IPv4Address:
    try:
        return IPv4Address(tftp or 0)
    except ValueError:
        return _ZERO


def effective_routes(config: DhcpConfig) -> tuple[Route, ...]:
    """Option-121 routes: configured ones plus what makes them work.

    Adds the default route via `router` when routes are sent (clients that
    take 121 ignore option 3, RFC 3442), and an on-link /32 for every gateway
    and for the server id outside the client's subnet: a Calico gateway
    (169.254.1.1 on a /32 pod) and the bridge's 169.254.75.1x, which the guest
    must reach to renew by unicast. On-link routes come first, the default
    last. Empty when the plain options 1 and 3 say it all.
    """
    subnet = config.address.network
    routes = list(config.routes)
    if config.router is not None and not any(r.is_default for r in routes):
        routes.append(Route(IPv4Network("0.0.0.0/0"), config.router))
    onlink: list[Route] = []
    targets = [config.server_id] + [r.gateway for r in routes if r.gateway is not None]
    for target in targets:
        if target in subnet or any(_covers(r, target) for r in routes + onlink):
            continue
        onlink.append(Route(IPv4Network(target), None))
    if not config.routes and not onlink:
        return ()
    ordered = onlink + routes
    return tuple(sorted(ordered, key=lambda r: (r.is_default, r.gateway is not None)))


def _covers(route: Route, target: IPv4Address) -> bool:
    return route.gateway is None and not route.is_default and target in route.destination
