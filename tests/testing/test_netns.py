"""Namespaces, veth pairs, commands and snapshots in real namespaces."""

from __future__ import annotations

import json
import os

import pytest

from vmnet.core.addr import MacAddress
from vmnet.core.errors import ConfigError, DriverError
from vmnet.testing import namespaces as ns
from vmnet.testing.snapshots import snapshot

pytestmark = pytest.mark.netns


def _links(netns: str) -> dict[str, dict]:
    out = ns.exec_in(netns, ["ip", "-j", "addr", "show"]).stdout
    return {link["ifname"]: link for link in json.loads(out)}


def test_create_and_remove() -> None:
    name = ns.create_netns()
    try:
        assert name.startswith("vmt-") and len(name) == 12
        assert os.path.exists(f"/run/netns/{name}")
        assert os.path.exists(f"/etc/netns/{name}/resolv.conf")
        assert name in ns.created_netns()
        assert "UP" in _links(name)["lo"]["flags"]
        assert ns.read_sysctl(name, "net.ipv6.conf.default.accept_dad") == "0"
    finally:
        ns.remove_netns(name)
    assert not os.path.exists(f"/run/netns/{name}")
    assert not os.path.exists(f"/etc/netns/{name}")
    assert name not in ns.created_netns()
    ns.remove_netns(name)


def test_resolv_conf_is_private_to_the_namespace(netns: str) -> None:
    inside = ns.exec_in(netns, ["cat", "/etc/resolv.conf"]).stdout
    assert netns in inside


def test_veth_pair_across_namespaces(netns: str) -> None:
    with ns.temp_netns() as other:
        mac = MacAddress.parse("02:00:00:aa:bb:cc")
        ns.create_veth(ns.VethEnd(netns, "left", mtu=1400), ns.VethEnd(other, "right", mac, 1400))
        left, right = _links(netns)["left"], _links(other)["right"]
        assert right["address"] == str(mac)
        assert left["mtu"] == right["mtu"] == 1400
        assert left["operstate"] == right["operstate"] == "UP"
        ns.ip_batch(netns, ["addr add 10.77.0.1/24 dev left"])
        ns.ip_batch(other, ["addr add 10.77.0.2/24 dev right"])
        assert ns.exec_in(other, ["ping", "-c1", "-W5", "10.77.0.1"]).returncode == 0


def test_veth_name_clash_is_a_driver_error(netns: str) -> None:
    ns.create_veth(ns.VethEnd(netns, "a0"), ns.VethEnd(netns, "b0"))
    with pytest.raises(DriverError, match=r"^link_add a0<->b1: EEXIST"):
        ns.create_veth(ns.VethEnd(netns, "a0"), ns.VethEnd(netns, "b1"))


def test_exec_in_failure_is_one_line_with_stderr(netns: str) -> None:
    with pytest.raises(ns.CommandError) as err:
        ns.exec_in(netns, ["ip", "link", "set", "nosuch", "up"])
    assert "\n" not in str(err.value)
    assert "exit 1" in str(err.value) and "nosuch" in str(err.value)
    assert err.value.stderr


def test_exec_in_rejects_bad_input() -> None:
    with pytest.raises(ConfigError):
        ns.exec_in("vmt-x", [])
    with pytest.raises(ConfigError):
        ns.open_ipr("vmt-does-not-exist")
    with pytest.raises(ns.CommandError, match="No such file"):
        ns.exec_in(None, ["/nonexistent/binary"])


def test_snapshot_is_stable(netns: str) -> None:
    ns.create_veth(ns.VethEnd(netns, "s0"), ns.VethEnd(netns, "s1"))
    ns.ip_batch(
        netns,
        [
            "addr add 10.78.0.1/24 dev s0",
            "route add 10.79.0.0/16 via 10.78.0.9 table 7",
            "rule add from 10.78.0.0/24 table 7 priority 100",
        ],
    )
    first = snapshot(netns)
    assert first == snapshot(netns)
    assert any(r.table == 7 and r.gateway == "10.78.0.9" for r in first.routes)
    assert any(r.table == 7 and r.priority == 100 for r in first.rules)
    assert {link.name for link in first.links} == {"lo", "s0", "s1"}


@pytest.mark.parametrize(
    ("change", "undo", "expect"),
    [
        ("addr add 10.78.0.5/24 dev s0", "addr del 10.78.0.5/24 dev s0", "10.78.0.5/24"),
        (
            "link set s0 down; link set s0 name s9; link set s9 up",
            "link set s9 down; link set s9 name s0; link set s0 up",
            "name='s9'",
        ),
        (
            "link set s0 address 02:00:00:00:00:99",
            "link set s0 address 02:00:00:00:00:01",
            "02:00:00:00:00:99",
        ),
        ("link set s0 mtu 1400", "link set s0 mtu 1500", "mtu=1400"),
        ("route add default via 10.78.0.254", "route del default via 10.78.0.254", "10.78.0.254"),
    ],
    ids=["address", "rename", "mac", "mtu", "route"],
)
def test_snapshot_sees_a_change_and_its_undo(
    netns: str, change: str, undo: str, expect: str
) -> None:
    mac = MacAddress.parse("02:00:00:00:00:01")
    ns.create_veth(ns.VethEnd(netns, "s0", mac), ns.VethEnd(netns, "s1"))
    ns.ip_batch(netns, ["addr add 10.78.0.1/24 dev s0"])
    before = snapshot(netns)
    ns.ip_batch(netns, change.split("; "))
    changed = snapshot(netns)
    assert changed != before
    assert any(expect in line for line in before.diff(changed) if line.startswith("+"))
    ns.ip_batch(netns, undo.split("; "))
    for name in ("s0", "s1"):
        ns.wait_operstate(netns, name, "UP")
    after = snapshot(netns)
    assert after == before, "\n".join(before.diff(after))


def test_leaks_lists_namespaces_and_children() -> None:
    name = ns.create_netns()
    proc = ns.popen_in(name, ["sleep", "30"])
    try:
        found = ns.leaks()
        assert f"netns {name} still exists" in found
        assert any(f"process {proc.pid} " in line for line in found)
    finally:
        proc.kill()
        proc.wait()
        ns.remove_netns(name)
    assert not any(name in line or str(proc.pid) in line for line in ns.leaks())
