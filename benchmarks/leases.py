"""What a VM owner waits for: from a DHCP client's start to its address configured.

`lease_ms_<client>_<server>`: real clients (busybox udhcpc, ISC dhclient,
dhcpcd, systemd-networkd), each a fresh process with no lease of its own (INIT), in the
load-generator namespace of `benchmarks.dhcp` (a veth on the pod's bridge,
with the VM's MAC), served by `vmnet dhcp` and by dnsmasq with the same
lease (and the in-subnet address dnsmasq needs). The time runs from
spawning the client to the moment its hook script, run after the client
configured the address, wrote its dump (that file's mtime); for networkd,
to the moment its link state file says the link is configured. Servers take
turns round by round, never at once; the clients take turns within a round.
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import Any

from benchmarks import dhcp, stats
from vmnet.testing import dhcpclients
from vmnet.testing.cni import Node
from vmnet.testing.dhcpclients import ClientSession

CLIENTS = dhcpclients.CLIENTS
SERVERS = ("vmnet", "dnsmasq")


def _lease_ms(client: str, setup: dhcp.Setup) -> float:
    subprocess.run(["ip", "-n", setup.client_ns, "-4", "addr", "flush", "dev", "cli0"], check=True)
    start = time.time()
    session = ClientSession(client, setup.client_ns, "cli0", timeout=20, oneshot=True)
    try:
        path = session.wait_lease_file(20)
        return (os.stat(path).st_mtime - start) * 1000
    finally:
        session.stop()


def measure(node: Node, rounds: int) -> dict[str, Any]:
    samples: dict[str, list[float]] = {f"{c}_{s}": [] for c in CLIENTS for s in SERVERS}
    with dhcp.topology(node) as setup:
        gen = dhcp.generator(setup)
        try:
            for i in range(rounds):
                for server in SERVERS if i % 2 == 0 else tuple(reversed(SERVERS)):
                    serve = dhcp.vmnet_server if server == "vmnet" else dhcp.dnsmasq_server
                    with serve(setup) as proc:
                        dhcp.wait_ready(gen, proc, server)
                        for client in CLIENTS:
                            samples[f"{client}_{server}"].append(_lease_ms(client, setup))
        finally:
            gen.sock.close()
    out: dict[str, Any] = {f"lease_ms_{key}": stats.p50(v) for key, v in samples.items()}
    for client in CLIENTS:
        out[f"ratio_lease_{client}_vmnet_vs_dnsmasq"] = stats.ratio(
            out[f"lease_ms_{client}_vmnet"], out[f"lease_ms_{client}_dnsmasq"]
        )
    return out
