"""The VM keeps its address and identity across pod restarts and live migration.

Pod A (real CNI bridge plugin, host-local IPAM) serves the guest; pod B, on
another node, gets the same IP from the real CNI `static` IPAM plugin and is
plugged as a migration target while A still serves. The guest's NIC (which
outlives pod A, as a VM's does) moves to B's tap, keeping its state.
"""

import ipaddress

import pytest
from lxml import etree

from tests.integration import tcp
from vmnet.phases import phase1, phase2
from vmnet.plan.bindings import stable_mac
from vmnet.testing.cni import Node, bridge_config, static_ipam
from vmnet.testing.dhcpclients import ClientSession
from vmnet.testing.guest import Guest
from vmnet.testing.plugging import Plugged, bridge_manifest

pytestmark = [pytest.mark.netns, pytest.mark.cni("bridge", "host-local", "static")]

ALLOW = {"kubevirt.io/allow-pod-bridge-network-live-migration": ""}
TARGET = phase1.PlugOptions(migration_target=True)


def vm_manifest(binding, name="movingvm", ports=()):
    doc = bridge_manifest(binding, name)
    doc["metadata"]["annotations"] = dict(ALLOW)
    if ports:
        doc["spec"]["domain"]["devices"]["interfaces"][0]["ports"] = [{"port": p} for p in ports]
    return doc


def lease_file(address, server="169.254.75.10", mask="255.255.255.0"):
    return (
        f'lease {{\n  interface "eth0";\n  fixed-address {address};\n'
        f"  option subnet-mask {mask};\n  option dhcp-server-identifier {server};\n"
        "  renew 4 2037/01/01 00:00:01;\n  rebind 4 2037/01/01 00:00:01;\n"
        "  expire 4 2037/01/01 00:00:01;\n}\n"
    )


@pytest.fixture
def node_b():
    node = Node()
    yield node
    node.close()


@pytest.fixture
def two_pods(node, node_b):
    pod_a = node.add_pod(bridge_config())
    pod_b = node_b.add_pod(bridge_config(ipam=static_ipam(str(pod_a.address), "10.22.0.1")))
    assert pod_b.address == pod_a.address and pod_b.mac != pod_a.mac
    return pod_a, pod_b


def wd(tmp_path, name):
    path = tmp_path / name
    path.mkdir(exist_ok=True)
    return str(path)


def domain_mac(plugged):
    xml = etree.fromstring(phase2.decorate(plugged.vmi, plugged.cache, None))
    return xml.find(".//interface/mac").get("address")


def test_bridge_guest_init_reboots_into_the_target_pod(two_pods, tmp_path):
    pod_a, pod_b = two_pods
    source = Plugged(pod_a, vm_manifest("bridge"))
    target = None
    guest = Guest(pod_a.netns, source.tap, source.mac)
    try:
        first = guest.dhcp("dhclient", workdir=wd(tmp_path, "a"), timeout=20)
        assert first.address == pod_a.address
        target = Plugged(pod_b, vm_manifest("bridge"), options=TARGET)  # A still serves
        assert (
            domain_mac(source)
            == domain_mac(target)
            == str(stable_mac("default", "movingvm", "default"))
        )
        assert target.configs[0][1].server_id == source.configs[0][1].server_id
        source.close()
        guest.reattach(pod_b.netns, target.tap)
        guest.check("ip addr flush dev eth0")  # the guest reboots
        lease = guest.dhcp(
            "dhclient",
            workdir=wd(tmp_path, "b"),
            timeout=20,
            lease_file_text=lease_file(pod_a.address.ip),
        )
        stats = target.responders[0].stats
        assert lease.address == pod_a.address
        assert (
            stats.offered == 0 and stats.nak == 0 and stats.acked >= 1
        )  # INIT-REBOOT: no DISCOVER
        assert guest.ping("10.22.0.1")
    finally:
        guest.close()
        source.close()
        if target is not None:
            target.close()


def test_udhcpc_renews_unicast_with_the_target_pod(two_pods, tmp_path):
    pod_a, pod_b = two_pods
    source = Plugged(pod_a, vm_manifest("bridge"))
    target = None
    guest = Guest(pod_a.netns, source.tap, source.mac)
    session = ClientSession("udhcpc", guest.netns, "eth0", workdir=str(tmp_path), timeout=20)
    try:
        first = session.wait_lease(20)
        assert first.address == pod_a.address
        target = Plugged(pod_b, vm_manifest("bridge"), options=TARGET)
        source.close()
        guest.reattach(pod_b.netns, target.tap)
        renewed = session.renew(timeout=15)
        stats = target.responders[0].stats
        assert renewed.address == pod_a.address
        assert stats.received_unicast >= 1 and stats.acked >= 1 and stats.offered == 0
        assert guest.ping("10.22.0.1")
    finally:
        session.stop()
        guest.close()
        source.close()
        if target is not None:
            target.close()


