"""Network namespace handles that never move the calling thread.

vmnet never calls setns() on the process or on a thread it does not own,
and never for the namespace it already runs in.
Work that must happen inside a namespace (opening a socket, a tap or a
sysctl file) runs on a short-lived dedicated thread that enters the
namespace and dies with it; file descriptors opened there stay bound to
that namespace after the thread ends.

Child processes (nft, DHCP clients in tests) enter the namespace between
fork and exec, so only the child moves.

A namespace is given by name (looked up in /run/netns) or by path
(e.g. /proc/PID/ns/net). `None` means the caller's own namespace.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import queue
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from vmnet.core.errors import ConfigError, DriverError, PrivilegeError

NETNS_RUN_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3), linux/nsfs.h

T = TypeVar("T")


@functools.cache
def _setns_call() -> Callable[[int, int], None]:
    """setns(2) as a callable raising OSError: os.setns (Python 3.12+), else the
    running process's own libc through ctypes (loaded only then)."""
    if hasattr(os, "setns"):
        return os.setns  # type: ignore[no-any-return,unused-ignore]
    import ctypes

    libc_setns = ctypes.CDLL(None, use_errno=True).setns
    get_errno = ctypes.get_errno

    def setns(fd: int, nstype: int) -> None:
        if libc_setns(fd, nstype) != 0:
            err = get_errno()
            raise OSError(err, os.strerror(err))

    return setns


def netns_path(netns: str) -> str:
    """The filesystem path of a namespace given by name or path."""
    if "/" in netns:
        return netns
    if netns in ("", ".", "..") or "\0" in netns:
        raise ConfigError("--netns", f"invalid namespace name {netns!r}")
    return os.path.join(NETNS_RUN_DIR, netns)


def resolv_conf_of(netns: str | None) -> str:
    """The resolv.conf the processes of `netns` use: for /proc/PID/ns/net,
    that process's own (through /proc/PID/root); for a name in /run/netns,
    /etc/netns/NAME/resolv.conf as `ip netns exec` mounts it, if there is
    one; otherwise, and for this namespace (None), /etc/resolv.conf."""
    if netns is None:
        return "/etc/resolv.conf"
    path = netns_path(netns)
    proc = re.fullmatch(r"/proc/(\d+|self|thread-self)(?:/task/\d+)?/ns/net", path)
    if proc:
        return f"/proc/{proc.group(1)}/root/etc/resolv.conf"
    if os.path.dirname(path) == NETNS_RUN_DIR:
        named = os.path.join("/etc/netns", os.path.basename(path), "resolv.conf")
        if os.path.exists(named):
            return named
    return "/etc/resolv.conf"


def check_netns(netns: str | None) -> None:
    """Raise ConfigError unless `netns` names an existing network namespace."""
    if netns is not None:
        os.close(_open_netns(netns))


