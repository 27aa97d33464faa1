"""Real qemu guests for tests, driven over their serial console.

Rules:
1. qemu and libvirtd run inside the pod namespace (the child enters it
   between fork and exec with `vmnet.driver.netns.preexec`, which only calls
   setns(2), hence the PLW1509 waivers) and attach to a tap that already
   exists there, as virt-launcher's qemu does; the test process never moves.
2. The serial console is one byte stream read by one reader thread; every
   byte is kept in `console`. Commands use the protocol of
   `vmnet.testing.initramfs` (rule 5 there) and match their own sequence
   number, so a command that timed out cannot be taken for a later one.
3. Every wait has a deadline. `close()` powers the guest off, then kills qemu
   once its deadline passes: no process outlives the context manager.
4. Bad arguments raise ConfigError before anything starts; a guest that does
   not boot, dies, or does not answer in time raises DriverError naming the
   operation, the guest, and the last console line.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

from vmnet.addr import MacAddress
from vmnet.driver.netns import check_netns, preexec
from vmnet.errors import ConfigError, DriverError
from vmnet.testing.initramfs import (
    BEGIN,
    END,
    READY,
    Lease,
    default_cache_dir,
    find_kernel,
    guest_image,
    missing_inputs,
    parse_ipconfig,
    parse_udhcpc,
)

QEMU = "qemu-system-x86_64"
KERNEL_ARGS = "console=ttyS0 panic=-1 quiet"
MAX_LINE = 4000  # the guest tty's canonical line buffer holds 4095 bytes
UDHCPC = ("udhcpc -i {ifname} -f -q -n -t 5 -T 1 -A 1 -s /etc/udhcpc.script"
          " -O mtu -O search -O staticroutes")
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


class SerialGuest:
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

    def _wait_for(self, pattern: re.Pattern[bytes], start: int, timeout: float, op: str) -> re.Match[bytes]:
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

    def run(self, cmd: str, timeout: float = 30.0) -> tuple[int, str]:
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
            pattern = re.compile(re.escape(BEGIN.encode()) + b" " + seq + rb"\n(.*?)\n"
                                 + re.escape(END.encode()) + b" " + seq + rb" (\d+)\n", re.DOTALL)
            match = self._wait_for(pattern, mark, timeout, f"run {cmd[:40]!r}")
        return int(match.group(2)), match.group(1).decode(errors="replace")

    def check(self, cmd: str, timeout: float = 30.0) -> str:
        """Run `cmd`; return its output, or raise DriverError if it failed."""
        rc, out = self.run(cmd, timeout)
        if rc != 0:
            raise DriverError(f"run {cmd[:40]!r}", self.name, f"exit {rc}: {out.strip()[-200:]!r}")
        return out

    def dhcp(self, client: str = "udhcpc", ifname: str = "eth0", timeout: float = 30.0) -> Lease:
        """Lease with a real DHCP client in the guest and apply what it got.

        Args:
            client: "udhcpc" (busybox, with its hook script) or "ipconfig" (klibc).
        """
        if client == "udhcpc":
            self.check(f"rm -f /run/udhcpc.{ifname}.lease; " + UDHCPC.format(ifname=ifname), timeout)
            return parse_udhcpc(self.check(f"cat /run/udhcpc.{ifname}.lease"))
        if client == "ipconfig":
            self.check(f"rm -f /run/net-{ifname}.conf; " + IPCONFIG.format(ifname=ifname), timeout)
            return parse_ipconfig(self.check(f"cat /run/net-{ifname}.conf"))
        raise ConfigError("client", f"unknown DHCP client {client!r} (udhcpc, ipconfig)")

    def ip_addr(self, ifname: str = "eth0") -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
        """The addresses on `ifname`, as the guest sees them."""
        out = self.check(f"ip -o addr show dev {ifname}")
        found = re.findall(r"\binet6? (\S+)", out)
        return [ipaddress.ip_interface(a) for a in found]

    def ip_route(self, family: int = 4) -> list[str]:
        """The guest's routes, one normalised `ip route` line each."""
        out = self.check(f"ip -{family} route show")
        return [" ".join(line.split()) for line in out.splitlines() if line.strip()]

    def mtu(self, ifname: str = "eth0") -> int:
        """The MTU of `ifname` in the guest."""
        return int(self.check(f"cat /sys/class/net/{ifname}/mtu"))

    def mac(self, ifname: str = "eth0") -> MacAddress:
        """The MAC of `ifname` in the guest."""
        return MacAddress.parse(self.check(f"cat /sys/class/net/{ifname}/address").strip())

    def ping(self, addr: str, count: int = 1, wait: int = 2) -> bool:
        """True when `addr` answers a ping from the guest."""
        ip = ipaddress.ip_address(addr)
        rc, _ = self.run(f"ping -c {count} -W {wait} {ip}", timeout=count * wait + 10)
        return rc == 0


