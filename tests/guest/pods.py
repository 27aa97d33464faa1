"""Pods for real qemu guests: a namespace with bridge `k6t-eth0` and `tap0`.

The pod is built by hand (pyroute2 plus vmnet's own tap driver) so these
tests depend on nothing but the kernel; dnsmasq serves the lease until a test
swaps in vmnet's own DHCP server. Every namespace and process made here is
removed on the way out, also when the test fails.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2 import netns as pyroute2_netns

from vmnet.apply.drivers.tap import TunTap
from vmnet.core.netns import preexec
from vmnet.plan.state import TapSpec
from vmnet.testing.wait import wait_until

VM_MAC = "52:54:00:5e:00:32"
VM_IP = ipaddress.IPv4Interface("10.99.0.50/24")
GATEWAY = ipaddress.IPv4Interface("10.99.0.1/24")


@dataclass(frozen=True)
class Pod:
    netns: str
    bridge: str = "k6t-eth0"
    tap: str = "tap0"


@contextmanager
def make_pod(gateway: ipaddress.IPv4Interface = GATEWAY) -> Iterator[Pod]:
    """A namespace with `lo` up and tap0 enslaved to an addressed k6t-eth0."""
    pod = Pod(f"vmq-{secrets.token_hex(4)}")
    pyroute2_netns.create(pod.netns)
    try:
        TunTap(pod.netns).create(pod.tap, TapSpec())
        with IPRoute(netns=pod.netns, flags=0) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
            ipr.link("add", ifname=pod.bridge, kind="bridge")
            (br,) = ipr.link_lookup(ifname=pod.bridge)
            (tap,) = ipr.link_lookup(ifname=pod.tap)
            ipr.link("set", index=tap, master=br, state="up")
            ipr.addr("add", index=br, address=str(gateway.ip), prefixlen=gateway.network.prefixlen)
            ipr.link("set", index=br, state="up")
        yield pod
    finally:
        pyroute2_netns.remove(pod.netns)


@contextmanager
def dnsmasq(pod: Pod, tmp: Path, *options: str) -> Iterator[subprocess.Popen[bytes]]:
    """dnsmasq serving only VM_MAC -> VM_IP on the pod bridge; yields its process."""
    log = tmp / "dnsmasq.log"
    argv = [
        "dnsmasq",
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--port=0",
        "--user=root",
        f"--interface={pod.bridge}",
        "--bind-interfaces",
        f"--dhcp-range={VM_IP.ip},{VM_IP.ip},{VM_IP.netmask}",
        f"--dhcp-host={VM_MAC},{VM_IP.ip},guest1",
        "--dhcp-authoritative",
        "--leasefile-ro",
        f"--pid-file={tmp / 'dnsmasq.pid'}",
        f"--log-facility={log}",
        "--log-dhcp",
        *options,
    ]
    proc = subprocess.Popen(
        argv,
        preexec_fn=preexec(pod.netns),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def bound() -> bool:
            assert proc.poll() is None, f"dnsmasq exited {proc.returncode}"
            return log.exists() and "sockets bound" in log.read_text()

        wait_until(bound, 10, 0.01, "dnsmasq to bind the pod bridge")
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def pids_in(netns: str) -> set[int]:
    """Every process whose network namespace is `netns`."""
    want = os.stat(f"/run/netns/{netns}").st_ino
    found = set()
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and os.stat(f"/proc/{entry}/ns/net").st_ino == want:
                found.add(int(entry))
        except OSError:
            continue
    return found
