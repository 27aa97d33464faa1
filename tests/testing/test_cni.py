"""Pods from the real CNI plugins in /usr/lib/cni, and their teardown."""

from __future__ import annotations

import ipaddress
import json
import os

import pytest

from vmnet.core.errors import ConfigError
from vmnet.testing import cni
from vmnet.testing import namespaces as ns
from vmnet.testing.cnidata import CniResult

pytestmark = [pytest.mark.netns, pytest.mark.cni]


def _addresses(netns: str, ifname: str) -> list[str]:
    out = json.loads(ns.exec_in(netns, ["ip", "-j", "-4", "addr", "show", "dev", ifname]).stdout)
    return [f"{a['local']}/{a['prefixlen']}" for a in out[0]["addr_info"]]


def _default_gateway(netns: str) -> str | None:
    out = json.loads(ns.exec_in(netns, ["ip", "-j", "-4", "route", "show", "default"]).stdout)
    return out[0].get("gateway") if out else None


def _link(netns: str, ifname: str) -> dict:
    return json.loads(ns.exec_in(netns, ["ip", "-j", "link", "show", "dev", ifname]).stdout)[0]


@pytest.mark.parametrize("pod", ["bridge", "ptp", "macvlan", "static"], indirect=True)
def test_pod_nic_matches_cni_result(pod: cni.CniPod) -> None:
    assert pod.ifname == "eth0"
    assert _addresses(pod.netns, "eth0") == [str(pod.address)]
    assert _default_gateway(pod.netns) == str(pod.gateway)
    link = _link(pod.netns, "eth0")
    assert link["address"] == str(pod.mac)
    assert link["mtu"] == pod.mtu
    assert pod.result.interface("eth0").sandbox == f"/run/netns/{pod.netns}"


@pytest.mark.parametrize(
    "ipam",
    [
        cni.host_local("10.31.0.0/24", gateway="10.31.0.254"),
        cni.host_local("10.31.0.0/24"),
        {"type": "host-local", "ranges": [[{"subnet": "10.31.0.0/24"}], [{"subnet": "fd31::/64"}]]},
    ],
    ids=["gateway-and-default-route", "default-route", "dual-stack"],
)
def test_bridge_config_takes_any_host_local_section(pod_factory, ipam) -> None:
    """IPAM routes that include the default are not added twice by the plugin."""
    pod = pod_factory(cni.bridge_config(ipam=ipam))
    assert _default_gateway(pod.netns) == str(pod.gateway)
    assert str(pod.gateway) == ipam.get("gateway", "10.31.0.1")


@pytest.mark.parametrize("pod", ["bridge", "ptp", "static"], indirect=True)
def test_pod_reaches_its_gateway(pod: cni.CniPod) -> None:
    ns.exec_in(pod.netns, ["ping", "-c1", "-W5", str(pod.gateway)])


def test_bridge_pod_shape(pod: cni.CniPod) -> None:
    assert pod.address == ipaddress.ip_interface("10.22.0.2/24")
    assert pod.gateway == ipaddress.ip_address("10.22.0.1")
    assert _addresses(pod.node.netns, "cbr0") == ["10.22.0.1/24"]
    assert not os.path.exists("/sys/class/net/cbr0"), "cbr0 must stay in the node namespace"


def test_del_removes_the_nic_and_releases_the_ip(node: cni.Node, pod_factory) -> None:
    first = pod_factory()
    second = pod_factory(ifname="pod914f438d88d", netns=first.netns)
    store = os.path.join(node.data_dir, "vmt-bridge")
    assert str(second.address.ip) in os.listdir(store)
    assert second.address != first.address
    second.close()
    assert str(second.address.ip) not in os.listdir(store)
    assert str(first.address.ip) in os.listdir(store)
    links = json.loads(ns.exec_in(first.netns, ["ip", "-j", "link"]).stdout)
    assert {link["ifname"] for link in links} == {"lo", "eth0"}
    second.close()


def test_node_close_deletes_pods_then_namespaces() -> None:
    node = cni.Node()
    pod = node.add_pod()
    store = os.path.join(node.data_dir, "vmt-bridge")
    assert str(pod.address.ip) in os.listdir(store)
    node.close()
    assert not os.path.exists(f"/run/netns/{pod.netns}")
    assert not os.path.exists(f"/run/netns/{node.netns}")
    assert not os.path.exists(node.data_dir)


def test_calico_pod_shape(calico_pod: cni.CniPod) -> None:
    netns = calico_pod.netns
    assert _addresses(netns, "eth0") == ["10.27.0.5/32"]
    routes = json.loads(ns.exec_in(netns, ["ip", "-j", "-4", "route"]).stdout)
    assert {"dst": "169.254.1.1", "dev": "eth0", "scope": "link", "flags": []} in routes
    assert _default_gateway(netns) == "169.254.1.1"
    ns.exec_in(netns, ["ping", "-c1", "-W5", cni.UPLINK_ADDR.split("/")[0]])
    neigh = json.loads(ns.exec_in(netns, ["ip", "-j", "neigh", "show", "169.254.1.1"]).stdout)
    assert neigh[0]["lladdr"] == "ee:ee:ee:ee:ee:ee"


def test_veth_pod_without_cni(pod_factory) -> None:
    pod = pod_factory("veth")
    assert _addresses(pod.netns, "eth0") == ["10.26.0.2/24"]
    assert _default_gateway(pod.netns) == "10.26.0.1"
    ns.exec_in(pod.netns, ["ping", "-c1", "-W5", "10.26.0.1"])


def test_plugin_error_is_reported(node: cni.Node) -> None:
    before = ns.created_netns()
    with pytest.raises(cni.CniError, match=r"^cni ADD macvlan vmt-\w+/eth0: Link not found"):
        node.add_pod(cni.macvlan_config(master="nosuch"))
    assert not node.pods
    assert ns.created_netns() == before


def test_bad_configs_are_config_errors(node: cni.Node, pod_factory) -> None:
    with pytest.raises(ConfigError, match="plugin 'nosuch' not found in /opt/cni/bin:/usr/lib/cni"):
        node.add_pod({"type": "nosuch"})
    with pytest.raises(ConfigError, match="mapping with a 'type'"):
        node.add_pod({"name": "x"})
    with pytest.raises(ConfigError, match="unknown pod kind 'flannel'"):
        pod_factory("flannel")


def test_result_parsing_of_older_versions() -> None:
    raw = {
        "cniVersion": "0.4.0",
        "interfaces": [
            {"name": "cbr0", "mac": "02:00:00:00:00:01"},
            {"name": "eth0", "mac": "02:00:00:00:00:02", "sandbox": "/run/netns/p"},
        ],
        "ips": [{"version": "4", "address": "10.1.0.5/24", "gateway": "10.1.0.1", "interface": 1}],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {"nameservers": ["10.96.0.10"]},
    }
    result = CniResult.from_json(raw)
    assert result.ips_of("eth0")[0].address == ipaddress.ip_interface("10.1.0.5/24")
    assert result.ips_of("cbr0") == ()
    assert result.dns.nameservers == ("10.96.0.10",)
    assert result.raw is raw
    with pytest.raises(ConfigError, match="malformed"):
        CniResult.from_json({"ips": [{"address": "10.1.0.500/24"}]})
    with pytest.raises(ConfigError, match="not a JSON object"):
        CniResult.from_json([])  # type: ignore[arg-type]
