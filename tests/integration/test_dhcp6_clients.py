"""DHCPv6 and RAs against unmodified dhclient -6 and dhcpcd -6 over a real bridge.

Topology (both namespaces made here with pyroute2), as the masquerade binding leaves it:
  pod ns: bridge k6t-eth0 (02:00:00:00:00:00, fd10:0:2::1/120, link-local fe80::ff:fe00:0)
          with port srv0            <- veth ->  guest ns: eth0 (the VM's MAC)
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from ipaddress import IPv6Address, IPv6Interface

import pytest
from pyroute2 import NetNS, netns

from vmnet.core.addr import MacAddress
from vmnet.core.errors import ConfigError, DriverError
from vmnet.protocols.dhcp6.config import Dhcp6Config
from vmnet.protocols.dhcp6.responder import Responder6
from vmnet.serve.dhcp6 import Endpoint6, open_endpoint6, serve6
from vmnet.testing.dhcpclients import ClientError, write_file
from vmnet.testing.dhcpclients6 import CLIENTS6, run_client6

pytestmark = pytest.mark.netns

GUEST_MAC = MacAddress.parse("52:54:00:aa:bb:02")
BRIDGE_MAC = MacAddress.parse("02:00:00:00:00:00")
BRIDGE_LL = "fe80::ff:fe00:0"
DNS = IPv6Address("fd00::10")
SEARCH = ("svc.cluster.local", "cluster.local")
RA_INTERVAL = 1.0


# ---- the lab


def wait_for(what: str, check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


def ip(ns: str, *args: str) -> str:
    return subprocess.run(
        ["ip", "-n", ns, *args], check=True, capture_output=True, text=True
    ).stdout


def link_local_ready(ns: str, ifname: str) -> bool:
    out = ip(ns, "-6", "addr", "show", "dev", ifname, "scope", "link")
    return "fe80::" in out and "tentative" not in out


class Lab6:
    """Two namespaces, a bridge and a veth; `start(config)` serves DHCPv6 + RAs on the bridge."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.pod, self.guest = f"vmnet-d6p-{tag}", f"vmnet-d6g-{tag}"
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.endpoints: list[Endpoint6] = []
        self.resolv_dir = os.path.join("/etc/netns", self.guest)
        for name in (self.pod, self.guest):
            netns.create(name)
        os.makedirs(self.resolv_dir)
        write_file(os.path.join(self.resolv_dir, "resolv.conf"), "# vmnet dhcp6 test\n")
        with NetNS(self.pod) as ns:
            ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")
            ns.link("add", ifname="k6t-eth0", kind="bridge", address=str(BRIDGE_MAC))
            br = ns.link_lookup(ifname="k6t-eth0")[0]
            ns.addr("add", index=br, address="fd10:0:2::1", prefixlen=120)
            ns.link(
                "add", ifname="srv0", kind="veth", peer={"ifname": "eth0", "net_ns_fd": self.guest}
            )
            ns.link("set", index=ns.link_lookup(ifname="srv0")[0], master=br, state="up")
            ns.link("set", index=br, state="up")
        with NetNS(self.guest) as ns:
            ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")
            eth0 = ns.link_lookup(ifname="eth0")[0]
            ns.link("set", index=eth0, address=str(GUEST_MAC), state="up")
        wait_for("the guest link-local", lambda: link_local_ready(self.guest, "eth0"))

    def start(
        self, config: Dhcp6Config, ifname: str = "k6t-eth0", wait_link_local: float = 10.0
    ) -> Responder6:
        endpoint = open_endpoint6(self.pod, ifname, wait_link_local=wait_link_local)
        self.endpoints.append(endpoint)
        responder = Responder6(config)
        self.thread = threading.Thread(
            target=serve6,
            args=([(endpoint, responder)], self.stop_event),
            kwargs={"ra_interval": RA_INTERVAL},
            daemon=True,
        )
        self.thread.start()
        return responder

    def close(self) -> None:
        self.stop_event.set()
        if self.thread is not None:
            started = time.monotonic()
            self.thread.join(timeout=2)
            assert not self.thread.is_alive(), "serve6() did not return after stop"
            assert time.monotonic() - started < 0.5
        for endpoint in self.endpoints:
            endpoint.close()
        shutil.rmtree(self.resolv_dir, ignore_errors=True)
        for name in (self.guest, self.pod):
            try:
                netns.remove(name)
            except OSError as err:
                if err.errno != errno.ENOENT:
                    raise


@pytest.fixture
def lab() -> Iterator[Lab6]:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    made = Lab6()
    try:
        yield made
    finally:
        made.close()


def config(**over: object) -> Dhcp6Config:
    base: dict[str, object] = {
        "client_mac": GUEST_MAC,
        "address": IPv6Interface("fd10:0:2::2/120"),
        "server_mac": BRIDGE_MAC,
        "dns": (DNS,),
        "search": SEARCH,
        "mtu": 1400,
    }
    return Dhcp6Config(**(base | over))  # type: ignore[arg-type]


# ---- tests


