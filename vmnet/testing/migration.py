"""Live migration of a running qemu guest between two pods, with its downtime measured.

`live_migrate(node, binding)` does what KubeVirt does to a VM on one node's
pod network, with real parts: pod A from the CNI bridge plugin
(host-local), plugged by vmnet; a guest (kernel and busybox under qemu TCG)
on A's tap with a running udhcpc and a TCP echo server; a client in the
node namespace holding one TCP connection to it (a line every 20 ms) and a
ping every 10 ms; pod B made when the migration starts, with the same IP
from the CNI `static` IPAM and plugged as a migration target while A still
serves; qemu's own live migration from A's qemu into B's (QMP, a unix
socket); pod A deleted, as KubeVirt deletes the source pod. It then checks
what a VM owner relies on and returns the measurements (`Moved`): the same
TCP connection still carries data, the guest has the same IP and MAC, pod
B's responder saw no DISCOVER, and the guest's renewal gets pod B's ACK.

`tests/guest/test_live_migration.py` runs it for each binding;
`python -m vmnet.testing.migration` (`make demo-migration`) prints it step
by step. Everything is removed at the end, on failure too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import itertools
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from vmnet.core.addr import MacAddress
from vmnet.core.errors import DriverError, VmnetError
from vmnet.core.netns import run_in
from vmnet.phases import phase1
from vmnet.protocols.announce import arp_announcement
from vmnet.testing.cni import CniPod, Node, bridge_config, static_ipam
from vmnet.testing.plugging import Plugged, bridge_manifest
from vmnet.testing.qemu import Migration, QemuGuest
from vmnet.testing.wait import wait_until

ECHO_PORT = 5000
ALLOW = {"kubevirt.io/allow-pod-bridge-network-live-migration": ""}
MASQUERADE_GUEST_IP = "10.0.2.2"
UDHCPC_BG = "udhcpc -i eth0 -s /etc/udhcpc.script -p /run/udhcpc.pid -t 5 -T 1 -A 1 -b"
TARGET = phase1.PlugOptions(migration_target=True)


@dataclasses.dataclass(frozen=True)
class Moved:
    """One live migration, as measured and checked."""

    binding: str
    address: str  # the pod IP both pods have
    guest_ip: str
    mac: str
    qemu: Migration
    ping_gap_ms: float  # the longest gap between two ping replies
    tcp_stall_ms: float  # the longest gap between two echoes on the one connection
    renewal_acked: bool
    discovers_to_target: int


def manifest(binding: str, name: str = "livevm") -> dict[str, Any]:
    doc = bridge_manifest(binding, name)
    doc["metadata"]["annotations"] = dict(ALLOW)
    if binding == "masquerade":
        doc["spec"]["domain"]["devices"]["interfaces"][0]["ports"] = [{"port": ECHO_PORT}]
    return doc


class Echo:
    """One TCP connection from `netns` to the guest's echo server: a line
    every `interval` once started, each echo's arrival time kept."""

    def __init__(self, netns: str, address: str, interval: float = 0.02) -> None:
        self.sock = run_in(netns, lambda: socket.create_connection((address, ECHO_PORT), 5))
        self.sock.settimeout(10)
        self.interval = interval
        self.arrivals: list[float] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="vmnet-echo")

    def roundtrip(self, text: str) -> str:
        self.sock.sendall(text.encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("the guest closed the connection")
            data += chunk
        return data.decode().strip()

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        try:
            for seq in itertools.count(1):
                if self._stop.is_set():
                    return
                if self.roundtrip(f"seq {seq}") != f"seq {seq}":
                    raise ConnectionError(f"echo {seq} came back wrong")
                self.arrivals.append(time.monotonic())
                self._stop.wait(self.interval)
        except BaseException as err:  # reported by stop()
            self.error = err

    def stop(self) -> float:
        """Stop the stream; the longest gap between two echoes, in ms."""
        self._stop.set()
        self._thread.join(30)
        if self.error is not None:
            raise DriverError("tcp echo", "guest", f"the connection broke: {self.error!r}")
        return max(b - a for a, b in itertools.pairwise(self.arrivals)) * 1000

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


class Pings:
    """`ping -i 0.01` from `netns`, its replies' timestamps read at the end."""

    def __init__(self, netns: str, address: str) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, "ping", "-D", "-n", "-i", "0.01", address],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 10
        for line in self.proc.stdout:  # running once a reply is seen
            if "bytes from" in line:
                return
            if time.monotonic() > deadline:
                break
        self.close()
        raise DriverError("ping", address, "no reply")

    def longest_gap_ms(self) -> float:
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=10)
        stamps = [float(m) for m in re.findall(r"^\[(\d+\.\d+)\] \d+ bytes from", out, re.M)]
        if len(stamps) < 2:
            raise DriverError("ping", "guest", f"too few replies: {out[-300:]!r}")
        return max(b - a for a, b in itertools.pairwise(stamps)) * 1000

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


