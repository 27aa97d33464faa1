"""Flood shield for the DHCPv4 receive socket: shed other clients in the kernel.

A Python server reads a few tens of thousands of requests a second; a
flood of requests from other clients (broadcasts reach the pod bridge
from the pod NIC's side too) fills the socket buffer, and the kernel
then drops the VM's own DISCOVER with the rest: the guest retries only
seconds later.

So when the receive socket of an endpoint starts dropping
(`SO_MEMINFO`, SK_MEMINFO_DROPS), the shield attaches a classic BPF
socket filter (`SO_ATTACH_FILTER`, Documentation/networking/filter.rst)
that keeps only BOOTREQUESTs from the configured client - htype 1
(Ethernet), hlen 6 and chaddr equal to its MAC (RFC 2131 §2) - and drops
everything else before it is queued. Until then, every request reaches
the responder and is counted as before.

For a UDP socket the filter sees the datagram from its UDP header on:
the DHCP message starts at offset 8, so htype is at 9, hlen at 10 and
chaddr at 36.

A responder that answers any client (`client_mac` None) is never
shielded. The filter stays until the socket is closed.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
from collections.abc import Sequence

from vmnet.core.addr import MacAddress
from vmnet.serve.sockets import attach_filter

SO_MEMINFO = 55
SK_MEMINFO_VARS = 9  # linux/sock_diag.h
SK_MEMINFO_DROPS = 8
_UDP = 8  # a UDP socket's filter sees the UDP header first
_LDB, _LDH, _LDW = 0x30, 0x28, 0x20  # BPF_LD|BPF_{B,H,W}|BPF_ABS
_JEQ = 0x15  # BPF_JMP|BPF_JEQ|BPF_K
_RET = 0x06  # BPF_RET|BPF_K
_ACCEPT, _DROP = 0xFFFFFFFF, 0

log = logging.getLogger("vmnet.protocols.dhcp4")


def client_filter(mac: MacAddress) -> bytes:
    """The BPF program that keeps `mac`'s BOOTREQUESTs, as `struct sock_filter[]` bytes."""
    head, tail = struct.unpack("!IH", mac.packed)
    prog = [
        (_LDB, 0, 0, _UDP + 1),
        (_JEQ, 0, 7, 1),  # htype == Ethernet
        (_LDB, 0, 0, _UDP + 2),
        (_JEQ, 0, 5, 6),  # hlen == 6
        (_LDW, 0, 0, _UDP + 28),
        (_JEQ, 0, 3, head),  # chaddr[0:4]
        (_LDH, 0, 0, _UDP + 32),
        (_JEQ, 0, 1, tail),  # chaddr[4:6]
        (_RET, 0, 0, _ACCEPT),
        (_RET, 0, 0, _DROP),
    ]
    return b"".join(struct.pack("=HBBI", *insn) for insn in prog)


def attach_client_filter(sock: socket.socket, mac: MacAddress) -> None:
    """Keep only `mac`'s requests on `sock`."""
    attach_filter(sock, client_filter(mac))


def socket_drops(sock: socket.socket) -> int:
    """Datagrams the kernel dropped on `sock` since it was opened."""
    raw = sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, 4 * SK_MEMINFO_VARS)
    return int(struct.unpack(f"={SK_MEMINFO_VARS}I", raw)[SK_MEMINFO_DROPS])


class Shield:
    """Watches receive sockets and shields each one that drops."""

    def __init__(
        self, watched: Sequence[tuple[socket.socket, MacAddress | None]], interval: float = 0.05
    ) -> None:
        self.pending = [(sock, mac) for sock, mac in watched if mac is not None]
        self.interval = interval
        self.shielded: list[socket.socket] = []

    def run(self, stop: threading.Event) -> None:
        """Check every `interval` until `stop` is set or every socket is shielded."""
        while self.pending and not stop.wait(self.interval):
            for sock, mac in list(self.pending):
                try:
                    dropping = socket_drops(sock) > 0
                    if dropping:
                        attach_client_filter(sock, mac)
                except (OSError, ValueError) as err:
                    log.warning("dhcp shield: %s", err)
                    self.pending.remove((sock, mac))
                    continue
                if dropping:
                    log.warning("dhcp: receive queue overflowed; only %s is heard from now on", mac)
                    self.pending.remove((sock, mac))
                    self.shielded.append(sock)
