"""Every code block of README.md and docs/ is run, or checked, by this test.

Each fenced block is preceded by a directive saying how it is tested:

- `<!-- docs-test: run -->`: run as written. `sh` blocks run in bash (`set
  -e`, background jobs killed at the end), `python` blocks in a fresh
  interpreter, both as root in a sandbox: a directory holding `vm.yaml`
  (a bridge VM) and `domain.xml`, a pod from the real CNI bridge plugin
  whose process is `$POD_PID` (its mount namespace shows the pod's own
  resolv.conf), `POD` its namespace name, `/run/vmnet/vm1` removed after,
  and a `vmnet` command every user can run (Debian's python, as a node
  installs it), so that `setpriv --reuid=107` works as in the cluster.
- `<!-- docs-test: synopsis -->`: every `vmnet <command>` line's options
  exist in that command's `--help`, and every option of `--help` is shown.
- `<!-- docs-test: elsewhere PATH::NAME -->`: a test that runs exactly these
  commands or this API; the test must exist and name the block's first word.
- `<!-- docs-test: text -->`: not a command (a diagram, a wire format).

A block without a directive fails, so a new example cannot go untested.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.integration.conftest import BRIDGE_VM
from vmnet.testing.cni import Node, bridge_config

REPO = Path(__file__).resolve().parents[2]
PHASE2_VENV = Path(os.environ.get("VMNET_PHASE2_VENV", "/var/cache/vmnet/phase2-venv"))
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
POD_RESOLV = "nameserver 10.96.0.10\nsearch tenant1.svc.cluster.local cluster.local\n"
_BLOCK = re.compile(
    r"^(?:<!-- docs-test: (?P<how>[^>]*?) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)^```", re.M | re.S
)


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    how: str
    lang: str
    body: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def blocks() -> list[Block]:
    out = []
    for path in DOCS:
        text = path.read_text()
        for m in _BLOCK.finditer(text):
            line = text.count("\n", 0, m.start("lang")) + 1
            out.append(
                Block(path, line, (m.group("how") or "").strip(), m.group("lang"), m.group("body"))
            )
    return out


ALL = blocks()


def test_every_block_says_how_it_is_tested() -> None:
    untested = [
        b.id for b in ALL if b.how.split(" ")[0] not in ("run", "synopsis", "elsewhere", "text")
    ]
    assert not untested, f"blocks without a docs-test directive: {untested}"
    assert len(ALL) >= 15


@pytest.fixture
def sandbox() -> Iterator[dict[str, str]]:
    """The directory, pod and environment a `run` block gets."""
    node = Node()
    work = Path(tempfile.mkdtemp(prefix="vmnet-docs-"))
    pod_process = None
    try:
        os.chmod(work, 0o755)
        shutil.copytree(REPO / "vmnet", work / "lib" / "vmnet")
        bindir = work / "bin"
        bindir.mkdir()
        wrapper = bindir / "vmnet"
        python = PHASE2_VENV / "bin" / "python"
        wrapper.write_text(f'#!/bin/sh\nPYTHONPATH={work / "lib"} exec {python} -m vmnet "$@"\n')
        wrapper.chmod(0o755)
        for plugin in ("bridge", "host-local"):  # a CNI project's own build
            shutil.copy2(f"/usr/lib/cni/{plugin}", bindir / plugin)
        (work / "tests").mkdir()
        shutil.copy2(REPO / "examples" / "test_my_cni_plugin.py", work / "tests")
        (work / "vm.yaml").write_text(BRIDGE_VM)
        from vmnet import manifest
        from vmnet.domain import skeleton, to_bytes

        vmi = manifest.parse_text(BRIDGE_VM)
        (work / "domain.xml").write_bytes(to_bytes(skeleton(vmi.name, [])))
        subprocess.run(["chmod", "-R", "a+rX", str(work)], check=True)
        pod = node.add_pod(bridge_config())
        (Path("/etc/netns") / pod.netns / "resolv.conf").write_text(POD_RESOLV)
        pod_process = subprocess.Popen(["ip", "netns", "exec", pod.netns, "sleep", "600"])
        from vmnet.testing.wait import wait_until

        wait_until(
            lambda: Path(f"/proc/{pod_process.pid}/comm").read_text().strip() == "sleep",
            timeout=10,
            what="the pod process",
        )
        env = {
            **os.environ,
            "PATH": f"{bindir}:{Path(sys.executable).parent}:{os.environ['PATH']}",
            "PYTHONPATH": str(REPO),
            "POD_PID": str(pod_process.pid),
            "POD": pod.netns,
            "POD_ADDRESS": str(pod.address),
            "HOME": str(work),
        }
        yield {"cwd": str(work), **env}
    finally:
        if pod_process is not None:
            pod_process.kill()
            pod_process.wait()
        shutil.rmtree("/run/vmnet/vm1", ignore_errors=True)
        node.close()
        shutil.rmtree(work, ignore_errors=True)


RUN = [b for b in ALL if b.how == "run"]


@pytest.mark.netns
@pytest.mark.cni("bridge", "host-local")
@pytest.mark.parametrize("block", RUN, ids=[b.id for b in RUN])
def test_run_blocks_run(block: Block, sandbox: dict[str, str]) -> None:
    cwd = sandbox.pop("cwd")
    for before in _setup_for(block):
        res = _run(before, cwd, sandbox)
        assert res.returncode == 0, (before.id, res.stdout, res.stderr)
    res = _run(block, cwd, sandbox)
    assert res.returncode == 0, f"{block.id}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"


RUN_SERVING = [b for b in RUN if b.lang == "sh" and "vmnet dhcp" in b.body]


@pytest.mark.netns
@pytest.mark.cni("bridge", "host-local")
@pytest.mark.parametrize("block", RUN_SERVING, ids=[b.id for b in RUN_SERVING])
def test_a_real_client_behind_the_tap_gets_the_pods_dns_from_the_documented_flow(
    block: Block, sandbox: dict[str, str], tmp_path: Path
) -> None:
    """While the block's `vmnet dhcp` (as UID 107 in the README) serves, udhcpc
    behind the tap gets the pod's address and the pod's own resolv.conf."""
    from tests.integration.conftest import lease_through_tap
    from vmnet.testing.wait import wait_until

    cwd = sandbox.pop("cwd")
    ready, go = tmp_path / "ready", tmp_path / "go"
    os.mkfifo(go)
    pause = f"\ntouch {ready}\nread -r _ < {go}\n"
    script = f"set -e\n{block.body}{pause}{_STOP_JOBS}"
    shell = subprocess.Popen(
        ["bash", "-c", script],
        cwd=cwd,
        env=sandbox,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: ready.exists() or shell.poll() is not None, timeout=60, what="the block")
        assert shell.poll() is None, shell.communicate()
        pod = SimpleNamespace(
            netns=sandbox["POD"], address=ipaddress.ip_interface(sandbox["POD_ADDRESS"])
        )
        lease_through_tap(pod, "/run/vmnet/vm1", tmp_path, search="tenant1.svc.cluster.local")
    finally:
        if shell.poll() is None:
            with open(go, "w") as f:
                f.write("\n")
        _, err = shell.communicate(timeout=30)
    assert shell.returncode == 0, err


def _setup_for(block: Block) -> list[Block]:
    """The `run` blocks earlier in the same file that it continues (`after`)."""
    if block.lang != "sh" or not block.body.startswith("vmnet unplug"):
        return []
    return [b for b in RUN if b.path == block.path and b.line < block.line and b.lang == "sh"][-1:]


def _run(block: Block, cwd: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    if block.lang == "python":
        argv = [sys.executable, "-c", block.body]
    else:
        script = f"set -e\n{block.body}\n{_STOP_JOBS}"
        argv = ["bash", "-c", script]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


# A background job (a server) must still be running at the end of its block and
# exit 0 on SIGTERM: once its SIGTERM handler is installed (SigCgt bit 15), it
# gets the signal, and a job that failed, or fails to stop, fails the block.
_STOP_JOBS = """
for job in $(jobs -p); do
  for _ in $(seq 100); do
    mask=$(awk '/^SigCgt/ {print $2}' /proc/$job/status 2>/dev/null || echo 0)
    (( 0x$mask & 0x4000 )) && break
    kill -0 $job 2>/dev/null || break
    sleep 0.1
  done
  kill -TERM $job 2>/dev/null || true
  wait $job || { echo "background job $job failed" >&2; exit 1; }
