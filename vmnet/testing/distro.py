"""Guests of a real distribution: Debian 12 images built offline, booted under qemu.

`build_image(stack)` makes a Debian 12 (bookworm) root with mmdebstrap from
the archive the machine's own apt sources name (no host is written here),
configures its network the way that distribution's images do, and writes
an ext4 image without loop mounts (`mkfs.ext4 -d`). Images are built once
and kept in the guest image cache (`vmnet.testing.initramfs.default_cache_dir`,
under `distro/`), keyed by a hash of the recipe: a changed recipe builds a
new one. `make guests` builds them ahead; a test builds what is missing.

`DistroGuest` boots an image with the host's Debian cloud kernel and its
initrd, the disk as a throwaway snapshot, on a tap in the pod namespace.
Nothing logs in: a oneshot unit, ordered after `network-online.target`,
writes what the guest's own stack configured to the serial console
(address and prefix, default route, MTU, DNS servers and search domains as
systemd-resolved holds them, host name), which `report()` parses. Under TCG
every unit costs 1-3 s, so a boot takes 30-40 s here; deadlines are long.

Stacks:
- `networkd`: systemd-networkd and systemd-resolved with one `.network`
  file matching the NIC, `DHCP=yes`, as a Debian or Ubuntu cloud image's
  netplan writes it (`RouteMetric=100`, `UseMTU=true`); nothing else.
- `networkmanager`: NetworkManager with its internal DHCP client and no
  profile at all, as a Fedora or RHEL cloud image boots: NetworkManager
  makes its automatic wired profile (`ipv4.method=auto`, `ipv6.method=auto`)
  and writes /etc/resolv.conf itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

from vmnet.core.errors import ConfigError, DriverError
from vmnet.core.netns import check_netns, preexec
from vmnet.testing.console import QEMU
from vmnet.testing.initramfs import default_cache_dir

STACKS = ("networkd", "networkmanager")
BASE = ["systemd", "systemd-sysv", "udev", "dbus", "iproute2"]
PACKAGES = {
    "networkd": [*BASE, "systemd-resolved"],
    "networkmanager": [*BASE, "network-manager"],
}
NETWORK_FILES = {
    "networkd": {
        "etc/systemd/network/10-netplan-all-en.network": (
            "[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n\n"
            "[DHCP]\nRouteMetric=100\nUseMTU=true\n"
        ),
    },
    "networkmanager": {},  # no profile: NetworkManager's own automatic one
}
RESOLVERS = {  # what each stack's resolver reads
    "networkd": "/run/systemd/resolve/resolv.conf",
    "networkmanager": "/etc/resolv.conf",
}
ENABLE = {
    "networkd": [
        "systemd-networkd",
        "systemd-resolved",
        "systemd-networkd-wait-online.service",
    ],
    "networkmanager": ["NetworkManager", "NetworkManager-wait-online.service"],
}
BEGIN, END = "VMNET-REPORT-BEGIN", "VMNET-REPORT-END"
REPORT = f"""#!/bin/sh
nic=$(ip -4 -o addr show scope global | awk '{{print $2; exit}}')
report=$({{
echo {BEGIN}
echo "addr $(ip -4 -o addr show scope global | awk '{{print $4; exit}}')"
echo "nic $nic"
echo "route $(ip -4 route show default | head -n1)"
echo "mtu $(cat /sys/class/net/$nic/mtu)"
conf=$(cat /etc/vmnet-resolver)  # the file this stack's resolver reads
echo "dns $(awk '$1 == "nameserver" {{print $2}}' $conf 2>/dev/null | xargs)"
echo "search $(awk '$1 == "search" {{$1 = ""; print}}' $conf 2>/dev/null)"
echo "hostname $(timeout 10 hostname)"
echo {END}
}})
printf '%s\\n' "$report" > /dev/ttyS0  # one write: nothing else uses the console
"""
REPORT_UNIT = """[Unit]
Description=vmnet test report: what the guest's network stack configured
Wants=network-online.target
After=network-online.target
Before=getty.target

[Service]
Type=oneshot
ExecStart=/usr/local/bin/vmnet-report

[Install]
WantedBy=multi-user.target
"""
IMAGE_SIZE = "768M"


def available() -> str | None:
    """Why no distribution guest can be built or booted here, or None."""
    if os.geteuid() != 0:
        return "distribution guests need root (mmdebstrap --mode=root, taps)"
    for tool, package in (
        ("mmdebstrap", "mmdebstrap"),
        ("mkfs.ext4", "e2fsprogs"),
        (QEMU, "qemu-system-x86"),
    ):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (package {package})"
    try:
        cloud_kernel()
    except ConfigError as err:
        return str(err)
    return None


def cloud_kernel() -> tuple[Path, Path]:
    """The newest installed Debian cloud kernel and its initrd (it loads
    virtio_blk and virtio_net before switching to the root)."""
    kernels = sorted(Path("/boot").glob("vmlinuz-*-cloud-amd64"))
    for kernel in reversed(kernels):
        initrd = kernel.with_name(kernel.name.replace("vmlinuz-", "initrd.img-"))
        if initrd.exists():
            return kernel, initrd
    raise ConfigError(
        "kernel", "no /boot/vmlinuz-*-cloud-amd64 with its initrd (linux-image-cloud-amd64)"
    )


def _sources() -> str:
    """The machine's own Debian 12 apt source, for the image's packages."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        if re.search(r"^Suites:.*\bbookworm\b(?!-)", path.read_text(), re.M):
            return str(path)
    if Path("/etc/apt/sources.list").exists():
        return "/etc/apt/sources.list"
    raise ConfigError("apt", "no Debian 12 apt source on this machine to build guests from")


