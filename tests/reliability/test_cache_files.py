"""The phase-1 cache on disk: atomic, durable, private, versioned, and never a traceback.

Unit part (no root): `vmnet.store.cache.Cache` against a temporary directory, a
real SIGKILL between the temporary file and `os.replace`, and Hypothesis
feeding arbitrary bytes and JSON to the reader. CLI part (root): a real
plugged pod whose cache files are damaged one way at a time; every command
that reads them (`status`, `status --json`, `domain`, `dhcp`, `unplug`,
`plug`) exits 2 with one line naming the file, and the pod stays as it was.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability.conftest import BRIDGE_VM, assert_same, changes, picture, vmnet
from tests.reliability.forkcli import ForkCli
from vmnet.core.errors import CacheError, DriverError
from vmnet.plan.state import NetworkRecord
from vmnet.store.cache import SCHEMA, Cache, safe_name
from vmnet.testing import namespaces as ns
from vmnet.testing.cni import bridge_config

GOOD = {"answer": 42}
FUZZ = settings(
    max_examples=int(os.environ.get("VMNET_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _files(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


def test_write_is_private_and_versioned(tmp_path):
    root = tmp_path / "c"
    Cache(str(root)).write("dhcp", "default", GOOD)
    path = root / "dhcp-default.json"
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.loads(path.read_text()) == {"schema": SCHEMA, "kind": "dhcp", "data": GOOD}
    assert _files(root) == ["dhcp-default.json"]


def test_failed_replace_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    cache = Cache(str(tmp_path))
    cache.write("dhcp", "default", GOOD)

    def refuse(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(DriverError, match=r"write cache .*dhcp-default.json: ENOSPC"):
        cache.write("dhcp", "default", {"answer": 0})
    monkeypatch.undo()
    assert cache.read("dhcp", "default") == GOOD
    assert _files(tmp_path) == ["dhcp-default.json"]


def test_fsync_file_then_replace_then_fsync_dir(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        calls.append(("fsync", stat.S_ISDIR(os.fstat(fd).st_mode)))
        real_fsync(fd)

    def replace(src, dst):
        calls.append(("replace", os.path.basename(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    Cache(str(tmp_path)).write("network", "default", GOOD)
    assert calls == [("fsync", False), ("replace", "network-default.json"), ("fsync", True)]


KILL_MID_WRITE = """
import os, signal, sys
from vmnet.store.cache import Cache
cache = Cache(sys.argv[1])
cache.write("dhcp", "default", {"answer": 42})
os.replace = lambda src, dst: os.kill(os.getpid(), signal.SIGKILL)
cache.write("dhcp", "default", {"answer": 0})
"""


def test_sigkill_between_write_and_replace_leaves_the_old_file(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", KILL_MID_WRITE, str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == -9, done.stderr
    cache = Cache(str(tmp_path))
    assert cache.read("dhcp", "default") == GOOD
    leftovers = [f for f in _files(tmp_path) if f != "dhcp-default.json"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".tmp-")
    assert cache.networks() == []
    cache.write("dhcp", "default", {"answer": 1})
    assert cache.read("dhcp", "default") == {"answer": 1}


def test_write_into_a_file_is_a_driver_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DriverError, match=r"^write cache .*: (EEXIST|ENOTDIR)"):
        Cache(str(blocker)).write("dhcp", "default", GOOD)


ENVELOPES = {
    "empty": b"",
    "truncated": b'{"schema": 1, "kind": "network", "da',
    "not json": b"\x00\xff garbage",
    "not utf-8": b'{"schema": 1, "kind": "network", "data": "\xff"}',
    "a list": b"[1, 2]",
    "no schema": b'{"kind": "network", "data": {}}',
    "schema 0": b'{"schema": 0, "kind": "network", "data": {}}',
    "schema 2": b'{"schema": 2, "kind": "network", "data": {}}',
    "schema as text": b'{"schema": "1", "kind": "network", "data": {}}',
    "other kind": b'{"schema": 1, "kind": "dhcp", "data": {}}',
    "data not an object": b'{"schema": 1, "kind": "network", "data": [1]}',
    "missing keys": b'{"schema": 1, "kind": "network", "data": {"network": "default"}}',
}


@pytest.mark.parametrize("case", sorted(ENVELOPES))
def test_damaged_network_record_is_one_cache_error(case, tmp_path):
    (tmp_path / "network-default.json").write_bytes(ENVELOPES[case])
    with pytest.raises(CacheError) as caught:
        Cache(str(tmp_path)).networks()
    message = str(caught.value)
    assert "\n" not in message and "network-default.json" in message
    assert caught.value.exit_code == 2


@pytest.mark.parametrize(
    "name", ["", ".", "..", "../x", "a/b", "A", "x\0", "-a", "a" * 254, "a..b", "/etc/passwd"]
)
def test_unsafe_names_never_reach_the_file_system(name, tmp_path):
    with pytest.raises(CacheError, match="not a safe file name"):
        Cache(str(tmp_path)).path("network", name)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
RECORD_KEYS = [
    "network",
    "binding",
    "state",
    "podIface",
    "index",
    "primary",
    "podNic",
    "nicMac",
    "vmMac",
    "vmi",
    "tap",
    "warnings",
]


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes_read_as_record_or_cache_error(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("c")
    (root / "network-default.json").write_bytes(data)
    try:
        Cache(str(root)).network("default")
    except CacheError as err:
        assert "\n" not in str(err)


@FUZZ
@given(st.fixed_dictionaries({}, optional=dict.fromkeys(RECORD_KEYS, json_values)))
def test_arbitrary_record_bodies_read_as_record_or_cache_error(tmp_path_factory, body):
    root = tmp_path_factory.mktemp("c")
    (root / "network-default.json").write_text(
        json.dumps({"schema": SCHEMA, "kind": "network", "data": body})
    )
    try:
        record = Cache(str(root)).network("default")
    except CacheError as err:
        assert "\n" not in str(err)
    else:
        assert isinstance(record, NetworkRecord)


def test_safe_name_accepts_dns_labels():
    assert safe_name("default") == "default"
    assert safe_name("pod-1.net") == "pod-1.net"


# ---- the CLI against a real plugged pod ----

DAMAGE = {
    "truncated": lambda text: text[: len(text) // 2],
    "empty": lambda text: "",
    "garbage": lambda text: "\x00\x01 not json at all",
    "foreign json": lambda text: json.dumps({"apiVersion": "v1", "kind": "ConfigMap"}),
    "other schema": lambda text: text.replace(f'"schema": {SCHEMA}', '"schema": 999'),
    "missing keys": lambda text: json.dumps(
        {"schema": SCHEMA, "kind": json.loads(text)["kind"], "data": {"network": "default"}}
    ),
    "wrong types": lambda text: json.dumps(
        {
            "schema": SCHEMA,
            "kind": json.loads(text)["kind"],
            "data": {k: [] for k in json.loads(text)["data"]},
        }
    ),
}
READERS = {
    "network-default.json": ("status", "status --json", "domain", "dhcp", "unplug", "plug"),
    "dhcp-default.json": ("status", "status --json", "dhcp"),
    "sysctl.json": ("unplug", "plug"),
}


@pytest.mark.netns
@pytest.mark.cni("bridge", "host-local")
def test_damaged_cache_through_every_command(node, tmp_path):
    pod = node.add_pod(bridge_config())
    vm = tmp_path / "vm.yaml"
    vm.write_text(BRIDGE_VM)
    cache = tmp_path / "cache"
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 10.96.0.10\n")
    before = picture(pod.netns)
    common = {
        "netns": ["--netns", pod.netns],
        "vmi": ["--vmi", str(vm)],
        "cache": ["--cache-dir", str(cache)],
    }
    argv = {
        "status": ["status", *common["cache"]],
        "status --json": ["status", "--json", *common["cache"]],
        "domain": ["domain", *common["vmi"], *common["cache"]],
        "dhcp": [
            "dhcp",
            *common["netns"],
            *common["vmi"],
            *common["cache"],
            "--resolv-conf",
            str(resolv),
        ],
        "unplug": ["unplug", *common["netns"], *common["vmi"], *common["cache"]],
        "plug": ["plug", *common["netns"], *common["vmi"], *common["cache"]],
    }
    assert changes(vmnet(*argv["plug"])) > 0
    ns.wait_operstate(pod.netns, "tap0", "DOWN")  # linkwatch settles a tap nobody reads
    plugged = picture(pod.netns)
    assert sorted(READERS) == _files(cache)
    failures = []
    with ForkCli() as cli:
        for file, commands in READERS.items():
            good = (cache / file).read_text()
            for damage, spoil in DAMAGE.items():
                (cache / file).write_text(spoil(good))
                for command in commands:
                    done = cli.run(*argv[command])
                    verb = command.split()[0]
                    lines = done.stderr.splitlines()
                    if (
                        done.returncode != 2
                        or len(lines) != 1
                        or not lines[0].startswith(f"vmnet {verb}: ")
                        or "internal error" in lines[0]
                        or "cache" not in lines[0]
                    ):
                        failures.append(
                            f"{file} {damage} `{command}`: exit {done.returncode} "
                            f"{done.stderr.strip()!r}"
                        )
                if diff := plugged.diff(picture(pod.netns)):
                    pytest.fail(f"{file} {damage}: the pod changed: {diff[:3]}")
            (cache / file).write_text(good)
    assert not failures, "\n".join(failures)
    assert vmnet(*argv["unplug"]).returncode == 0
    assert_same(before, picture(pod.netns), "unplug after the damage tour")
