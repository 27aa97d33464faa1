"""Golden and error tests for vmnet.domain.

Golden files live in tests/golden/domain/<case>.in.xml (what phase 2 reads) and
<case>.out.xml (what it must write); both are compared after C14N with
whitespace-only text dropped. Set VMNET_REGEN_GOLDEN=1 to rewrite the .out
files after a deliberate change, then review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from vmnet.core.addr import MacAddress
from vmnet.core.errors import ConfigError
from vmnet.domain import (
    DomainInterface,
    PortForward,
    canonical,
    decorate,
    interface_element,
    parse_domain,
    passt_port_forwards,
    skeleton,
    to_bytes,
)
from vmnet.manifest import PciAddress

GOLDEN = Path(__file__).parent.parent / "golden" / "domain"
REGEN = os.environ.get("VMNET_REGEN_GOLDEN") == "1"
MAC = MacAddress.parse("8a:37:e9:71:f2:a4")


def mac(n: int) -> MacAddress:
    return MacAddress(bytes([0x02, 0, 0, 0, 0, n]))


def bridge(alias: str = "default", **kw: object) -> DomainInterface:
    args: dict[str, object] = {"target": "tap0", "mtu": 1450}
    args.update(kw)
    return DomainInterface(alias, "ethernet", MAC, **args)  # type: ignore[arg-type]


def passt(
    ports: list[tuple[str, int | tuple[int, int]]], istio: bool = False, kind: str = "user"
) -> DomainInterface:
    return DomainInterface(
        "default",
        kind,
        MAC,
        source_dev="eth0",
        port_forwards=passt_port_forwards(ports, istio),
        passt_log="/var/run/kubevirt/passt.log",
    )


DECORATE_CASES: dict[str, list[DomainInterface]] = {
    "bridge_pod_network": [bridge()],
    "boot_order": [bridge(boot_order=1)],
    "pci_address": [bridge(pci_address=PciAddress(0, 0, 0x0A, 0))],
    "e1000": [bridge(model="e1000")],
    "link_down": [bridge(link_down=True)],
    "existing_user_interface": [bridge()],
    "other_interfaces_untouched": [bridge("red", target="tapb1f51a511f1", mtu=1400)],
    "no_devices": [bridge()],
    "multi_nic": [
        bridge(queues=2),
        DomainInterface("red", "ethernet", mac(1), target="tapb1f51a511f1", mtu=1400),
        DomainInterface(
            "green", "ethernet", mac(2), model="e1000e", target="tapba4788b226a", boot_order=2
        ),
        DomainInterface("blue", "ethernet", mac(3), target="tap2", mtu=9000, link_down=True),
    ],
    "passt_none": [passt([])],
    "passt_tcp": [passt([("TCP", 1), ("TCP", 4)])],
    "passt_udp": [passt([("UDP", 2), ("UDP", 3)])],
    "passt_tcp_udp": [passt([("", 1), ("UDP", 2), ("TCP", 4), ("SCTP", 5)])],
    "passt_ranges": [passt([("TCP", (8000, 8080)), ("UDP", (5000, 5001)), ("TCP", 22)])],
    "passt_istio": [passt([], istio=True)],
    "passt_istio_udp": [passt([("UDP", 53)], istio=True)],
    "passt_vhostuser": [passt([("TCP", 80)], kind="vhostuser")],
}


def skeleton_1() -> etree._Element:
    return skeleton(
        "vmnet-test",
        [bridge()],
        kernel="/boot/vmlinuz",
        initrd="/tmp/initrd.img",
        cmdline="console=ttyS0 quiet",
        emulator="/usr/bin/qemu-system-x86_64",
        serial_log="/tmp/vmnet-serial.log",
        uuid="0b5a3a35-5d47-4b7e-9a2b-7b6b0a4c7e01",
    )


def skeleton_16() -> etree._Element:
    nics = [
        DomainInterface(f"net{n}", "ethernet", mac(n), target=f"tap{n}", mtu=1500)
        for n in range(16)
    ]
    return skeleton("vmnet-16", nics, memory_mib=512, vcpus=2)


SKELETON_CASES = {"skeleton_1nic": skeleton_1, "skeleton_16nic": skeleton_16}


def decorated(case: str) -> etree._Element:
    dom = parse_domain((GOLDEN / f"{case}.in.xml").read_bytes())
    decorate(dom, DECORATE_CASES[case])
    return dom


def check_golden(case: str, dom: etree._Element) -> None:
    path = GOLDEN / f"{case}.out.xml"
    if REGEN:
        path.write_bytes(to_bytes(dom))
    assert canonical(dom) == canonical(path.read_bytes())


@pytest.mark.parametrize("case", sorted(DECORATE_CASES))
def test_decorate_golden(case: str) -> None:
    check_golden(case, decorated(case))


@pytest.mark.parametrize("case", sorted(SKELETON_CASES))
def test_skeleton_golden(case: str) -> None:
    check_golden(case, SKELETON_CASES[case]())


@pytest.mark.parametrize("case", sorted(DECORATE_CASES))
def test_decorate_twice_is_once(case: str) -> None:
    once = decorated(case)
    twice = decorated(case)
    decorate(twice, DECORATE_CASES[case])
    assert to_bytes(twice) == to_bytes(once)


def test_decorate_output_reparses_to_the_same_tree() -> None:
    dom = decorated("multi_nic")
    assert canonical(parse_domain(to_bytes(dom))) == canonical(dom)


def test_other_interfaces_are_left_exactly_as_they_were() -> None:
    before = parse_domain((GOLDEN / "other_interfaces_untouched.in.xml").read_bytes())
    after = decorated("other_interfaces_untouched")
    untouched = before.xpath("devices/*[not(alias/@name='ua-red')]")
    kept = after.xpath("devices/*[not(alias/@name='ua-red')]")
    assert [etree.tostring(e) for e in kept] == [etree.tostring(e) for e in untouched]


def test_existing_interface_keeps_its_address_and_model_but_gets_vmnet_fields() -> None:
    iface = decorated("existing_user_interface").find("devices/interface")
    assert iface.find("address").get("bus") == "0x05"
    assert iface.find("model").get("type") == "e1000e"
    assert [m.get("address") for m in iface.findall("mac")] == [str(MAC)]
    assert iface.find("target").attrib == {"dev": "tap0", "managed": "no"}
    assert iface.findtext("tune/sndbuf") == "1600"


def test_decorate_with_a_new_spec_replaces_owned_fields() -> None:
    dom = decorated("bridge_pod_network")
    decorate(
        dom, [DomainInterface("default", "ethernet", mac(7), target="tap9", mtu=1400, boot_order=3)]
    )
    iface = dom.find("devices/interface")
    assert iface.find("mac").get("address") == str(mac(7))
    assert iface.find("target").get("dev") == "tap9"
    assert iface.find("mtu").get("size") == "1400"
    assert iface.find("boot").get("order") == "3"
    assert iface.find("rom") is None


def test_vhostuser_gets_shared_memory_once() -> None:
    dom = decorated("passt_vhostuser")
    decorate(dom, DECORATE_CASES["passt_vhostuser"])
    assert dom.xpath("memoryBacking/access/@mode") == ["shared"]
    assert len(dom.findall("memoryBacking")) == 1


def test_interface_element_child_order_follows_kubevirt() -> None:
    el = interface_element(bridge(pci_address=PciAddress(0, 2, 1, 0), link_down=True, queues=4))
    assert [c.tag for c in el] == [
        "address",
        "source",
        "target",
        "model",
        "mac",
        "mtu",
        "link",
        "alias",
        "driver",
        "rom",
    ]
    assert el.find("driver").attrib == {"name": "vhost", "queues": "4"}


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("virtio", "virtio-non-transitional"),
        ("virtio-transitional", "virtio-transitional"),
        ("e1000", "e1000"),
    ],
)
def test_model_mapping(model: str, expected: str) -> None:
    assert interface_element(bridge(model=model)).find("model").get("type") == expected


def test_passt_rules_match_kubevirt() -> None:
    assert passt_port_forwards([]) == (PortForward("tcp"), PortForward("udp"))
    assert passt_port_forwards([("TCP", 1), ("TCP", 4)]) == (
        PortForward("tcp", ((1, None, False), (4, None, False))),
    )
    assert passt_port_forwards([("UDP", 2)]) == (PortForward("udp", ((2, None, False),)),)
    assert passt_port_forwards([("SCTP", 9)]) == (PortForward("tcp"), PortForward("udp"))
    istio = passt_port_forwards([], istio=True)
    assert [f.proto for f in istio] == ["tcp"]
    assert [r[0] for r in istio[0].ranges][:2] == [15000, 15001] and len(istio[0].ranges) == 10
    assert all(r[2] for r in istio[0].ranges)


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE domain [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<domain type="qemu"><name>&xxe;</name></domain>"""
LAUGHS = b"""<!DOCTYPE domain [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>
<domain><name>&b;&b;&b;</name></domain>"""


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"<domain>",
        b"not xml",
        "<domain><name>x</name>",
        XXE,
        LAUGHS,
        b"<network><name>x</name></network>",
        b'<domain xmlns="http://example.org/"><name>x</name></domain>',
        b"<?xml version='1.0'?><!DOCTYPE domain><domain/>",
        12,
    ],
)
def test_parse_domain_rejects_bad_input(text: bytes) -> None:
    with pytest.raises(ConfigError) as err:
        parse_domain(text)
    assert err.value.field == "--domain"
    assert "root:" not in str(err.value) and "\n" not in str(err.value)


