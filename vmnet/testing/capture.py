"""What crosses a link: tcpdump in a namespace, read back as raw frames.

    with capture(node.netns, "veth1234") as seen:
        ...                                   # traffic
    assert not [f for f in seen.frames if is_router_advertisement(f)]

`capture` starts `tcpdump --immediate-mode -U -w` on the link (without
immediate mode the last second of frames waits in tcpdump's ring and is
lost), waits until it is listening (so nothing sent after the `with` line
is missed), and on exit stops it and
reads the pcap file itself (the classic format: a 24-byte header, then a
16-byte header per frame). No filter is applied: a test can then also
assert what it expects to see, so a capture that saw nothing proves
nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from vmnet.core.errors import ConfigError
from vmnet.core.netns import check_netns

PCAP_MAGIC = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">"}  # microsecond pcap


@dataclass
class Captured:
    """The frames seen on `ifname`: `so_far()` while the capture runs,
    `frames` once it has ended."""

    netns: str
    ifname: str
    path: str = ""
    frames: list[bytes] = field(default_factory=list)

    def so_far(self) -> list[bytes]:
        """Every frame written so far (tcpdump writes each one as it comes)."""
        return read_pcap(self.path) if os.path.exists(self.path) else []


def read_pcap(path: str) -> list[bytes]:
    """The frames of a classic pcap file (a truncated last record is dropped)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return []  # tcpdump has not written its header yet
    if data[:4] not in PCAP_MAGIC:
        raise ConfigError("pcap", f"{path} is not a pcap file")
    order, pos, out = PCAP_MAGIC[data[:4]], 24, []
    while pos + 16 <= len(data):
        caplen = struct.unpack_from(f"{order}I", data, pos + 8)[0]
        if pos + 16 + caplen > len(data):
            break
        out.append(data[pos + 16 : pos + 16 + caplen])
        pos += 16 + caplen
    return out


@contextlib.contextmanager
def capture(netns: str, ifname: str, *, timeout: float = 10.0) -> Iterator[Captured]:
    """Record every frame on `ifname` in `netns` while the block runs."""
    check_netns(netns)
    with tempfile.TemporaryDirectory(prefix="vmnet-capture-") as scratch:
        path, log_path = os.path.join(scratch, "frames.pcap"), os.path.join(scratch, "log")
        seen = Captured(netns, ifname, path)
        tcpdump = ["tcpdump", "--immediate-mode", "-U", "-n", "-i", ifname, "-w", path]
        argv = ["ip", "netns", "exec", netns, *tcpdump]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True
            )
        try:
            _await_listening(proc, log_path, timeout)
            yield seen
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)  # tcpdump flushes and exits
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        seen.frames = read_pcap(path)


def _await_listening(proc: subprocess.Popen[bytes], log_path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(log_path, "rb") as log:
            text = log.read().decode(errors="replace")
        if "listening on" in text:
            return
        if proc.poll() is not None:
            raise ConfigError("capture", f"tcpdump exited {proc.returncode}: {text.strip()}")
        time.sleep(0.02)
    raise ConfigError("capture", f"tcpdump did not start listening within {timeout} s")
