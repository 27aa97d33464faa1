"""Live-migration downtime: `vmnet.testing.migration.live_migrate`, several runs per binding.

Each run is a fresh node, two fresh pods and a fresh guest (kernel and
busybox under qemu TCG): qemu's own migration from pod A's qemu into pod
B's while a client on the node holds one TCP connection to the guest (a
line every 20 ms) and pings it every 10 ms (docs/migration.md). Reported
per binding, median and worst over the runs: qemu's own downtime figure,
the longest gap between two ping replies, and the longest stall of the TCP
echo. The bindings take turns run by run.
"""

from __future__ import annotations

import sys
from typing import Any

from benchmarks import stats
from vmnet.testing.cni import Node
from vmnet.testing.migration import live_migrate

BINDINGS = ("bridge", "masquerade")


def measure(runs: int) -> dict[str, Any]:
    seen: dict[str, dict[str, list[float]]] = {
        b: {"qemu": [], "ping": [], "tcp": []} for b in BINDINGS
    }
    for _ in range(runs):
        for binding in BINDINGS:
            node = Node()
            try:
                moved = live_migrate(node, binding)
            finally:
                node.close()
            seen[binding]["qemu"].append(moved.qemu.downtime_ms)
            seen[binding]["ping"].append(moved.ping_gap_ms)
            seen[binding]["tcp"].append(moved.tcp_stall_ms)
    out: dict[str, Any] = {"migration_runs": runs}
    for binding, kinds in seen.items():
        for kind, values in kinds.items():
            out[f"migration_{binding}_{kind}_ms_p50"] = stats.p50(values)
            out[f"migration_{binding}_{kind}_ms_max"] = max(values)
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import os

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--runs", type=int, default=5, help="migrations per binding (default 5)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        sys.stderr.write("benchmarks.migration: needs root (network namespaces)\n")
        return 2
    res = measure(args.runs)
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"{args.runs} live migrations per binding (ms: median / worst)")
    print("binding      qemu downtime     longest ping gap   TCP stall")
    for b in BINDINGS:
        cells = [
            f"{res[f'migration_{b}_{k}_ms_p50']:6.0f} / {res[f'migration_{b}_{k}_ms_max']:<6.0f}"
            for k in ("qemu", "ping", "tcp")
        ]
        print(f"{b:<12} " + "   ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
