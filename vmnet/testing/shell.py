"""What every test guest answers, whatever runs it.

A namespace guest (`vmnet.testing.guest.Guest`) and a serial-console guest
(`vmnet.testing.qemu.QemuGuest`, `vmnet.testing.libvirt.LibvirtGuest`) run
commands in different ways; everything built on a command (checks,
addresses, routes, MTU, ping) is written once here, so a test written
against `GuestShell` runs on either.
"""

from __future__ import annotations

import abc
import ipaddress
import re
from typing import NamedTuple

from vmnet.core.addr import IPInterface, MacAddress
from vmnet.core.errors import DriverError
from vmnet.testing.lease import Lease


class CommandResult(NamedTuple):
    """A command's exit code and its output (stdout and stderr together)."""

    returncode: int
    output: str


class GuestShell(abc.ABC):
    """A guest that runs shell commands and leases with real DHCP clients."""

    name: str

    @abc.abstractmethod
    def run(self, cmd: str, timeout: float = 30.0) -> CommandResult:
        """Run `cmd` with the guest's shell."""

    @abc.abstractmethod
    def dhcp(self, client: str = "udhcpc", *, ifname: str = "eth0", timeout: float = 30.0) -> Lease:
        """Lease an address on `ifname` with the real DHCP client `client`."""

    @abc.abstractmethod
    def close(self) -> object:
        """Stop the guest; safe to call more than once."""

    def check(self, cmd: str, timeout: float = 30.0) -> str:
        """Run `cmd`; its output, or DriverError naming the guest if it failed."""
        rc, out = self.run(cmd, timeout)
        if rc != 0:
            raise DriverError(f"run {cmd[:40]!r}", self.name, f"exit {rc}: {out.strip()[-200:]!r}")
        return out

    def ip_addr(self, ifname: str = "eth0") -> list[IPInterface]:
        """The addresses on `ifname`, as the guest sees them."""
        out = self.check(f"ip -o addr show dev {ifname}")
        return [ipaddress.ip_interface(a) for a in re.findall(r"\binet6? (\S+)", out)]

    def ip_route(self, family: int = 4) -> list[str]:
        """The guest's routes, one normalised `ip route` line each."""
        out = self.check(f"ip -{family} route show")
        return [" ".join(line.split()) for line in out.splitlines() if line.strip()]

    def mtu(self, ifname: str = "eth0") -> int:
        """The MTU of `ifname` in the guest."""
        return int(self.check(f"cat /sys/class/net/{ifname}/mtu"))

    def link_mac(self, ifname: str = "eth0") -> MacAddress:
        """The MAC of `ifname` in the guest."""
        return MacAddress.parse(self.check(f"cat /sys/class/net/{ifname}/address").strip())

    def ping(self, addr: object, count: int = 1, timeout: float = 5.0) -> bool:
        """True when `count` echo replies from `addr` arrive within `timeout` seconds."""
        ip = ipaddress.ip_address(str(addr))
        wait = max(1, round(timeout))
        cmd = f"ping -n -q -c {count} -i 0.2 -w {wait} {ip}"
        return self.run(cmd, timeout=timeout + 10).returncode == 0
