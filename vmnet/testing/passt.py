"""passt next to a qemu guest, run the way libvirt's qemu driver would run it.

Debian 12's libvirt 9.0 refuses `<backend type='passt'/>` when it parses a
domain (Debian patch `Disable-passt-support`, see docs/passt.md), so tests
start passt themselves from the `<interface>` vmnet decorated.

`passt_argv(interface, socket)` is pure: it maps one `<interface
type='user'>` with `<backend type='passt'/>` to passt's command line as
libvirt's `src/qemu/qemu_passt.c` does: `--one-off --socket S`,
`<source dev>` -> `--interface`, `<mtu size>` -> `--mtu`, `<backend
logFile>` -> `--log-file`, `<ip address prefix>` -> `--address`/`--netmask`,
and each `<portForward proto>` -> one `--tcp-ports`/`--udp-ports SPEC`,
SPEC = `[address][%dev]/` + comma-joined `[~]start[-end][:to[-to_end]]`
ranges, or `all` when it has no range (passt(1) "-t SPEC").

passt runs in the pod namespace (the child enters it between fork and
exec through `vmnet.core.netns.preexec`, hence the PLW1509 waivers), in
the foreground, as `--runas 107:107` like KubeVirt's virt-launcher, so
the sysctls vmnet's phase 1 sets (ping_group_range,
ip_unprivileged_port_start) are what lets it ping and bind low ports.
passt opens its log before it drops privileges (as root without
CAP_DAC_OVERRIDE) and binds its socket after, so the private directory is
root's and the socket sits in a subdirectory owned by 107.

The binary is a copy of /usr/bin/passt in that directory: /usr/bin/passt
re-executes `<itself>.avx2` when the CPU has AVX2, and Debian 12's
passt.avx2 (0.0~git20230309) dies of SIGSEGV on the first inbound TCP
connection; the copy has no `.avx2` sibling and stays the baseline build.

`PasstGuest` is `QemuGuest` with the tap netdev swapped for qemu 7.2's
`-netdev stream,server=off,addr.type=unix,addr.path=S`, the command line
passt prints at start-up for qemu >= 7.2.

Every wait has a deadline; `close()` stops passt and removes its
directory, so nothing outlives the context manager.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from lxml import etree

from vmnet.core.errors import ConfigError, DriverError
from vmnet.core.netns import check_netns, preexec
from vmnet.testing.qemu import QemuGuest

PASST = "passt"
RUNAS = (107, 107)
PROTO_FLAG = {"tcp": "--tcp-ports", "udp": "--udp-ports"}


def available() -> str | None:
    """Why passt cannot run here (for pytest skips), or None if it can."""
    if shutil.which(PASST) is None:
        return f"{PASST} is not installed (Debian package passt)"
    return None


def passt_argv(interface: etree._Element, socket: str, *, log_file: str | None = None) -> list[str]:
    """passt's arguments for a decorated passt `<interface>`.

    Args:
        interface: the `<interface>` element.
        socket: the unix socket passt listens on and qemu connects to.
        log_file: overrides `<backend logFile>` (tests keep logs in tmp).

    Raises:
        ConfigError: the element is not a passt `<interface type='user'>`.
    """
    backend = interface.find("backend")
    if (
        interface.tag != "interface"
        or interface.get("type") != "user"
        or backend is None
        or backend.get("type") != "passt"
    ):
        raise ConfigError(
            "interface", "not an <interface type='user'> with <backend type='passt'/>"
        )
    argv = [PASST, "--one-off", "--socket", socket]
    argv += _opt("--mtu", interface.find("mtu"), "size")
    argv += _opt("--interface", interface.find("source"), "dev")
    log = log_file or backend.get("logFile")
    argv += ["--log-file", log] if log else []
    for ip in interface.findall("ip"):
        argv += ["--address", _attr(ip, "address")]
        argv += _opt("--netmask", ip, "prefix")
    for forward in interface.findall("portForward"):
        argv += [_port_flag(forward), port_spec(forward)]
    return argv


def port_spec(forward: etree._Element) -> str:
    """passt's SPEC for one `<portForward>`: `10.0.0.1%eth0/22,~25,8000-8080:9000-9080`."""
    prefix = (forward.get("address") or "") + (
        f"%{forward.get('dev')}" if forward.get("dev") else ""
    )
    ranges = [_range(r) for r in forward.findall("range")]
    return (prefix + "/" if prefix else "") + (",".join(ranges) or "all")


def _range(element: etree._Element) -> str:
    start, end, to = (_port(element, k) for k in ("start", "end", "to"))
    if start is None:
        raise ConfigError("portForward", "<range> without start")
    text = ("~" if element.get("exclude") == "yes" else "") + str(start)
    text += f"-{end}" if end is not None else ""
    if to is not None:
        text += f":{to}" + (f"-{to + end - start}" if end is not None else "")
    return text


