"""Private libvirtd instances for tests, and guests they start from domain XML.

libvirtd runs inside the pod namespace (the child enters it between fork
and exec with `vmnet.core.netns.preexec`, which only calls setns(2), hence
the PLW1509 waiver) and in its own mount namespace; the test process never
moves.

libvirt is driven through libvirt-python (the `testing` extra, built
against the installed libvirt): one connection per daemon (`Libvirtd.conn`),
domains created from XML and destroyed through the API, and lifecycle
events (`Libvirtd.await_event`) read by an event loop thread with
deadlines. Each daemon has its own host UUID, so two can talk to each other
(live migration refuses two hosts with one UUID). `virsh()` stays for
commands a test wants to see as an admin would type them.

Every wait has a deadline. `stop()` destroys every domain and `close()`
destroys a guest that does not power off in time: no domain or daemon
outlives the context manager.

Guests are `SerialGuest`s (`vmnet.testing.console`): same commands, same
errors as `vmnet.testing.qemu.QemuGuest`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from vmnet.core.errors import DriverError
from vmnet.core.netns import check_netns, preexec
from vmnet.testing.console import KERNEL_ARGS, QEMU, SerialGuest, available, validate_nic
from vmnet.testing.initramfs import default_cache_dir, guest_image

LIBVIRT_PATHS = {
    "etc": "/etc/libvirt",
    "run": "/run/libvirt",
    "lib": "/var/lib/libvirt",
    "cache": "/var/cache/libvirt",
    "log": "/var/log/libvirt",
}
LIBVIRTD_CONF = 'auth_unix_rw = "none"\nauth_unix_ro = "none"\nlog_outputs = "3:stderr"\n'
LIFECYCLE = {  # libvirt's virDomainEventType, by name
    "defined": 0,
    "undefined": 1,
    "started": 2,
    "suspended": 3,
    "resumed": 4,
    "stopped": 5,
    "shutdown": 6,
}
QEMU_CONF = (
    'user = "root"\ngroup = "root"\ndynamic_ownership = 0\nsecurity_driver = "none"\n'
    'cgroup_controllers = [ ]\nstdio_handler = "file"\nnamespaces = [ ]\n'
)
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


def libvirt_version() -> tuple[int, ...] | None:
    """The installed libvirt's version (`libvirtd --version`), or None without one."""
    exe = shutil.which("libvirtd")
    if exe is None:
        return None
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False).stdout
    words = out.split()
    try:
        return tuple(int(part) for part in words[-1].split(".")) if words else None
    except ValueError:
        return None


PASST_LIBVIRT = (11, 0)  # Debian 12's 9.0 is built without passt; bookworm-backports has 11.3


