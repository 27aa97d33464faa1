"""Real qemu guests for tests, driven over their serial console.

qemu runs inside the pod namespace (the child enters it between fork and
exec with `vmnet.core.netns.preexec`, which only calls setns(2), hence
the PLW1509 waiver) and attaches to a tap that already exists there, as
virt-launcher's qemu does; the test process never moves.

The console protocol, its deadlines and its errors are `SerialGuest`'s
(`vmnet.testing.console`).

Every wait has a deadline. `close()` powers the guest off, then kills qemu
once its deadline passes: no process outlives the context manager.

Bad arguments raise ConfigError before anything starts.

The libvirt guests live in `vmnet.testing.libvirt`; they and the console
names are re-exported here, so `from vmnet.testing.qemu import Libvirtd` works.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

from vmnet.core.errors import DriverError
from vmnet.core.netns import check_netns, preexec
from vmnet.testing.console import (
    IPCONFIG,
    KERNEL_ARGS,
    MAX_LINE,
    QEMU,
    UDHCPC,
    SerialGuest,
    available,
    validate_nic,
)
from vmnet.testing.initramfs import find_kernel, guest_image
from vmnet.testing.libvirt import (
    DOMAIN_XML,
    LIBVIRT_PATHS,
    LIBVIRTD_CONF,
    QEMU_CONF,
    Libvirtd,
    LibvirtGuest,
    default_caps_dir,
    ensure_qemu_user,
    libvirt_available,
)

__all__ = [
    "DOMAIN_XML",
    "IPCONFIG",
    "KERNEL_ARGS",
    "LIBVIRTD_CONF",
    "LIBVIRT_PATHS",
    "MAX_LINE",
    "QEMU",
    "QEMU_CONF",
    "UDHCPC",
    "LibvirtGuest",
    "Libvirtd",
    "QemuGuest",
    "SerialGuest",
    "available",
    "default_caps_dir",
    "ensure_qemu_user",
    "libvirt_available",
]


class QemuGuest(SerialGuest):
    """A busybox guest in qemu (TCG), attached to `tap` inside `netns`.

    Use as a context manager: entering boots and waits for the console,
    leaving powers off and reaps qemu.
    """

    def __init__(
        self,
        netns: str,
        tap: str,
        mac: str,
        *,
        mtu: int | None = None,
        kernel: str | Path | None = None,
        memory_mb: int = 256,
        timeout: float = 60.0,
        cache_dir: str | Path | None = None,
    ) -> None:
        check_netns(netns)
        find_kernel(kernel)
        self.vm_mac = validate_nic(tap, mac, mtu, memory_mb)
        super().__init__(f"qemu guest {netns}/{tap}", timeout)
        self.netns, self.tap, self.mtu_arg = netns, tap, mtu
        self._kernel, self._memory, self._cache_dir = kernel, memory_mb, cache_dir
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    def argv(self) -> list[str]:
        """The qemu command line (builds the guest image if needed)."""
        image = guest_image(self._kernel, cache_dir=self._cache_dir)
        dev = f"virtio-net-pci,netdev=n0,mac={self.vm_mac},romfile="
        if self.mtu_arg is not None:
            dev += f",host_mtu={self.mtu_arg}"
        return [
            QEMU,
            "-accel",
            "tcg",
            "-m",
            str(self._memory),
            "-nographic",
            "-nodefaults",
            "-no-user-config",
            "-no-reboot",
            "-serial",
            "stdio",
            "-kernel",
            str(image.kernel),
            "-initrd",
            str(image.initrd),
            "-append",
            KERNEL_ARGS,
            "-netdev",
            f"tap,id=n0,ifname={self.tap},script=no,downscript=no",
            "-device",
            dev,
        ]

    def start(self) -> None:
        """Start qemu; return at once (see wait_booted)."""
        argv = self.argv()
        self._started = time.monotonic()
        try:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                preexec_fn=preexec(self.netns),
            )
        except OSError as err:
            raise DriverError("start", self.name, err.errno or 0) from err
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        self._eof = False
        self._reader = threading.Thread(target=self._pump, args=(fd,), daemon=True, name=self.name)
        self._reader.start()

    def _send(self, line: bytes) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(line)
            self._proc.stdin.flush()
        except (BrokenPipeError, ValueError) as err:
            raise DriverError("console write", self.name, f"qemu is gone: {err}") from err

    def close(self, timeout: float = 10.0) -> int | None:
        """Power off, kill after `timeout`, reap; return qemu's exit status."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None and proc.stdin is not None:
            try:
                proc.stdin.write(b"poweroff\n")
                proc.stdin.close()
            except (BrokenPipeError, ValueError):
                pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if self._reader is not None:
            self._reader.join(timeout)
        if proc.stdout is not None:
            proc.stdout.close()
        return proc.returncode

    @property
    def pid(self) -> int | None:
        """qemu's process id while it runs."""
        return self._proc.pid if self._proc is not None else None