def _port(element: etree._Element, key: str) -> int | None:
    raw = element.get(key)
    if raw is None:
        return None
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError("portForward", f"range {key}={raw!r} is not a port")
    return int(raw)


def _port_flag(forward: etree._Element) -> str:
    proto = forward.get("proto")
    if proto not in PROTO_FLAG:
        raise ConfigError("portForward", f"proto {proto!r} is neither tcp nor udp")
    return PROTO_FLAG[proto]


def _attr(element: etree._Element, key: str) -> str:
    value = element.get(key)
    if not value:
        raise ConfigError("interface", f"<{element.tag}> without {key}")
    return value


def _opt(flag: str, element: etree._Element | None, key: str) -> list[str]:
    return [flag, _attr(element, key)] if element is not None else []


def _child(netns: str) -> Callable[[], None]:
    """Enter `netns` and lift RLIMIT_NOFILE to its hard limit: passt opens one
    socket per forwarded port (`all` is every non-ephemeral port)."""
    enter = preexec(netns)

    def child() -> None:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        if enter is not None:
            enter()

    return child


class Passt:
    """passt for one passt `<interface>`, running inside `netns`."""

    def __init__(self, netns: str, interface: etree._Element, *, timeout: float = 10.0) -> None:
        check_netns(netns)
        self.netns, self.timeout = netns, timeout
        self.dir = Path(tempfile.mkdtemp(prefix="vmt-passt-"))
        self.socket = str(self.dir / "sock" / "passt.socket")
        self.log = self.dir / "passt.log"
        self.argv = passt_argv(interface, self.socket, log_file=str(self.log))
        self.argv[1:1] = ["--foreground", "--runas", "{}:{}".format(*RUNAS)]
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start passt; return once its socket exists."""
        self.dir.chmod(0o711)
        shutil.copy2(shutil.which(PASST) or PASST, self.dir / PASST)
        self.argv[0] = str(self.dir / PASST)
        (self.dir / "sock").mkdir(mode=0o700)
        os.chown(self.dir / "sock", *RUNAS)
        try:
            with open(self.dir / "passt.stderr", "wb") as err_file:
                self._proc = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=err_file,
                    stderr=err_file,
                    preexec_fn=_child(self.netns),
                )
        except OSError as err:
            raise DriverError("start passt", self.netns, err.errno or 0) from err
        deadline = time.monotonic() + self.timeout
        while not os.path.exists(self.socket):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                why = self.last_error() or "no socket"
                self.close()
                raise DriverError("start passt", self.netns, why)
            time.sleep(0.02)

    def last_error(self) -> str:
        """The last line passt wrote to stderr or its log, for error messages."""
        lines: list[str] = []
        for path in (self.dir / "passt.stderr", self.log):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            lines += [
                ln.strip() for ln in text.splitlines() if ln.strip() and "to syslog" not in ln
            ]
        return " ".join(lines[-1].split(": ", 1)[-1].split()) if lines else ""

    @property
    def pid(self) -> int | None:
        """passt's process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    def returncode(self) -> int | None:
        """None while passt runs, else its exit status (negative: killed by that signal)."""
        return self._proc.poll() if self._proc is not None else None

    def close(self, timeout: float = 5.0) -> int | None:
        """Stop passt (it also exits by itself when qemu goes: --one-off)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
        return proc.returncode if proc is not None else None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PasstGuest(QemuGuest):
    """The busybox guest of `QemuGuest`, its NIC connected to passt's socket."""

    def __init__(self, netns: str, socket: str, mac: str, **kw: Any) -> None:
        super().__init__(netns, "passt", mac, **kw)
        self.name = f"qemu guest {netns}/passt"
        self.socket = socket

    def argv(self) -> list[str]:
        """QemuGuest's command line with a stream netdev instead of the tap."""
        argv = super().argv()
        at = argv.index("-netdev") + 1
        argv[at] = f"stream,id=n0,server=off,addr.type=unix,addr.path={self.socket}"
        return argv


@contextmanager
def passt_guest(
    netns: str, interface: etree._Element, **kw: Any
) -> Iterator[tuple[PasstGuest, Passt]]:
    """passt for `interface`, then a booted guest on it with the interface's MAC.

    Keyword arguments go to `PasstGuest` (`memory_mb`, `timeout`, `mtu`).
    """
    mac = interface.find("mac")
    if mac is None or not mac.get("address"):
        raise ConfigError("interface", "passt <interface> without <mac address>")
    with (
        Passt(netns, interface) as daemon,
        PasstGuest(netns, daemon.socket, mac.get("address", ""), **kw) as guest,
    ):
        yield guest, daemon
