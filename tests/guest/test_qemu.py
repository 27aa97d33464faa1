"""Real qemu guests on a pod tap: boot, lease with real DHCP clients, close.

Each boot costs about 3 s under TCG, so each test boots once and checks
everything it can on that one guest.
"""

from __future__ import annotations

import ipaddress
import os
import time
from pathlib import Path

import pytest

from vmnet.core.addr import MacAddress
from vmnet.core.errors import ConfigError, DriverError
from vmnet.testing.initramfs import find_kernel
from vmnet.testing.qemu import QemuGuest

from .pods import GATEWAY, VM_IP, VM_MAC, Pod, dnsmasq, pids_in

pytestmark = [pytest.mark.netns, pytest.mark.qemu]

ROUTES = "--dhcp-option=option:classless-static-route,10.100.0.0/16,10.99.0.1,0.0.0.0/0,10.99.0.1"
OPTIONS = (
    "--dhcp-option=option:mtu,1400",
    "--dhcp-option=option:dns-server,10.99.0.1",
    "--dhcp-option=option:domain-name,vmnet.test",
    "--dhcp-option=option:domain-search,vmnet.test,svc.test",
)


def test_udhcpc_lease_applies_address_routes_mtu(pod: Pod, tmp_path: Path) -> None:
    with dnsmasq(pod, tmp_path, *OPTIONS, ROUTES) as server:
        with QemuGuest(pod.netns, pod.tap, VM_MAC) as guest:
            assert guest.boot_seconds is not None and guest.boot_seconds < 30
            assert guest.guest_mac == MacAddress.parse(VM_MAC)
            assert guest.link_mac() == MacAddress.parse(VM_MAC)
            assert guest.mtu() == 1500
            assert not guest.ping(str(GATEWAY.ip))

            lease = guest.dhcp("udhcpc")

            assert lease.address == VM_IP
            assert lease.router == GATEWAY.ip
            assert lease.dns == (GATEWAY.ip,)
            assert (lease.mtu, lease.hostname, lease.domain) == (1400, "guest1", "vmnet.test")
            assert lease.search == ("vmnet.test", "svc.test")
            assert lease.routes == (
                (ipaddress.IPv4Network("10.100.0.0/16"), GATEWAY.ip),
                (ipaddress.IPv4Network("0.0.0.0/0"), GATEWAY.ip),
            )
            assert lease.server_id == GATEWAY.ip and lease.lease_time == 3600
            assert VM_IP in guest.ip_addr()
            routes = guest.ip_route()
            assert "10.100.0.0/16 via 10.99.0.1 dev eth0" in routes
            assert "default via 10.99.0.1 dev eth0" in routes
            assert guest.mtu() == 1400
            assert guest.ping(str(GATEWAY.ip))
            assert not guest.ping("10.99.0.77", timeout=1)
            qemu_pid = guest.pid
            assert qemu_pid is not None
        assert pids_in(pod.netns) == {server.pid}
    with pytest.raises(ProcessLookupError):
        os.kill(qemu_pid, 0)
    assert "@@VMNET-END" in guest.console


def test_ipconfig_lease_and_host_mtu(pod: Pod, tmp_path: Path) -> None:
    with dnsmasq(pod, tmp_path, *OPTIONS), QemuGuest(pod.netns, pod.tap, VM_MAC, mtu=1450) as guest:
        assert guest.mtu() == 1450

        lease = guest.dhcp("ipconfig")

        assert lease.address == VM_IP
        assert lease.router == GATEWAY.ip
        assert lease.dns == (GATEWAY.ip,)
        assert (lease.hostname, lease.domain, lease.lease_time) == ("guest1", "vmnet.test", 3600)
        assert lease.search == ("vmnet.test", "svc.test")
        conf = dict(lease.raw)
        assert conf["DEVICE"] == "eth0" and conf["PROTO"] == "dhcp"
        assert conf["IPV4NETMASK"] == "255.255.255.0"
        assert guest.mtu() == 1400
        assert "default via 10.99.0.1 dev eth0" in guest.ip_route()
        assert guest.ping(str(GATEWAY.ip))


def test_command_protocol_is_exact(pod: Pod) -> None:
    with QemuGuest(pod.netns, pod.tap, VM_MAC) as guest:
        assert guest.run("exit 3") == (3, "")
        assert guest.run("printf 'a\\nb\\n\\n'; echo -n err >&2") == (0, "a\nb\n\nerr")
        assert guest.run("echo '$HOME @@VMNET-END 9 9' | tr a-z A-Z") == (
            0,
            "$HOME @@VMNET-END 9 9\n".upper(),
        )
        start = time.monotonic()
        for _ in range(10):
            assert guest.run("true") == (0, "")
        assert (time.monotonic() - start) / 10 < 1.0
        with pytest.raises(DriverError, match=r"timed out after 0.3s"):
            guest.run("sleep 1", timeout=0.3)
        assert guest.run("echo after") == (0, "after\n")
        with pytest.raises(ConfigError, match="client"):
            guest.dhcp("dhclient")


def test_close_kills_a_guest_that_does_not_power_off(pod: Pod) -> None:
    guest = QemuGuest(pod.netns, pod.tap, VM_MAC)
    with pytest.raises(DriverError, match=r"^boot qemu guest .*: guest is not running"):
        guest.run("true")
    guest.start()
    pid = guest.pid
    assert pid is not None
    assert guest.close(timeout=0.2) == -9
    assert guest.close() is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert pids_in(pod.netns) == set()


def test_boot_failure_is_one_line_error(pod: Pod, tmp_path: Path) -> None:
    bogus = tmp_path / f"vmlinuz-{find_kernel()[1]}"
    bogus.write_bytes(b"not a kernel")
    guest = QemuGuest(pod.netns, pod.tap, VM_MAC, kernel=bogus, timeout=20)
    with pytest.raises(
        DriverError, match=r"^boot qemu guest .*/tap0: guest is not running; console: '.+'$"
    ):
        guest.__enter__()
    assert pids_in(pod.netns) == set()


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"mac": "52:54:00:xx:00:01"}, "mac"),
        ({"tap": "tap0,script=/bin/sh"}, "tap"),
        ({"tap": "a-very-long-tap-name"}, "tap"),
        ({"mtu": 67}, "mtu"),
        ({"memory_mb": 16}, "memory_mb"),
        ({"netns": "vmq-missing"}, "--netns"),
        ({"kernel": "/etc/hostname"}, "kernel"),
    ],
)
def test_bad_arguments_raise_config_error(pod: Pod, kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"netns": pod.netns, "tap": pod.tap, "mac": VM_MAC, **kwargs}
    with pytest.raises(ConfigError, match=f"^{field}: "):
        QemuGuest(**args)  # type: ignore[arg-type]
    assert pids_in(pod.netns) == set()
