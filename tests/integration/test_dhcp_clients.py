"""The DHCP server against unmodified udhcpc, dhclient and dhcpcd over a real bridge.

Topology (both namespaces made here with pyroute2):
  server ns: bridge k6t-eth0 (169.254.75.10/32, the bridge binding's server id)
             with port srv0            <- veth ->  client ns: eth0 (the "guest")
"""

from __future__ import annotations

import errno
import os
import re
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest
from pyroute2 import NetNS, netns

from vmnet.core.addr import MacAddress
from vmnet.core.errors import ConfigError, DriverError
from vmnet.core.netns import run_in
from vmnet.protocols.dhcp4.config import DhcpConfig, Route
from vmnet.protocols.dhcp4.responder import SingleLeaseResponder
from vmnet.serve.dhcp4 import open_endpoint, serve
from vmnet.testing.dhcpclients import CLIENTS, ClientError, ClientSession, run_client

pytestmark = pytest.mark.netns

GUEST_MAC = MacAddress.parse("52:54:00:aa:bb:01")
SERVER_ID = IPv4Address("169.254.75.10")
SEARCH = ("ns1.svc.cluster.local", "svc.cluster.local", "cluster.local")


def pod_config(**overrides: object) -> DhcpConfig:
    fields: dict[str, object] = {
        "client_mac": GUEST_MAC,
        "address": IPv4Interface("10.11.0.5/24"),
        "server_id": SERVER_ID,
        "router": IPv4Address("10.11.0.1"),
        "dns": (IPv4Address("10.96.0.10"),),
        "search": SEARCH,
        "hostname": "vm-test",
        "mtu": 1400,
        "routes": (Route(IPv4Network("10.200.0.0/16"), IPv4Address("10.11.0.1")),),
    }
    return DhcpConfig(**(fields | overrides))  # type: ignore[arg-type]


CALICO = {
    "address": IPv4Interface("10.244.1.7/32"),
    "router": IPv4Address("169.254.1.1"),
    "routes": (
        Route(IPv4Network("0.0.0.0/0"), IPv4Address("169.254.1.1")),
        Route(IPv4Network("169.254.1.1/32"), None),
    ),
}