def passt_unsupported() -> str | None:
    """Why this machine's libvirt cannot run passt interfaces, or None if it can."""
    version = libvirt_version()
    if version is None:
        return "libvirt is not installed"
    if version < PASST_LIBVIRT:
        shown = ".".join(map(str, version))
        return f"libvirt {shown} has no passt; needs libvirt >= 11 (bookworm-backports, make deps)"
    return None


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
    steps = [
        (["getent", "group", "kvm"], ["groupadd", "--system", "kvm"]),
        (["getent", "group", "libvirt-qemu"], ["groupadd", "--system", "libvirt-qemu"]),
        (
            ["getent", "passwd", "libvirt-qemu"],
            [
                "useradd",
                "--system",
                "-g",
                "kvm",
                "-d",
                "/var/lib/libvirt",
                "-s",
                "/usr/sbin/nologin",
                "libvirt-qemu",
            ],
        ),
    ]
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

    def __init__(
        self,
        netns: str,
        root: str | Path,
        *,
        timeout: float = 30.0,
        qemu_user: int | None = None,
    ) -> None:
        """`qemu_user`: run qemu (and what libvirt starts for it, e.g. passt) as
        this UID and GID, as KubeVirt runs it as 107; default root."""
        check_netns(netns)
        self.netns, self.root, self.timeout = netns, Path(root), timeout
        self.qemu_user = qemu_user
        self.uri = f"qemu:///system?socket={self.root / 'run' / 'libvirt-sock'}"
        self.host_uuid = str(uuid.uuid4())
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Any = None
        self.events: list[tuple[str, str]] = []  # (domain, lifecycle event), as they come
        self._events = threading.Condition()

    def start(self) -> None:
        """Start libvirtd and wait until it answers."""
        ensure_qemu_user()
        for sub, path in LIBVIRT_PATHS.items():
            (self.root / sub).mkdir(parents=True, exist_ok=True)
            Path(path).mkdir(parents=True, exist_ok=True)
        conf = LIBVIRTD_CONF + f'host_uuid = "{self.host_uuid}"\n'
        (self.root / "etc" / "libvirtd.conf").write_text(conf)
        qemu_conf = QEMU_CONF
        if self.qemu_user is not None:
            who = f"+{self.qemu_user}"
            qemu_conf = qemu_conf.replace('user = "root"', f'user = "{who}"')
            qemu_conf = qemu_conf.replace('group = "root"', f'group = "{who}"')
            self.root.chmod(0o755)  # qemu must reach the console socket in it
        (self.root / "etc" / "qemu.conf").write_text(qemu_conf)
        _copy_tree(default_caps_dir(), self.root / "cache" / "qemu" / "capabilities")
        binds = " && ".join(f"mount --bind {self.root / s} {p}" for s, p in LIBVIRT_PATHS.items())
        argv = [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            f"{binds} && exec libvirtd --pid-file {self.root / 'libvirtd.pid'}",
        ]
        with open(self.root / "libvirtd.log", "ab") as log:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=preexec(self.netns),
            )
        deadline = time.monotonic() + self.timeout
        probe = ["virsh", "-c", self.uri, "uri"]
        while subprocess.run(probe, capture_output=True, check=False).returncode:
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise DriverError(
                    "start libvirtd", self.netns, _last_error(self.root / "libvirtd.log")
                )
            time.sleep(0.05)

    @property
    def conn(self) -> Any:
        """The libvirt-python connection to this daemon (opened on first use;
        lifecycle events are then recorded in `events`)."""
        if self._conn is None:
            libvirt = _libvirt()
            self._conn = libvirt.open(self.uri)
            self._conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, None
            )
        return self._conn

    def _on_lifecycle(self, _conn: Any, dom: Any, event: int, _detail: int, _opaque: Any) -> None:
        name = next((k for k, v in LIFECYCLE.items() if v == event), str(event))
        with self._events:
            self.events.append((dom.name(), name))
            self._events.notify_all()

    def await_event(self, domain: str, event: str, timeout: float = 30.0) -> None:
        """Wait for `domain`'s lifecycle `event` ("started", "stopped", ...)."""
        with self._events:
            if not self._events.wait_for(lambda: (domain, event) in self.events, timeout):
                raise DriverError(f"await {event}", domain, f"not within {timeout:g}s")

    def domains(self) -> list[str]:
        """The names of the running domains."""
        return sorted(dom.name() for dom in self.conn.listAllDomains())

    def virsh(self, *args: str, timeout: float = 60.0) -> str:
        """Run virsh against this libvirtd; return stdout or raise DriverError."""
        result = subprocess.run(
            ["virsh", "-c", self.uri, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
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
                for dom in self.conn.listAllDomains():
                    if dom.isActive():
                        dom.destroy()
            finally:
                if self._conn is not None:
                    with contextlib.suppress(Exception):
                        self._conn.close()
                    self._conn = None
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


_LOOP: threading.Thread | None = None


def _libvirt() -> Any:
    """libvirt-python, with its default event loop running on a daemon thread."""
    global _LOOP
    try:
        import libvirt
    except ImportError as err:
        raise DriverError(
            "import libvirt", "libvirt-python", "not installed: pip install 'vmnet[testing]'"
        ) from err
    if _LOOP is None:
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        _LOOP = threading.Thread(target=run, daemon=True, name="vmnet-libvirt-events")
        _LOOP.start()
    return libvirt


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

    def __init__(
        self,
        libvirtd: Libvirtd,
        tap: str,
        mac: str,
        *,
        mtu: int | None = None,
        decorate: Callable[[str], str] | None = None,
        memory_mb: int = 256,
        timeout: float = 60.0,
    ) -> None:
        self.vm_mac = validate_nic(tap, mac, mtu, memory_mb)
        self.libvirtd, self.tap, self.mtu_arg = libvirtd, tap, mtu
        self.domain = f"vmnet-{secrets.token_hex(4)}"
        super().__init__(f"libvirt guest {libvirtd.netns}/{self.domain}", timeout)
        self._memory, self._decorate = memory_mb, decorate
        self._console = libvirtd.root / f"{self.domain}.console"
        self._sock: socket.socket | None = None
        self.dom: Any = None  # the libvirt-python domain once started

    def domain_xml(self) -> str:
        """The domain this guest starts, after `decorate`."""
        image = guest_image()
        mtu = f"\n      <mtu size='{self.mtu_arg}'/>" if self.mtu_arg is not None else ""
        xml = DOMAIN_XML.format(
            name=self.domain,
            memory=self._memory,
            kernel=image.kernel,
            initrd=image.initrd,
            cmdline=KERNEL_ARGS,
            mac=self.vm_mac,
            tap=self.tap,
            mtu=mtu,
            console=self._console,
            emulator=shutil.which(QEMU) or QEMU,
        )
        return self._decorate(xml) if self._decorate else xml

    def start(self) -> None:
        """Define and start the transient domain; take its console."""
        xml_file = self.libvirtd.root / f"{self.domain}.xml"
        xml_file.write_text(self.domain_xml())
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
            listener.bind(str(self._console))
            if self.libvirtd.qemu_user is not None:  # qemu connects as that user
                os.chmod(self._console, 0o666)
            listener.listen(1)
            listener.settimeout(self.timeout)
            self._started = time.monotonic()
            try:
                self.dom = self.libvirtd.conn.createXML(xml_file.read_text(), 0)
            except Exception as err:  # libvirt.libvirtError: the daemon's own message
                raise DriverError("create domain", self.domain, str(err)) from err
            self.libvirtd.await_event(self.domain, "started", self.timeout)
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
        try:
            self.libvirtd.await_event(self.domain, "stopped", timeout)
        except DriverError:
            if self.domain in self.libvirtd.domains():
                self.dom.destroy()

    def attach(self, interface_xml: str) -> None:
        """Hot-plug a device into the running domain (virDomainAttachDeviceFlags, live)."""
        libvirt = _libvirt()
        try:
            self.dom.attachDeviceFlags(interface_xml, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        except libvirt.libvirtError as err:
            raise DriverError("attach device", self.domain, str(err)) from err

    def detach(self, interface_xml: str, timeout: float = 30.0) -> None:
        """Hot-unplug a device; waits for the guest to release it (device-removed)."""
        libvirt = _libvirt()
        try:
            self.dom.detachDeviceFlags(interface_xml, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        except libvirt.libvirtError as err:
            raise DriverError("detach device", self.domain, str(err)) from err