def _recipe(stack: str) -> str:
    parts = [
        stack,
        *PACKAGES[stack],
        *sorted(NETWORK_FILES[stack].items()),
        *ENABLE[stack],
        RESOLVERS[stack],
    ]
    return hashlib.sha256(repr((parts, REPORT, REPORT_UNIT, IMAGE_SIZE)).encode()).hexdigest()[:16]


def image_path(stack: str, cache_dir: str | Path | None = None) -> Path:
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    return root / "distro" / f"debian12-{stack}-{_recipe(stack)}.img"


def build_image(stack: str, cache_dir: str | Path | None = None) -> Path:
    """The image for `stack`, built if it is not in the cache yet."""
    if stack not in STACKS:
        raise ConfigError("stack", f"unknown guest stack {stack!r}; one of {STACKS}")
    out = image_path(stack, cache_dir)
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vmnet-distro-", dir=out.parent) as work:
        rootfs = Path(work) / "root"
        argv = [
            "mmdebstrap",
            "--variant=minbase",
            "--mode=root",
            "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
            f"--include={','.join(PACKAGES[stack])}",
            *(f"--dpkgopt=path-exclude=/usr/share/{d}/*" for d in ("man", "doc", "locale")),
            "bookworm",
            str(rootfs),
            _sources(),
        ]
        _run(argv, "mmdebstrap", timeout=900)
        _customize(rootfs, stack)
        tmp = Path(work) / "image"
        _run(["mkfs.ext4", "-q", "-L", "root", "-d", str(rootfs), str(tmp), IMAGE_SIZE], "mkfs")
        os.replace(tmp, out)
    return out


def _customize(rootfs: Path, stack: str) -> None:
    for rel, text in NETWORK_FILES[stack].items():
        path = rootfs / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    report = rootfs / "usr/local/bin/vmnet-report"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(REPORT)
    report.chmod(0o755)
    (rootfs / "etc/systemd/system/vmnet-report.service").write_text(REPORT_UNIT)
    (rootfs / "etc/machine-id").write_text("")  # a new one at every boot, as an image has
    (rootfs / "etc/fstab").write_text("LABEL=root / ext4 rw 0 1\n")
    with contextlib.suppress(FileNotFoundError):
        (rootfs / "etc/hostname").unlink()  # no static name: DHCP's option 12 may set it
    (rootfs / "etc/vmnet-resolver").write_text(RESOLVERS[stack] + "\n")
    if stack == "networkd":  # resolved's stub, as the image's installer links it
        resolv = rootfs / "etc/resolv.conf"
        if resolv.is_symlink() or resolv.exists():
            resolv.unlink()
        resolv.symlink_to("/run/systemd/resolve/stub-resolv.conf")
    units = [*ENABLE[stack], "vmnet-report.service"]
    _run(["chroot", str(rootfs), "systemctl", "enable", *units], "systemctl enable")
    # no login on the serial console: a getty would hang up the report's writes
    _run(["chroot", str(rootfs), "systemctl", "mask", "serial-getty@ttyS0.service"], "mask")


def _run(argv: list[str], what: str, timeout: float = 300) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise DriverError(what, argv[-1], (done.stderr or done.stdout).strip()[-500:])


class DistroGuest:
    """A Debian 12 guest of `stack` on `tap` in `netns`, booted from its cached image."""

    def __init__(
        self,
        netns: str,
        tap: str,
        mac: str,
        stack: str = "networkd",
        *,
        memory_mb: int = 512,
        timeout: float = 240.0,
        cache_dir: str | Path | None = None,
    ) -> None:
        check_netns(netns)
        self.netns, self.tap, self.mac, self.stack = netns, tap, mac, stack
        self.memory_mb, self.timeout, self.cache_dir = memory_mb, timeout, cache_dir
        self.console = b""
        self.boot_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        kernel, initrd = cloud_kernel()
        image = build_image(self.stack, self.cache_dir)
        return [
            QEMU,
            "-accel",
            "tcg",
            "-smp",
            "2",
            "-m",
            str(self.memory_mb),
            "-nographic",
            "-nodefaults",
            "-no-user-config",
            "-serial",
            "stdio",
            "-kernel",
            str(kernel),
            "-initrd",
            str(initrd),
            "-append",
            "root=LABEL=root rw console=ttyS0 quiet",
            "-drive",
            f"file={image},if=virtio,format=raw,snapshot=on",
            "-netdev",
            f"tap,id=n0,ifname={self.tap},script=no,downscript=no",
            "-device",
            f"virtio-net-pci,netdev=n0,mac={self.mac},romfile=",
        ]

    def __enter__(self) -> Self:
        argv = self.argv()
        self._started = time.monotonic()
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec(self.netns),
        )
        return self

    def __exit__(self, *exc: object) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()

    def report(self) -> dict[str, str]:
        """Wait for the guest's report of what its stack configured."""
        assert self._proc is not None and self._proc.stdout is not None
        deadline = self._started + self.timeout
        fd = self._proc.stdout.fileno()
        while END.encode() not in self.console:
            left = deadline - time.monotonic()
            if left <= 0 or self._proc.poll() is not None:
                tail = self.console.decode(errors="replace")[-1500:]
                why = (
                    "exited" if self._proc.poll() is not None else f"no report in {self.timeout:g}s"
                )
                raise DriverError("boot", f"{self.stack} guest", f"{why}; console: {tail!r}")
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if ready:
                self.console += os.read(fd, 65536)
        self.boot_seconds = time.monotonic() - self._started
        text = self.console.decode(errors="replace")
        block = text[text.index(BEGIN) + len(BEGIN) : text.index(END)]
        out = {}
        for line in block.strip().splitlines():
            key, _, value = line.strip().partition(" ")
            out[key] = value.strip()
        return out
