"""DISCOVERs captured from the real clients (busybox 1.35 udhcpc, dhclient 4.4.3, dhcpcd 9.4.1)."""

from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

import pytest
from scapy.layers.dhcp import BOOTP, DHCP

from vmnet.core.addr import MacAddress
from vmnet.protocols.dhcp4.codec import decode, encode
from vmnet.protocols.dhcp4.config import DhcpConfig
from vmnet.protocols.dhcp4.responder import SingleLeaseResponder

CAPTURES = Path(__file__).parent / "captures" / "test_dhcp_real_clients"
MAC = MacAddress.parse("52:54:00:aa:bb:01")
PRL = {
    "udhcpc": (1, 3, 6, 12, 15, 26, 28, 42, 119, 121),
    "dhclient": (1, 28, 3, 15, 6, 119, 12, 26, 121, 42),
    "dhcpcd": (1, 121, 3, 6, 12, 15, 26, 28, 33, 42, 51, 54, 58, 59, 119),
}
CONFIG = DhcpConfig(
    MAC,
    IPv4Interface("10.11.0.5/24"),
    IPv4Address("169.254.75.10"),
    router=IPv4Address("10.11.0.1"),
    dns=(IPv4Address("10.96.0.10"),),
    search=("ns1.svc.cluster.local", "svc.cluster.local", "cluster.local"),
    hostname="vm-test",
    mtu=1400,
)


@pytest.mark.parametrize("client", sorted(PRL))
def test_real_discover_decodes_like_scapy(client: str) -> None:
    data = (CAPTURES / f"{client}_discover.bin").read_bytes()
    msg = decode(data)
    assert msg.message_type == 1 and msg.client_mac == MAC
    assert msg.parameter_request_list == PRL[client]
    scapy_opts = [o for o in BOOTP(data)[DHCP].options if isinstance(o, tuple)]
    assert next(o[0] for o in scapy_opts) == "message-type"
    assert len(scapy_opts) == len(msg.options)
    assert BOOTP(data).xid == msg.xid


@pytest.mark.parametrize("client", sorted(PRL))
def test_offer_to_real_discover_follows_prl_and_fits(client: str) -> None:
    msg = decode((CAPTURES / f"{client}_discover.bin").read_bytes())
    out = SingleLeaseResponder(CONFIG).respond(msg)
    assert out is not None and out.message.xid == msg.xid
    codes = [c for c, _ in out.message.options]
    assert codes[:3] == [53, 54, 51]
    requested = [c for c in PRL[client] if c in codes and c not in (51, 54)]
    assert codes[3 : 3 + len(requested)] == requested
    assert len(encode(out.message)) <= max(msg.max_message_size or 576, 576) - 28
    assert out.dest_ip == IPv4Address("10.11.0.5") and out.dest_mac == MAC
