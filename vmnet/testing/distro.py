"""Guests of a real distribution: Debian 12 images built offline, booted under qemu.

`build_image(stack)` makes a Debian 12 (bookworm) root with mmdebstrap from
the archive the machine's own apt sources name (no host is written here),
configures its network the way that distribution's images do, and writes
an ext4 image without loop mounts (`mkfs.ext4 -d`). Images are built once
and kept in the guest image cache (`vmnet.testing.initramfs.default_cache_dir`,
under `distro/`), keyed by a hash of the recipe: a changed recipe builds a
new one and removes the stack's older images. `make guests` builds them
ahead; a test builds what is missing. A build takes 30-60 s here (the
archive is near); an image is 768 MB, sparse.

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
- `ifupdown`: ifupdown and isc-dhcp-client with /etc/network/interfaces as
  Debian's installer writes it for a DHCP network (`allow-hotplug ens2`,
  `iface ens2 inet dhcp`, `iface ens2 inet6 dhcp`).
- `cloud-init`: cloud-init, netplan and networkd, as an Ubuntu cloud image:
  the NIC is configured only from a NoCloud seed disk (ISO 9660 `cidata`,
  as KubeVirt's `cloudInitNoCloud` volume) whose network config v2 matches
  the NIC by MAC with `dhcp4: true`, `dhcp6: true`.

The guest also listens on the serial console for `report`, `ping ADDR`,
`run LINE` and `reboot` (`CONTROL`), and the host can bounce the NIC's
link over QMP (`link_refresh`).
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
from collections.abc import Callable
from pathlib import Path
from typing import Self

from vmnet.core.errors import ConfigError, DriverError
from vmnet.core.netns import check_netns, preexec
from vmnet.testing.console import QEMU
from vmnet.testing.initramfs import default_cache_dir

STACKS = ("networkd", "networkmanager", "ifupdown", "cloud-init")
BASE = ["systemd", "systemd-sysv", "udev", "dbus", "kmod", "iproute2", "iputils-ping"]
PACKAGES = {
    "networkd": [*BASE, "systemd-resolved"],
    "networkmanager": [*BASE, "network-manager"],
    "ifupdown": [*BASE, "ifupdown", "isc-dhcp-client"],
    # as an Ubuntu cloud image: cloud-init renders the seed's network config for
    # netplan, which writes networkd's files (no ifupdown: cloud-init would pick ENI)
    "cloud-init": [*BASE, "cloud-init", "netplan.io", "systemd-resolved"],
}
NIC = "ens2"  # the virtio NIC's name: PCI slot 2 of a -nodefaults machine
NETWORK_FILES = {
    "networkd": {
        "etc/systemd/network/10-netplan-all-en.network": (
            "[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n\n"
            "[DHCP]\nRouteMetric=100\nUseMTU=true\n"
        ),
    },
    "networkmanager": {},  # no profile: NetworkManager's own automatic one
    "cloud-init": {},  # the NoCloud seed's network-config says it all
    "ifupdown": {  # as Debian's installer writes it for a DHCP network
        "etc/network/interfaces": (
            "source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n\n"
            f"allow-hotplug {NIC}\niface {NIC} inet dhcp\niface {NIC} inet6 dhcp\n"
        ),
    },
}
RESOLVERS = {  # what each stack's resolver reads
    "networkd": "/run/systemd/resolve/resolv.conf",
    "networkmanager": "/etc/resolv.conf",
    "ifupdown": "/etc/resolv.conf",
    "cloud-init": "/run/systemd/resolve/resolv.conf",
}
ENABLE = {
    "networkd": [
        "systemd-networkd",
        "systemd-resolved",
        "systemd-networkd-wait-online.service",
    ],
    "networkmanager": ["NetworkManager", "NetworkManager-wait-online.service"],
    "ifupdown": ["networking.service"],
    "cloud-init": [
        "systemd-networkd",
        "systemd-resolved",
        "systemd-networkd-wait-online.service",
        "cloud-init-local.service",
        "cloud-init.service",
        "cloud-config.service",
        "cloud-final.service",
    ],
}
# The NoCloud seed (KubeVirt's cloudInitNoCloud volume): network config v2 as
# users write it in a VM manifest, matched by MAC; the instance's name.
SEED_NETWORK = """version: 2
ethernets:
  nic0:
    match:
      macaddress: "{mac}"
    dhcp4: true
    dhcp6: true