def test_parse_domain_accepts_str_with_declaration() -> None:
    dom = parse_domain('<?xml version="1.0" encoding="UTF-8"?>\n<domain type="qemu"/>')
    assert dom.get("type") == "qemu"
    assert not to_bytes(dom).startswith(b"<?xml")


def test_xxe_is_not_resolved_even_by_lxml_defaults_route() -> None:
    with pytest.raises(ConfigError, match="DOCTYPE"):
        parse_domain(XXE)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alias": "bad name"}, "alias"),
        ({"type": "bridge"}, "type"),
        ({"mac": MacAddress.parse("01:00:5e:00:00:01")}, "unicast"),
        ({"model": "virtio net"}, "model"),
        ({"target": "a-name-longer-than-15"}, "tap"),
        ({"mtu": 67}, "MTU"),
        ({"mtu": "1500"}, "MTU"),
        ({"boot_order": 0}, "boot"),
        ({"queues": 257}, "queues"),
        ({"queues": 2, "model": "e1000"}, "virtio"),
        ({"source_dev": "eth0"}, "passt-only"),
        ({"passt_log": "/tmp/p.log"}, "passt-only"),
    ],
)
def test_bad_interface_is_a_config_error(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"alias": "default", "type": "ethernet", "mac": MAC}
    args.update(kwargs)
    with pytest.raises(ConfigError, match=message):
        DomainInterface(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target": "tap0"}, "tap target"),
        ({"queues": 2}, "single queue"),
        ({"passt_log": "passt.log"}, "absolute"),
    ],
)
def test_bad_passt_interface_is_a_config_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DomainInterface("default", "user", MAC, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ports", "message"),
    [
        ([("TCP", 0)], "outside"),
        ([("TCP", 65536)], "outside"),
        ([("UDP", -1)], "outside"),
        ([("TCP", (90, 80))], "before"),
        ([("ICMP", 1)], "protocol"),
        ([("TCP", "22")], "outside"),
    ],
)
def test_bad_ports_are_config_errors(ports: list[tuple[str, object]], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        passt_port_forwards(ports)  # type: ignore[arg-type]


@pytest.mark.parametrize(("proto", "ranges"), [("sctp", ()), ("tcp", ((1, 2),))])
def test_bad_port_forward_is_a_config_error(proto: str, ranges: tuple[object, ...]) -> None:
    with pytest.raises(ConfigError):
        PortForward(proto, ranges)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "a/b"}, "name"),
        ({"memory_mib": 0}, "memory"),
        ({"vcpus": 0}, "vcpus"),
        ({"uuid": "nope"}, "uuid"),
        ({"kernel": "vmlinuz"}, "kernel"),
        ({"serial_log": "x.log"}, "serial"),
    ],
)
def test_bad_skeleton_is_a_config_error(kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"name": "vm"}
    args.update(kwargs)
    with pytest.raises(ConfigError) as err:
        skeleton(ifaces=[], **args)  # type: ignore[arg-type]
    assert err.value.field == field