@contextlib.contextmanager
def locked(netns: str | None) -> Iterator[None]:
    """Hold an exclusive lock on the namespace itself (its nsfs inode, the
    same whichever path names it) until the block ends: phase-1 runs on one
    pod wait for each other, whatever cache directory each was given."""
    fd = _open_netns("/proc/self/ns/net" if netns is None else netns)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _open_netns(netns: str) -> int:
    """An fd on the namespace `netns` names, or ConfigError."""
    path = netns_path(netns)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        raise ConfigError("--netns", f"network namespace {netns!r}: {err.strerror}") from err
    try:
        _setns_probe(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _setns_probe(fd: int, path: str) -> None:
    # NS_GET_NSTYPE (linux/nsfs.h) answers CLONE_NEWNET only for a network
    # namespace; a regular file fails with ENOTTY.
    try:
        nstype = fcntl.ioctl(fd, NS_GET_NSTYPE)
    except OSError:
        nstype = -1
    if nstype != CLONE_NEWNET:
        raise ConfigError("--netns", f"{path} is not a network namespace")


def enter(netns: str) -> None:
    """setns() the calling thread into `netns`. Only for threads vmnet owns."""
    path = netns_path(netns)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns_call()(fd, CLONE_NEWNET)
    except OSError as err:
        if err.errno == errno.EPERM:
            raise PrivilegeError("CAP_SYS_ADMIN", f"enter network namespace {path}") from err
        raise DriverError("setns", path, err.errno or errno.EIO) from err
    finally:
        os.close(fd)


def run_in(netns: str | None, fn: Callable[[], T]) -> T:
    """Run `fn` on a dedicated thread inside `netns` and return its result.

    Exceptions raised by `fn` are re-raised in the caller. When `netns` is
    the caller's own namespace, `fn` runs right here: no setns(), so phase 2
    inside the pod needs no CAP_SYS_ADMIN.
    """
    if netns is None or is_own(netns):
        return fn()
    box: dict[str, object] = {}

    def target() -> None:
        try:
            enter(netns)
            box["result"] = fn()
        except BaseException as err:  # re-raised in the caller below
            box["error"] = err

    thread = threading.Thread(target=target, name=f"netns:{netns}", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"]  # type: ignore[return-value]


class Worker:
    """One thread that enters `netns` once and runs calls there until closed.

    `run_in` pays a thread and a setns() per call (about 0.5-1 ms); a plug
    makes several such calls (sysctls, the tap, the netlink socket), so the
    real drivers share one worker. For the caller's own namespace calls run
    in place, as with `run_in`.
    """

    def __init__(self, netns: str | None) -> None:
        self.netns = netns
        self._inline = netns is None or is_own(netns)
        self._calls: queue.SimpleQueue[
            tuple[Callable[[], Any], dict[str, Any], threading.Event] | None
        ] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        if not self._inline:
            assert netns is not None
            started = self._call_on_new_thread(netns)
            if "error" in started:
                raise started["error"]

    def _call_on_new_thread(self, netns: str) -> dict[str, Any]:
        started: dict[str, Any] = {}
        ready = threading.Event()

        def loop() -> None:
            try:
                enter(netns)
            except BaseException as err:  # re-raised by __init__
                started["error"] = err
                ready.set()
                return
            ready.set()
            while (item := self._calls.get()) is not None:
                fn, box, done = item
                try:
                    box["result"] = fn()
                except BaseException as err:  # re-raised by run()
                    box["error"] = err
                done.set()

        self._thread = threading.Thread(target=loop, name=f"netns-worker:{netns}", daemon=True)
        self._thread.start()
        ready.wait()
        return started

    def run(self, fn: Callable[[], T]) -> T:
        if self._inline:
            return fn()
        if self._thread is None or not self._thread.is_alive():
            raise DriverError("netns worker", str(self.netns), errno.ESRCH)
        box: dict[str, Any] = {}
        done = threading.Event()
        self._calls.put((fn, box, done))
        done.wait()
        if "error" in box:
            raise box["error"]
        return box["result"]  # type: ignore[no-any-return]

    def close(self) -> None:
        if self._thread is not None:
            self._calls.put(None)
            self._thread.join()
            self._thread = None


def preexec(netns: str | None) -> Callable[[], None] | None:
    """A `preexec_fn` for subprocess that moves only the child into `netns`."""
    if netns is None:
        return None
    path = netns_path(netns)
    setns = _setns_call()  # resolved before the fork: the child may not import

    def child() -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
            setns(fd, CLONE_NEWNET)
        except OSError:
            os._exit(126)
        os.close(fd)

    return child


def is_own(netns: str) -> bool:
    """True when `netns` is the namespace this thread already runs in."""
    try:
        want = os.stat(netns_path(netns))
        mine = os.stat(f"/proc/self/task/{threading.get_native_id()}/ns/net")
    except OSError:
        return False
    return (want.st_dev, want.st_ino) == (mine.st_dev, mine.st_ino)


def same_netns(a: str | None, b: str | None) -> bool:
    """True when both handles refer to the same namespace inode."""

    def ino(ns: str | None) -> int:
        return os.stat(netns_path(ns) if ns else "/proc/self/ns/net").st_ino

    try:
        return ino(a) == ino(b)
    except OSError as err:
        if err.errno == errno.ENOENT:
            return False
        raise
