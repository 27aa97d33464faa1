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

Live migration is qemu's own (`migrate_to`): the target is a `QemuGuest`
started with `incoming=True` in the other pod, waiting on a unix socket;
the source is told over QMP (`vmnet.testing.qmp`) to migrate there, and
once qemu reports the migration completed, the target takes over the
console (the guest's shell goes on where it was) and the source exits.
qemu announces the guest's MAC from the target (self-announce: RARP frames,
by default 5 of them from 50 ms on), as it does for any live migration.

The libvirt guests live in `vmnet.testing.libvirt`; they and the console
names are re-exported here, so `from vmnet.testing.qemu import Libvirtd` works.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Self

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
from vmnet.testing.qmp import Qmp

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
        qmp: bool = False,
        incoming: bool = False,
    ) -> None:
        """`qmp`: also open a QMP socket (`.qmp_path`); `incoming`: start as a
        live-migration target that waits for a source (`migrate_to`)."""
        check_netns(netns)
        find_kernel(kernel)
        self.vm_mac = validate_nic(tap, mac, mtu, memory_mb)
        super().__init__(f"qemu guest {netns}/{tap}", timeout)
        self.netns, self.tap, self.mtu_arg = netns, tap, mtu
        self._kernel, self._memory, self._cache_dir = kernel, memory_mb, cache_dir
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self.incoming = incoming
        self._dir = tempfile.mkdtemp(prefix="vmnet-qemu-") if (qmp or incoming) else None
        self.qmp_path = f"{self._dir}/qmp.sock" if self._dir else None
        self.incoming_path = f"{self._dir}/incoming.sock" if incoming else None
        self.migrated_away = False

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
            *(["-qmp", f"unix:{self.qmp_path},server=on,wait=off"] if self.qmp_path else []),
            *(["-incoming", f"unix:{self.incoming_path}"] if self.incoming_path else []),
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

    def __enter__(self) -> Self:
        if not self.incoming:
            super().__enter__()
            return self
        self.start()  # a migration target has nothing to boot: `migrate_to` fills it
        return self

    def migrate_to(self, target: QemuGuest, timeout: float = 60.0) -> Migration:
        """Live-migrate this running guest into `target` (started with
        `incoming=True`), with qemu's own migration over a unix socket; when
        qemu reports it completed, `target` is the guest and this qemu exits."""
        if self.qmp_path is None or target.incoming_path is None:
            raise DriverError("migrate", self.name, "needs qmp=True here and incoming=True there")
        self.wait_booted()
        deadline = time.monotonic() + timeout
        while not os.path.exists(target.incoming_path):  # qemu listens once it has started
            if target._proc is None or target._proc.poll() is not None:
                raise DriverError("migrate", target.name, "the target qemu is not running")
            if time.monotonic() > deadline:
                raise DriverError("migrate", target.name, "the target never listened")
            time.sleep(0.02)
        with Qmp(self.qmp_path) as qmp:
            qmp.execute("migrate", uri=f"unix:{target.incoming_path}")
            while True:
                info = qmp.execute("query-migrate")
                status = info.get("status")
                if status == "completed":
                    break
                if status in ("failed", "cancelled") or time.monotonic() > deadline:
                    raise DriverError("migrate", self.name, f"{status}: {info}")
                time.sleep(0.02)
            self.migrated_away = True
            qmp.execute("quit")
        target.adopt(self)
        return Migration(
            downtime_ms=float(info.get("downtime", -1)),
            total_ms=float(info.get("total-time", -1)),
            setup_ms=float(info.get("setup-time", -1)),
            transferred_bytes=int(info.get("ram", {}).get("transferred", 0)),
        )

    def adopt(self, source: SerialGuest) -> None:
        """Continue `source`'s console session (after a migration into this qemu)."""
        with self._cond:
            self.boot_seconds, self.guest_mac = source.boot_seconds, source.guest_mac
            self._seq = source._seq
            self._started = source._started
            self.incoming = False

    def close(self, timeout: float = 10.0) -> int | None:
        """Power off, kill after `timeout`, reap; return qemu's exit status."""
        proc, self._proc = self._proc, None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
        if proc is None:
            return None
        if self.migrated_away:  # quit over QMP; the guest runs elsewhere now
            timeout = min(timeout, 5.0)
        elif proc.poll() is None and proc.stdin is not None:
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


@dataclasses.dataclass(frozen=True)
class Migration:
    """What qemu reported for one live migration (query-migrate)."""

    downtime_ms: float
    total_ms: float
    setup_ms: float
    transferred_bytes: int
