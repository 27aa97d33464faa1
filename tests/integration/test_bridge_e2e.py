"""The bridge binding end to end: real CNI pod, `vmnet` commands, real udhcpc behind the tap."""

import json

import pytest

from tests.integration.conftest import (
    guest_wire,
    needs_cni,
    needs_root,
    unplug_restores,
    vmnet,
    vmnet_dhcp,
)
from vmnet.testing import namespaces as ns
from vmnet.testing.dhcpclients import run_client
from vmnet.testing.relay import TapRelay
from vmnet.testing.snapshots import snapshot
from vmnet.testing.wait import wait_until

pytestmark = [pytest.mark.netns, needs_root, needs_cni]


@pytest.fixture
def guest_ns():
    name = ns.create_netns()
    yield name
    ns.remove_netns(name)


def test_plug_dhcp_ping_unplug(cni_pod, vm_file, tmp_path, guest_ns):
    cache = str(tmp_path / "cache")
    before = snapshot(cni_pod.netns)

    plug = vmnet("plug", "--netns", cni_pod.netns, "--vmi", str(vm_file), "--cache-dir", cache)
    assert plug.returncode == 0, plug.stderr
    # linkwatch moves a fresh tap nobody reads from UNKNOWN to DOWN (no carrier) by itself
    ns.wait_operstate(cni_pod.netns, "tap0", "DOWN")
    after_plug = snapshot(cni_pod.netns)
    names = {link.name for link in after_plug.links}
    assert {"k6t-eth0", "eth0-nic", "tap0"} <= names

    again = vmnet("plug", "--netns", cni_pod.netns, "--vmi", str(vm_file), "--cache-dir", cache)
    assert again.returncode == 0 and "(0 changes" in again.stdout, again.stdout
    settled = snapshot(cni_pod.netns)
    assert settled == after_plug, settled.diff(after_plug)

    status = json.loads(vmnet("status", "--cache-dir", cache, "--json", check=True).stdout)
    (net,) = status["networks"]
    assert net["state"] == "finished" and net["podNic"]["name"] == "eth0"
    assert net["dhcp"]["address"] == str(cni_pod.address)
    assert net["podNic"]["mac"] == str(cni_pod.mac)
    vm_mac = net["vmMac"]
    assert status["vmi"] == {"namespace": "tenant1", "name": "testvm"}

    domain = vmnet("domain", "--vmi", str(vm_file), "--cache-dir", cache, check=True).stdout
    assert '<target dev="tap0" managed="no"/>' in domain
    assert f'<mac address="{vm_mac}"/>' in domain

    resolv = "nameserver 10.96.0.10\nsearch tenant1.svc.cluster.local cluster.local\n"
    with vmnet_dhcp(cni_pod.netns, vm_file, cache, resolv):
        guest_wire(guest_ns, vm_mac)
        with TapRelay(cni_pod.netns, "tap0", guest_ns, "wire0"):
            lease = run_client("udhcpc", guest_ns, "eth0", workdir=str(tmp_path))
            assert lease.address == cni_pod.address
            assert lease.router == cni_pod.gateway
            assert [str(d) for d in lease.dns] == ["10.96.0.10"]
            assert lease.hostname == "testvm"
            assert lease.mtu == cni_pod.mtu
            ping = ns.exec_in(
                guest_ns, ["ping", "-c", "1", "-W", "2", str(cni_pod.gateway)], check=False
            )
            assert ping.returncode == 0, ping.stdout + ping.stderr

    unplug_restores(cni_pod.netns, vm_file, cache, before)


BAD = {
    "unknown binding": ("bridge: {}", "sriovx: {}"),
    "interface without a network": (
        "networks:\n      - name: default\n        pod: {}",
        "networks: []",
    ),
    "invalid MAC": ("bridge: {}", "bridge: {}\n            macAddress: 02:00:00:zz:00:01"),
    "duplicate names": (
        "          - name: default\n            bridge: {}",
        (
            "          - name: default\n            bridge: {}\n"
            "          - name: default\n            bridge: {}"
        ),
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_manifest_exits_2_and_changes_nothing(case, cni_pod, tmp_path):
    from tests.integration.conftest import BRIDGE_VM

    old, new = BAD[case]
    assert old in BRIDGE_VM
    path = tmp_path / "bad.yaml"
    path.write_text(BRIDGE_VM.replace(old, new, 1))
    before = snapshot(cni_pod.netns)
    res = vmnet(
        "plug", "--netns", cni_pod.netns, "--vmi", str(path), "--cache-dir", str(tmp_path / "c")
    )
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert res.stderr.startswith("vmnet plug: ")
    assert snapshot(cni_pod.netns) == before


def test_missing_netns_and_missing_pod_nic_exit_2(cni_pod, vm_file, tmp_path, node):
    res = vmnet(
        "plug",
        "--netns",
        "vmt-does-not-exist",
        "--vmi",
        str(vm_file),
        "--cache-dir",
        str(tmp_path / "c"),
    )
    assert res.returncode == 2 and "vmt-does-not-exist" in res.stderr
    empty = node.veth_pod(ifname="other0")
    before = snapshot(empty.netns)
    res = vmnet(
        "plug", "--netns", empty.netns, "--vmi", str(vm_file), "--cache-dir", str(tmp_path / "c2")
    )
    assert res.returncode == 2 and "pod link (eth0) is missing" in res.stderr
    assert snapshot(empty.netns) == before


def test_plug_by_proc_path(cni_pod, vm_file, tmp_path):
    """The pod netns given as /proc/PID/ns/net, the way virt-handler finds it."""
    holder = ns.popen_in(cni_pod.netns, ["sleep", "60"])
    try:
        path = f"/proc/{holder.pid}/ns/net"
        wait_until(lambda: ns.exec_in(cni_pod.netns, ["true"]).returncode == 0, 5, what="ns")
        cache = str(tmp_path / "cache")
        res = vmnet("plug", "--netns", path, "--vmi", str(vm_file), "--cache-dir", cache)
        assert res.returncode == 0, res.stderr
        assert "k6t-eth0" in {link.name for link in snapshot(cni_pod.netns).links}
        res = vmnet("unplug", "--netns", path, "--vmi", str(vm_file), "--cache-dir", cache)
        assert res.returncode == 0, res.stderr
    finally:
        holder.kill()
        holder.wait()
