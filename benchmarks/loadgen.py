"""A DHCP DISCOVER load generator on a raw AF_PACKET socket.

Rules:
1. Frames are built once (Ethernet + IPv4 + UDP with checksum 0, RFC 768
   allows it over IPv4, + a DISCOVER); per transaction only the 4 xid bytes
   change, so sending costs one slice assignment and one `send`. That is a
   retransmitted DISCOVER, which a server may answer from a cache.
   With `dora=True` a transaction is a whole DISCOVER, OFFER, REQUEST, ACK:
   each DISCOVER also carries its own `secs` and maximum message size
   (option 57), so no two are the same request and none is answered from a
   cache, and each OFFER is answered by a SELECTING REQUEST with the
   same xid, secs and option 57 (so no REQUEST repeats either); the
   transaction is done at its ACK.
2. A transaction is a DISCOVER whose OFFER (op 2 to port 68 with the same
   xid) came back. Replies are drained until EAGAIN after every wake-up.
3. `closed_loop` keeps `window` transactions outstanding (max throughput);
   `open_loop` sends at a fixed rate and records each latency (no
   coordinated omission: a late reply still counts from its send time).
   A reply's arrival time is the kernel's receive timestamp
   (SO_TIMESTAMPNS), so the generator's own scheduling delays after
   arrival do not count against the server.
4. A transaction unanswered after `TIMEOUT` is counted lost and forgotten.
5. The generator's own CPU time is reported, so a run can show it was not
   the bottleneck (busy fraction well under 1).
"""

from __future__ import annotations

import select
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from vmnet.core.netns import run_in

ETH_P_ALL = 0x0003
SO_TIMESTAMPNS = 35  # asm-generic/socket.h; cmsg carries struct timespec
_TIMESPEC = struct.Struct("=qq")
XID_AT = 14 + 20 + 8 + 4
SECS_AT = XID_AT + 4
YIADDR_AT = 14 + 20 + 8 + 16
OPTIONS_AT = 14 + 20 + 8 + 240
OFFER, ACK = 2, 5
REQUEST_SHIFT = 6 + 6  # options 50 and 54 come before 61, 55 and 57 in a REQUEST
TIMEOUT = 0.2


def _checksum(data: bytes) -> int:
    total = int(sum(struct.unpack(f"!{len(data) // 2}H", data)))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def discover_frame(mac: bytes) -> bytes:
    """Ethernet broadcast frame carrying a DISCOVER from `mac` (RFC 2131 §4.4.1)."""
    return _frame(mac, bytes((53, 1, 1)))


def request_frame(mac: bytes, requested: bytes, server: bytes) -> bytes:
    """A SELECTING REQUEST for `requested` from `server` (RFC 2131 §4.3.2)."""
    return _frame(mac, bytes((53, 1, 3, 50, 4)) + requested + bytes((54, 4)) + server)


def _frame(mac: bytes, kind: bytes) -> bytes:
    bootp = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s",
        1,
        1,
        6,
        0,
        0,
        0,
        0,
        bytes(4),
        bytes(4),
        bytes(4),
        bytes(4),
        mac,
        b"",
        b"",
    )
    opts = (
        b"\x63\x82\x53\x63"
        + kind
        + bytes((61, 7, 1))
        + mac
        + bytes((55, 8, 1, 3, 6, 12, 15, 26, 28, 121))
        + bytes((57, 2, 5, 220))
        + b"\xff"
    )
    payload = (bootp + opts).ljust(300, b"\0")
    udp = struct.pack("!HHHH", 68, 67, 8 + len(payload), 0) + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0x10, 20 + len(udp), 0, 0, 64, 17, 0, bytes(4), b"\xff" * 4
    )
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return b"\xff" * 6 + mac + b"\x08\x00" + ip + udp


def reply_fields(frame: bytes) -> tuple[int, bytes, bytes]:
    """(message type, yiaddr, server identifier) of a DHCP reply frame."""
    kind, server, pos = 0, b"", OPTIONS_AT
    while pos + 1 < len(frame) and frame[pos] != 255:
        code = frame[pos]
        if code == 0:
            pos += 1
            continue
        size = frame[pos + 1]
        if code == 53 and size == 1:
            kind = frame[pos + 2]
        elif code == 54 and size == 4:
            server = frame[pos + 2 : pos + 6]
        pos += 2 + size
    return kind, frame[YIADDR_AT : YIADDR_AT + 4], server