"""
SEED_META = "instance-id: {name}\nlocal-hostname: {name}\n"
SEED_USER = "#cloud-config\n"
BEGIN, END = "VMNET-REPORT-BEGIN", "VMNET-REPORT-END"
REPORT = f"""#!/bin/sh
nic={NIC}
report=$({{
echo {BEGIN}
echo "boot $(cat /proc/sys/kernel/random/boot_id)"
echo "addr $(ip -4 -o addr show dev $nic scope global | awk '{{print $4; exit}}')"
echo "addr6 $(ip -6 -o addr show dev $nic scope global | awk '{{print $4}}' | xargs)"
echo "nic $nic"
echo "route $(ip -4 route show default | head -n1)"
echo "route6 $(ip -6 route show default | head -n1)"
echo "mtu $(cat /sys/class/net/$nic/mtu)"
conf=$(cat /etc/vmnet-resolver)  # the file this stack's resolver reads
echo "dns $(awk '$1 == "nameserver" {{print $2}}' $conf 2>/dev/null | xargs)"
echo "search $(awk '$1 == "search" {{$1 = ""; print}}' $conf 2>/dev/null)"
echo "hostname $(timeout 10 hostname)"
echo {END}
}})
printf '%s\\n' "$report" > /dev/ttyS0  # one write: nothing else uses the console
"""
# Commands the host writes to the serial console, one per line: `report`,
# `ping ADDR` (answers VMNET-PING ADDR ok|fail), `run SHELL-LINE` (its
# output between VMNET-RUN-BEGIN and VMNET-RUN-END <rc>) and `reboot`.
READY = "VMNET-CONTROL-READY"  # input sent before the listener opens the tty is lost
CONTROL = f"""#!/bin/sh
exec 2>/dev/ttyS0
stty -F /dev/ttyS0 -echo
exec 3</dev/ttyS0
printf '%s\\n' {READY} > /dev/ttyS0
while read -r cmd arg <&3; do
  case "$cmd" in
    report) /usr/local/bin/vmnet-report ;;
    ping) r=fail  # a fresh address may still be in DAD: a few tries
          for try in 1 2 3 4 5; do
            if ping -n -c 1 -W 2 "$arg" >/dev/null 2>&1; then r=ok; break; fi; sleep 1
          done
          printf 'VMNET-PING %s %s\\n' "$arg" "$r" > /dev/ttyS0 ;;
    reboot) systemctl reboot ;;
    run) out=$(sh -c "$arg" 2>&1); rc=$?
         printf 'VMNET-RUN-BEGIN\\n%s\\nVMNET-RUN-END %s\\n' "$out" "$rc" > /dev/ttyS0 ;;
  esac