def live_migrate(
    node: Node, binding: str = "bridge", say: Callable[[str], None] = lambda _: None
) -> Moved:
    """The migration of the module docstring on `node`; raises DriverError
    (or AssertionError for a broken promise) when something does not hold."""
    with contextlib.ExitStack() as stack:
        pod_a = node.add_pod(bridge_config())
        address = str(pod_a.address.ip)
        guest_ip = MASQUERADE_GUEST_IP if binding == "masquerade" else address
        doc = manifest(binding)
        source = Plugged(pod_a, doc)
        stack.callback(source.close, check_restored=False)
        mac = str(source.mac)
        say(f"pod A {pod_a.netns}: {address} from the CNI bridge plugin, plugged ({binding})")
        guest = stack.enter_context(QemuGuest(pod_a.netns, source.tap, mac, qmp=True))
        guest.check(UDHCPC_BG, timeout=30)  # stays running, as a guest's client does
        _wait_for_address(guest, guest_ip)
        guest.check(f"(nc -l -p {ECHO_PORT} -e cat >/dev/null 2>&1 &)")
        say(f"guest on {pod_a.netns}/{source.tap}: {guest_ip}, MAC {mac}, echo on :{ECHO_PORT}")
        echo = _connect(node.netns, address)
        stack.callback(echo.close)
        if echo.roundtrip("before") != "before":
            raise AssertionError("the echo server answers wrongly")

        pod_b = _target_pod(node, pod_a)
        target = Plugged(pod_b, doc, options=TARGET)  # A still serves
        stack.callback(target.close, check_restored=False)
        if str(target.mac) != mac:
            raise AssertionError(f"the target pod gives the VM {target.mac}, not {mac}")
        say(f"pod B {pod_b.netns}: {pod_b.address.ip} from the CNI static IPAM, plugged as target")
        pings = Pings(node.netns, address)
        stack.callback(pings.close)
        echo.start()
        moved = stack.enter_context(QemuGuest(pod_b.netns, target.tap, mac, incoming=True))
        result = guest.migrate_to(moved, timeout=120)
        say(
            f"migrated: qemu says {result.downtime_ms:.0f} ms downtime, "
            f"{result.total_ms:.0f} ms in all, {result.transferred_bytes >> 20} MiB sent"
        )
        _delete_source(source, pod_a)
        say("pod A deleted, as KubeVirt deletes the source pod")
        if binding == "masquerade":
            # The pod IP now answers from pod B's NIC, whose MAC is not pod A's: an IPAM
            # that keeps the IP moves it in its network (Kube-OVN moves the port); on
            # this plain bridge the harness announces it, or the node's neighbour entry
            # would point at pod A's gone NIC until it expires (seconds). The bridge
            # binding needs none: the guest's own MAC moves, and qemu announces it.
            _announce(pod_b.netns, pod_b.ifname, address)
        _await(lambda: len(echo.arrivals) >= 10 or echo.error is not None, 30, "echoes")
        count = len(echo.arrivals)
        _await(lambda: len(echo.arrivals) >= count + 10 or echo.error is not None, 30, "echoes")
        stall = echo.stop()
        gap = pings.longest_gap_ms()

        if echo.roundtrip("after") != "after":
            raise AssertionError("the TCP connection does not carry data after the move")
        if f"inet {guest_ip}/" not in moved.check("ip -4 addr show eth0"):
            raise AssertionError(f"the guest lost {guest_ip}")
        if str(moved.link_mac()) != mac:
            raise AssertionError("the guest's MAC changed")
        stats = target.responders[0].stats
        discovers = stats.offered
        moved.check("kill -USR1 $(cat /run/udhcpc.pid)")  # renew now (RFC 2131 §4.4.5)
        _await(lambda: stats.acked >= 1, 20, "pod B's ACK to the renewal")
        say(
            f"after: the same TCP connection echoes, guest {guest_ip} MAC {mac}, "
            f"no DISCOVER to pod B, renewal ACKed by pod B"
        )
        say(f"longest ping gap {gap:.0f} ms, TCP stall {stall:.0f} ms")
        return Moved(
            binding=binding,
            address=address,
            guest_ip=guest_ip,
            mac=mac,
            qemu=result,
            ping_gap_ms=gap,
            tcp_stall_ms=stall,
            renewal_acked=stats.acked >= 1 and stats.nak == 0 and stats.received_unicast >= 1,
            discovers_to_target=discovers + stats.offered,
        )
    raise AssertionError("unreachable")  # the with block returns or raises