def test_decorate_rejects_wrong_root_and_duplicate_aliases() -> None:
    with pytest.raises(ConfigError, match="root"):
        decorate(etree.fromstring(b"<network/>"), [bridge()])
    with pytest.raises(ConfigError, match="same name"):
        decorate(parse_domain(b"<domain/>"), [bridge(), bridge()])
    twin = b"<domain><devices>" + b"<interface type='ethernet'><alias name='ua-x'/></interface>" * 2
    with pytest.raises(ConfigError, match="ua-x"):
        decorate(parse_domain(twin + b"</devices></domain>"), [bridge()])


def _ethernet_ifaces() -> st.SearchStrategy[list[DomainInterface]]:
    iface = st.builds(
        DomainInterface,
        alias=st.sampled_from(["default", "red", "green", "blue"]),
        type=st.just("ethernet"),
        mac=st.integers(0, 255).map(mac),
        model=st.sampled_from(["virtio", "e1000", "virtio-transitional"]),
        target=st.sampled_from([None, "tap0", "tap1"]),
        mtu=st.sampled_from([None, 1400, 9000]),
        boot_order=st.sampled_from([None, 1, 2]),
        pci_address=st.sampled_from([None, PciAddress(0, 0, 3, 0)]),
        link_down=st.booleans(),
    )
    return st.lists(iface, max_size=4, unique_by=lambda i: i.alias)


@settings(max_examples=60, deadline=None)
@given(first=_ethernet_ifaces(), second=_ethernet_ifaces())
def test_redecorating_is_stable_and_leaves_others_alone(
    first: list[DomainInterface], second: list[DomainInterface]
) -> None:
    dom = decorated("other_interfaces_untouched")
    decorate(dom, first)
    mine = {"ua-" + i.alias for i in second}

    def others() -> list[bytes]:
        devices = dom.find("devices")
        return [etree.tostring(e) for e in devices if e.xpath("string(alias/@name)") not in mine]

    before = others()
    decorate(dom, second)
    once = to_bytes(dom)
    decorate(dom, second)
    assert to_bytes(dom) == once
    assert others() == before
    for iface in second:
        (el,) = dom.xpath(f"devices/interface[alias/@name='ua-{iface.alias}']")
        assert el.find("mac").get("address") == str(iface.mac)