@pytest.mark.parametrize("client", CLIENTS6)
def test_client_gets_the_address_a_default_route_and_dns(lab: Lab6, client: str) -> None:
    responder = lab.start(config())
    lease = run_client6(client, lab.guest, "eth0", timeout=20)
    assert lease.address == IPv6Address("fd10:0:2::2")
    assert lease.dns == (DNS,)
    assert lease.search == SEARCH
    assert (lease.preferred_lifetime, lease.valid_lifetime) == (86313600, 86313600)
    assert lease.server_id == bytes.fromhex("00030001") + BRIDGE_MAC.packed
    assert "inet6 fd10:0:2::2/" in ip(lab.guest, "-6", "addr", "show", "dev", "eth0")
    wait_for(
        "the RA default route",
        lambda: f"default via {BRIDGE_LL} dev eth0" in ip(lab.guest, "-6", "route"),
    )
    routes = ip(lab.guest, "-6", "route").splitlines()
    default = next(r for r in routes if r.startswith("default"))
    assert "proto ra" in default and "mtu 1400" in default
    assert any(r.startswith("fd10:0:2::/120 dev eth0") for r in routes)
    assert responder.stats.replied >= 1 and responder.stats.ra_sent >= 1
    assert responder.stats.ignored_foreign == 0 and responder.stats.dropped_malformed == 0
    if client == "dhcpcd":  # dhcpcd waits for the RA's M flag, asking with an RS
        assert responder.stats.rs_received >= 1 and responder.stats.advertised >= 1


def test_dhclient_writes_the_dns_to_the_guest_resolv_conf(lab: Lab6) -> None:
    lab.start(config())
    run_client6("dhclient", lab.guest, "eth0", timeout=20)
    with open(os.path.join(lab.resolv_dir, "resolv.conf")) as f:
        text = f.read()
    assert f"nameserver {DNS}" in text
    assert "svc.cluster.local" in text


STALE_LEASE6 = """lease6 {
  interface "eth0";
  ia-na 00:aa:bb:02 {
    starts 1700000000;
    renew 43156800;
    rebind 69050880;
    iaaddr fd10:0:2::77 {
      starts 1700000000;
      preferred-life 4294967295;
      max-life 4294967295;
    }
  }
  option dhcp6.server-id 0:3:0:1:2:0:0:0:0:0;
}
"""


def test_dhclient_with_a_stale_lease_is_told_not_on_link_and_takes_the_lease(lab: Lab6) -> None:
    responder = lab.start(config())
    lease = run_client6("dhclient", lab.guest, "eth0", timeout=20, lease_file_text=STALE_LEASE6)
    assert responder.stats.not_on_link >= 1
    assert lease.address == IPv6Address("fd10:0:2::2")
    assert "fd10:0:2::77" not in ip(lab.guest, "-6", "addr")


@pytest.mark.parametrize("client", CLIENTS6)
def test_foreign_mac_gets_nothing(lab: Lab6, client: str) -> None:
    responder = lab.start(config(client_mac=MacAddress.parse("52:54:00:aa:bb:99")))
    with pytest.raises(ClientError, match="no DHCPv6 lease"):
        run_client6(client, lab.guest, "eth0", timeout=5)
    assert responder.stats.ignored_foreign >= 1
    assert responder.stats.advertised == 0 and responder.stats.replied == 0
    assert "fd10:0:2::2" not in ip(lab.guest, "-6", "addr")


def test_ra_waits_for_the_link_local_then_goes_out(lab: Lab6) -> None:
    with NetNS(lab.pod) as ns:
        ns.link("add", ifname="k6t-late", kind="bridge", address="02:00:00:00:00:01")
        ns.link("set", index=ns.link_lookup(ifname="k6t-late")[0], state="up")
    responder = lab.start(config(), ifname="k6t-late", wait_link_local=0)
    wait_for("deferred RAs", lambda: responder.stats.ra_deferred >= 2)
    assert responder.stats.ra_sent == 0
    with NetNS(lab.pod) as ns:  # a port with a carrier: the bridge gets its link-local
        ns.link("add", ifname="late0", kind="veth", peer={"ifname": "late1"})
        ns.link("set", index=ns.link_lookup(ifname="late1")[0], state="up")
        late0 = ns.link_lookup(ifname="late0")[0]
        ns.link("set", index=late0, master=ns.link_lookup(ifname="k6t-late")[0], state="up")
    wait_for("an RA", lambda: responder.stats.ra_sent >= 1)


def test_open_endpoint6_errors(lab: Lab6) -> None:
    with pytest.raises(DriverError, match="dhcp6 bind nope0: ENODEV"):
        open_endpoint6(lab.pod, "nope0")
    with NetNS(lab.pod) as ns:
        ns.link("add", ifname="k6t-down", kind="bridge")
        ns.link("add", ifname="k6t-dark", kind="bridge")
        ns.link("set", index=ns.link_lookup(ifname="k6t-dark")[0], state="up")
    with pytest.raises(DriverError, match="dhcp6 bind k6t-down: ENETDOWN"):
        open_endpoint6(lab.pod, "k6t-down")
    with pytest.raises(DriverError, match="dhcp6 link-local k6t-dark: EADDRNOTAVAIL"):
        open_endpoint6(lab.pod, "k6t-dark", wait_link_local=0.3)
    with pytest.raises(ConfigError):
        open_endpoint6("vmnet-no-such-ns", "k6t-eth0")
    with pytest.raises(ConfigError):
        open_endpoint6(lab.pod, "x" * 16)
    with pytest.raises(ConfigError, match="ra_interval"):
        serve6([], threading.Event(), ra_interval=0)
    with pytest.raises(ConfigError, match="client"):
        run_client6("udhcpc", lab.guest, "eth0")
