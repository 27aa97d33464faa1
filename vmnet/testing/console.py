"""`SerialGuest`: a test guest driven over its serial console, whatever runs it.

The serial console is one byte stream read by one reader thread; every
byte is kept in `console`. Commands use the protocol of
`vmnet.testing.initramfs` and match their own sequence
number, so a command that timed out cannot be taken for a later one.

Every wait has a deadline.

Bad arguments raise ConfigError before anything starts; a guest that does
not boot, dies, or does not answer in time raises DriverError naming the
operation, the guest, and the last console line.

Subclasses start the VM and attach the console: `vmnet.testing.qemu.QemuGuest`
(qemu's stdio) and `vmnet.testing.libvirt.LibvirtGuest` (a unix socket).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Self

from vmnet.core.addr import MacAddress
from vmnet.core.errors import ConfigError, DriverError
from vmnet.testing.initramfs import BEGIN, END, READY, missing_inputs
from vmnet.testing.lease import Lease, parse_ipconfig, parse_udhcpc
from vmnet.testing.shell import CommandResult, GuestShell

QEMU = "qemu-system-x86_64"
KERNEL_ARGS = "console=ttyS0 panic=-1 quiet"
MAX_LINE = 4000  # the guest tty's canonical line buffer holds 4095 bytes
UDHCPC = (
    "udhcpc -i {ifname} -f -q -n -t 5 -T 1 -A 1 -s /etc/udhcpc.script"
    " -O mtu -O search -O staticroutes"
)
IPCONFIG = "ipconfig -t 10 -c dhcp -d {ifname}"


def available(kernel: str | Path | None = None) -> str | None:
    """Why no qemu guest can run here (for pytest skips), or None if one can."""
    if os.geteuid() != 0:
        return "qemu guests need root (network namespaces, taps)"
    if shutil.which(QEMU) is None:
        return f"{QEMU} is not installed (package qemu-system-x86)"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing"
    return missing_inputs(kernel)


class SerialGuest(GuestShell):
    """The console protocol over any byte stream; subclasses start the VM."""

    def __init__(self, name: str, timeout: float) -> None:
        self.name = name
        self.timeout = timeout
        self.boot_seconds: float | None = None
        self.guest_mac: MacAddress | None = None
        self._buf = bytearray()
        self._cond = threading.Condition()
        self._eof = True  # until start() attaches a console
        self._seq = 0
        self._lock = threading.Lock()
        self._started = time.monotonic()

    @property
    def console(self) -> str:
        """Everything the guest (and qemu) printed so far."""
        with self._cond:
            return self._buf.decode(errors="replace")

    def _pump(self, read: int) -> None:
        while chunk := _read_chunk(read):
            with self._cond:
                self._buf += chunk
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def _send(self, line: bytes) -> None:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def close(self, timeout: float = 10.0) -> object:
        raise NotImplementedError

    def __enter__(self) -> Self:
        """Start and wait for boot; a guest that does not boot is closed again."""
        self.start()
        try:
            self.wait_booted()
        except BaseException:
            self.close(timeout=2.0)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _wait_for(
        self, pattern: re.Pattern[bytes], start: int, timeout: float, op: str
    ) -> re.Match[bytes]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while (match := pattern.search(self._buf, start)) is None:
                left = deadline - time.monotonic()
                if self._eof or left <= 0:
                    why = "guest is not running" if self._eof else f"timed out after {timeout:g}s"
                    raise DriverError(op, self.name, f"{why}; console: {self._tail()!r}")
                self._cond.wait(left)
            return match

    def _tail(self) -> str:
        lines = self._buf.decode(errors="replace").strip().splitlines()
        return lines[-1].strip() if lines else ""

    def wait_booted(self, timeout: float | None = None) -> float:
        """Wait for the guest's ready line; return seconds since start."""
        if self.boot_seconds is None:
            pattern = re.compile(re.escape(READY.encode()) + rb" (\S+)\n")
            match = self._wait_for(pattern, 0, timeout or self.timeout, "boot")
            self.boot_seconds = time.monotonic() - self._started
            mac = match.group(1).decode()
            self.guest_mac = MacAddress.parse(mac) if mac != "none" else None
        return self.boot_seconds

    def run(self, cmd: str, timeout: float = 30.0) -> CommandResult:
        """Run `cmd` with the guest's sh; return (exit code, stdout+stderr)."""
        line = base64.b64encode(cmd.encode())
        if len(line) > MAX_LINE:
            raise ConfigError("cmd", f"{len(line)} bytes encoded, the console takes {MAX_LINE}")
        self.wait_booted()
        with self._lock:
            self._seq += 1
            seq = str(self._seq).encode()
            with self._cond:
                mark = len(self._buf)
            self._send(seq + b" " + line + b"\n")
            pattern = re.compile(
                re.escape(BEGIN.encode())
                + b" "
                + seq
                + rb"\n(.*?)\n"
                + re.escape(END.encode())
                + b" "
                + seq
                + rb" (\d+)\n",
                re.DOTALL,
            )
            match = self._wait_for(pattern, mark, timeout, f"run {cmd[:40]!r}")
        return CommandResult(int(match.group(2)), match.group(1).decode(errors="replace"))

    def dhcp(self, client: str = "udhcpc", *, ifname: str = "eth0", timeout: float = 30.0) -> Lease:
        """Lease with a real DHCP client in the guest and apply what it got.

        Args:
            client: "udhcpc" (busybox, with its hook script) or "ipconfig" (klibc).
        """
        if client == "udhcpc":
            self.check(
                f"rm -f /run/udhcpc.{ifname}.lease; " + UDHCPC.format(ifname=ifname), timeout
            )
            return parse_udhcpc(self.check(f"cat /run/udhcpc.{ifname}.lease"))
        if client == "ipconfig":
            self.check(f"rm -f /run/net-{ifname}.conf; " + IPCONFIG.format(ifname=ifname), timeout)
            return parse_ipconfig(self.check(f"cat /run/net-{ifname}.conf"))
        raise ConfigError("client", f"unknown DHCP client {client!r} (udhcpc, ipconfig)")


def validate_nic(tap: str, mac: str, mtu: int | None, memory_mb: int) -> MacAddress:
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", tap):
        raise ConfigError("tap", f"invalid interface name {tap!r}")
    if mtu is not None and not 68 <= mtu <= 65535:
        raise ConfigError("mtu", f"{mtu} is outside 68..65535")
    if memory_mb < 64:
        raise ConfigError("memory_mb", f"{memory_mb} MiB is too little to boot")
    try:
        return MacAddress.parse(mac)
    except ValueError as err:
        raise ConfigError("mac", str(err)) from err


def _read_chunk(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:
        return b""