done
"""

SYNOPSIS = [b for b in ALL if b.how == "synopsis"]


@pytest.mark.parametrize("block", SYNOPSIS, ids=[b.id for b in SYNOPSIS])
def test_synopsis_matches_the_commands(block: Block) -> None:
    """Every command is there, with every option it has (any spelling), and no other."""
    import argparse

    from vmnet.cli import _parser

    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    lines = re.sub(r"\n\s+(?=\[)", " ", block.body).strip().splitlines()
    seen = set()
    for line in lines:
        words = line.split()
        assert words[0] == "vmnet", line
        seen.add(words[1])
        shown = set(re.findall(r"(?<![\w-])(-{1,2}[a-z][-a-z]*)", line))
        options = [
            set(a.option_strings)
            for a in sub.choices[words[1]]._actions
            if a.option_strings and a.help != argparse.SUPPRESS and "--help" not in a.option_strings
        ]
        assert shown <= set().union(*options), (words[1], shown - set().union(*options))
        missing = [sorted(o) for o in options if not o & shown]
        assert not missing, (words[1], missing)
    assert seen == set(sub.choices)


ELSEWHERE = [b for b in ALL if b.how.startswith("elsewhere")]


@pytest.mark.parametrize("block", ELSEWHERE, ids=[b.id for b in ELSEWHERE])
def test_elsewhere_blocks_name_a_test_that_runs_them(block: Block) -> None:
    """The named test exists, and what the block uses appears in its file: every
    name a python block imports; every command (and subcommand) of a sh block.
    A target without `::NAME` is a file that runs the commands as written."""
    sources = []
    for target in block.how.split(" ", 1)[1].split(", "):
        path, _, name = target.partition("::")
        source = (REPO / path).read_text()
        if name:
            assert re.search(rf"^(async )?def {re.escape(name)}\(", source, re.M), target
        sources.append(source)
    for need in _uses(block):
        assert any(need in source for source in sources), (block.id, need)


def _uses(block: Block) -> list[str]:
    """What the test's files must contain: every name a python block imports;
    for a sh block, each command and its subcommand or script (`make X`: the
    target `X:`)."""
    if block.lang == "python":
        names = []
        for m in re.finditer(r"^from \S+ import (.+)$|^import (\S+)", block.body, re.M):
            names += [n.strip() for n in (m.group(1) or m.group(2)).split(",")]
        return names
    out = []
    for line in block.body.splitlines():
        command = line.split("#")[0].split()
        while command and ("=" in command[0] or command[0] == "sudo"):
            command = command[1:]
        script = bool(command) and Path(command[0]).name.startswith("python")
        words = [w for w in command[script:] if not w.startswith(("-", "[", "$"))]
        if not words:
            continue
        if words[0] == "make":
            assert f"\n{words[1]}:" in (REPO / "Makefile").read_text(), line
            out.append(words[1])
        else:
            out.append(words[0] if script else " ".join(words[:2]))
    return out
