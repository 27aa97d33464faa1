"""Bad input through the CLI: exit 2, one line naming the field, the pod untouched.

Every case runs `vmnet plug` (rule 1 of tests/reliability/forkcli.py: a real
`python -m vmnet` child, forked from a warm helper so the catalogue takes
seconds) against one real CNI pod, and checks:

1. exit status 2;
2. exactly one line on stderr, `vmnet plug: ...` (argparse's own errors read
   `vmnet: ...`), no traceback, containing the field it names;
3. the pod's full picture (netlink, /proc/sys/net, nftables) unchanged;
4. the case's --cache-dir not created (or, when the case brought its own
   cache, byte for byte as it was).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.reliability.conftest import BRIDGE_VM, MASQUERADE_VM, assert_same, picture, vmnet
from tests.reliability.forkcli import ForkCli
from vmnet.core.addr import MacAddress
from vmnet.plan.state import LinkState, PodNic
from vmnet.store import codec
from vmnet.testing import namespaces as ns
from vmnet.testing.cni import bridge_config
from vmnet.testing.snapshots import snapshot

pytestmark = [pytest.mark.netns, pytest.mark.cni("bridge", "host-local")]
BARE_NIC = "bare0"


@dataclass(frozen=True)
class Case:
    """One bad input: a manifest edit and/or extra arguments, and the field named."""

    names: str
    edit: tuple[str, str] | None = None
    base: str = BRIDGE_VM
    args: tuple[str, ...] = ()
    text: str | bytes | None = None
    cache: Callable[[Path], None] | None = None
    replace_args: dict[str, str] = field(default_factory=dict)


def _iface(extra: str) -> tuple[str, str]:
    return ("        bridge: {}\n", f"        bridge: {{}}\n{extra}")


def _pod(extra: str) -> tuple[str, str]:
    return ("    pod: {}\n", f"    pod:\n{extra}")


def _record(schema: int, body: object, kind: str = "network") -> Callable[[Path], None]:
    def write(root: Path) -> None:
        root.mkdir(parents=True)
        (root / "network-default.json").write_text(
            json.dumps({"schema": schema, "kind": kind, "data": body})
        )

    return write


def _raw_cache(text: str) -> Callable[[Path], None]:
    def write(root: Path) -> None:
        root.mkdir(parents=True)
        (root / "network-default.json").write_text(text)

    return write


LONG = "a" * 64
RECORD = {
    "network": "default",
    "binding": "bridge",
    "state": "started",
    "podIface": "eth0",
    "index": 0,
    "primary": True,
    "nicMac": "02:00:00:00:00:01",
    "vmMac": "02:00:00:00:00:02",
    "vmi": "tenant1/testvm",
    "tap": {"uid": 0, "gid": 0, "queues": 1},
    "warnings": [],
    "podNic": codec.encode(
        PodNic(LinkState(2, "eth0", "veth", MacAddress.parse("02:00:00:00:00:03"), 1500, True))
    ),
}
VMI = "<the --vmi path>"
CASES: dict[str, Case] = {
    # syntax and document shape (the file is the field: its path is named)
    "yaml syntax": Case(VMI, text="spec: [unclosed\n  - x: {"),
    "json syntax": Case(VMI, text='{"kind": "VirtualMachineInstance",}'),
    "empty file": Case(VMI, text=""),
    "not utf-8": Case("--vmi", text=b"kind: \xff\xfe VirtualMachineInstance\n"),
    "top-level list": Case(VMI, text="- kind: VirtualMachineInstance\n"),
    "duplicate key": Case("duplicate key 'kind'", text="kind: Pod\n" + BRIDGE_VM),
    "documents without a vm": Case(VMI, text="kind: Pod\n---\nkind: Service\n"),
    "wrong kind": Case("kind", edit=("kind: VirtualMachineInstance", "kind: Pod")),
    "wrong apiVersion": Case("apiVersion", edit=("kubevirt.io/v1", "v1")),
    "name missing": Case("metadata.name", edit=("  name: testvm\n", "")),
    "name uppercase": Case("metadata.name", edit=("name: testvm", "name: TestVM")),
    # types
    "interfaces not a list": Case(
        "interfaces",
        edit=(
            "      interfaces:\n      - name: default\n        bridge: {}\n",
            "      interfaces: default\n",
        ),
    ),
    "interface is a string": Case(
        "interfaces[0]", edit=("      - name: default\n        bridge: {}\n", "      - default\n")
    ),
    "networks not a list": Case(
        "networks",
        edit=("  networks:\n  - name: default\n    pod: {}\n", "  networks: {default: {}}\n"),
    ),
    "binding not a mapping": Case("bridge", edit=("bridge: {}", "bridge: yes")),
    # unknown fields where KubeVirt's OpenAPI schema rejects them
    "unknown interface field": Case("interfaces[0].brigde", edit=("bridge: {}", "brigde: {}")),
    "unknown network field": Case("networks[0].podd", edit=("    pod: {}", "    podd: {}")),
    "misspelled networks": Case(
        "spec.netwroks: unknown field; did you mean 'networks'?",
        edit=("  networks:\n", "  netwroks:\n"),
    ),
    "unknown pod field": Case(
        "vmNetworkCIDRs", edit=_pod("      vmNetworkCIDRs: 10.0.2.0/24\n"), base=MASQUERADE_VM
    ),
    "unknown port field": Case(
        "ports[0].prot", base=MASQUERADE_VM, edit=("port: 80\n", "port: 80\n          prot: TCP\n")
    ),
    # bindings
    "unknown binding": Case("sriovx", edit=("bridge: {}", "sriovx: {}")),
    "two bindings": Case("interfaces[0]", edit=_iface("        masquerade: {}\n")),
    "interface without network": Case(
        "interfaces[0].name",
        edit=("  networks:\n  - name: default\n    pod: {}\n", "  networks: []\n"),
    ),
    "network without interface": Case(
        "networks[1]",
        edit=("    pod: {}\n", "    pod: {}\n  - name: other\n    multus:\n      networkName: x\n"),
    ),
    "duplicate interface": Case(
        "interfaces[1].name",
        edit=(
            "      - name: default\n        bridge: {}\n",
            "      - name: default\n        bridge: {}\n"
            "      - name: default\n        bridge: {}\n",
        ),
    ),
    "masquerade on multus": Case(
        "masquerade",
        base=MASQUERADE_VM,
        edit=("    pod: {}\n", "    multus:\n      networkName: x\n"),
    ),
    "pod and multus": Case(
        "networks[0]", edit=("    pod: {}\n", "    pod: {}\n    multus:\n      networkName: x\n")
    ),
    "ports on bridge": Case("ports", edit=_iface("        ports:\n        - port: 80\n")),
    # MACs
    "mac not hex": Case("macAddress", edit=_iface("        macAddress: 02:00:00:zz:00:01\n")),
    "mac too short": Case("macAddress", edit=_iface("        macAddress: 02:00:00:00:01\n")),
    "mac multicast": Case("macAddress", edit=_iface("        macAddress: 03:00:00:00:00:01\n")),
    "mac a number": Case("macAddress", edit=_iface("        macAddress: 12\n")),
    # ports
    "port zero": Case("port", base=MASQUERADE_VM, edit=("port: 80", "port: 0")),
    "port too big": Case("port", base=MASQUERADE_VM, edit=("port: 80", "port: 70000")),
    "port a string": Case("port", base=MASQUERADE_VM, edit=("port: 80", "port: http")),
    "port protocol": Case(
        "protocol", base=MASQUERADE_VM, edit=("port: 80\n", "port: 80\n          protocol: SCTP\n")
    ),
    "duplicate port": Case(
        "port", base=MASQUERADE_VM, edit=("port: 80\n", "port: 80\n        - port: 80\n")
    ),
    # CIDRs
    "cidr not a cidr": Case(
        "vmNetworkCIDR", base=MASQUERADE_VM, edit=_pod("      vmNetworkCIDR: 10.0.2.0\n")
    ),
    "cidr /31": Case(
        "vmNetworkCIDR", base=MASQUERADE_VM, edit=_pod("      vmNetworkCIDR: 10.0.2.0/31\n")
    ),
    "cidr host bits": Case(
        "vmNetworkCIDR", base=MASQUERADE_VM, edit=_pod("      vmNetworkCIDR: 10.0.2.1/24\n")
    ),
    "cidr v6 /127": Case(
        "vmIPv6NetworkCIDR", base=MASQUERADE_VM, edit=_pod("      vmIPv6NetworkCIDR: fd10::/127\n")
    ),
    "cidr on bridge": Case("vmNetworkCIDR", edit=_pod("      vmNetworkCIDR: 10.0.2.0/24\n")),
    # names: length, and names that become cache file and link names
    "interface name too long": Case(
        "name", edit=("name: default", f"name: {LONG}"), replace_args={"default": LONG}
    ),
    "path traversal in name": Case("name", edit=("- name: default", "- name: ../../etc/x")),
    "slash in network name": Case("name", edit=("  - name: default", "  - name: a/b")),
    "dot-dot vm name": Case("metadata.name", edit=("name: testvm", "name: ..")),
    # other fields
    "bad pciAddress": Case("pciAddress", edit=_iface("        pciAddress: 0000:81:zz.0\n")),
    "dhcp private option code": Case(
        "option",
        edit=_iface(
            "        dhcpOptions:\n          privateOptions:\n          - option: 100\n"
            "            value: x\n"
        ),
    ),
    "dhcp ntp not ipv4": Case(
        "ntpServers", edit=_iface("        dhcpOptions:\n          ntpServers: [fd00::1]\n")
    ),
    "dhcp bootfile too long": Case(
        "bootFileName", edit=_iface(f"        dhcpOptions:\n          bootFileName: {'b' * 300}\n")
    ),
    # arguments
    "netns missing": Case("--netns", replace_args={"NETNS": "vmt-does-not-exist"}),
    "netns not a netns": Case("--netns", replace_args={"NETNS": "/etc/hostname"}),
    "netns dot-dot": Case("--netns", replace_args={"NETNS": ".."}),
    "tap owner letters": Case("--tap-owner", args=("--tap-owner", "qemu")),
    "tap owner negative": Case("--tap-owner: '-1:0'", args=("--tap-owner=-1:0",)),
    "tap owner too big": Case("--tap-owner", args=("--tap-owner", str(2**32))),
    "tap owner bad gid": Case("--tap-owner", args=("--tap-owner", "107:x")),
    "iface no equals": Case("--iface", args=("--iface", "default")),
    "iface unknown network": Case("--iface", args=("--iface", "nope=eth0")),
    "iface name too long": Case("--iface", args=("--iface", "default=averyveryverylongname")),
    "iface slash": Case("--iface", args=("--iface", "default=a/b")),
    "unknown option": Case("--bogus", args=("--bogus",)),
    "vmi missing": Case("--vmi", replace_args={"VMI": "/nonexistent/vm.yaml"}),
    "vmi a directory": Case("--vmi", replace_args={"VMI": "/etc"}),
    "cache dir is a file": Case("cache", replace_args={"CACHE": "/etc/hostname"}),
    # the pod
    "pod nic missing": Case("nosuch0", args=("--iface", "default=nosuch0")),
    "pod nic without address (masquerade)": Case(
        BARE_NIC, base=MASQUERADE_VM, args=("--iface", f"default={BARE_NIC}")
    ),
    "secondary pod nic missing": Case(
        "pod",
        edit=(
            "    pod: {}\n",
            "    pod: {}\n  - name: second\n    multus:\n      networkName: x\n",
        ),
        base=BRIDGE_VM.replace(
            "        bridge: {}\n", "        bridge: {}\n      - name: second\n        bridge: {}\n"
        ),
    ),
    # the cache
    "cache of another schema": Case("schema", cache=_record(99, {})),
    "cache truncated": Case("corrupted", cache=_raw_cache('{"schema": 1, "kind": "netw')),
    "cache empty": Case("corrupted", cache=_raw_cache("")),
    "cache foreign json": Case("not a vmnet network record", cache=_raw_cache("[1, 2, 3]")),
    "cache record missing keys": Case(
        "key 'binding': missing", cache=_record(2, {"network": "default"})
    ),
    "cache record of another network": Case(
        "record is for network", cache=_record(1, {**RECORD, "network": "other"})
    ),
    "cache of another binding": Case(
        "was plugged with the masquerade binding",
        cache=_record(1, {**RECORD, "binding": "masquerade"}),
    ),
}


def _argv(case: Case, netns: str, vmi: str, cache: str) -> list[str]:
    values = {"NETNS": netns, "VMI": vmi, "CACHE": cache, **case.replace_args}
    argv = [
        "plug",
        "--netns",
        values["NETNS"],
        "--vmi",
        values["VMI"],
        "--cache-dir",
        values["CACHE"],
        *case.args,
    ]
    if "default" in case.replace_args:
        argv = [a.replace("default=", f"{case.replace_args['default']}=") for a in argv]
    return argv


def _manifest(case: Case, path: Path) -> str:
    if case.text is not None:
        data = case.text.encode() if isinstance(case.text, str) else case.text
    else:
        text = case.base
        if case.edit is not None:
            old, new = case.edit
            assert old in text, f"edit {old!r} does not apply"
            text = text.replace(old, new, 1)
        data = text.encode()
    path.write_bytes(data)
    return str(path)


def _tree(root: Path) -> dict[str, bytes]:
    if not root.exists():
        return {}
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


@pytest.fixture
def pod_with_bare_nic(node):
    """A CNI bridge pod that also has `bare0`, a veth without any address."""
    pod = node.add_pod(bridge_config())
    ns.create_veth(ns.VethEnd(node.netns, "barehost0"), ns.VethEnd(pod.netns, BARE_NIC))
    return pod


def test_bad_input_catalogue(pod_with_bare_nic, tmp_path):
    pod = pod_with_bare_nic
    assert len(CASES) >= 40
    before = picture(pod.netns)
    failures = []
    with ForkCli() as cli:
        for i, (title, case) in enumerate(CASES.items()):
            vmi = _manifest(case, tmp_path / f"vm{i}.yaml")
            cache = tmp_path / f"cache{i}"
            if case.cache is not None:
                case.cache(cache)
            cached = _tree(cache)
            argv = _argv(case, pod.netns, vmi, str(cache))
            problem = _check(cli.run(*argv), case.names.replace(VMI, vmi))
            if not problem and "CACHE" not in case.replace_args and _tree(cache) != cached:
                problem = f"cache dir changed: {sorted(_tree(cache))}"
            if diff := before.net.diff(snapshot(pod.netns)):
                problem = (problem or "") + " pod changed: " + "; ".join(diff[:3])
                cli.run("unplug", *argv[1:7])
                assert_same(before, picture(pod.netns), f"restoring the pod after {title!r}")
            if problem:
                failures.append(f"{title}: {problem}")
    assert not failures, f"{len(failures)} of {len(CASES)} cases failed:\n" + "\n".join(failures)
    assert_same(before, picture(pod.netns), "after the catalogue")


def _check(done, names: str) -> str | None:
    lines = done.stderr.splitlines()
    if done.returncode != 2:
        return f"exit {done.returncode}: {done.stderr.strip()!r}"
    if len(lines) != 1 or "Traceback" in done.stderr or "internal error" in done.stderr:
        return f"stderr is not one clean line: {done.stderr!r}"
    if not (lines[0].startswith("vmnet plug: ") or lines[0].startswith("vmnet: ")):
        return f"stderr does not start with `vmnet plug: `: {lines[0]!r}"
    if names not in lines[0]:
        return f"does not name {names!r}: {lines[0]!r}"
    return None


def test_catalogue_runner_matches_python_m_vmnet(pod_with_bare_nic, tmp_path):
    """The forked runner and a plain `python -m vmnet` give the same answers."""
    pod = pod_with_bare_nic
    samples = [
        "yaml syntax",
        "mac not hex",
        "netns missing",
        "pod nic missing",
        "cache of another schema",
    ]
    with ForkCli() as cli:
        for i, title in enumerate(samples):
            case = CASES[title]
            vmi = _manifest(case, tmp_path / f"vm{i}.yaml")
            cache = tmp_path / f"cache{i}"
            if case.cache is not None:
                case.cache(cache)
            argv = _argv(case, pod.netns, vmi, str(cache))
            forked, plain = cli.run(*argv), vmnet(*argv)
            assert (forked.returncode, forked.stdout, forked.stderr) == (
                plain.returncode,
                plain.stdout,
                plain.stderr,
            ), title
            assert plain.returncode == 2, (title, plain.stderr)