done
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
CONTROL_UNIT = """[Unit]
Description=vmnet test control: commands from the serial console
After=vmnet-report.service

[Service]
ExecStart=/usr/local/bin/vmnet-control

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
        ("genisoimage", "genisoimage"),
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
        cloud_kernel()[0].name,  # its modules are in the image
    ]
    text = (parts, REPORT, REPORT_UNIT, CONTROL, CONTROL_UNIT, IMAGE_SIZE)
    return hashlib.sha256(repr(text).encode()).hexdigest()[:16]


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
    for stale in out.parent.glob(f"debian12-{stack}-*.img"):  # older recipes of this stack
        if stale != out:
            stale.unlink(missing_ok=True)
    return out


def _customize(rootfs: Path, stack: str) -> None:
    # the modules of the kernel the guest boots, as an installed kernel brings
    # them (cloud-init mounts its seed: iso9660 is a module)
    version = cloud_kernel()[0].name.removeprefix("vmlinuz-")
    shutil.copytree(f"/lib/modules/{version}", rootfs / "usr/lib/modules" / version, symlinks=True)
    for rel, text in NETWORK_FILES[stack].items():
        path = rootfs / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for name, script, unit in (
        ("vmnet-report", REPORT, REPORT_UNIT),
        ("vmnet-control", CONTROL, CONTROL_UNIT),
    ):
        path = rootfs / "usr/local/bin" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(script)
        path.chmod(0o755)
        (rootfs / f"etc/systemd/system/{name}.service").write_text(unit)
    (rootfs / "etc/machine-id").write_text("")  # a new one at every boot, as an image has
    (rootfs / "etc/fstab").write_text("LABEL=root / ext4 rw 0 1\n")
    with contextlib.suppress(FileNotFoundError):
        (rootfs / "etc/hostname").unlink()  # no static name: DHCP's option 12 may set it
    (rootfs / "etc/vmnet-resolver").write_text(RESOLVERS[stack] + "\n")
    if RESOLVERS[stack].startswith("/run/systemd/"):  # resolved's stub, as installers link it
        resolv = rootfs / "etc/resolv.conf"
        if resolv.is_symlink() or resolv.exists():
            resolv.unlink()
        resolv.symlink_to("/run/systemd/resolve/stub-resolv.conf")
    units = [*ENABLE[stack], "vmnet-report.service", "vmnet-control.service"]
    _run(["chroot", str(rootfs), "systemctl", "enable", *units], "systemctl enable")
    # no login on the serial console: a getty would hang up the report's writes
    _run(["chroot", str(rootfs), "systemctl", "mask", "serial-getty@ttyS0.service"], "mask")


def nocloud_seed(path: Path, mac: str, name: str) -> Path:
    """A NoCloud seed (an ISO 9660 volume labelled `cidata`, as KubeVirt's
    cloudInitNoCloud disk) with the network config for `mac` and instance `name`."""
    files = path.parent / f"{path.name}.d"
    files.mkdir(parents=True, exist_ok=True)
    (files / "network-config").write_text(SEED_NETWORK.format(mac=mac))
    (files / "meta-data").write_text(SEED_META.format(name=name))
    (files / "user-data").write_text(SEED_USER)
    argv = ["genisoimage", "-quiet", "-output", str(path), "-volid", "cidata", "-joliet", "-rock"]
    _run([*argv, str(files)], "genisoimage")
    return path


def _run(argv: list[str], what: str, timeout: float = 300) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise DriverError(what, argv[-1], (done.stderr or done.stdout).strip()[-500:])


class DistroGuest:
    """A Debian 12 guest of `stack` on `tap` in `netns`, booted from its cached image.

    Used as a context manager (qemu is killed on exit). `report()` returns
    the guest's next report of what its stack configured; `ping`, `reboot`
    and `link_refresh` (QMP `set_link`, as KubeVirt's link-refresh) act on it.
    """

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
        name: str = "debvm",
    ) -> None:
        """`name`: the instance name in the cloud-init stack's NoCloud seed."""
        check_netns(netns)
        self.netns, self.tap, self.mac, self.stack = netns, tap, mac, stack
        self.memory_mb, self.timeout, self.cache_dir = memory_mb, timeout, cache_dir
        self.console = b""
        self.boot_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._seen = 0  # console offset up to which reports have been taken
        self._boot_at = 0  # console offset where the current boot's output starts
        self._ready = False  # the current boot's listener has opened the console
        self._dir = tempfile.mkdtemp(prefix="vmnet-distro-")
        self.qmp_path = os.path.join(self._dir, "qmp.sock")
        self.name = name

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
            "-qmp",
            f"unix:{self.qmp_path},server=on,wait=off",
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
            *self._seed(),
        ]

    def _seed(self) -> list[str]:
        if self.stack != "cloud-init":
            return []
        seed = nocloud_seed(Path(self._dir) / "seed.iso", self.mac, self.name)
        return ["-drive", f"file={seed},if=virtio,format=raw,readonly=on"]

    def __enter__(self) -> Self:
        argv = self.argv()
        self._started = time.monotonic()
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
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
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def _send(self, line: str, timeout: float = 120.0) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        if not self._ready:
            deadline = time.monotonic() + timeout
            self._read_until(READY.encode(), self._boot_at, deadline, "control listener")
            self._ready = True
        self._proc.stdin.write(line.encode() + b"\n")
        self._proc.stdin.flush()

    def _read_until(self, marker: bytes, start: int, deadline: float, what: str) -> int:
        """The console offset just past the first `marker` at or after `start`."""
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while (at := self.console.find(marker, start)) < 0:
            left = deadline - time.monotonic()
            if left <= 0 or self._proc.poll() is not None:
                tail = self.console.decode(errors="replace")[-1500:]
                why = "exited" if self._proc.poll() is not None else f"no {what} in time"
                raise DriverError(what, f"{self.stack} guest", f"{why}; console: {tail!r}")
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if ready:
                self.console += os.read(fd, 65536)
        return at + len(marker)

    def _next_report(self, deadline: float) -> dict[str, str]:
        begin = self._read_until(BEGIN.encode(), self._seen, deadline, "report")
        end = self._read_until(END.encode(), begin, deadline, "report")
        self._seen = end
        block = self.console[begin : end - len(END)].decode(errors="replace")
        out = {}
        for line in block.strip().splitlines():
            key, _, value = line.strip().partition(" ")
            out[key] = value.strip()
        return out

    def report(
        self, until: Callable[[dict[str, str]], bool] | None = None, timeout: float | None = None
    ) -> dict[str, str]:
        """The guest's next report; with `until`, the first one that satisfies
        it (asking for a fresh one every 2 s), else the last one seen when
        `timeout` (default: the boot timeout from start) runs out."""
        deadline = self._started + self.timeout if timeout is None else time.monotonic() + timeout
        seen = self._next_report(deadline)
        if self.boot_seconds is None:
            self.boot_seconds = time.monotonic() - self._started
        while until is not None and not until(seen):
            if time.monotonic() + 2 > deadline:
                return seen
            self._send("report")
            seen = self._next_report(min(deadline, time.monotonic() + 30))
        return seen

    def ping(self, address: object, timeout: float = 30.0) -> bool:
        """Whether the guest's own ping gets an answer from `address`."""
        self._send(f"ping {address}")
        prefix = f"VMNET-PING {address} ".encode()
        deadline = time.monotonic() + timeout
        at = self._read_until(prefix, self._seen, deadline, "ping answer")
        self._seen = self._read_until(b"\n", at, deadline, "ping answer")  # the whole line
        return self.console[at : self._seen].strip() == b"ok"

    def run(self, line: str, timeout: float = 30.0) -> tuple[int, str]:
        """Run one shell line in the guest (as root); its exit status and output."""
        if "\n" in line:
            raise ConfigError("line", "one line only: the console reads a line per command")
        self._send(f"run {line}")
        deadline = time.monotonic() + timeout
        begin = self._read_until(b"VMNET-RUN-BEGIN", self._seen, deadline, "run output")
        end = self._read_until(b"VMNET-RUN-END ", begin, deadline, "run output")
        nl = self._read_until(b"\n", end, deadline, "run status")
        self._seen = nl
        out = self.console[begin : end - len(b"VMNET-RUN-END ")].decode(errors="replace")
        return int(self.console[end:nl].strip() or b"-1"), out.replace("\r\n", "\n").strip()

    def reboot(self) -> None:
        """Reboot from inside (systemctl reboot); `report()` then waits for the new boot."""
        self._send("reboot")
        self._boot_at, self._ready = len(self.console), False

    def link_refresh(self, pause: float = 0.1) -> None:
        """The NIC's link down for `pause` seconds, then up (QMP set_link), as
        KubeVirt's link-refresh does to a migrated VM's interface."""
        from vmnet.testing.qmp import Qmp

        with Qmp(self.qmp_path) as qmp:
            qmp.execute("set_link", name="n0", up=False)
            time.sleep(pause)  # the outage itself, not a wait for something
            qmp.execute("set_link", name="n0", up=True)
