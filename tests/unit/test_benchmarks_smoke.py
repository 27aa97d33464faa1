"""benchmarks/run.py reports every key, and the fast paths it drove stay exact."""

import ipaddress
import json
import math
import os
import random
import signal
import socket
import struct
import subprocess
import sys

import pytest

from benchmarks import run
from vmnet.core.addr import MacAddress
from vmnet.protocols.dhcp4 import codec
from vmnet.protocols.dhcp4.config import DhcpConfig
from vmnet.protocols.dhcp4.exchange import Exchange
from vmnet.protocols.dhcp4.responder import SingleLeaseResponder
from vmnet.serve import dhcp4 as server
from vmnet.testing.dhcpclients import CLIENTS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REQUIRED = [
    "plug_bridge_ms_p50",
    "plug_masquerade_ms_p50",
    "plug_floor_ms_p50",
    "plug_ip_cli_ms_p50",
    "plug_16nic_ms_p50",
    "pods_100_s",
    "dhcp_vmnet_rps",
    "dhcp_dnsmasq_rps",
    "dhcp_vmnet_p99_ms",
    "dhcp_rss_mb",
    "import_ms",
    "ratio_bridge_vs_floor",
    "ratio_ip_cli_vs_bridge",
    "ratio_16nic_vs_1nic",
    "ratio_dhcp_vmnet_vs_dnsmasq",
    "cni_add_ms_p50",
    "cni_bridge_ref_add_ms_p50",
    "ratio_cni_add_vs_bridge_ref",
    "on_define_domain_ms_p50",
    "sidecar_rss_mb",
    # whole processes, as installed (benchmarks/process.py)
    "cli_plug_ms_p50",
    "cli_plug_rss_mb",
    "ip_batch_ms_p50",
    "ratio_cli_plug_vs_ip_batch",
    "ratio_cli_plug_vs_cni_bridge_ref",
    "cli_version_ms_p50",
    "cli_status_ms_p50",
    "dhcp_ready_ms_p50",
    "plug_floor_pyroute2_ms_p50",
    # full DORA transactions, no cached answer (benchmarks/loadgen.py dora=True)
    "dhcp_vmnet_dora_rps",
    "dhcp_dnsmasq_dora_rps",
    "dhcp_vmnet_dora_p99_ms",
    "dhcp_dnsmasq_dora_p99_ms",
    "ratio_dhcp_dora_vmnet_vs_dnsmasq",
    # a running VM live-migrated between two pods (benchmarks/migration.py)
    *(
        f"migration_{b}_{k}_ms_{q}"
        for b in ("bridge", "masquerade")
        for k in ("qemu", "ping", "tcp")
        for q in ("p50", "max")
    ),
    # from a client's start to its address (benchmarks/leases.py)
    *(f"lease_ms_{c}_{s}" for c in CLIENTS for s in ("vmnet", "dnsmasq")),
]
MAC = MacAddress.parse("02:00:00:00:00:01")


