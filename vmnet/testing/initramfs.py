"""A tiny test-guest initramfs built from the machine's own Debian packages.

Everything comes from installed packages, never from the network:
/bin/busybox (busybox-static) with one symlink per applet, klibc `ipconfig`
and its ELF interpreter (klibc-utils), and the virtio modules of the
kernel's /lib/modules tree (linux-image-cloud-amd64).

The archive is written in the cpio "newc" format (`vmnet.testing.binfmt`;
kernel Documentation/driver-api/early-userspace/buffer-format.rst) with mtime 0
and gzipped with mtime 0, so equal inputs give equal bytes. Device nodes
live only inside the archive: building needs no root.

The cache file is `<cache>/<kernel version>-<sha256 of the archive>.cpio.gz`
and is written to a temporary name then renamed, so a changed input gives a
new file and a concurrent builder never reads a half-written one.

Modules are inserted in `MODULES` order, dependencies first; a module the
kernel has built in (modules.builtin) is skipped; `.ko.xz` and `.ko.zst`
are decompressed at build time because busybox insmod takes plain ELF.

The guest half of the console protocol is `INIT`: the host reads
`READY <mac>`, then sends one line per command, `<seq> <base64 script>`,
and reads `BEGIN <seq>`, the output, a newline and `END <seq> <rc>`.
A `poweroff` line, or EOF on the console, powers the guest off.

The archive and ELF code is in `vmnet.testing.binfmt`, the lease parsers are in
`vmnet.testing.lease`; both are re-exported here.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import re
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from vmnet.core.errors import ConfigError, DriverError
from vmnet.testing.binfmt import PT_INTERP, CpioEntry, elf_interpreter, encode_newc
from vmnet.testing.lease import Lease, parse_ipconfig, parse_udhcpc

__all__ = [
    "BEGIN",
    "BUSYBOX",
    "END",
    "INIT",
    "IPCONFIG",
    "MODULES",
    "MODULES_ROOT",
    "PT_INTERP",
    "READY",
    "UDHCPC_SCRIPT",
    "CpioEntry",
    "GuestImage",
    "Lease",
    "default_cache_dir",
    "elf_interpreter",
    "encode_newc",
    "find_kernel",
    "guest_image",
    "missing_inputs",
    "module_files",
    "parse_ipconfig",
    "parse_udhcpc",
]

READY = "@@VMNET-READY"
BEGIN = "@@VMNET-BEGIN"
END = "@@VMNET-END"

BUSYBOX = Path("/bin/busybox")
IPCONFIG = Path("/usr/lib/klibc/bin/ipconfig")
MODULES_ROOT = Path("/lib/modules")
MODULES = (
    "virtio_ring",
    "virtio",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "failover",
    "net_failover",
    "virtio_net",
)
_DIRS = ("bin", "dev", "etc", "lib", "lib/vmnet", "proc", "root", "run", "sys", "tmp", "usr")

INIT = (
    """#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /etc/modules); do insmod /lib/vmnet/$m.ko || echo "insmod $m failed"; done
n=0
while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 200 ]; do usleep 20000; n=$((n+1)); done
ip link set lo up
ip link set eth0 up
dmesg -n 1
stty -echo -opost -isig
echo "@READY $(cat /sys/class/net/eth0/address || echo none)"
while read -r seq b64; do
  [ "$seq" = poweroff ] && break
  echo "$b64" | base64 -d > /tmp/cmd
  echo "@BEGIN $seq"
  sh /tmp/cmd </dev/null 2>&1
  rc=$?
  echo
  echo "@END $seq $rc"
