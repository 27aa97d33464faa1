"""The cache's one JSON form (vmnet.store.codec) and the schema-1 migration.

tests/data/cache-schema1 holds caches that vmnet 0.1 (schema 1) wrote for
real pods: a dual-stack bridge VM and a dual-stack masquerade VM, each plugged
into a pod from the real CNI bridge plugin.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
import shutil
from pathlib import Path

import pytest

from vmnet.core.addr import MacAddress
from vmnet.core.errors import CacheError
from vmnet.phases import leases
from vmnet.plan.state import (
    AddrState,
    LinkState,
    NetworkRecord,
    NetworkState,
    PodNic,
    RouteState,
    TapSpec,
)
from vmnet.protocols.dhcp4.config import DhcpConfig
from vmnet.protocols.dhcp6.config import Dhcp6Config
from vmnet.store import codec
from vmnet.store.cache import SCHEMA, Cache

SCHEMA1 = Path(__file__).parent.parent / "data" / "cache-schema1"

NIC = PodNic(
    LinkState(
        2,
        "eth0",
        "veth",
        MacAddress.parse("9e:fa:86:52:9d:37"),
        1450,
        True,
        addresses=(
            AddrState(
                ipaddress.ip_interface("10.22.0.2/24"), 128, 0, ipaddress.ip_address("10.22.0.255")
            ),
            AddrState(ipaddress.ip_interface("fd00:22::2/64"), 128),
        ),
    ),
    (
        RouteState(
            ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_address("10.22.0.1"), oif=2, protocol=3
        ),
        RouteState(ipaddress.ip_network("fd00:22::/64"), None, oif=2, protocol=2, priority=256),
    ),
)
RECORD = NetworkRecord(
    network="default",
    binding="bridge",
    state=NetworkState.FINISHED,
    pod_iface="eth0",
    index=0,
    primary=True,
    pod_nic=NIC,
    nic_mac=MacAddress.parse("22:4f:57:07:bc:1f"),
    tap=TapSpec(107, 107, 2),
    vm_mac=MacAddress.parse("ba:79:cf:48:6d:fa"),
    vmi="ns1/vm1",
    warnings=("kernel has no dummy driver",),
)


def _keys(obj: object) -> set[str]:
    if isinstance(obj, dict):
        return set(obj) | {k for v in obj.values() for k in _keys(v)}
    if isinstance(obj, list):
        return {k for v in obj for k in _keys(v)}
    return set()


def test_a_network_record_round_trips_through_text() -> None:
    text = json.dumps(codec.encode(RECORD))
    assert codec.decode(NetworkRecord, json.loads(text)) == RECORD


def test_every_key_of_every_cached_type_is_camel_case() -> None:
    dhcp = DhcpConfig(
        None, ipaddress.IPv4Interface("10.0.0.2/24"), ipaddress.IPv4Address("10.0.0.1")
    )
    dhcp6 = Dhcp6Config(
        None, ipaddress.IPv6Interface("fd00::2/64"), MacAddress.parse("02:00:00:00:00:01")
    )
    keys = set().union(*(_keys(codec.encode(v)) for v in (RECORD, dhcp, dhcp6)))
    assert "podNic" in keys and "serverId" in keys and "routerLifetime" in keys
    assert all(re.fullmatch(r"[a-z][a-zA-Z0-9]*", k) for k in keys), sorted(keys)


def test_the_form_of_values() -> None:
    body = codec.encode(RECORD)
    assert body["state"] == "finished" and body["tap"] == {"uid": 107, "gid": 107, "queues": 2}
    assert body["podNic"]["link"]["addresses"][0] == {
        "interface": "10.22.0.2/24",
        "flags": 128,
        "scope": 0,
        "broadcast": "10.22.0.255",
    }
    assert body["podNic"]["routes"][1]["gateway"] is None


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("index",), True, "key 'index': expected an integer, got True"),
        (("state",), "running", "key 'state': expected one of pending, started, finished"),
        (("podNic", "link", "mtu"), "1500", "key 'podNic.link.mtu': expected an integer"),
        (("podNic", "link", "mac"), "zz", "key 'podNic.link.mac': invalid MAC address"),
        (("podNic", "link", "colour"), "red", "key 'podNic.link.colour': unknown key"),
        (("podNic", "routes"), {}, "key 'podNic.routes': expected a list"),
        (("tap",), [1, 2, 3], "key 'tap': expected an object"),
    ],
)
def test_decode_is_strict_and_names_the_key_path(path, value, message) -> None:  # type: ignore[no-untyped-def]
    body = codec.encode(RECORD)
    node = body
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(CacheError, match=re.escape(message)):
        codec.decode(NetworkRecord, body)


def test_a_bad_nested_address_names_its_position() -> None:
    body = codec.encode(RECORD)
    body["podNic"]["link"]["addresses"][1]["interface"] = "fd00:22::2"
    with pytest.raises(CacheError, match=re.escape("key 'podNic.link.addresses[1].interface'")):
        codec.decode(NetworkRecord, body)


def test_a_field_added_with_a_default_reads_older_records() -> None:
    @dataclasses.dataclass(frozen=True)
    class Grown:
        name: str
        pod_uid: str = ""

    assert codec.decode(Grown, {"name": "x"}) == Grown("x")
    with pytest.raises(CacheError, match="key 'name': missing"):
        codec.decode(Grown, {"podUid": "u"})


def _copy(name: str, tmp_path: Path) -> Cache:
    root = tmp_path / name
    shutil.copytree(SCHEMA1 / name, root)
    return Cache(str(root))


def test_schema_1_caches_of_real_pods_are_read() -> None:
    bridge = Cache(str(SCHEMA1 / "bridge"))
    record = bridge.network("default")
    assert record is not None and record.state == NetworkState.FINISHED
    assert (
        str(record.pod_nic.ipv4) == "10.22.0.2/24" and str(record.pod_nic.ipv6) == "fd00:22::2/64"
    )
    lease = leases.lease(bridge, "default")
    assert lease is not None and lease.client_mac == record.vm_mac
    assert (str(lease.address), str(lease.router), lease.mtu) == ("10.22.0.2/24", "10.22.0.1", 1500)
    masquerade = Cache(str(SCHEMA1 / "masquerade"))
    lease6 = leases.lease6(masquerade, "default")
    assert lease6 is not None and str(lease6.address) == "fd10:0:2::2/120"
    assert lease6.router_lifetime == 1800
    assert masquerade.load("sysctl", None, dict[str, str | None])


@pytest.mark.parametrize("name", ["bridge", "masquerade"])
def test_schema_1_records_rewritten_as_schema_2_read_the_same(name: str, tmp_path: Path) -> None:
    cache = _copy(name, tmp_path)
    before = (cache.networks(), leases.lease(cache, "default"), leases.lease6(cache, "default"))
    for record in before[0]:
        cache.put_network(record)
    for kind, config in (("dhcp", before[1]), ("dhcp6", before[2])):
        if config is not None:
            cache.save(kind, "default", config)
    after = (cache.networks(), leases.lease(cache, "default"), leases.lease6(cache, "default"))
    assert after == before
    assert json.loads((Path(cache.root) / "network-default.json").read_text())["schema"] == SCHEMA


@pytest.mark.parametrize("schema", [0, 3, "1", True, None])
def test_other_schemas_are_one_clear_error(schema: object, tmp_path: Path) -> None:
    path = tmp_path / "network-default.json"
    path.write_text(json.dumps({"schema": schema, "kind": "network", "data": codec.encode(RECORD)}))
    with pytest.raises(
        CacheError, match=r"network-default.json: schema .*, this vmnet reads 1 to 2"
    ):
        Cache(str(tmp_path)).network("default")
