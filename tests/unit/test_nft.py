"""The masquerade ruleset: golden files, KubeVirt's rule strings, and `nft -c`."""

import ipaddress
import os
import pathlib
import shutil

import pytest

from vmnet.plan import nat as nft

GOLDEN = pathlib.Path(__file__).parent.parent / "golden" / "nft"
V4 = {
    "family": "ip",
    "pod_iface": "eth0",
    "bridge": "k6t-eth0",
    "vm_ip": ipaddress.ip_address("10.0.2.2"),
    "gateway": ipaddress.ip_address("10.0.2.1"),
    "marker": "vmnet:test",
}
V6 = {
    "family": "ip6",
    "pod_iface": "eth0",
    "bridge": "k6t-eth0",
    "vm_ip": ipaddress.ip_address("fd10:0:2::2"),
    "gateway": ipaddress.ip_address("fd10:0:2::1"),
    "marker": "vmnet:test",
}
POD = ipaddress.ip_address("10.222.222.1")

CASES = {
    "ipv4_all_ports": [nft.NatSpec(**V4)],
    "ipv6_all_ports": [nft.NatSpec(**V6)],
    "dual_stack_pod_ip": [
        nft.NatSpec(**V4, pod_ip=POD),
        nft.NatSpec(**V6, pod_ip=ipaddress.ip_address("2001::1")),
    ],
    "ports_tcp_80_8080": [nft.NatSpec(**V4, ports=(("tcp", 80), ("tcp", 8080)))],
    "ports_udp": [nft.NatSpec(**V4, ports=(("udp", 53),))],
    "istio_no_ports": [nft.NatSpec(**V4, pod_ip=POD, istio=True)],
    "istio_port_22_and_80": [
        nft.NatSpec(**V4, pod_ip=POD, istio=True, ports=(("tcp", 22), ("tcp", 80)))
    ],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case):
    text = nft.render(CASES[case])
    path = GOLDEN / f"{case}.nft"
    if os.environ.get("VMNET_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


def test_kubevirt_rule_strings_are_present():
    text = nft.render([nft.NatSpec(**V4, ports=(("tcp", 80),))])
    for rule in (
        "ip saddr 10.0.2.2 counter masquerade",
        'iifname "eth0" counter jump KUBEVIRT_PREINBOUND',
        'oifname "k6t-eth0" counter jump KUBEVIRT_POSTINBOUND',
        "tcp dport { 49152, 49153 } ip saddr 127.0.0.1 counter return",
        "tcp dport { 80 } counter dnat to 10.0.2.2",
        "tcp dport 80 ip saddr { 127.0.0.1 } counter snat to 10.0.2.1",
        "ip daddr { 127.0.0.1 } tcp dport 80 counter dnat to 10.0.2.2",
    ):
        assert rule in text


def test_every_rule_carries_the_marker():
    text = nft.render(CASES["dual_stack_pod_ip"])
    rules = [
        line
        for line in text.splitlines()
        if line.startswith("    ") and "type nat hook" not in line
    ]
    assert rules and all(line.endswith('comment "vmnet:test"') for line in rules)


def test_marker_is_stable_and_safe():
    m = nft.marker_for("ns", "vm")
    assert m == nft.marker_for("ns", "vm") != nft.marker_for("ns", "vm2")
    assert m.startswith("vmnet:") and len(m) == 18


@pytest.mark.netns
@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("nft") is None, reason="needs root and nft (nftables)"
)
@pytest.mark.parametrize("case", sorted(CASES))
def test_nft_accepts_the_golden_ruleset(case):
    from vmnet.testing import namespaces as ns

    with ns.temp_netns() as name:
        proc = ns.exec_in(name, ["nft", "-c", "-f", str(GOLDEN / f"{case}.nft")], check=False)
        assert proc.returncode == 0, proc.stderr