def _announce(netns: str, ifname: str, address: str, count: int = 3) -> None:
    """Gratuitous ARP for `address` from `ifname` in `netns` (RFC 5227 §3)."""

    def send() -> None:
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
            sock.bind((ifname, 0))
            mac = MacAddress(sock.getsockname()[4][:6])
            frame = arp_announcement(mac, mac, ipaddress.IPv4Address(address))
            for _ in range(count):
                sock.send(frame)

    run_in(netns, send)


def _target_pod(node: Node, source: CniPod) -> CniPod:
    gateway = str(source.gateway) if source.gateway else "10.22.0.1"
    pod = node.add_pod(bridge_config(ipam=static_ipam(str(source.address), gateway)))
    if pod.address != source.address:
        raise AssertionError(f"the target pod got {pod.address}, not {source.address}")
    return pod


def _delete_source(source: Plugged, pod: CniPod) -> None:
    """Stop serving and delete the pod (no unplug: its namespace goes)."""
    source.stop_serving()
    pod.close()
    shutil.rmtree(source.workdir, ignore_errors=True)


def _wait_for_address(guest: QemuGuest, ip: str) -> None:
    guest.check(
        f"i=0; until ip -4 addr show eth0 | grep -q {ip}/; do "
        "i=$((i+1)); [ $i -gt 100 ] && exit 1; sleep 0.1; done",
        timeout=30,
    )


def _connect(netns: str, address: str) -> Echo:
    def attempt() -> Echo | None:
        try:
            return Echo(netns, address)
        except OSError:
            return None  # the guest's nc is starting

    try:
        echo = wait_until(attempt, 20, 0.1, f"the guest's echo server at {address}")
    except TimeoutError as err:
        raise DriverError("connect", address, str(err)) from err
    assert echo is not None  # wait_until returns a truthy value
    return echo


def _await(condition: Callable[[], bool], timeout: float, what: str) -> None:
    try:
        wait_until(condition, timeout, what=what)
    except TimeoutError as err:
        raise DriverError("wait", what, f"not within {timeout:g}s") from err


@contextlib.contextmanager
def _node() -> Iterator[Node]:
    node = Node()
    try:
        yield node
    finally:
        node.close()


def main() -> int:
    """`make demo-migration`: both bindings, step by step, then the figures."""
    try:
        rows = []
        for binding in ("bridge", "masquerade"):
            print(f"== live migration, {binding} binding", flush=True)
            with _node() as node:
                moved = live_migrate(node, binding, say=lambda line: print(f"  {line}", flush=True))
            rows.append(moved)
        print("\nbinding      qemu downtime  longest ping gap  TCP stall")
        for m in rows:
            print(
                f"{m.binding:<12} {m.qemu.downtime_ms:>10.0f} ms {m.ping_gap_ms:>14.0f} ms "
                f"{m.tcp_stall_ms:>7.0f} ms"
            )
        print("demo-migration succeeded: nothing left behind")
        return 0
    except (VmnetError, AssertionError, OSError) as err:
        print(f"demo-migration failed: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
