"""KubeVirt's pod interface naming schemes, with secondary NICs made by the real CNI bridge plugin.

Hashed (`pod<11 hex>`), ordinal (`net<N>`, chosen when such a link exists),
`--iface NETWORK=PODIFACE` overrides, and a Multus default network as the
primary: each is plugged with `vmnet plug`, every tap leases its own pod IP
to udhcpc through a tap relay, and `vmnet unplug` gives the pod back exactly.
"""

import json
import signal
import subprocess
import sys

import pytest
import yaml
from lxml import etree

from tests.integration.conftest import guest_wire, vmnet
from vmnet.testing import namespaces as ns
from vmnet.testing.cni import host_local
from vmnet.testing.dhcpclients import run_client
from vmnet.testing.relay import TapRelay
from vmnet.testing.snapshots import snapshot

pytestmark = [pytest.mark.netns, pytest.mark.cni("bridge", "host-local")]

SUBNETS = {"red": "10.41.0.0/24", "green": "10.42.0.0/24", "blue": "10.43.0.0/24"}


def secondary(name):
    return {
        "name": f"vmt-{name}",
        "type": "bridge",
        "bridge": f"br-{name}",
        "isGateway": True,
        "ipMasq": False,
        "ipam": host_local(SUBNETS[name], default_route=False),
    }


def manifest(secondaries, primary=None):
    """`default` on the pod network (or `primary`, a Multus network), then bridge secondaries."""
    first = primary or "default"
    interfaces = [{"name": first, "bridge": {}}]
    networks = [
        {"name": first, "pod": {}}
        if primary is None
        else {"name": first, "multus": {"networkName": f"tenant1/{first}", "default": True}}
    ]
    for i, name in enumerate(secondaries):
        interfaces.append({"name": name, "bridge": {}, "macAddress": f"02:bb:00:00:00:{i + 1:02x}"})
        networks.append({"name": name, "multus": {"networkName": f"tenant1/{name}"}})
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "names", "namespace": "tenant1"},
        "spec": {"domain": {"devices": {"interfaces": interfaces}}, "networks": networks},
    }


class Pod:
    """A CNI pod with secondaries under the given pod interface names, driven by `vmnet`."""

    def __init__(self, node, tmp_path, doc, pod_ifaces):
        self.pod = node.add_pod()
        self.netns = self.pod.netns
        self.nics = {doc["spec"]["networks"][0]["name"]: self.pod}
        for net, ifname in pod_ifaces.items():
            self.nics[net] = node.add_pod(secondary(net), ifname=ifname, netns=self.netns)
        self.tmp = tmp_path
        self.vm = tmp_path / "vm.yaml"
        self.vm.write_text(yaml.safe_dump(doc))
        self.cache = str(tmp_path / "cache")
        self.before = snapshot(self.netns)

    def plug(self, *extra):
        return vmnet(
            "plug", "--netns", self.netns, "--vmi", str(self.vm), "--cache-dir", self.cache, *extra
        )

    def links(self):
        return {link.name: link for link in snapshot(self.netns).links}

    def status(self):
        out = vmnet("status", "--cache-dir", self.cache, "--json", check=True).stdout
        return {n["network"]: n for n in json.loads(out)["networks"]}

    def domain(self):
        xml = vmnet("domain", "--vmi", str(self.vm), "--cache-dir", self.cache, check=True).stdout
        dom = etree.fromstring(xml.encode())
        return {
            i.find("alias").get("name")[3:]: (
                i.find("target").get("dev"),
                i.find("mac").get("address"),
            )
            for i in dom.iter("interface")
        }

    def lease_each(self):
        """udhcpc behind every tap of the domain gets that network's own pod IP."""
        resolv = self.tmp / "resolv.conf"
        resolv.write_text("nameserver 10.96.0.10\n")
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vmnet",
                "dhcp",
                "--netns",
                self.netns,
                "--vmi",
                str(self.vm),
                "--cache-dir",
                self.cache,
                "--resolv-conf",
                str(resolv),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        guests, relays, leases = [], [], {}
        try:
            domain = self.domain()
            for _ in domain:
                assert "serving" in server.stdout.readline()
            for net, (tap, mac) in domain.items():
                guest = ns.create_netns()
                guests.append(guest)
                guest_wire(guest, mac)
                relays.append(TapRelay(self.netns, tap, guest, "wire0"))
                workdir = self.tmp / f"client-{net}"
                workdir.mkdir()
                leases[net] = run_client("udhcpc", guest, "eth0", workdir=str(workdir)).address
        finally:
            for relay in relays:
                relay.stop()
            for guest in guests:
                ns.remove_netns(guest)
            server.send_signal(signal.SIGTERM)
            assert server.wait(10) == 0, server.stderr.read()
        assert leases == {net: nic.address for net, nic in self.nics.items()}

    def unplug_restores(self):
        res = vmnet(
            "unplug", "--netns", self.netns, "--vmi", str(self.vm), "--cache-dir", self.cache
        )
        assert res.returncode == 0, res.stderr
        after = snapshot(self.netns)
        assert after == self.before, after.diff(self.before)