def test_masquerade_guest_keeps_10_0_2_2_and_ports_follow_the_new_pod(node, node_b, tmp_path):
    pod_a = node.add_pod(bridge_config())
    pod_b = node_b.add_pod(bridge_config(ipam=static_ipam("10.22.0.77/24", "10.22.0.1")))
    doc = vm_manifest("masquerade", ports=(80,))
    source = Plugged(pod_a, doc)
    target = None
    guest = Guest(pod_a.netns, source.tap, source.mac)
    listener = None
    try:
        assert guest.dhcp("dhclient", workdir=wd(tmp_path, "a")).address == ipaddress.ip_interface(
            "10.0.2.2/24"
        )
        target = Plugged(pod_b, doc, options=TARGET)
        assert domain_mac(source) == domain_mac(target)
        source.close()
        guest.reattach(pod_b.netns, target.tap)
        guest.check("ip addr flush dev eth0")
        lease = guest.dhcp(
            "dhclient",
            workdir=wd(tmp_path, "b"),
            lease_file_text=lease_file("10.0.2.2", server="10.0.2.1"),
        )
        assert lease.address == ipaddress.ip_interface("10.0.2.2/24")
        assert target.responders[0].stats.offered == 0
        listener = tcp.listen(guest.netns, 80)
        assert tcp.connect(node_b.netns, "10.22.0.77", 80) is not None
    finally:
        if listener is not None:
            tcp.stop(listener)
        guest.close()
        source.close()
        if target is not None:
            target.close()


def test_another_vm_identity_gets_another_mac_and_no_lease(pod, tmp_path):
    source = Plugged(pod, vm_manifest("bridge"))
    other = stable_mac("default", "othervm", "default")
    assert other != source.mac
    guest = Guest(pod.netns, source.tap, other)
    try:
        with pytest.raises(Exception, match=r"(?i)no lease|timed out|timeout"):
            guest.dhcp("udhcpc", workdir=str(tmp_path), timeout=4)
        assert source.responders[0].stats.ignored_foreign >= 1
        assert source.responders[0].stats.offered == 0
    finally:
        guest.close()
        source.close()


def test_restart_in_a_new_pod_init_reboots_and_a_stale_address_gets_nak(node, node_b, tmp_path):
    """The VM stopped in pod A, pod A deleted, the VM started in pod C: with
    the same IP (the IPAM kept it) the guest's INIT-REBOOT gets ACK and no
    DISCOVER is needed; in pod D, whose IP is another, the same INIT-REBOOT
    gets NAK (RFC 2131 §4.3.2) and the guest then leases the new IP at once."""
    pod_a = node.add_pod(bridge_config())
    doc = vm_manifest("bridge", name="restartvm")
    source = Plugged(pod_a, doc)
    guest = Guest(pod_a.netns, source.tap, source.mac)
    plugged = [source]
    try:
        first = guest.dhcp("dhclient", workdir=wd(tmp_path, "a"), timeout=20)
        assert first.address == pod_a.address
        source.close()
        pod_a.close()  # the VM stopped, its pod deleted: nothing of A is left

        pod_c = node_b.add_pod(bridge_config(ipam=static_ipam(str(pod_a.address), "10.22.0.1")))
        again = Plugged(pod_c, doc)  # a new pod, not a migration target
        plugged.append(again)
        assert again.mac == source.mac  # the VM's stable MAC, in every pod
        guest.reattach(pod_c.netns, again.tap)
        guest.check("ip addr flush dev eth0")  # a VM that starts again has no address yet
        lease = guest.dhcp(
            "dhclient",
            workdir=wd(tmp_path, "c"),
            timeout=20,
            lease_file_text=lease_file(pod_a.address.ip),
        )
        stats = again.responders[0].stats
        assert lease.address == pod_a.address
        assert stats.acked >= 1 and stats.offered == 0 and stats.nak == 0  # INIT-REBOOT: ACK

        pod_d = node_b.add_pod(bridge_config(ipam=static_ipam("10.22.0.99/24", "10.22.0.1")))
        moved = Plugged(pod_d, doc)
        plugged.append(moved)
        guest.reattach(pod_d.netns, moved.tap)
        guest.check("ip addr flush dev eth0")
        new = guest.dhcp(
            "dhclient",
            workdir=wd(tmp_path, "d"),
            timeout=30,
            lease_file_text=lease_file(pod_a.address.ip),  # the stale address
        )
        stats = moved.responders[0].stats
        assert new.address == ipaddress.ip_interface("10.22.0.99/24")
        assert stats.nak >= 1 and stats.offered >= 1 and stats.acked >= 1  # NAK, then DORA
        assert guest.ping("10.22.0.1")
    finally:
        guest.close()
        for p in plugged:
            p.close()
