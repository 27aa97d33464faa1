"""DhcpConfig validation and its JSON round trip."""

import json
import re
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest

from vmnet.core.addr import MacAddress
from vmnet.core.errors import CacheError, ConfigError
from vmnet.protocols.dhcp4.config import DhcpConfig, Route
from vmnet.store import codec

FULL = DhcpConfig(
    client_mac=MacAddress.parse("12:34:56:78:90:ab"),
    address=IPv4Interface("10.222.222.1/30"),
    server_id=IPv4Address("169.254.75.10"),
    router=IPv4Address("10.222.222.254"),
    routes=(
        Route(IPv4Network("0.0.0.0/0"), IPv4Address("10.222.222.254")),
        Route(IPv4Network("10.222.0.0/16"), None),
    ),
    dns=(IPv4Address("10.96.0.10"),),
    search=("default.svc.cluster.local", "cluster.local"),
    hostname="vm1",
    domain_name="example.org",
    mtu=1410,
    lease_time=3600,
    ntp=(IPv4Address("192.168.2.2"),),
    tftp_server="tftp.kubevirt.io",
    boot_file="config",
    private_options=((240, b"private.options.kubevirt.io"),),
)


def test_json_round_trip_through_text() -> None:
    text = json.dumps(codec.encode(FULL), sort_keys=True)
    assert codec.decode(DhcpConfig, json.loads(text)) == FULL
    minimal = DhcpConfig(None, IPv4Interface("10.0.2.2/24"), IPv4Address("10.0.2.1"))
    assert codec.decode(DhcpConfig, json.loads(json.dumps(codec.encode(minimal)))) == minimal


def test_json_keys_are_the_fields_in_camel_case() -> None:
    assert list(codec.encode(FULL)) == [
        "clientMac",
        "address",
        "serverId",
        "router",
        "routes",
        "dns",
        "search",
        "hostname",
        "domainName",
        "mtu",
        "leaseTime",
        "ntp",
        "tftpServer",
        "bootFile",
        "privateOptions",
    ]
    assert codec.encode(FULL)["privateOptions"] == [[240, b"private.options.kubevirt.io".hex()]]


@pytest.mark.parametrize(
    ("patch", "key"),
    [
        ({"address": "10.0.0.1"}, "address"),
        ({"address": 7}, "address"),
        ({"clientMac": "zz"}, "clientMac"),
        ({"routes": [{"destination": "10.0.0.1/8", "gateway": None}]}, "routes[0].destination"),
        ({"routes": "x"}, "routes"),
        ({"dns": ["::1"]}, "dns[0]"),
        ({"search": ["bad,domain"]}, "search"),
        ({"mtu": 20}, "mtu"),
        ({"leaseTime": "long"}, "leaseTime"),
        ({"privateOptions": [[12, "00"]]}, "privateOptions"),
        ({"privateOptions": [[240, "zz"]]}, "privateOptions[0][1]"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_decode_names_the_bad_key(patch: dict[str, object], key: str) -> None:
    obj = codec.encode(FULL) | patch
    with pytest.raises(CacheError, match=re.escape(f"key '{key}'")):
        codec.decode(DhcpConfig, obj)


def test_decode_rejects_non_objects_and_missing_keys() -> None:
    with pytest.raises(CacheError, match="expected an object"):
        codec.decode(DhcpConfig, [1, 2])
    obj = codec.encode(FULL)
    del obj["serverId"]
    with pytest.raises(CacheError, match="'serverId': missing"):
        codec.decode(DhcpConfig, obj)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"server_id": "169.254.75.10"}, "server_id"),
        ({"server_id": IPv4Address("0.0.0.0")}, "server_id"),
        ({"client_mac": MacAddress.parse("01:00:5e:00:00:01")}, "client_mac"),
        ({"address": IPv4Interface("224.0.0.1/4")}, "address"),
        ({"mtu": 70000}, "mtu"),
        ({"lease_time": 0}, "lease_time"),
        ({"lease_time": True}, "lease_time"),
        ({"dns": (IPv4Address("1.1.1.1"), "8.8.8.8")}, "dns"),
        ({"search": ("-bad.com",)}, "search"),
        ({"hostname": "h\u00f6st"}, "hostname"),
        ({"private_options": ((240, b"a"), (240, b"b"))}, "private_options"),
        ({"private_options": ((255, b"a"),)}, "private_options"),
        ({"routes": ((IPv4Network("0.0.0.0/0"), None),)}, "routes"),
    ],
)
def test_constructor_rejects_bad_values(kwargs: dict[str, object], field: str) -> None:
    base = {
        "client_mac": None,
        "address": IPv4Interface("10.0.0.5/24"),
        "server_id": IPv4Address("10.0.0.1"),
    }
    with pytest.raises(ConfigError) as info:
        DhcpConfig(**(base | kwargs))  # type: ignore[arg-type]
    assert info.value.field == field
    assert "\n" not in str(info.value)


def test_lists_become_tuples_and_domain_is_derived() -> None:
    cfg = DhcpConfig(
        None,
        IPv4Interface("10.0.0.5/24"),
        IPv4Address("10.0.0.1"),
        dns=[IPv4Address("1.1.1.1")],
        search=["a.b", "longer.a.b"],
    )  # type: ignore[arg-type]
    assert cfg.dns == (IPv4Address("1.1.1.1"),)
    assert cfg.domain == "longer.a.b"
    assert FULL.domain == "example.org"
