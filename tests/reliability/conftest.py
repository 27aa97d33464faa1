"""Shared pieces of the reliability suite: the CLI runner, the full pod picture, manifests.

How these tests work:
1. vmnet runs as a user runs it: `python -m vmnet ...` in a child process;
   its exit code, stdout and stderr are the contract under test.
2. "Unchanged" means the whole picture of the pod namespace: the netlink
   snapshot (links, addresses, routes, rules), every readable sysctl under
   /proc/sys/net and the nftables ruleset. Values that move by themselves
   (conntrack counters, a sysctl that reports a running count) are left out.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass

import pytest

from vmnet.core.netns import run_in
from vmnet.testing import namespaces as ns
from vmnet.testing.snapshots import NetSnapshot, snapshot

VOLATILE_SYSCTLS = re.compile(
    r"^net/(netfilter/nf_conntrack_(count|buckets)|ipv4/tcp_.*mem|ipv4/udp_mem"
    r"|core/netdev_rss_key|ipv6/route/flush|ipv4/route/flush)$"
)
BRIDGE_VM = """\
apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata:
  name: testvm
  namespace: tenant1
spec:
  domain:
    devices:
      interfaces:
      - name: default
        bridge: {}
  networks:
  - name: default
    pod: {}
"""
MASQUERADE_VM = """\
apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata:
  name: masqvm
  namespace: tenant1
spec:
  domain:
    devices:
      interfaces:
      - name: default
        masquerade: {}
        ports:
        - name: http
          port: 80
  networks:
  - name: default
    pod: {}
"""
MANIFESTS = {"bridge": BRIDGE_VM, "masquerade": MASQUERADE_VM}
CHANGES = re.compile(r"\((\d+) changes")


def vmnet(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `python -m vmnet ARGS` (rule 1); `env` adds to the environment."""
    full_env = {k: v for k, v in os.environ.items() if k != "VMNET_CRASH_AT"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "vmnet", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def changes(done: subprocess.CompletedProcess[str]) -> int:
    """The N of "(N changes" in a plug or unplug's stdout."""
    found = CHANGES.search(done.stdout)
    assert found, f"no change count in {done.stdout!r} (stderr {done.stderr!r})"
    return int(found.group(1))


def one_line_error(done: subprocess.CompletedProcess[str], command: str) -> str:
    """Assert stderr is exactly one `vmnet COMMAND: ...` line; return it."""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {done.stderr!r}"
    assert lines[0].startswith(f"vmnet {command}: "), lines[0]
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr, lines[0]
    return lines[0]


@dataclass(frozen=True)
class Picture:
    """Everything of a namespace vmnet may change (rule 2)."""

    net: NetSnapshot
    sysctls: tuple[tuple[str, str], ...]
    nft: str

    def diff(self, other: Picture) -> list[str]:
        lines = self.net.diff(other.net)
        mine, theirs = dict(self.sysctls), dict(other.sysctls)
        for key in sorted(set(mine) | set(theirs)):
            if mine.get(key) != theirs.get(key):
                lines.append(f"sysctl {key}: {mine.get(key)!r} -> {theirs.get(key)!r}")
        if self.nft != other.nft:
            lines.append(f"nft ruleset:\n{self.nft}\n  ->\n{other.nft}")
        return lines


def _read_sysctls() -> tuple[tuple[str, str], ...]:
    out = []
    for top, _, files in os.walk("/proc/sys/net"):
        for name in files:
            path = os.path.join(top, name)
            key = path[len("/proc/sys/") :]
            if VOLATILE_SYSCTLS.match(key):
                continue
            try:
                with open(path, encoding="ascii", errors="replace") as f:
                    out.append((key, f.read().strip()))
            except OSError:
                continue
    return tuple(sorted(out))


def picture(netns: str) -> Picture:
    """The full picture of `netns` (rule 2)."""
    nft = ns.exec_in(netns, ["nft", "list", "ruleset"]).stdout
    return Picture(snapshot(netns), run_in(netns, _read_sysctls), nft)


def assert_same(before: Picture, after: Picture, what: str) -> None:
    diff = before.diff(after)
    assert not diff, f"{what}: the pod changed:\n  " + "\n  ".join(diff[:40])


@pytest.fixture
def vm_files(tmp_path):
    """Name -> path of the bridge and masquerade manifests, written to tmp_path."""
    out = {}
    for name, text in MANIFESTS.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        out[name] = str(path)
    return out
