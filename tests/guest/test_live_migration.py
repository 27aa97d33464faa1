"""A running VM live-migrated between two pods, with its downtime measured.

As KubeVirt does it: pod A and pod B sit on one node's CNI bridge and get
the same IP (pod A from host-local, pod B from the real CNI `static` IPAM,
playing the VM-keyed IPAM); A is plugged by vmnet, B as a migration target
while A still serves. The guest (kernel and busybox under qemu TCG) runs on
A's tap and is live-migrated with qemu's own migration into a qemu on B's
tap (a unix socket between the two; see docs/migration.md for why not
libvirt's). Meanwhile a client in the node namespace keeps one TCP
connection to an echo server in the guest, sending a line every 20 ms, and
pings the guest every 10 ms. After the move: the same TCP connection still
carries data, the guest has the same IP and MAC, it sent no DHCPDISCOVER
to pod B, and its DHCP client's renewal gets ACK from pod B's responder.
The downtime is reported three ways: qemu's own figure, the longest gap in
the ping replies and the longest stall of the TCP echo.
"""

from __future__ import annotations

import itertools
import re
import socket
import subprocess
import threading
import time

import pytest

from tests.integration.test_migration import TARGET, vm_manifest
from vmnet.core.netns import run_in
from vmnet.testing.cni import bridge_config, static_ipam
from vmnet.testing.plugging import Plugged
from vmnet.testing.qemu import QemuGuest, available

pytestmark = [
    pytest.mark.netns,
    pytest.mark.qemu,
    pytest.mark.cni("bridge", "host-local", "static"),
    pytest.mark.skipif(available() is not None, reason=str(available())),
]
ECHO_PORT = 5000
UDHCPC_BG = "udhcpc -i eth0 -s /etc/udhcpc.script -p /run/udhcpc.pid -t 5 -T 1 -A 1 -b"


class Echo:
    """One TCP connection from the node to the guest's echo server: a line
    every `interval`, each echo's arrival time kept."""

    def __init__(self, netns: str, address: str, interval: float = 0.02) -> None:
        self.sock = run_in(netns, lambda: socket.create_connection((address, ECHO_PORT), 5))
        self.sock.settimeout(10)
        self.interval = interval
        self.arrivals: list[float] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def roundtrip(self, text: str) -> str:
        self.sock.sendall(text.encode() + b"\n")
        return self._line()

    def _line(self) -> str:
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
        seq = 0
        try:
            while not self._stop.is_set():
                seq += 1
                assert self.roundtrip(f"seq {seq}") == f"seq {seq}"
                self.arrivals.append(time.monotonic())
                self._stop.wait(self.interval)
        except BaseException as err:  # reported by stop()
            self.error = err

    def stop(self) -> float:
        """Stop the stream; the longest gap between two echoes, in ms."""
        self._stop.set()
        self._thread.join(30)
        if self.error is not None:
            raise self.error
        gaps = [b - a for a, b in itertools.pairwise(self.arrivals)]
        return max(gaps) * 1000


