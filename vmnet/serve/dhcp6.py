"""The I/O loop around `Responder6` and the RA timer: DHCPv6 and RAs on bridges.

One `Endpoint6` per serving interface (`vmnet.serve.endpoint6`: what each
socket is for, and why DHCPv6 is read from a packet socket); one loop
serves them all.

Each request goes ipv6_udp -> decode -> respond(src_mac=frame source) ->
encode -> send to the client's address and port.

RAs follow each lane's `RaSchedule`; a solicitation (validated, and from
the VM when its source link-layer option names a MAC) brings one forward.
While the bridge has no usable link-local address an RA cannot be sent:
it is retried every RETRY_SECONDS and counted in `stats.ra_deferred`.

`serve6` never dies on input: undecodable packets are counted
(`stats.dropped_malformed`) and logged at debug; send errors are logged.
It returns within about POLL_SECONDS after `stop` is set.
"""

from __future__ import annotations

import errno
import logging
import random
import selectors
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from vmnet.core.errors import ConfigError, DhcpDecodeError
from vmnet.protocols.dhcp6.codec import decode, encode, ipv6_udp
from vmnet.protocols.dhcp6.ra import RaSchedule, build_ra, parse_rs
from vmnet.protocols.dhcp6.responder import Responder6
from vmnet.serve.endpoint6 import Endpoint6, Received, open_endpoint6
from vmnet.serve.tap6 import TapEndpoint6, open_tap_endpoint6

__all__ = [
    "POLL_SECONDS",
    "RETRY_SECONDS",
    "Endpoint6",
    "TapEndpoint6",
    "open_endpoint6",
    "open_tap_endpoint6",
    "serve6",
]

POLL_SECONDS = 0.1
RETRY_SECONDS = 0.25

log = logging.getLogger("vmnet.protocols.dhcp6")
# an RA cannot go out yet: no usable link-local (bridge), no carrier (tap)
_NOT_YET = (errno.EADDRNOTAVAIL, errno.ENETDOWN)


@dataclass(slots=True)
class _Lane:
    endpoint: Endpoint6 | TapEndpoint6
    responder: Responder6
    schedule: RaSchedule
    ra: bytes = field(init=False)

    def __post_init__(self) -> None:
        self.ra = build_ra(self.responder.config)


def serve6(
    pairs: Sequence[tuple[Endpoint6 | TapEndpoint6, Responder6]],
    stop: threading.Event,
    *,
    ra_interval: float = 10.0,
    rand: Callable[[], float] = random.random,
) -> None:
    """Serve DHCPv6 and send RAs on every (endpoint, responder) pair until `stop` is set.

    Args:
        ra_interval: MaxRtrAdvInterval in seconds (RFC 4861 §6.2.1; `vmnet.protocols.dhcp6.ra`).

    Raises:
        ConfigError: `ra_interval` is not positive.
    """
    if not isinstance(ra_interval, (int, float)) or not ra_interval > 0:
        raise ConfigError("ra_interval", f"must be a positive number, not {ra_interval!r}")
    lanes = [_Lane(ep, resp, RaSchedule(float(ra_interval), rand)) for ep, resp in pairs]
    with selectors.DefaultSelector() as sel:
        for lane in lanes:
            for sock in lane.endpoint.readers:
                sel.register(sock, selectors.EVENT_READ, lane)
        while not stop.is_set():
            now = time.monotonic()
            for lane in lanes:
                if lane.schedule.due <= now:
                    _advertise(lane, now)
            wait = min([POLL_SECONDS] + [lane.schedule.timeout(now) for lane in lanes])
            for key, _ in sel.select(timeout=wait):
                _on_readable(key.data, key.fileobj)  # type: ignore[arg-type]


def _advertise(lane: _Lane, now: float) -> None:
    try:
        lane.endpoint.send_ra(lane.ra)
    except OSError as err:
        lane.responder.stats.ra_deferred += 1
        lane.schedule.retry(now, RETRY_SECONDS)
        if lane.responder.stats.ra_deferred == 1 or err.errno not in _NOT_YET:
            log.info("dhcp6: RA on %s deferred: %s", lane.endpoint.ifname, err)
        return
    lane.responder.stats.ra_sent += 1
    lane.schedule.sent_at(now)


def _on_readable(lane: _Lane, sock: socket.socket) -> None:
    try:
        got = lane.endpoint.receive(sock)
    except (BlockingIOError, InterruptedError):
        return
    except DhcpDecodeError as err:
        lane.responder.stats.dropped_malformed += 1
        log.debug("dhcp6 on %s: dropped: %s", lane.endpoint.ifname, err)
        return
    except OSError as err:
        log.warning("dhcp6 receive on %s: %s", lane.endpoint.ifname, err)
        return
    if got is None:
        return
    if got.kind == "dhcp":
        _on_dhcp(lane, got)
    else:
        _on_rs(lane, got)


def _on_dhcp(lane: _Lane, got: Received) -> None:
    endpoint, responder = lane.endpoint, lane.responder
    try:
        packet = ipv6_udp(got.data)
        reply = responder.respond(decode(packet.payload), src_mac=got.mac)
    except DhcpDecodeError as err:
        responder.stats.dropped_malformed += 1
        log.debug("dhcp6 on %s: dropped %d bytes: %s", endpoint.ifname, len(got.data), err)
        return
    except Exception:  # the server must outlive any single packet
        responder.stats.dropped_malformed += 1
        log.exception("dhcp6 on %s: responder failed", endpoint.ifname)
        return
    if reply is not None:
        try:
            endpoint.send_reply(encode(reply), packet.src, packet.src_port, got.mac)
        except OSError as err:
            log.warning("dhcp6 send on %s to %s: %s", endpoint.ifname, packet.src, err)


def _on_rs(lane: _Lane, got: Received) -> None:
    stats = lane.responder.stats
    try:
        assert got.source is not None
        rs = parse_rs(got.data, got.hops, got.source)
    except DhcpDecodeError as err:
        stats.rs_ignored += 1
        log.debug("dhcp6 on %s: %s", lane.endpoint.ifname, err)
        return
    want = lane.responder.config.client_mac
    foreign = [mac for mac in (rs.source_mac, got.mac) if mac is not None and mac != want]
    if want is not None and foreign:
        stats.rs_ignored += 1
        return
    stats.rs_received += 1
    lane.schedule.solicited(time.monotonic())
