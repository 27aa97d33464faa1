"""The guest started by a private libvirtd in the pod, as virt-launcher does."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from vmnet.core.addr import MacAddress
from vmnet.testing.qemu import Libvirtd, LibvirtGuest, libvirt_available

from .pods import GATEWAY, VM_IP, VM_MAC, Pod, dnsmasq, make_pod, pids_in

pytestmark = [
    pytest.mark.netns,
    pytest.mark.qemu,
    pytest.mark.libvirt,
    pytest.mark.skipif(libvirt_available() is not None, reason=str(libvirt_available())),
]


def test_libvirt_guest_on_unmanaged_tap_leases_and_pings(pod: Pod, tmp_path: Path) -> None:
    tag = "<!-- decorated -->"
    with (
        tempfile.TemporaryDirectory(prefix="vmlv-") as root,
        dnsmasq(pod, tmp_path, "--dhcp-option=option:mtu,1400") as server,
    ):
        with Libvirtd(pod.netns, root) as libvirtd:
            guest = LibvirtGuest(
                libvirtd, pod.tap, VM_MAC, mtu=1450, decorate=lambda xml: xml + tag
            )
            assert guest.domain_xml().endswith(tag)
            with guest:
                assert guest.guest_mac == MacAddress.parse(VM_MAC)
                assert guest.mtu() == 1450
                assert guest.domain in libvirtd.virsh("list", "--name").split()

                lease = guest.dhcp("udhcpc")

                assert lease.address == VM_IP and lease.router == GATEWAY.ip
                assert guest.mtu() == 1400
                assert guest.ping(str(GATEWAY.ip))
            assert libvirtd.virsh("list", "--all", "--name").split() == []
            assert libvirtd.domains() == []
            # libvirt-python's lifecycle events, in order (qemu starts paused: resumed first)
            mine = [event for name, event in libvirtd.events if name == guest.domain]
            assert "started" in mine and mine[-2:] == ["shutdown", "stopped"], mine
            assert "reboot: Power down" in guest.console
            log = Path(root, "log", "qemu", f"{guest.domain}.log").read_text()
            assert '"type":"tap","fd":' in log and '"host_mtu":1450' in log
        assert pids_in(pod.netns) == {server.pid}


def test_two_private_libvirtds_do_not_collide(pod: Pod) -> None:
    with (
        make_pod() as other,
        tempfile.TemporaryDirectory(prefix="vmlv-") as root_a,
        tempfile.TemporaryDirectory(prefix="vmlv-") as root_b,
    ):
        with Libvirtd(pod.netns, root_a) as a, Libvirtd(other.netns, root_b) as b:
            assert a.uri != b.uri
            assert a.host_uuid != b.host_uuid  # two hosts to libvirt, as migration needs
            for daemon in (a, b):
                caps = daemon.conn.getCapabilities()
                assert f"<uuid>{daemon.host_uuid}</uuid>" in caps
            assert a.virsh("list", "--all", "--name").split() == []
            assert b.virsh("list", "--all", "--name").split() == []
            assert pids_in(pod.netns) and pids_in(other.netns)
            assert not Path("/run/libvirt/libvirt-sock").exists()
        assert pids_in(pod.netns) == set() and pids_in(other.netns) == set()