class Lab:
    """Two namespaces, a bridge and a veth; `start(config)` serves DHCP on the bridge."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.server_ns, self.client_ns = f"vmnet-dhs-{tag}", f"vmnet-dhc-{tag}"
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.endpoint = None
        self.responder: SingleLeaseResponder | None = None
        for name in (self.server_ns, self.client_ns):
            netns.create(name)
        with NetNS(self.server_ns) as ns:
            ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")
            ns.link("add", ifname="k6t-eth0", kind="bridge")
            br = ns.link_lookup(ifname="k6t-eth0")[0]
            ns.addr("add", index=br, address=str(SERVER_ID), prefixlen=32)
            ns.link(
                "add",
                ifname="srv0",
                kind="veth",
                peer={"ifname": "eth0", "net_ns_fd": self.client_ns},
            )
            port = ns.link_lookup(ifname="srv0")[0]
            ns.link("set", index=port, master=br, state="up")
            ns.link("set", index=br, state="up")
        with NetNS(self.client_ns) as ns:
            ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")
            eth0 = ns.link_lookup(ifname="eth0")[0]
            ns.link("set", index=eth0, address=str(GUEST_MAC), state="up")

    def start(self, config: DhcpConfig) -> SingleLeaseResponder:
        self.endpoint = open_endpoint(self.server_ns, "k6t-eth0")
        self.responder = SingleLeaseResponder(config)
        self.thread = threading.Thread(
            target=serve, args=([(self.endpoint, self.responder)], self.stop_event), daemon=True
        )
        self.thread.start()
        return self.responder

    def client_ip(self, *args: str) -> str:
        return subprocess.run(
            ["ip", "-n", self.client_ns, "-4", *args], check=True, capture_output=True, text=True
        ).stdout

    def close(self) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout=2)
            assert not self.thread.is_alive(), "serve() did not return after stop"
        if self.endpoint is not None:
            self.endpoint.close()
        for name in (self.client_ns, self.server_ns):
            try:
                netns.remove(name)
            except OSError as err:
                if err.errno != errno.ENOENT:
                    raise


@pytest.fixture
def lab() -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    made = Lab()
    try:
        yield made
    finally:
        made.close()


@pytest.mark.parametrize("client", CLIENTS)
def test_client_gets_the_exact_lease(lab: Lab, client: str) -> None:
    responder = lab.start(pod_config())
    lease = run_client(client, lab.client_ns, "eth0", timeout=20)
    assert lease.address == IPv4Interface("10.11.0.5/24")
    assert lease.router == IPv4Address("10.11.0.1")
    assert lease.dns == (IPv4Address("10.96.0.10"),)
    assert lease.search == SEARCH
    assert lease.domain == "ns1.svc.cluster.local"
    assert lease.hostname == "vm-test"
    assert lease.mtu == 1400
    assert lease.server_id == SERVER_ID
    assert lease.lease_time == 86313600
    assert set(lease.routes) == {
        (IPv4Network("169.254.75.10/32"), IPv4Address("0.0.0.0")),
        (IPv4Network("10.200.0.0/16"), IPv4Address("10.11.0.1")),
        (IPv4Network("0.0.0.0/0"), IPv4Address("10.11.0.1")),
    }
    assert "10.11.0.5/24" in lab.client_ip("addr", "show", "dev", "eth0")
    routes = lab.client_ip("route")
    if client == "dhcpcd":  # dhcpcd 9 puts the MTU on its routes, not the link
        assert re.search(r"default via 10\.11\.0\.1 dev eth0 .*mtu 1400", routes)
    else:
        assert "mtu 1400" in lab.client_ip("link", "show", "dev", "eth0")
    assert "default via 10.11.0.1" in routes
    assert "10.200.0.0/16 via 10.11.0.1" in routes
    assert "169.254.75.10 dev eth0" in routes
    assert responder.stats.offered >= 1 and responder.stats.acked >= 1


@pytest.mark.parametrize("client", CLIENTS)
def test_calico_pod_gets_a_working_default_route(lab: Lab, client: str) -> None:
    lab.start(pod_config(**CALICO))
    lease = run_client(client, lab.client_ns, "eth0", timeout=20)
    assert lease.address == IPv4Interface("10.244.1.7/32")
    routes = lab.client_ip("route")
    assert "default via 169.254.1.1 dev eth0" in routes
    assert "169.254.1.1 dev eth0" in routes
    assert "10.244.1.7/32" in lab.client_ip("addr", "show", "dev", "eth0")


STALE_LEASE = """lease {
  interface "eth0";
  fixed-address 10.11.0.99;
  option subnet-mask 255.255.255.0;
  option dhcp-server-identifier 169.254.75.10;
  renew 4 2037/01/01 00:00:01;
  rebind 4 2037/01/01 00:00:01;
  expire 4 2037/01/01 00:00:01;
}
"""


def test_dhclient_init_reboot_with_stale_address_is_nakked(lab: Lab) -> None:
    responder = lab.start(pod_config())
    lease = run_client("dhclient", lab.client_ns, "eth0", timeout=20, lease_file_text=STALE_LEASE)
    assert responder.stats.nak >= 1
    assert lease.address == IPv4Interface("10.11.0.5/24")
    assert "10.11.0.99" not in lab.client_ip("addr", "show", "dev", "eth0")


@pytest.mark.parametrize("config", [{}, CALICO], ids=["subnet", "calico"])
def test_udhcpc_renewal_is_unicast_to_the_server_id_and_answered(
    lab: Lab, config: dict[str, object]
) -> None:
    """SIGUSR1 makes udhcpc RENEW by unicast to the server id, reachable only
    through the on-link /32 route that option 121 installed.

    udhcpc sends that request from a short-lived connected socket; an ACK
    arriving before the socket is closed is lost, and udhcpc then rebinds by
    broadcast. So the assertions are on what the server saw and answered.
    """
    responder = lab.start(pod_config(**config))
    session = ClientSession("udhcpc", lab.client_ns, "eth0", timeout=20)
    try:
        first = session.wait_lease(20)
        assert "169.254.75.10 dev eth0" in lab.client_ip("route")
        before = (responder.stats.received_unicast, responder.stats.answered_unicast)
        renewed = session.renew(timeout=10)
    finally:
        session.stop()
    assert renewed.address == first.address
    assert before == (0, 0)
    assert responder.stats.received_unicast == 1
    assert responder.stats.answered_unicast == 1
    assert responder.stats.nak == 0


def test_foreign_mac_gets_nothing(lab: Lab) -> None:
    responder = lab.start(pod_config(client_mac=MacAddress.parse("52:54:00:aa:bb:99")))
    with pytest.raises(ClientError, match="no lease"):
        run_client("udhcpc", lab.client_ns, "eth0", timeout=3)
    assert responder.stats.ignored_foreign >= 2
    assert responder.stats.offered == 0 and responder.stats.acked == 0
    assert "10.11.0.5" not in lab.client_ip("addr")


def test_open_endpoint_errors(lab: Lab) -> None:
    with pytest.raises(DriverError, match="dhcp bind nope0: ENODEV"):
        open_endpoint(lab.server_ns, "nope0")
    with NetNS(lab.server_ns) as ns:
        ns.link("add", ifname="k6t-down", kind="bridge")
    with pytest.raises(DriverError, match="dhcp bind k6t-down: ENETDOWN"):
        open_endpoint(lab.server_ns, "k6t-down")
    with pytest.raises(ConfigError):
        open_endpoint("vmnet-no-such-ns", "k6t-eth0")
    with pytest.raises(ConfigError):
        open_endpoint(lab.server_ns, "x" * 16)


def send_from_client(lab: Lab, payload: bytes) -> None:
    def send() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
            sock.sendto(payload, ("255.255.255.255", 67))

    run_in(lab.client_ns, send)


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_garbage_is_counted_and_the_server_keeps_serving(lab: Lab) -> None:
    responder = lab.start(pod_config())
    with NetNS(lab.client_ns) as ns:
        ns.addr("add", index=ns.link_lookup(ifname="eth0")[0], address="10.11.0.50", prefixlen=24)
    for junk in (b"", b"x" * 100, bytes(236) + b"\x63\x82\x53\x63" + bytes([53, 9])):
        send_from_client(lab, junk)
    wait_for(lambda: responder.stats.dropped_malformed == 3)
    subprocess.run(["ip", "-n", lab.client_ns, "addr", "flush", "dev", "eth0"], check=True)
    assert run_client("udhcpc", lab.client_ns, "eth0", timeout=20).address == IPv4Interface(
        "10.11.0.5/24"
    )


def test_one_serve_loop_serves_two_bridges_in_one_netns(lab: Lab) -> None:
    second_ns = f"{lab.client_ns}-2"
    mac2 = MacAddress.parse("52:54:00:aa:bb:02")
    netns.create(second_ns)
    try:
        with NetNS(lab.server_ns) as ns:
            ns.link("add", ifname="k6t-net1", kind="bridge")
            br = ns.link_lookup(ifname="k6t-net1")[0]
            ns.addr("add", index=br, address="169.254.75.11", prefixlen=32)
            ns.link(
                "add", ifname="srv1", kind="veth", peer={"ifname": "eth1", "net_ns_fd": second_ns}
            )
            ns.link("set", index=ns.link_lookup(ifname="srv1")[0], master=br, state="up")
            ns.link("set", index=br, state="up")
        with NetNS(second_ns) as ns:
            ns.link("set", index=ns.link_lookup(ifname="eth1")[0], address=str(mac2), state="up")
        first = SingleLeaseResponder(pod_config())
        second = SingleLeaseResponder(
            pod_config(
                client_mac=mac2,
                address=IPv4Interface("192.168.7.9/24"),
                router=IPv4Address("192.168.7.1"),
                server_id=IPv4Address("169.254.75.11"),
                routes=(),
            )
        )
        endpoints = [
            open_endpoint(lab.server_ns, "k6t-eth0"),
            open_endpoint(lab.server_ns, "k6t-net1"),
        ]
        thread = threading.Thread(
            target=serve, args=(list(zip(endpoints, (first, second), strict=False)), lab.stop_event)
        )
        thread.start()
        try:
            lease2 = run_client("udhcpc", second_ns, "eth1", timeout=20)
            lease1 = run_client("udhcpc", lab.client_ns, "eth0", timeout=20)
        finally:
            lab.stop_event.set()
            thread.join(timeout=2)
            for endpoint in endpoints:
                endpoint.close()
        assert not thread.is_alive()
        assert lease1.address == IPv4Interface("10.11.0.5/24") and lease1.server_id == SERVER_ID
        assert lease2.address == IPv4Interface("192.168.7.9/24")
        assert lease2.server_id == IPv4Address("169.254.75.11")
        assert first.stats.ignored_foreign == 0 and second.stats.ignored_foreign == 0
    finally:
        netns.remove(second_ns)
