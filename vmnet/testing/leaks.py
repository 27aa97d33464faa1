"""What a whole test run left on the machine: namespaces and helper processes.

`python -m vmnet.testing.leaks --save FILE` records what exists before a run;
`python -m vmnet.testing.leaks --check FILE` (after it) lists every network
namespace and every networking helper process (qemu, DHCP clients and
servers, libvirtd, passt, relays) that did not exist before, and exits 1 if
there is any. The per-session fixture `vmnet_leak_check` covers what one
pytest process made; this covers everything, whoever made it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

NETNS_DIR = "/run/netns"
WATCHED = (
    "qemu-system",
    "udhcpc",
    "dhclient",
    "dhcpcd",
    "dnsmasq",
    "libvirtd",
    "passt",
    "virtqemud",
    "tcpdump",
    "ipconfig",
)


def current() -> dict[str, list[str]]:
    try:
        namespaces = sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        namespaces = []
    procs = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        name = os.path.basename(argv[0].decode(errors="replace")) if argv and argv[0] else ""
        if name.startswith(WATCHED):
            procs.append(f"{pid} {name}")
    return {"netns": namespaces, "processes": sorted(procs)}


def new_since(before: dict[str, list[str]]) -> list[str]:
    now = current()
    out = [f"network namespace {n}" for n in now["netns"] if n not in before["netns"]]
    out += [f"process {p}" for p in now["processes"] if p not in before["processes"]]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vmnet.testing.leaks")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--save", metavar="FILE")
    group.add_argument("--check", metavar="FILE")
    args = parser.parse_args(argv)
    if args.save:
        with open(args.save, "w") as f:
            json.dump(current(), f)
        return 0
    with open(args.check) as f:
        before = json.load(f)
    left = new_since(before)
    for line in left:
        print(f"left behind: {line}", file=sys.stderr)
    if left:
        return 1
    print("nothing left behind: no new network namespace, no helper process")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
