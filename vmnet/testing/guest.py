"""A guest without qemu: a namespace whose eth0 is wired to the pod's tap.

A `Guest` owns two namespaces: the guest itself (`lo` and `eth0` with
the VM's MAC, nothing else, like a VM) and a wire namespace holding the
veth peer `wire0` that the relay's packet socket is bound to. Nothing is
added to the pod namespace, so snapshots of the pod see only vmnet.

TX checksum offload is off on the guest's eth0: a veth would otherwise
hand the packet socket TCP/UDP frames with unfinished checksums (and TSO
super-frames) that the relay cannot pass to a tap without a vnet header.
IPv6 is off in the wire namespace so `wire0` adds no frames of its own.

eth0's MTU defaults to the tap's MTU.

`close()` stops the relay before removing the namespaces and may be
called more than once.
"""

from __future__ import annotations

import ctypes
import fcntl
import socket
import struct
from collections.abc import Sequence
from typing import Self

from vmnet.core.addr import MacAddress
from vmnet.core.netns import run_in
from vmnet.testing import namespaces as ns
from vmnet.testing.lease import Lease
from vmnet.testing.relay import TapRelay
from vmnet.testing.shell import CommandResult, GuestShell

SIOCETHTOOL = 0x8946
ETHTOOL_STXCSUM = 0x00000017
WIRE = "wire0"


class Guest(GuestShell):
    """A DHCP-client-ready guest attached to tap `tap` in `pod_netns`."""

    def __init__(
        self,
        pod_netns: str,
        tap: str = "tap0",
        mac: MacAddress | None = None,
        *,
        ifname: str = "eth0",
        mtu: int | None = None,
    ) -> None:
        self.pod_netns = pod_netns
        self.tap = tap
        self.ifname = ifname
        self.mac = mac if mac is not None else MacAddress.random_local()
        self.relay: TapRelay | None = None
        self.netns = ns.create_netns("vmt-")
        self.wire_netns = ""
        try:
            self.wire_netns = ns.create_netns("vmt-")
            ns.write_sysctl(self.wire_netns, "net.ipv6.conf.default.disable_ipv6", "1")
            mtu = mtu if mtu is not None else _link_mtu(pod_netns, tap)
            ns.create_veth(
                ns.VethEnd(self.netns, ifname, self.mac, mtu),
                ns.VethEnd(self.wire_netns, WIRE, None, mtu),
            )
            run_in(self.netns, lambda: _tx_csum_off(ifname))
            self.relay = TapRelay(pod_netns, tap, self.wire_netns, WIRE)
        except BaseException:
            self.close()
            raise

    def dhcp(
        self,
        client: str = "udhcpc",
        *,
        ifname: str | None = None,
        timeout: float = 30.0,
        workdir: str | None = None,
        lease_file_text: str | None = None,
    ) -> Lease:
        """Lease an address with a real DHCP client in the guest namespace.

        Args:
            client: "udhcpc", "dhclient", "dhcpcd" (what `vmnet.testing.dhcpclients` runs).
            ifname: the guest's interface (default: the one it was made with).
            workdir: where the client keeps its files (default: a temporary directory).
            lease_file_text: dhclient only: seeds its lease file (INIT-REBOOT).
        """
        from vmnet.testing.dhcpclients import run_client

        return run_client(
            client,
            self.netns,
            ifname or self.ifname,
            timeout=timeout,
            workdir=workdir,
            lease_file_text=lease_file_text,
        )

    def run(self, cmd: str | Sequence[str], timeout: float = 30.0) -> CommandResult:
        """Run `cmd` (a shell line, or an argv) in the guest namespace."""
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        proc = ns.exec_in(self.netns, argv, check=False, timeout=timeout)
        return CommandResult(proc.returncode, proc.stdout + proc.stderr)

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.netns

    def reattach(self, pod_netns: str, tap: str = "tap0") -> None:
        """Move the guest's wire to another pod's tap, as a migrated VM's NIC.

        The guest namespace (addresses, routes, ARP cache, DHCP client state)
        is kept: only the relay changes, like qemu's tap on the target node.
        """
        if self.relay is not None:
            self.relay.stop()
            self.relay = None
        self.relay = TapRelay(pod_netns, tap, self.wire_netns, WIRE)
        self.pod_netns, self.tap = pod_netns, tap

    def close(self) -> None:
        """Stop the relay, then remove both namespaces."""
        try:
            if self.relay is not None:
                self.relay.stop()
        finally:
            for name in (self.netns, self.wire_netns):
                if name:
                    ns.remove_netns(name)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Guest({self.netns} {self.ifname} {self.mac} <-> {self.pod_netns}/{self.tap})"


def _link_mtu(netns: str, ifname: str) -> int:
    with ns.open_ipr(netns) as ipr:
        return int(ipr.get_links(ns.link_index(ipr, ifname))[0].get("mtu"))


def _tx_csum_off(ifname: str) -> None:
    value = ctypes.create_string_buffer(struct.pack("II", ETHTOOL_STXCSUM, 0))
    ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(value)).ljust(40, b"\0")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)