class QemuGuest(SerialGuest):
    """A busybox guest in qemu (TCG), attached to `tap` inside `netns`.

    Use as a context manager: entering boots and waits for the console,
    leaving powers off and reaps qemu.
    """

    def __init__(self, netns: str, tap: str, mac: str, *, mtu: int | None = None,
                 kernel: str | Path | None = None, memory_mb: int = 256,
                 timeout: float = 60.0, cache_dir: str | Path | None = None) -> None:
        check_netns(netns)
        find_kernel(kernel)
        self.vm_mac = _validate(tap, mac, mtu, memory_mb)
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
        return [QEMU, "-accel", "tcg", "-m", str(self._memory), "-nographic", "-nodefaults",
                "-no-user-config", "-no-reboot", "-serial", "stdio",
                "-kernel", str(image.kernel), "-initrd", str(image.initrd),
                "-append", KERNEL_ARGS,
                "-netdev", f"tap,id=n0,ifname={self.tap},script=no,downscript=no",
                "-device", dev]

    def start(self) -> None:
        """Start qemu; return at once (see wait_booted)."""
        argv = self.argv()
        self._started = time.monotonic()
        try:
            self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, preexec_fn=preexec(self.netns))  # noqa: PLW1509 (rule 1)
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

    def __enter__(self) -> Self:
        self.start()
        try:
            self.wait_booted()
        except BaseException:
            self.close(timeout=2.0)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _validate(tap: str, mac: str, mtu: int | None, memory_mb: int) -> MacAddress:
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


LIBVIRT_PATHS = {"etc": "/etc/libvirt", "run": "/run/libvirt", "lib": "/var/lib/libvirt",
                 "cache": "/var/cache/libvirt", "log": "/var/log/libvirt"}
LIBVIRTD_CONF = 'auth_unix_rw = "none"\nauth_unix_ro = "none"\nlog_outputs = "3:stderr"\n'
QEMU_CONF = ('user = "root"\ngroup = "root"\ndynamic_ownership = 0\nsecurity_driver = "none"\n'
             'cgroup_controllers = [ ]\nstdio_handler = "file"\nnamespaces = [ ]\n')