def _ping_stream(netns: str, address: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["ip", "netns", "exec", netns, "ping", "-D", "-n", "-i", "0.01", address],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _longest_ping_gap(proc: subprocess.Popen[str]) -> float:
    proc.send_signal(2)
    out, _ = proc.communicate(10)
    stamps = [float(m) for m in re.findall(r"^\[(\d+\.\d+)\] \d+ bytes from", out, re.M)]
    assert len(stamps) > 20, out[-500:]
    return max(b - a for a, b in itertools.pairwise(stamps)) * 1000


GUEST_IP = {"bridge": None, "masquerade": "10.0.2.2"}  # None: the pod's own IP


@pytest.mark.parametrize("binding", sorted(GUEST_IP))
def test_live_migration_keeps_tcp_ip_mac_and_lease(node, binding: str) -> None:
    pod_a = node.add_pod(bridge_config())
    address = str(pod_a.address.ip)  # where the client connects: the pod IP
    guest_ip = GUEST_IP[binding] or address
    doc = vm_manifest(binding, name="livevm", ports=(ECHO_PORT,) if GUEST_IP[binding] else ())
    source: Plugged | None = Plugged(pod_a, doc)
    mac = str(source.mac)
    target = None
    pings = None
    try:
        with QemuGuest(pod_a.netns, source.tap, mac, qmp=True) as guest:
            guest.check(UDHCPC_BG, timeout=30)  # stays running, as a guest's client does
            guest.check(
                f"i=0; until ip -4 addr show eth0 | grep -q {guest_ip}/; do "
                "i=$((i+1)); [ $i -gt 100 ] && exit 1; sleep 0.1; done",
                timeout=30,
            )
            guest.check(f"(nc -l -p {ECHO_PORT} -e cat >/dev/null 2>&1 &)")
            echo = _connect(node.netns, address)
            assert echo.roundtrip("before") == "before"
            leased = source.responders[0].stats.acked
            assert leased >= 1

            # the target pod, made when the migration starts, as KubeVirt makes it
            pod_b = node.add_pod(bridge_config(ipam=static_ipam(str(pod_a.address), "10.22.0.1")))
            assert pod_b.address == pod_a.address
            target = Plugged(pod_b, doc, options=TARGET)  # A still serves
            assert str(target.mac) == mac
            pings = _ping_stream(node.netns, address)
            echo.start()
            with QemuGuest(pod_b.netns, target.tap, str(target.mac), incoming=True) as moved:
                _await_replies(pings)
                migration = guest.migrate_to(moved, timeout=120)
                # KubeVirt deletes the source pod: no unplug, its namespace goes
                assert source.service is not None
                source.service.stop()
                source.service = None
                pod_a.close()
                source = None
                _await_echoes(echo, 10)
                tcp_stall_ms = echo.stop()
                ping_gap_ms = _longest_ping_gap(pings)
                pings = None

                assert echo.roundtrip("after") == "after"  # the same connection
                assert f"inet {guest_ip}/" in moved.check("ip -4 addr show eth0")
                assert str(moved.link_mac()) == mac
                stats = target.responders[0].stats
                assert stats.offered == 0 and stats.received == 0  # no DISCOVER, nothing yet
                moved.check("kill -USR1 $(cat /run/udhcpc.pid)")  # renew now (RFC 2131 §4.4.5)
                _await(lambda: stats.acked >= 1, 20, "pod B's ACK to the renewal")
                assert stats.offered == 0 and stats.nak == 0 and stats.received_unicast >= 1
                print(
                    f"\nlive migration ({binding} binding): qemu downtime "
                    f"{migration.downtime_ms:.0f} ms, total {migration.total_ms:.0f} ms, "
                    f"longest ping gap {ping_gap_ms:.0f} ms, TCP stall {tcp_stall_ms:.0f} ms"
                )
                assert migration.downtime_ms > 0 and ping_gap_ms > 0 and tcp_stall_ms > 0
    finally:
        if pings is not None:
            pings.kill()
            pings.wait()
        if source is not None:
            source.close()
        if target is not None:
            target.close()


def _connect(netns: str, address: str) -> Echo:
    deadline = time.monotonic() + 20
    while True:
        try:
            return Echo(netns, address)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)  # the guest's nc is starting


def _await(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def _await_replies(pings: subprocess.Popen[str]) -> None:
    """Wait until the ping stream runs (a reply seen on its output)."""
    assert pings.stdout is not None
    deadline = time.monotonic() + 10
    for line in pings.stdout:
        if "bytes from" in line:
            return
        if time.monotonic() > deadline:
            break
    raise TimeoutError("no ping reply from the guest")


def _await_echoes(echo: Echo, count: int) -> None:
    start = len(echo.arrivals)
    _await(
        lambda: len(echo.arrivals) >= start + count or echo.error is not None,
        30,
        "echoes after the migration",
    )
