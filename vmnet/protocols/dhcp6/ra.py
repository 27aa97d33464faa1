"""Router advertisements for the VM's link: contents, solicitations, timing (RFC 4861).

Pure: no I/O, no clock. The server passes times in and sends the bytes.

The RA (§4.2) has M and O set, so clients run DHCPv6 for the address and
for DNS (RFC 4861 §4.2, RFC 8415 §5); a router lifetime > 0, so the guest
installs a default route via the bridge's link-local source address; a
Prefix Information option (§4.6.2) for the lease's prefix with L=1
(on-link) and A=0 (no SLAAC: the address comes from DHCPv6 and a /120 is
not a /64 anyway); an MTU option (§4.6.4) when configured; and the Source
Link-Layer Address option (§4.6.1) with the bridge MAC, which saves the
guest a neighbour solicitation.

The ICMPv6 checksum field is left 0: the kernel computes it for every
ICMPv6 raw socket (RFC 3542 §3.1; Linux always sets IPV6_CHECKSUM at
offset 2 for IPPROTO_ICMPV6). The hop limit of 255 is a socket option.

A router solicitation (§4.1) is accepted only as §6.1.1 says: hop limit
255, code 0, at least 8 bytes, options of non-zero length, and no source
link-layer option when the source is unspecified. Anything else raises
`DhcpDecodeError`, the error tree's name for bad remote input.

Timing (§6.2.4, §6.2.6): the first RA goes out at once; then each
interval is uniform in [MinRtrAdvInterval, MaxRtrAdvInterval] with
Min = 0.33 * Max, capped at 16 s for the first three. A solicitation
brings the next RA forward to a random 0..0.5 s from now, but never
closer than MIN_DELAY_BETWEEN_RAS (3 s) to the previous one. Tests pass a
small Max; then the 3 s and 0.5 s constants shrink to Min so the ratio of
the RFC's timers is kept.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv6Address

from vmnet.core.addr import MacAddress
from vmnet.core.errors import DhcpDecodeError
from vmnet.protocols.dhcp6.config import Dhcp6Config

ROUTER_SOLICITATION = 133
ROUTER_ADVERTISEMENT = 134
OPT_SOURCE_LLADDR = 1
OPT_PREFIX_INFO = 3
OPT_MTU = 5
FLAG_MANAGED = 0x80
FLAG_OTHER = 0x40
PREFIX_ON_LINK = 0x80
PREFIX_AUTONOMOUS = 0x40
CUR_HOP_LIMIT = 64  # AdvCurHopLimit default, RFC 4861 §6.2.1
PREFIX_VALID_LIFETIME = 2592000  # AdvValidLifetime default (30 days)
PREFIX_PREFERRED_LIFETIME = 604800  # AdvPreferredLifetime default (7 days)
MAX_INITIAL_RTR_ADVERT_INTERVAL = 16.0  # §10
MAX_INITIAL_RTR_ADVERTISEMENTS = 3
MIN_DELAY_BETWEEN_RAS = 3.0
MAX_RA_DELAY_TIME = 0.5
HOP_LIMIT = 255


def build_ra(config: Dhcp6Config) -> bytes:
    """The RA for `config`, checksum 0.

    For fd10:0:2::2/120, MAC 02:00:00:00:00:00, MTU 1400, lifetime 1800:
    `86 00 0000 40 c0 0708 00000000 00000000`, then
    `01 01 020000000000`, `05 01 0000 00000578`,
    `03 04 78 80 00278d00 00093a80 00000000 fd10000000020000 0000000000000000`.
    """
    head = struct.pack(
        "!BBHBBHII",
        ROUTER_ADVERTISEMENT,
        0,
        0,
        CUR_HOP_LIMIT,
        FLAG_MANAGED | FLAG_OTHER,
        config.router_lifetime,
        0,
        0,
    )
    source_mac = config.server_mac if config.router is None else config.router_mac
    options = b""
    if source_mac is not None:  # a router whose MAC is unknown: the guest solicits it
        options = struct.pack("!BB", OPT_SOURCE_LLADDR, 1) + source_mac.packed
    if config.mtu is not None:
        options += struct.pack("!BBHI", OPT_MTU, 1, 0, config.mtu)
    net = config.address.network
    if net.prefixlen == 128:  # a lone address (a /128 pod IP): no prefix is on-link
        return head + options
    options += struct.pack(
        "!BBBBIII16s",
        OPT_PREFIX_INFO,
        4,
        net.prefixlen,
        PREFIX_ON_LINK,
        PREFIX_VALID_LIFETIME,
        PREFIX_PREFERRED_LIFETIME,
        0,
        net.network_address.packed,
    )
    return head + options


@dataclass(frozen=True, slots=True)
class RouterSolicitation:
    """What vmnet uses of an RS: the sender's link-layer address, if it gave one."""

    source_mac: MacAddress | None


