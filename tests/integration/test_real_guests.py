"""Real guests (qemu under TCG) behind vmnet's bindings, asserted from their console."""

import ipaddress

import pytest

from vmnet.phases import phase2
from vmnet.testing.cni import bridge_config
from vmnet.testing.plugging import bridge_manifest

pytestmark = [pytest.mark.netns, pytest.mark.qemu, pytest.mark.cni("bridge", "host-local")]

POD_MTU = 1450
POD = bridge_config(mtu=POD_MTU)


@pytest.mark.parametrize(
    "plugged", [{"manifest": bridge_manifest("bridge"), "pod": POD}], indirect=True, ids=["bridge"]
)
def test_bridge_guest_gets_the_pod_ip_with_udhcpc_and_ipconfig(plugged, vm):
    guest = vm(plugged)
    lease = guest.dhcp("udhcpc")
    assert lease.address == plugged.address == plugged.pod.address
    assert plugged.address in guest.ip_addr()
    assert f"default via {plugged.gateway} dev eth0" in " | ".join(guest.ip_route())
    assert guest.mtu() == POD_MTU
    assert guest.ping(str(plugged.gateway))
    # the initramfs client of Debian guests, on the same guest after a reset
    guest.check("ip addr flush dev eth0; ip route flush dev eth0")
    klibc = guest.dhcp("ipconfig")
    assert klibc.address == plugged.address
    assert guest.ping(str(plugged.gateway))


@pytest.mark.parametrize(
    "plugged",
    [{"manifest": bridge_manifest("masquerade"), "pod": POD}],
    indirect=True,
    ids=["masquerade"],
)
def test_masquerade_guest_gets_10_0_2_2_and_reaches_the_cni_gateway(plugged, vm):
    guest = vm(plugged)
    lease = guest.dhcp("udhcpc")
    assert lease.address == ipaddress.ip_interface("10.0.2.2/24")
    assert ipaddress.ip_interface("10.0.2.2/24") in guest.ip_addr()
    assert "default via 10.0.2.1 dev eth0" in " | ".join(guest.ip_route())
    assert guest.mtu() == POD_MTU
    assert guest.ping("10.0.2.1")
    assert guest.ping(str(plugged.pod.gateway))


@pytest.mark.libvirt
@pytest.mark.parametrize(
    "plugged", [{"manifest": bridge_manifest("bridge"), "pod": POD}], indirect=True, ids=["bridge"]
)
def test_libvirt_starts_the_phase2_domain_in_the_pod(plugged, tmp_path):
    """libvirtd inside the pod namespace starts the domain vmnet decorated."""
    from vmnet.testing import qemu

    why = qemu.libvirt_available()
    if why:
        pytest.skip(why)

    def decorate(xml):
        return phase2.decorate(plugged.vmi, plugged.cache, xml.encode()).decode()

    with (
        qemu.Libvirtd(plugged.netns, tmp_path / "libvirt") as daemon,
        qemu.LibvirtGuest(daemon, plugged.tap, str(plugged.mac), decorate=decorate) as guest,
    ):
        lease = guest.dhcp("udhcpc")
        assert lease.address == plugged.address
        assert guest.mtu() == POD_MTU
        assert guest.ping(str(plugged.gateway))
