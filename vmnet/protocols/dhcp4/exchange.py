"""One datagram in, at most one Ethernet payload out: the whole DHCPv4 byte path.

`Exchange.handle` is everything the server does with a request apart from
reading and writing sockets, so the fuzzers and the server run the same code:

- decode the datagram; one that does not decode is counted in
  `stats.dropped_malformed` (and logged at debug) and gets nothing; the
  responder failing on a message is counted the same way, and logged;
- ask the responder, which updates the other counters;
- encode the reply and frame it as IPv4 + UDP (checksums set) for an
  AF_PACKET socket, addressed to the client's MAC or to broadcast;
- a DISCOVER identical to an earlier one but for xid and secs (a client
  retransmitting, RFC 2131 §4.1) gets the earlier OFFER again with its own
  xid, and the counters move as for a fresh one (`received`, `offered`). The
  OFFER depends on nothing else of the request and the responder's lease is
  fixed; an OFFER that had options dropped to fit (and logged it) is not
  kept. At most `MEMO_SIZE` requests are remembered.

Requests the kernel says were sent to an address rather than broadcast (a
RENEWING client, RFC 2131 §4.4.5) are counted in `stats.received_unicast`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from vmnet.core.addr import MacAddress
from vmnet.core.errors import DhcpDecodeError
from vmnet.protocols.dhcp4.codec import decode, encode, frame_ipv4_udp
from vmnet.protocols.dhcp4.options import MessageType
from vmnet.protocols.dhcp4.responder import SERVER_PORT, Reply, SingleLeaseResponder

MEMO_SIZE = 8
_XID = slice(4, 8)

log = logging.getLogger("vmnet.dhcp")


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A reply ready for the wire: the IPv4 packet and the MAC it goes to."""

    reply: Reply
    packet: bytes

    @property
    def dest_mac(self) -> MacAddress:
        return self.reply.dest_mac


@dataclass(slots=True)
class Exchange:
    """The byte path of one serving interface (see the module docstring)."""

    responder: SingleLeaseResponder
    ifname: str = "?"
    offers: dict[bytes, tuple[Reply, bytes]] = field(default_factory=dict)

    def handle(self, data: bytes, unicast: bool = False) -> Outgoing | None:
        """The reply to one received datagram, framed; None for silence."""
        stats = self.responder.stats
        stats.received_unicast += unicast
        key = data[:4] + data[10:]  # everything but xid and secs
        known = self.offers.get(key)
        if known is not None:
            stats.received += 1
            stats.offered += 1
            self.responder.logger.info("dhcp: DISCOVER (again) on %s: the same OFFER", self.ifname)
            reply, payload = known
            return self._frame(reply, payload[:4] + data[_XID] + payload[8:])
        answer = self._respond(data)
        if answer is None:
            return None
        reply, payload, memo = answer
        if memo:
            if len(self.offers) >= MEMO_SIZE:
                self.offers.clear()
            self.offers[key] = (reply, payload)
        return self._frame(reply, payload)

    def _respond(self, data: bytes) -> tuple[Reply, bytes, bool] | None:
        stats = self.responder.stats
        try:
            msg = decode(data)
            dropped = stats.options_dropped
            reply = self.responder.respond(msg)
        except DhcpDecodeError as err:
            stats.dropped_malformed += 1
            log.debug("dhcp on %s: dropped %d bytes: %s", self.ifname, len(data), err)
            return None
        except Exception:  # the server must outlive any single packet
            stats.dropped_malformed += 1
            log.exception("dhcp on %s: responder failed", self.ifname)
            return None
        if reply is None:
            return None
        memo = (
            msg.message_type == MessageType.DISCOVER
            and reply.message.message_type == MessageType.OFFER
            and stats.options_dropped == dropped
        )
        return reply, encode(reply.message), memo

    @staticmethod
    def _frame(reply: Reply, payload: bytes) -> Outgoing:
        ports = (SERVER_PORT, reply.dest_port)
        return Outgoing(reply, frame_ipv4_udp(reply.src_ip, reply.dest_ip, ports, payload))