@pytest.mark.netns
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces")
def test_run_json_has_every_required_key():
    proc = subprocess.Popen(
        [sys.executable, "benchmarks/run.py", "--tiny", "--json"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # run.py cleans up on KeyboardInterrupt
            proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    res = json.loads(out)
    for key in REQUIRED:
        assert isinstance(res[key], (int, float)) and math.isfinite(res[key]) and res[key] > 0, key
    assert set(res["nic_sweep_ms_p50"]) == {"1", "2", "4", "8", "16"}
    assert res["dhcp_vmnet_lost"] == 0 and res["machine"]["nproc"] >= 1
    assert len(res["targets"]) == len(run.TARGETS)
    table = run.targets_markdown(res)  # what docs/performance.md shows, from any run
    assert all(f"`{key}`" in table for key, *_ in run.TARGETS)


def _reference_checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def test_checksum_matches_the_rfc1071_loop():
    rng = random.Random(8)
    cases = [b"", b"\0\0", b"\xff\xff", b"\xff\xff\xff\xff", b"\x12", b"\x00\x01\xff\xfe"]
    cases += [rng.randbytes(rng.randint(0, 700)) for _ in range(3000)]
    assert [codec.checksum(c) for c in cases] == [_reference_checksum(c) for c in cases]


def test_encoded_length_is_len_of_encode():
    rng = random.Random(8)
    for _ in range(1000):
        codes = rng.sample(range(1, 254), rng.randint(0, 8))
        opts = tuple(
            (c, rng.randbytes(rng.choice([0, 1, 254, 255, 256, 510, 511, 900]))) for c in codes
        )
        assert codec.encoded_length(opts) == len(codec.encode(codec.DhcpMessage(options=opts)))


class _Wire:
    """Records what the server sends (the AF_PACKET side)."""

    def __init__(self):
        self.frames = []

    def sendto(self, packet, address):
        self.frames.append((packet, address))


def _discover(xid, secs):
    return codec.encode(
        codec.DhcpMessage(
            xid=xid,
            secs=secs,
            chaddr=MAC.packed,
            options=((53, b"\x01"), (55, bytes([1, 3, 6, 121])), (61, b"\x01" + MAC.packed)),
        )
    )


def test_retransmitted_discover_gets_the_same_offer_with_its_own_xid():
    config = DhcpConfig(
        client_mac=MAC,
        address=ipaddress.IPv4Interface("10.22.0.5/24"),
        server_id=ipaddress.IPv4Address("169.254.75.10"),
        router=ipaddress.IPv4Address("10.22.0.1"),
        mtu=1400,
    )
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.bind(("127.0.0.1", 0))
        rx.setblocking(False)
        endpoint = server.Endpoint("k6t-eth0", None, rx, _Wire())
        served = SingleLeaseResponder(config)
        exchange = Exchange(served, endpoint.ifname)
        for xid, secs in ((7, 0), (8, 3), (9, 9)):
            tx.sendto(_discover(xid, secs), rx.getsockname())
        for _ in range(3):
            assert server.serve_one(endpoint, exchange)
        assert not server.serve_one(endpoint, exchange)
        assert len(exchange.offers) == 1
        assert (served.stats.received, served.stats.offered) == (3, 3)
        fresh = SingleLeaseResponder(config)
        for (packet, address), xid, secs in zip(
            endpoint.tx.frames, (7, 8, 9), (0, 3, 9), strict=False
        ):
            reply = fresh.respond(codec.decode(_discover(xid, secs)))
            want = codec.frame_ipv4_udp(
                reply.src_ip, reply.dest_ip, (67, 68), codec.encode(reply.message)
            )
            assert packet == want
            assert address == ("k6t-eth0", 0x0800, 0, 0, MAC.packed)
    finally:
        rx.close()
        tx.close()


def test_the_documented_targets_table_is_the_saved_runs() -> None:
    """docs/performance.md's targets table is generated from docs/performance.json
    (`benchmarks/run.py --save`), never written by hand."""
    with open(os.path.join(ROOT, "docs", "performance.json")) as f:
        saved = json.load(f)
    with open(os.path.join(ROOT, "docs", "performance.md")) as f:
        doc = f.read()
    assert run.targets_markdown(saved) in doc
    assert not saved["quick"]  # a full run


@pytest.mark.netns
@pytest.mark.qemu
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces")
def test_the_migration_benchmark_reports_median_and_worst():
    """`python -m benchmarks.migration` (docs/migration.md's command), one run."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.migration", "--runs", "1", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    res = json.loads(done.stdout)
    assert res["migration_runs"] == 1
    for binding in ("bridge", "masquerade"):
        for kind in ("qemu", "ping", "tcp"):
            median, worst = (res[f"migration_{binding}_{kind}_ms_{q}"] for q in ("p50", "max"))
            assert 0 < median <= worst