done
poweroff -f
""".replace("@READY", READY)
    .replace("@BEGIN", BEGIN)
    .replace("@END", END)
)

UDHCPC_SCRIPT = """#!/bin/sh
# busybox udhcpc hook: $1 is deconfig|bound|renew|leasefail|nak.
case "$1" in
deconfig) ip -4 addr flush dev "$interface"; ip link set "$interface" up ;;
bound|renew)
  ip -4 addr flush dev "$interface"
  ip addr add "$ip/$mask" ${broadcast:+broadcast $broadcast} dev "$interface"
  [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
  if [ -n "$staticroutes" ]; then
    set -- $staticroutes
    while [ $# -ge 2 ]; do
      if [ "$2" = 0.0.0.0 ]; then ip route add "$1" dev "$interface"
      else ip route add "$2" dev "$interface" 2>/dev/null
           ip route add "$1" via "$2" dev "$interface"; fi
      shift 2
    done
  elif [ -n "$router" ]; then
    set -- $router
    ip route add default via "$1" dev "$interface" ||
      { ip route add "$1" dev "$interface"; ip route add default via "$1" dev "$interface"; }
  fi
  for v in ip mask router dns domain hostname mtu search staticroutes lease serverid broadcast; do
    eval "echo $v=\\"\\$$v\\""
  done > "/run/udhcpc.$interface.lease" ;;
esac
exit 0
"""


@dataclass(frozen=True, slots=True)
class GuestImage:
    """A kernel and the initramfs built for it."""

    kernel: Path
    initrd: Path
    version: str


def find_kernel(kernel: str | Path | None = None) -> tuple[Path, str]:
    """The kernel image and its version (`vmlinuz-<version>` with modules).

    Without an argument, the newest /boot/vmlinuz-* whose /lib/modules tree
    exists, preferring Debian "cloud" kernels.
    """
    if kernel is not None:
        path = Path(kernel)
        match = re.fullmatch(r"vmlinuz-(.+)", path.name)
        if not path.is_file() or match is None:
            raise ConfigError("kernel", f"{path} is not a readable vmlinuz-<version> file")
        return path, match.group(1)
    found = [(p, p.name[len("vmlinuz-") :]) for p in Path("/boot").glob("vmlinuz-*")]
    usable = [(p, v) for p, v in found if Path("/lib/modules", v, "modules.dep").is_file()]
    if not usable:
        raise ConfigError("kernel", "no /boot/vmlinuz-* with /lib/modules/<version>/modules.dep")
    usable.sort(key=lambda pv: ("cloud" in pv[1], _version_key(pv[1])))
    return usable[-1]


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", version))


def missing_inputs(kernel: str | Path | None = None) -> str | None:
    """Why no guest image can be built here, or None when one can."""
    try:
        _, version = find_kernel(kernel)
    except ConfigError as err:
        return str(err)
    for path in (BUSYBOX, IPCONFIG):
        if not path.is_file():
            return f"{path} is missing (packages busybox-static, klibc-utils)"
    try:
        module_files(version)
    except ConfigError as err:
        return str(err)
    return None


def guest_image(
    kernel: str | Path | None = None, *, cache_dir: str | Path | None = None
) -> GuestImage:
    """Build (or reuse from the cache) the initramfs for `kernel`.

    Raises:
        ConfigError: an input (kernel, module, busybox, klibc) is missing.
        DriverError: the cache directory cannot be written.
    """
    path, version = find_kernel(kernel)
    archive = encode_newc(_entries(version))
    digest = hashlib.sha256(archive).hexdigest()[:16]
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / f"{version}-{digest}.cpio.gz"
    if not target.is_file():
        _write_atomic(target, gzip.compress(archive, compresslevel=6, mtime=0))
    return GuestImage(path, target, version)


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/vmnet-guest, else /var/tmp/vmnet-guest."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg, "vmnet-guest") if xdg else Path("/var/tmp/vmnet-guest")


def _write_atomic(target: Path, data: bytes) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as err:
        raise DriverError("write", str(target), err.errno or 0) from err


def _entries(version: str) -> Iterator[CpioEntry]:
    for d in _DIRS:
        yield CpioEntry(d, stat.S_IFDIR | 0o755)
    yield CpioEntry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
    for link in ("sbin", "usr/bin", "usr/sbin"):
        yield CpioEntry(link, stat.S_IFLNK | 0o777, b"/bin")
    yield CpioEntry("bin/busybox", stat.S_IFREG | 0o755, _read(BUSYBOX))
    for applet in _applets():
        yield CpioEntry(f"bin/{applet}", stat.S_IFLNK | 0o777, b"busybox")
    ipconfig = _read(IPCONFIG)
    yield CpioEntry("bin/ipconfig", stat.S_IFREG | 0o755, ipconfig)
    interp = elf_interpreter(ipconfig)
    if interp is not None:
        yield CpioEntry(interp.lstrip("/"), stat.S_IFREG | 0o755, _read(Path(interp)))
    names = []
    for name, data in module_files(version):
        names.append(name)
        yield CpioEntry(f"lib/vmnet/{name}.ko", stat.S_IFREG | 0o644, data)
    yield CpioEntry("etc/modules", stat.S_IFREG | 0o644, "".join(f"{n}\n" for n in names).encode())
    yield CpioEntry("init", stat.S_IFREG | 0o755, INIT.encode())
    yield CpioEntry("etc/udhcpc.script", stat.S_IFREG | 0o755, UDHCPC_SCRIPT.encode())


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise ConfigError("guest image", f"cannot read {path}: {err.strerror}") from err


def _applets() -> list[str]:
    try:
        out = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, check=True, text=True)
    except (OSError, subprocess.CalledProcessError) as err:
        raise ConfigError("guest image", f"{BUSYBOX} --list failed: {err}") from err
    return sorted(a for a in out.stdout.split() if a and a != "busybox" and "/" not in a)


def module_files(version: str, modules_root: Path = MODULES_ROOT) -> list[tuple[str, bytes]]:
    """(name, plain ELF bytes) for each module of MODULES the kernel lacks built in."""
    root = modules_root / version
    dep = _read(root / "modules.dep").decode()
    builtin_file = root / "modules.builtin"
    builtin = builtin_file.read_text() if builtin_file.is_file() else ""
    paths = {
        _module_name(line.split(":", 1)[0]): line.split(":", 1)[0] for line in dep.splitlines()
    }
    built = {_module_name(line) for line in builtin.splitlines()}
    files = []
    for name in MODULES:
        if name in built:
            continue
        if name not in paths:
            raise ConfigError("guest image", f"kernel {version} has no module {name}")
        files.append((name, _decompress(root / paths[name])))
    return files


def _module_name(relpath: str) -> str:
    base = relpath.rsplit("/", 1)[-1]
    return base.split(".ko", 1)[0].replace("-", "_")


def _decompress(path: Path) -> bytes:
    data = _read(path)
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(data)
    if path.name.endswith(".ko.gz"):
        return gzip.decompress(data)
    if path.name.endswith(".ko.zst"):
        try:
            return subprocess.run(
                ["zstd", "-dc"], input=data, capture_output=True, check=True
            ).stdout
        except (OSError, subprocess.CalledProcessError) as err:
            raise ConfigError(
                "guest image", f"cannot decompress {path} (needs zstd): {err}"
            ) from err
    return data