def parse_rs(data: bytes, hop_limit: int | None, source: IPv6Address) -> RouterSolicitation:
    """Validate an RS as received on a raw ICMPv6 socket.

    Raises:
        DhcpDecodeError: not a valid router solicitation.
    """
    if hop_limit != HOP_LIMIT:
        raise DhcpDecodeError(f"rs: hop limit {hop_limit} is not 255")
    if len(data) < 8 or data[0] != ROUTER_SOLICITATION or data[1] != 0:
        raise DhcpDecodeError(f"rs: {data[:2].hex()} ({len(data)} bytes) is not a solicitation")
    mac: MacAddress | None = None
    pos = 8
    while pos < len(data):
        if pos + 2 > len(data) or data[pos + 1] == 0 or pos + 8 * data[pos + 1] > len(data):
            raise DhcpDecodeError(f"rs: option at {pos} has a bad length")
        kind, size = data[pos], 8 * data[pos + 1]
        if kind == OPT_SOURCE_LLADDR:
            if source.is_unspecified:
                raise DhcpDecodeError("rs: source link-layer option from the unspecified address")
            if size == 8:
                mac = MacAddress(bytes(data[pos + 2 : pos + 8]))
        pos += size
    return RouterSolicitation(mac)


@dataclass(slots=True)
class RaSchedule:
    """When the next RA is due. Times are the caller's monotonic seconds."""

    max_interval: float
    rand: Callable[[], float] = random.random
    due: float = float("-inf")
    last_sent: float | None = None
    sent: int = 0

    def __post_init__(self) -> None:
        if not self.max_interval > 0:
            raise ValueError(f"the RA interval must be positive, not {self.max_interval}")

    @property
    def min_interval(self) -> float:
        return 0.33 * self.max_interval

    @property
    def min_delay(self) -> float:
        return min(MIN_DELAY_BETWEEN_RAS, self.min_interval)

    def timeout(self, now: float) -> float:
        """Seconds until the next RA is due (0 when overdue)."""
        return max(0.0, self.due - now)

    def sent_at(self, now: float) -> None:
        """Record a multicast RA sent at `now` and schedule the next one."""
        self.last_sent = now
        self.sent += 1
        low, high = self.min_interval, self.max_interval
        interval = low + self.rand() * (high - low)
        if self.sent <= MAX_INITIAL_RTR_ADVERTISEMENTS:
            interval = min(interval, MAX_INITIAL_RTR_ADVERT_INTERVAL)
        self.due = now + interval

    def solicited(self, now: float) -> None:
        """A valid RS arrived at `now`: bring the next RA forward."""
        delay = self.rand() * min(MAX_RA_DELAY_TIME, self.min_delay)
        at = now + delay
        if self.last_sent is not None and now - self.last_sent < self.min_delay:
            at = self.last_sent + self.min_delay + delay
        self.due = min(self.due, at)

    def retry(self, now: float, after: float) -> None:
        """Sending failed (e.g. the link-local is still tentative): try again soon."""
        self.due = now + after
