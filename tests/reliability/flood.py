"""Send foreign DHCPDISCOVERs as fast as one process can, for a bounded time.

    python flood.py IFNAME DEST_MAC SECONDS

Runs inside an attacker namespace (`ip netns exec`). Frames are complete and
valid - Ethernet to DEST_MAC (the pod bridge, so the bridge delivers them to
the DHCP server and does not flood them to the VM's tap), IPv4 0.0.0.0 ->
255.255.255.255, UDP 68 -> 67, a DISCOVER from one of 256 foreign MACs (the
same MAC in the Ethernet source and chaddr). Prints one JSON line:
{"sent": N, "seconds": S}.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from ipaddress import IPv4Address

from vmnet.core.addr import MacAddress
from vmnet.protocols.dhcp4.codec import DhcpMessage, encode, frame_ipv4_udp

ETH_P_IP = 0x0800


def frames(dest: MacAddress, count: int = 256) -> list[bytes]:
    out = []
    for i in range(count):
        mac = bytes([0x02, 0xBA, 0xD0, 0x00, i >> 8, i & 0xFF])
        msg = DhcpMessage(
            op=1,
            htype=1,
            hlen=6,
            hops=0,
            xid=0x1000 + i,
            secs=0,
            flags=0x8000,
            ciaddr=IPv4Address(0),
            yiaddr=IPv4Address(0),
            siaddr=IPv4Address(0),
            giaddr=IPv4Address(0),
            chaddr=mac + bytes(10),
            sname=bytes(64),
            file=bytes(128),
            options=((53, b"\x01"), (55, bytes([1, 3, 6, 15]))),
        )
        ip = frame_ipv4_udp(IPv4Address(0), IPv4Address("255.255.255.255"), (68, 67), encode(msg))
        out.append(dest.packed + mac + ETH_P_IP.to_bytes(2, "big") + ip)
    return out


def main(ifname: str, dest: str, seconds: float) -> None:
    batch = frames(MacAddress.parse(dest))
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((ifname, 0))
    send = sock.send
    sent = 0
    start = time.monotonic()
    deadline = start + seconds
    while time.monotonic() < deadline:
        for frame in batch:
            try:
                send(frame)
            except BlockingIOError:
                continue
            except OSError:
                continue
            sent += 1
    print(json.dumps({"sent": sent, "seconds": time.monotonic() - start}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]))
