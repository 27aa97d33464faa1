"""Finding the pod's IPv6 router on the pod's own link, before the bridge binding moves it.

The bridge binding hands the pod's IPv6 address to the VM, and the VM must
then reach the cluster through the router the pod used. A router
advertisement can only name a router by its source address, which must be
link-local (RFC 4861 §6.1.2), but CNI plugins usually give the pod a global
gateway (`default via fd00:10::1`). So phase 1 asks the link, while the pod
NIC still holds its addresses:

1. The gateway's MAC: a datagram to the gateway makes the kernel solicit it
   (RFC 4861 §7.2); the neighbour table then holds its link-layer address.
2. Its link-local address: first the one Linux derives from that MAC
   (modified EUI-64, RFC 4291 App. A; a CNI bridge has it), confirmed by
   resolving it to the same MAC; failing that, every node that answers an
   echo request to ff02::1 (RFC 4443 §4.1) is resolved in turn and the one
   with the gateway's MAC is taken (stable-privacy addresses, RFC 7217).

A link-local gateway (`default via fe80::1`, as Calico's) needs step 1 only.
The datagrams go to the discard port (9); a router answers with an ICMPv6
error or nothing, and nothing is configured anywhere. None means the router
did not answer: the caller degrades (the VM gets its address, no route).
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv6Address
from typing import Protocol

from vmnet.core.addr import IPAddress, MacAddress, eui64_link_local
from vmnet.core.netns import Worker, run_in
from vmnet.plan.state import Router6

DISCARD_PORT = 9
ECHO_REQUEST, ECHO_REPLY = 128, 129
ICMP6_FILTER = 1  # linux/icmpv6.h
POLL = 0.02
RESEND = 0.5


class Neighbours(Protocol):
    def neighbours(self, index: int) -> list[tuple[IPAddress, MacAddress]]: ...


class Router6Probe:
    """`vmnet.apply.drivers.Router6Finder` on a real namespace."""

    def __init__(self, netlink: Neighbours, netns: str | None, worker: Worker | None) -> None:
        self._netlink = netlink
        self._netns = netns
        self._worker = worker

    def find(self, index: int, gateway: IPv6Address, timeout: float = 3.0) -> Router6 | None:
        """The link-local address and MAC of `gateway` on link `index`; None if it is silent."""
        deadline = time.monotonic() + timeout
        mac = self._resolve(index, gateway, deadline)
        if gateway.is_link_local:
            return Router6(gateway, mac)
        if mac is None:
            return None
        derived = eui64_link_local(mac)
        quick = min(deadline, time.monotonic() + 1.0)
        if self._resolve(index, derived, quick) == mac:
            return Router6(derived, mac)
        for source in self._all_nodes(index, min(deadline, time.monotonic() + 1.0)):
            each = min(deadline, time.monotonic() + RESEND)  # a pod on the link may be slow
            if source.is_link_local and self._resolve(index, source, each) == mac:
                return Router6(source, mac)
        return None

    def _in_netns(self, fn: Callable[[], socket.socket]) -> socket.socket:
        return self._worker.run(fn) if self._worker is not None else run_in(self._netns, fn)

    def _lookup(self, index: int, ip: IPv6Address) -> MacAddress | None:
        return dict(self._netlink.neighbours(index)).get(ip)

    def _resolve(self, index: int, ip: IPv6Address, deadline: float) -> MacAddress | None:
        """`ip`'s MAC from the neighbour table, soliciting it by sending it a datagram."""
        mac = self._lookup(index, ip)
        if mac is not None:
            return mac
        sock = self._in_netns(lambda: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM))
        try:
            sent = 0.0
            while time.monotonic() < deadline:
                if time.monotonic() - sent >= RESEND:
                    sent = time.monotonic()
                    with contextlib.suppress(OSError):  # tentative source, no route yet
                        sock.sendto(b"", (str(ip), DISCARD_PORT, 0, index))
                time.sleep(POLL)
                mac = self._lookup(index, ip)
                if mac is not None:
                    return mac
            return None
        finally:
            sock.close()

    def _all_nodes(self, index: int, deadline: float) -> Iterator[IPv6Address]:
        """The sources of the echo replies to one echo request to ff02::1, first come first."""
        raw = socket.SOCK_RAW
        sock = self._in_netns(lambda: socket.socket(socket.AF_INET6, raw, socket.IPPROTO_ICMPV6))
        try:
            blocked = [0xFFFFFFFF] * 8
            blocked[ECHO_REPLY >> 5] &= ~(1 << (ECHO_REPLY & 31))
            sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, struct.pack("=8I", *blocked))
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)  # not us
            ident = os.getpid() & 0xFFFF
            request = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, ident, 1) + b"vmnet"
            with contextlib.suppress(OSError):
                sock.sendto(request, ("ff02::1", 0, 0, index))
            seen: set[IPv6Address] = set()
            while (left := deadline - time.monotonic()) > 0:
                if not select.select([sock], [], [], left)[0]:
                    break
                data, addr = sock.recvfrom(1500)
                source = IPv6Address(addr[0].split("%")[0])
                ours = len(data) >= 8 and struct.unpack_from("!BxxxH", data) == (ECHO_REPLY, ident)
                if ours and source not in seen:
                    seen.add(source)
                    yield source
        finally:
            sock.close()