def check_links(pod, expected):
    """expected: network -> (pod iface, bridge, renamed NIC, tap)."""
    links = pod.links()
    status = pod.status()
    for net, (pod_iface, bridge, nic, tap) in expected.items():
        assert status[net]["podNic"]["name"] == pod_iface, net
        assert links[bridge].kind == "bridge", bridge
        assert links[nic].master == bridge and links[tap].master == bridge, net
        # the dummy keeping the pod IP is optional: this kernel kind has no dummy driver
        assert pod_iface not in links or links[pod_iface].kind == "dummy", pod_iface
    assert {net: target for net, (target, _) in pod.domain().items()} == {
        net: names[3] for net, names in expected.items()
    }


def test_hashed_names_for_secondaries(node, tmp_path):
    pod = Pod(
        node,
        tmp_path,
        manifest(["red", "green"]),
        {"red": "podb1f51a511f1", "green": "podba4788b226a"},
    )
    res = pod.plug()
    assert res.returncode == 0, res.stderr
    check_links(
        pod,
        {
            "default": ("eth0", "k6t-eth0", "eth0-nic", "tap0"),
            "red": ("podb1f51a511f1", "k6t-b1f51a511f1", "b1f51a511f1-nic", "tapb1f51a511f1"),
            "green": ("podba4788b226a", "k6t-ba4788b226a", "ba4788b226a-nic", "tapba4788b226a"),
        },
    )
    pod.lease_each()
    pod.unplug_restores()


def test_ordinal_names_when_the_pod_has_net_n_links(node, tmp_path):
    pod = Pod(node, tmp_path, manifest(["red", "green"]), {"red": "net1", "green": "net2"})
    res = pod.plug()
    assert res.returncode == 0, res.stderr
    check_links(
        pod,
        {
            "default": ("eth0", "k6t-eth0", "eth0-nic", "tap0"),
            "red": ("net1", "k6t-net1", "net1-nic", "tap1"),
            "green": ("net2", "k6t-net2", "net2-nic", "tap2"),
        },
    )
    pod.lease_each()
    pod.unplug_restores()


def test_iface_override_names_a_cni_nic_of_any_name(node, tmp_path):
    pod = Pod(
        node, tmp_path, manifest(["red", "green"]), {"red": "sec0", "green": "podba4788b226a"}
    )
    res = pod.plug("--iface", "red=sec0")
    assert res.returncode == 0, res.stderr
    check_links(
        pod,
        {
            "default": ("eth0", "k6t-eth0", "eth0-nic", "tap0"),
            "red": ("sec0", "k6t-sec0", "sec0-nic", "tapsec0"),
            "green": ("podba4788b226a", "k6t-ba4788b226a", "ba4788b226a-nic", "tapba4788b226a"),
        },
    )
    pod.lease_each()
    pod.unplug_restores()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--iface", "blue=sec0"], "--iface: no network named 'blue' in the manifest"),
        (
            ["--iface", "red=averyveryverylong0"],
            "'averyveryverylong0' is not a valid Linux interface name",
        ),
        (
            ["--iface", "red=sec0", "--iface", "green=sec0"],
            "networks ['green', 'red'] would share pod interface 'sec0'",
        ),
        (["--iface", "red"], "'red' is not NETWORK=PODIFACE"),
        (["--iface", "red=abcdefghijkl"], "derived"),
    ],
)
def test_iface_override_errors_are_one_line_and_change_nothing(node, tmp_path, args, message):
    pod = Pod(node, tmp_path, manifest(["red", "green"]), {"red": "sec0"})
    res = pod.plug(*args)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert res.stderr.startswith("vmnet plug: ") and len(res.stderr.strip().splitlines()) == 1
    assert message in res.stderr
    assert snapshot(pod.netns) == pod.before


def test_multus_default_network_is_the_primary(node, tmp_path):
    pod = Pod(node, tmp_path, manifest(["red"], primary="cluster"), {"red": "podb1f51a511f1"})
    res = pod.plug()
    assert res.returncode == 0, res.stderr
    check_links(
        pod,
        {
            "cluster": ("eth0", "k6t-eth0", "eth0-nic", "tap0"),
            "red": ("podb1f51a511f1", "k6t-b1f51a511f1", "b1f51a511f1-nic", "tapb1f51a511f1"),
        },
    )
    assert pod.status()["cluster"]["primary"] is True
    pod.lease_each()
    pod.unplug_restores()
