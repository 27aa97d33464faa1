"""Dhcp6Config: validation at construction, JSON round trip, CacheError naming the key."""

import json
import re
from ipaddress import IPv6Address, IPv6Interface

import pytest

from vmnet.core.addr import MacAddress
from vmnet.core.errors import CacheError, ConfigError
from vmnet.protocols.dhcp6.config import Dhcp6Config
from vmnet.store import codec

BRIDGE = MacAddress.parse("02:00:00:00:00:00")
VM = MacAddress.parse("52:54:00:aa:bb:02")
GUEST = MacAddress.parse("52:54:00:aa:bb:02")


def full() -> Dhcp6Config:
    return Dhcp6Config(
        GUEST,
        IPv6Interface("fd10:0:2::2/120"),
        BRIDGE,
        dns=[IPv6Address("fd00::10")],
        search=["svc.cluster.local", "cluster.local"],
        lease_time=3600,
        mtu=1400,
        router_lifetime=600,
    )


def test_defaults_are_kubevirts() -> None:
    cfg = Dhcp6Config(None, IPv6Interface("fd10:0:2::2/120"), BRIDGE)
    assert (cfg.lease_time, cfg.router_lifetime, cfg.mtu) == (86313600, 1800, None)
    assert cfg.dns == () and cfg.search == ()


def test_sequences_become_tuples() -> None:
    assert full().dns == (IPv6Address("fd00::10"),)
    assert full().search == ("svc.cluster.local", "cluster.local")


@pytest.mark.parametrize(
    "cfg", [full(), Dhcp6Config(None, IPv6Interface("2001:db8::5/64"), BRIDGE)]
)
def test_json_round_trip(cfg: Dhcp6Config) -> None:
    text = json.dumps(codec.encode(cfg))
    assert codec.decode(Dhcp6Config, json.loads(text)) == cfg


def test_json_form() -> None:
    assert codec.encode(full()) == {
        "clientMac": "52:54:00:aa:bb:02",
        "address": "fd10:0:2::2/120",
        "serverMac": "02:00:00:00:00:00",
        "dns": ["fd00::10"],
        "search": ["svc.cluster.local", "cluster.local"],
        "leaseTime": 3600,
        "mtu": 1400,
        "routerLifetime": 600,
        "router": None,
        "routerMac": None,
        "tapOnly": False,
    }


def test_a_record_from_before_the_bridge_binding_fields_still_reads() -> None:
    old = codec.encode(full())
    for key in ("router", "routerMac", "tapOnly"):
        del old[key]
    assert codec.decode(Dhcp6Config, old) == full()


def test_the_bridge_binding_form_round_trips() -> None:
    cfg = Dhcp6Config(
        MacAddress.parse("52:54:00:aa:bb:02"),
        IPv6Interface("fd00:22::2/64"),
        BRIDGE,
        router=IPv6Address("fe80::9039:9cff:fedf:aa75"),
        router_mac=MacAddress.parse("92:39:9c:df:aa:75"),
        tap_only=True,
    )
    assert codec.decode(Dhcp6Config, json.loads(json.dumps(codec.encode(cfg)))) == cfg


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"router": IPv6Address("fd00:22::1")}, "router"),
        ({"router_mac": MacAddress.parse("01:00:5e:00:00:01")}, "router_mac"),
        ({"tap_only": 1}, "tap_only"),
    ],
)
def test_bad_router_fields_are_refused(kw: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        Dhcp6Config(VM, IPv6Interface("fd00::2/64"), BRIDGE, **kw)
    assert err.value.field == field


def test_tap_only_needs_the_vm_mac() -> None:
    with pytest.raises(ConfigError, match="client_mac"):
        Dhcp6Config(None, IPv6Interface("fd00::2/64"), BRIDGE, tap_only=True)


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("client_mac", "52:54:00:aa:bb:02", "expected MacAddress"),
        ("client_mac", MacAddress.parse("01:00:5e:00:00:01"), "not a unicast MAC"),
        ("server_mac", None, "expected MacAddress"),
        ("address", IPv6Interface("fe80::2/64"), "not a global"),
        ("address", IPv6Interface("ff02::2/64"), "not a global"),
        ("address", "fd10:0:2::2/120", "expected IPv6Interface"),
        ("dns", "fd00::10", "expected a sequence"),
        ("dns", ["fd00::10"], "expected IPv6Address items"),
        ("search", ["bad..domain"], "not valid"),
        ("lease_time", 0, "between 1 and"),
        ("lease_time", True, "expected int"),
        ("mtu", 1279, "between 1280"),
        ("router_lifetime", 3, "0 or at least 4"),
        ("router_lifetime", 9001, "between 0 and 9000"),
    ],
)
def test_bad_values_name_the_field(field: str, value: object, match: str) -> None:
    kwargs: dict[str, object] = {
        "client_mac": GUEST,
        "address": IPv6Interface("fd10:0:2::2/120"),
        "server_mac": BRIDGE,
    }
    kwargs[field] = value
    with pytest.raises(ConfigError, match=match) as info:
        Dhcp6Config(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda d: d.update(extra=1), "extra"),
        (lambda d: d.pop("address"), "address"),
        (lambda d: d.update(address="fd10::2"), "address"),
        (lambda d: d.update(clientMac="nope"), "clientMac"),
        (lambda d: d.update(dns="fd00::10"), "dns"),
        (lambda d: d.update(dns=[5]), "dns[0]"),
        (lambda d: d.update(mtu="1400"), "mtu"),
        (lambda d: d.update(search=["a..b"]), "search"),
    ],
)
def test_decode_errors_name_the_key(mutate, key: str) -> None:  # type: ignore[no-untyped-def]
    obj = codec.encode(full())
    mutate(obj)
    with pytest.raises(CacheError, match=re.escape(f"key '{key}'")):
        codec.decode(Dhcp6Config, obj)


def test_decode_rejects_a_non_object() -> None:
    with pytest.raises(CacheError, match="expected an object"):
        codec.decode(Dhcp6Config, ["x"])