DOMAIN_XML = """<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{memory}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>{cmdline}</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{emulator}</emulator>
    <controller type='usb' model='none'/>
    <interface type='ethernet'>
      <alias name='ua-default'/>
      <mac address='{mac}'/>
      <target dev='{tap}' managed='no'/>
      <model type='virtio'/>{mtu}
      <rom enabled='no'/>
    </interface>
    <serial type='unix'>
      <source mode='connect' path='{console}'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def libvirt_available() -> str | None:
    """Why no private libvirtd can run here, or None if one can."""
    for tool in ("libvirtd", "virsh", "unshare", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (libvirt-daemon, libvirt-clients, util-linux)"
    return available()


def ensure_qemu_user() -> None:
    """Create the `kvm` and `libvirt-qemu` groups and the `libvirt-qemu` user if absent.

    Debian's libvirtd resolves its built-in qemu user and group at start,
    before it reads qemu.conf, and fails without them.
    """
    steps = [(["getent", "group", "kvm"], ["groupadd", "--system", "kvm"]),
             (["getent", "group", "libvirt-qemu"], ["groupadd", "--system", "libvirt-qemu"]),
             (["getent", "passwd", "libvirt-qemu"],
              ["useradd", "--system", "-g", "kvm", "-d", "/var/lib/libvirt",
               "-s", "/usr/sbin/nologin", "libvirt-qemu"])]
    for probe, create in steps:
        if subprocess.run(probe, capture_output=True, check=False).returncode != 0:
            result = subprocess.run(create, capture_output=True, text=True, check=False)
            if result.returncode not in (0, 9):  # 9: created meanwhile by someone else
                raise DriverError(create[0], create[-1], result.stderr.strip() or "failed")


class Libvirtd:
    """A private libvirtd inside `netns`, with its own directories under `root`.

    libvirtd runs in its own mount namespace where root/etc, root/run, ...
    are bound over /etc/libvirt, /run/libvirt, ..., so several instances and
    a system libvirtd never share a socket, a state file or a config. The
    qemu capabilities cache is seeded from, and saved to, the guest image
    cache, which saves libvirt's ~4 s qemu probe on every later start.
    """

    def __init__(self, netns: str, root: str | Path, *, timeout: float = 30.0) -> None:
        check_netns(netns)
        self.netns, self.root, self.timeout = netns, Path(root), timeout
        self.uri = f"qemu:///system?socket={self.root / 'run' / 'libvirt-sock'}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start libvirtd and wait until it answers."""
        ensure_qemu_user()
        for sub, path in LIBVIRT_PATHS.items():
            (self.root / sub).mkdir(parents=True, exist_ok=True)
            Path(path).mkdir(parents=True, exist_ok=True)
        (self.root / "etc" / "libvirtd.conf").write_text(LIBVIRTD_CONF)
        (self.root / "etc" / "qemu.conf").write_text(QEMU_CONF)
        _copy_tree(default_caps_dir(), self.root / "cache" / "qemu" / "capabilities")
        binds = " && ".join(f"mount --bind {self.root / s} {p}" for s, p in LIBVIRT_PATHS.items())
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", f"{binds} && exec libvirtd --pid-file {self.root / 'libvirtd.pid'}"]
        with open(self.root / "libvirtd.log", "ab") as log:
            self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                          preexec_fn=preexec(self.netns))  # noqa: PLW1509 (rule 1)
        deadline = time.monotonic() + self.timeout
        probe = ["virsh", "-c", self.uri, "uri"]
        while subprocess.run(probe, capture_output=True, check=False).returncode:
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise DriverError("start libvirtd", self.netns, _last_error(self.root / "libvirtd.log"))
            time.sleep(0.05)

    def virsh(self, *args: str, timeout: float = 60.0) -> str:
        """Run virsh against this libvirtd; return stdout or raise DriverError."""
        result = subprocess.run(["virsh", "-c", self.uri, *args], capture_output=True, text=True,
                                timeout=timeout, check=False)
        if result.returncode != 0:
            raise DriverError(f"virsh {args[0]}", self.netns, result.stderr.strip() or "failed")
        return result.stdout

    def stop(self, timeout: float = 10.0) -> None:
        """Destroy every domain, stop libvirtd, save the capabilities cache."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                for name in self.virsh("list", "--name").split():
                    self.virsh("destroy", name)
            finally:
                _copy_tree(self.root / "cache" / "qemu" / "capabilities", default_caps_dir())
                proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _last_error(log: Path) -> str:
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if " error : " in ln]
    return lines[-1].split(" error : ", 1)[1] if lines else f"no answer; see {log}"


def default_caps_dir() -> Path:
    return default_cache_dir() / "libvirt-capabilities"


def _copy_tree(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for item in src.glob("*.xml") if src.is_dir() else ():
        if not (dst / item.name).exists():
            shutil.copyfile(item, dst / item.name)


class LibvirtGuest(SerialGuest):
    """The busybox guest started by a private `Libvirtd` from domain XML.

    The serial console is a unix socket this object listens on and qemu
    connects to (`<serial type='unix'><source mode='connect'>`), so no byte
    of the boot is lost. `decorate` may rewrite the XML before it is
    started (e.g. vmnet's own domain decoration).
    """

    def __init__(self, libvirtd: Libvirtd, tap: str, mac: str, *, mtu: int | None = None,
                 decorate: Callable[[str], str] | None = None, memory_mb: int = 256,
                 timeout: float = 60.0) -> None:
        self.vm_mac = _validate(tap, mac, mtu, memory_mb)
        self.libvirtd, self.tap, self.mtu_arg = libvirtd, tap, mtu
        self.domain = f"vmnet-{secrets.token_hex(4)}"
        super().__init__(f"libvirt guest {libvirtd.netns}/{self.domain}", timeout)
        self._memory, self._decorate = memory_mb, decorate
        self._console = libvirtd.root / f"{self.domain}.console"
        self._sock: socket.socket | None = None

    def domain_xml(self) -> str:
        """The domain this guest starts, after `decorate`."""
        image = guest_image()
        mtu = f"\n      <mtu size='{self.mtu_arg}'/>" if self.mtu_arg is not None else ""
        xml = DOMAIN_XML.format(name=self.domain, memory=self._memory, kernel=image.kernel,
                                initrd=image.initrd, cmdline=KERNEL_ARGS, mac=self.vm_mac,
                                tap=self.tap, mtu=mtu, console=self._console,
                                emulator=shutil.which(QEMU) or QEMU)
        return self._decorate(xml) if self._decorate else xml

    def start(self) -> None:
        """Define and start the transient domain; take its console."""
        xml_file = self.libvirtd.root / f"{self.domain}.xml"
        xml_file.write_text(self.domain_xml())
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
            listener.bind(str(self._console))
            listener.listen(1)
            listener.settimeout(self.timeout)
            self._started = time.monotonic()
            self.libvirtd.virsh("create", str(xml_file))
            try:
                self._sock, _ = listener.accept()
            except OSError as err:
                raise DriverError("console accept", self.name, "qemu did not connect") from err
        self._eof = False
        threading.Thread(target=self._pump, args=(self._sock.fileno(),), daemon=True).start()

    def _send(self, line: bytes) -> None:
        if self._sock is None:
            raise DriverError("console write", self.name, "not started")
        self._sock.sendall(line)

    def close(self, timeout: float = 10.0) -> None:
        """Power off; destroy the domain if it is still there after `timeout`."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        try:
            sock.sendall(b"poweroff\n")
            with self._cond:
                self._cond.wait_for(lambda: self._eof, timeout)
        except OSError:
            pass
        finally:
            sock.close()
        deadline = time.monotonic() + timeout
        while self.domain in self.libvirtd.virsh("list", "--name").split():
            if time.monotonic() > deadline:
                self.libvirtd.virsh("destroy", self.domain)
                break
            time.sleep(0.05)

    def __enter__(self) -> Self:
        self.start()
        try:
            self.wait_booted()
        except BaseException:
            self.close(timeout=2.0)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
