"""Throwaway network namespaces, veth pairs and commands run inside them.

Every namespace made here is named `vmt-` plus 8 random hex digits, has
`lo` up and IPv6 DAD off (so addresses are final the moment they exist and
two snapshots taken a millisecond apart agree), and gets an empty
`/etc/netns/<name>/resolv.conf`: `ip netns exec` bind-mounts that file over
`/etc/resolv.conf`, so a DHCP client script run in the namespace cannot
rewrite the machine's own resolver.

The test process never enters a namespace:
netlink goes through `IPRoute(netns=name, flags=0)`, commands through
`ip netns exec` / `ip -n`, and /proc/sys writes through `run_in`.

Removing what is already gone is success; any other failure raises.

Every namespace created and every process started here is recorded, so
`leaks()` can list what a test forgot to clean up.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import subprocess
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute, NetlinkError
from pyroute2 import netns as pyroute2_netns

from vmnet.core.addr import MacAddress
from vmnet.core.errors import ConfigError, DriverError
from vmnet.core.netns import check_netns, run_in
from vmnet.testing.wait import wait_until

PREFIX = "vmt-"
ETC_NETNS = "/etc/netns"
_GONE = (errno.ENOENT, errno.ENODEV, errno.ESRCH)

_created: set[str] = set()
_procs: weakref.WeakSet[subprocess.Popen[Any]] = weakref.WeakSet()


class CommandError(DriverError):
    """A command run by the test helpers failed; carries its output."""

    def __init__(self, argv: Sequence[str], cause: str, stdout: str = "", stderr: str = "") -> None:
        self.argv = list(argv)
        self.stdout = stdout
        self.stderr = stderr
        super().__init__("exec", " ".join(self.argv), cause)


@dataclass(frozen=True, slots=True)
class VethEnd:
    """One end of a veth pair: the namespace it lives in and how it looks."""

    netns: str
    ifname: str
    mac: MacAddress | None = None
    mtu: int | None = None


def unique_name(prefix: str = PREFIX) -> str:
    """`prefix` plus 8 random hex digits."""
    return prefix + secrets.token_hex(4)


def create_netns(prefix: str = PREFIX) -> str:
    """Create a namespace as the module docstring describes and return its name.

    Raises:
        DriverError: the namespace could not be created (e.g. not root).
    """
    name = unique_name(prefix)
    try:
        pyroute2_netns.create(name)
    except OSError as err:
        raise DriverError("netns_create", name, err.errno or str(err)) from err
    _created.add(name)
    try:
        os.makedirs(os.path.join(ETC_NETNS, name), exist_ok=True)
        with open(os.path.join(ETC_NETNS, name, "resolv.conf"), "w", encoding="ascii") as f:
            f.write(f"# vmnet.testing: resolv.conf of namespace {name}\n")
        with open_ipr(name) as ipr:
            ipr.link("set", index=1, state="up")
        for scope in ("all", "default"):
            write_sysctl(name, f"net/ipv6/conf/{scope}/accept_dad", "0")
    except BaseException:
        remove_netns(name)
        raise
    return name


def remove_netns(name: str) -> None:
    """Remove a namespace and its /etc/netns directory; absent is fine."""
    _created.discard(name)
    shutil.rmtree(os.path.join(ETC_NETNS, name), ignore_errors=True)
    try:
        pyroute2_netns.remove(name)
    except OSError as err:
        if err.errno not in _GONE:
            raise DriverError("netns_remove", name, err.errno or str(err)) from err


@contextmanager
def temp_netns(prefix: str = PREFIX) -> Iterator[str]:
    """A namespace that exists for the duration of the `with` block."""
    name = create_netns(prefix)
    try:
        yield name
    finally:
        remove_netns(name)


def created_netns() -> frozenset[str]:
    """Namespaces created by this process and not removed yet."""
    return frozenset(_created)


def open_ipr(netns: str | None) -> IPRoute:
    """An IPRoute bound to an existing namespace (None: the caller's own).

    Raises:
        ConfigError: the namespace does not exist.
    """
    check_netns(netns)
    return IPRoute() if netns is None else IPRoute(netns=netns, flags=0)


def link_index(ipr: IPRoute, ifname: str) -> int:
    """The ifindex of `ifname`, or DriverError(ENODEV)."""
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise DriverError("link_lookup", ifname, errno.ENODEV)
    return int(found[0])


def create_veth(a: VethEnd, b: VethEnd, *, up: bool = True) -> None:
    """Create a veth pair with end `a` in `a.netns` and end `b` in `b.netns`."""
    peer: dict[str, Any] = {"ifname": b.ifname, **_link_opts(b)}
    if b.netns != a.netns:
        check_netns(b.netns)
        peer["net_ns_fd"] = b.netns
    with open_ipr(a.netns) as ipr:
        try:
            ipr.link("add", ifname=a.ifname, kind="veth", peer=peer, **_link_opts(a))
        except NetlinkError as err:
            raise DriverError("link_add", f"{a.ifname}<->{b.ifname}", err.code) from err
    if up:
        for end in (a, b):
            with open_ipr(end.netns) as ipr:
                ipr.link("set", index=link_index(ipr, end.ifname), state="up")
        for end in (a, b):
            wait_operstate(end.netns, end.ifname, "UP")


def operstate(netns: str, ifname: str) -> str:
    """The operstate (`UP`, `DOWN`, `UNKNOWN`, ...) of a link."""
    with open_ipr(netns) as ipr:
        return str(ipr.get_links(link_index(ipr, ifname))[0].get("operstate"))


def wait_operstate(netns: str, ifname: str, state: str, timeout: float = 5.0) -> None:
    """Wait until the kernel reports `state` for a link (linkwatch is async)."""
    wait_until(
        lambda: operstate(netns, ifname) == state,
        timeout,
        what=f"{ifname} in {netns} to be {state}",
    )


def _link_opts(end: VethEnd) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if end.mac is not None:
        opts["address"] = str(end.mac)
    if end.mtu is not None:
        opts["mtu"] = end.mtu
    return opts


def write_sysctl(netns: str | None, key: str, value: str) -> None:
    """Write /proc/sys/<key> inside `netns`; `key` uses `/` or `.` separators."""
    path = "/proc/sys/" + (key if "/" in key else key.replace(".", "/"))

    def write() -> None:
        with open(path, "w", encoding="ascii") as f:
            f.write(value)

    try:
        run_in(netns, write)
    except OSError as err:
        raise DriverError("sysctl_set", f"{key}={value}", err.errno or str(err)) from err


def read_sysctl(netns: str | None, key: str) -> str:
    """Read /proc/sys/<key> inside `netns`, stripped."""
    path = "/proc/sys/" + (key if "/" in key else key.replace(".", "/"))

    def read() -> str:
        with open(path, encoding="ascii") as f:
            return f.read().strip()

    return run_in(netns, read)


def _wrap(netns: str | None, argv: Sequence[str]) -> list[str]:
    if not argv:
        raise ConfigError("argv", "empty command")
    if netns is None:
        return list(argv)
    if "/" in netns:
        raise ConfigError("netns", f"exec_in needs a namespace name, not a path: {netns!r}")
    return ["ip", "netns", "exec", netns, *argv]


def exec_in(
    netns: str | None,
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 30.0,
    **kw: Any,
) -> subprocess.CompletedProcess[str]:
    """Run `argv` inside `netns` through `ip netns exec` and wait for it.

    Output is captured as text unless the caller passes its own streams.

    Raises:
        CommandError: the command could not start, timed out, or (with
            `check`) exited non-zero; the message ends with its stderr.
    """
    kw.setdefault("text", True)
    if "stdout" not in kw and "stderr" not in kw:
        kw.setdefault("capture_output", True)
    full = _wrap(netns, argv)
    try:
        done = subprocess.run(full, timeout=timeout, check=False, **kw)
    except subprocess.TimeoutExpired as err:
        raise CommandError(full, f"timed out after {timeout:g}s") from err
    except OSError as err:
        raise CommandError(full, err.strerror or str(err)) from err
    if check and done.returncode != 0:
        tail = (done.stderr or "").strip().splitlines()[-1:] if isinstance(done.stderr, str) else []
        raise CommandError(
            full,
            f"exit {done.returncode}" + (f": {tail[0]}" if tail else ""),
            done.stdout or "",
            done.stderr or "",
        )
    return done


def popen_in(netns: str | None, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
    """Start `argv` inside `netns`; the caller must stop and wait for it."""
    full = _wrap(netns, argv)
    try:
        proc = subprocess.Popen(full, **kw)
    except OSError as err:
        raise CommandError(full, err.strerror or str(err)) from err
    _procs.add(proc)
    return proc


def ip_batch(netns: str, commands: Sequence[str]) -> None:
    """Run `ip` commands (one per item, without the leading `ip`) in one process."""
    exec_in(None, ["ip", "-n", netns, "-batch", "-"], input="\n".join(commands) + "\n")


def leaks() -> list[str]:
    """What this process left behind: namespaces, live children, zombies.

    Each item is one human-readable line naming the leaked object.
    """
    found = [f"netns {name} still exists" for name in sorted(_created)]
    found += [f"process {pid} ({cmd}) is still running" for pid, cmd in _children()]
    return found


def _children() -> list[tuple[int, str]]:
    me = os.getpid()
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        comm, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :]
        fields = rest.split()
        if int(fields[1]) == me:
            kids.append((int(entry), f"{comm}, state {fields[0]}"))
    return kids