def _arrival(ancillary: list[tuple[int, int, bytes]]) -> float:
    """The kernel receive time (CLOCK_REALTIME) of a packet, else now."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            sec, nsec = _TIMESPEC.unpack_from(data)
            return float(sec + nsec / 1e9)
    return time.time()


def open_socket(netns: str, ifname: str) -> socket.socket:
    """A non-blocking AF_PACKET socket on `ifname` in `netns`."""

    def make() -> socket.socket:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.bind((ifname, 0))
        return sock

    sock = run_in(netns, make)
    sock.setblocking(False)
    return sock


@dataclass
class Run:
    """What one generator run saw."""

    done: int = 0
    lost: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0

    @property
    def busy(self) -> float:
        return self.cpu_seconds / self.seconds if self.seconds else 0.0


class Generator:
    """Drives one server through `sock` with DISCOVERs from `mac`."""

    def __init__(self, sock: socket.socket, mac: bytes, *, dora: bool = False) -> None:
        self.sock = sock
        self.mac = mac
        self.frame = bytearray(discover_frame(mac))
        self.max_size_at = self.frame.index(bytes((57, 2)), OPTIONS_AT) + 2
        self.request: bytearray | None = None  # built from the first OFFER (dora)
        self.dora = dora
        self.xid = 0
        self.pending: dict[bytes, float] = {}
        self.stamped = False  # send times on the kernel's clock (open loop)

    def _send(self, now: float) -> None:
        self.xid = (self.xid + 1) & 0xFFFFFFFF
        xid = self.xid.to_bytes(4, "big")
        self.frame[XID_AT : XID_AT + 4] = xid
        if self.dora:  # every transaction differs beyond xid and secs: no cached answer
            self.frame[SECS_AT : SECS_AT + 2] = (self.xid & 0xFFFF).to_bytes(2, "big")
            size = 576 + self.xid % 900  # option 57, as a client's state would change it
            self.frame[self.max_size_at : self.max_size_at + 2] = size.to_bytes(2, "big")
        self.pending[xid] = time.time() if self.stamped else now
        self.sock.send(self.frame)

    def _drain(self, run: Run, record: bool) -> None:
        pending, sock = self.pending, self.sock
        space = socket.CMSG_SPACE(_TIMESPEC.size)
        anc: list[tuple[int, int, bytes]] = []
        while True:
            try:
                if record:
                    data, anc, _, _ = sock.recvmsg(2048, space)
                else:
                    data = sock.recv(2048)
            except BlockingIOError:
                return
            if len(data) < 50 or data[23] != 17 or data[36:38] != b"\x00\x44" or data[42] != 2:
                continue
            xid = data[XID_AT : XID_AT + 4]
            if self.dora and xid in pending:
                kind = reply_fields(data)[0]
                if kind == OFFER:
                    self._request(data, xid)
                    continue  # the transaction ends with its ACK
                if kind != ACK:
                    continue
            sent = pending.pop(xid, None)
            if sent is not None:
                run.done += 1
                if record:
                    run.latencies_ms.append((_arrival(anc) - sent) * 1000)

    def _request(self, offer: bytes, xid: bytes) -> None:
        """DORA: answer an OFFER with its REQUEST (the DISCOVER's xid and secs)."""
        if self.request is None:
            _, yiaddr, server = reply_fields(offer)
            self.request = bytearray(request_frame(self.mac, yiaddr, server))
        request, at = self.request, self.max_size_at + REQUEST_SHIFT
        request[XID_AT : XID_AT + 4] = xid
        request[SECS_AT : SECS_AT + 2] = xid[2:]
        request[at : at + 2] = (576 + int.from_bytes(xid, "big") % 900).to_bytes(2, "big")
        self.sock.send(request)

    def _expire(self, run: Run, now: float) -> None:
        if self.stamped:
            now = time.time()
        old = [x for x, t in self.pending.items() if now - t > TIMEOUT]
        for xid in old:
            del self.pending[xid]
        run.lost += len(old)

    def closed_loop(self, seconds: float, window: int = 64, limit: int | None = None) -> Run:
        """Max throughput: keep `window` DISCOVERs in flight for `seconds`."""
        run, cpu0 = Run(), time.thread_time()
        start = last_expiry = time.perf_counter()
        now = start
        while now - start < seconds and (limit is None or run.done < limit):
            while len(self.pending) < window:
                self._send(now)
            select.select([self.sock], [], [], 0.02)
            self._drain(run, record=False)
            now = time.perf_counter()
            if now - last_expiry > TIMEOUT:
                self._expire(run, now)
                last_expiry = now
        run.seconds = now - start
        run.cpu_seconds = time.thread_time() - cpu0
        self.settle()
        return run

    def open_loop(self, rate: float, count: int) -> Run:
        """`count` DISCOVERs at `rate` per second; every latency recorded."""
        self.stamped = True
        try:
            return self._open_loop(rate, count)
        finally:
            self.stamped = False

    def _open_loop(self, rate: float, count: int) -> Run:
        run, cpu0 = Run(), time.thread_time()
        interval, sent = 1.0 / rate, 0
        start = last_expiry = time.perf_counter()
        due = now = start
        while sent < count or self.pending:
            while sent < count and now >= due:
                self._send(now)
                sent, due = sent + 1, due + interval
            wait = max(0.0, due - now) if sent < count else TIMEOUT
            select.select([self.sock], [], [], wait)
            self._drain(run, record=True)
            now = time.perf_counter()
            if now - last_expiry > TIMEOUT:
                self._expire(run, now)
                last_expiry = now
        run.seconds = now - start
        run.cpu_seconds = time.thread_time() - cpu0
        return run

    def settle(self) -> None:
        """Collect the replies still in flight, then forget the rest."""
        deadline = time.perf_counter() + TIMEOUT
        scratch = Run()
        while self.pending and time.perf_counter() < deadline:
            select.select([self.sock], [], [], 0.01)
            self._drain(scratch, record=False)
        self.pending.clear()

    def poll_answer(
        self, timeout: float, alive: Callable[[], bool], interval: float = 0.002
    ) -> float | None:
        """Send a DISCOVER every `interval` until one is answered: the
        perf_counter time of that answer, or None (timeout, or not `alive`)."""
        deadline = time.perf_counter() + timeout
        scratch = Run()
        while time.perf_counter() < deadline and alive():
            self._send(time.perf_counter())
            select.select([self.sock], [], [], interval)
            self._drain(scratch, record=False)
            if scratch.done:
                self.pending.clear()
                return time.perf_counter()
        self.pending.clear()
        return None

    def first_offer(self, timeout: float = 10.0) -> bool:
        """Send a DISCOVER every 50 ms until one is answered (server ready)."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            run = self.closed_loop(0.05, window=1)
            if run.done:
                return True
        return False
