"""`vmnet-cni`: phase 1 as a CNI plugin, the network half of vmnet's KubeVirt binding plugin.

KubeVirt's virt-controller appends the binding plugin's NetworkAttachment-
Definition to the virt-launcher pod's networks with `cni-args:
{"logicNetworkName": <VMI network>}`; Multus then runs this plugin as an
attachment of its own (no prevResult), in the pod's network namespace, with
`CNI_IFNAME=net<N>` and the pod's identity in `CNI_ARGS`. The plugin binds
the pod NIC of that VMI network with vmnet's bridge binding: `eth0` for the
pod network; for a Multus network, the NIC KubeVirt names `pod<hash>` (the
one that exists decides which). It creates no interface of its own and so
reports none: an interface in the result would appear in the pod's
network-status and switch KubeVirt to ordinal NIC names.

CNI spec 1.1.0 (VERSION lists 0.3.0 to 1.1.0):
- ADD plugs (idempotent; a second ADD changes nothing);
- DEL is vmnet's exact unplug, and succeeds when there is nothing to undo,
  the namespace is gone, or `CNI_NETNS` is empty;
- CHECK fails (code 100) when the pod differs from what ADD made;
- STATUS succeeds; GC forgets the records of attachments not listed in
  `cni.dev/valid-attachments`.
Errors are `{cniVersion, code, msg, details}` on stdout with exit 1 (codes:
1 version, 4 environment, 7 configuration, 5 I/O, 100 drift, 101 the pod
network); logs go to stderr only. Bad input changes nothing.

Phase 1's records live on the node, one directory per attachment under the
config's `cacheDir` (default /run/vmnet/cni), named by container id and
network.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from vmnet.core.errors import ConfigError, DiscoveryError, PrivilegeError, VmnetError
from vmnet.core.names import hashed_pod_iface

if TYPE_CHECKING:
    from vmnet.manifest import Vmi

VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
DEFAULT_CACHE = "/run/vmnet/cni"
# the sidecar (UID 107, no capabilities) binds UDP 67, as KubeVirt's passt CNI allows
UNPRIVILEGED_PORTS = ("net/ipv4/ip_unprivileged_port_start", "0")
_POD_NAME = re.compile(r"^virt-launcher-(?P<vmi>.+)-[a-z0-9]{5}$")
_SAFE = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_.]{0,252}$")
log = logging.getLogger("vmnet.cni")


class CniFailure(Exception):
    """A CNI error result."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code, self.msg, self.details = code, msg, details


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="vmnet-cni: %(message)s")
    env = os.environ
    version = "1.1.0"
    args = list(sys.argv[1:] if argv is None else argv)
    if not env.get("CNI_COMMAND") and args == ["--version"]:  # an installer asking, not Multus
        from vmnet import __version__

        print(f"vmnet-cni {__version__}")
        return 0
    try:
        command = env.get("CNI_COMMAND", "")
        if command == "VERSION":
            _print({"cniVersion": "1.1.0", "supportedVersions": list(VERSIONS)})
            return 0
        conf = _config(sys.stdin.read())
        version = conf["cniVersion"]
        if command == "ADD":
            _add(conf, env)
            _print({"cniVersion": version, "interfaces": [], "ips": [], "dns": {}})
        elif command == "DEL":
            _del(conf, env)
        elif command == "CHECK":
            _check(conf, env)
        elif command == "STATUS":
            pass
        elif command == "GC":
            _gc(conf)
        else:
            raise CniFailure(
                4, f"CNI_COMMAND {command!r} is not one of ADD, DEL, CHECK, STATUS, GC, VERSION"
            )
        return 0
    except CniFailure as err:
        _print({"cniVersion": version, "code": err.code, "msg": err.msg, "details": err.details})
    except PrivilegeError as err:
        _print({"cniVersion": version, "code": 5, "msg": str(err), "details": ""})
    except (ConfigError, DiscoveryError) as err:
        _print({"cniVersion": version, "code": 7, "msg": str(err), "details": ""})
    except VmnetError as err:
        _print(
            {
                "cniVersion": version,
                "code": 101 if err.exit_code == 3 else 5,
                "msg": str(err),
                "details": "",
            }
        )
    except Exception as err:  # no traceback on stdout, ever
        _print(
            {
                "cniVersion": version,
                "code": 999,
                "msg": f"internal error: {type(err).__name__}: {err}",
                "details": "",
            }
        )
    return 1


def _print(obj: Mapping[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")


def _config(text: str) -> dict[str, Any]:
    try:
        conf = json.loads(text)
    except ValueError as err:
        raise CniFailure(6, f"network configuration is not JSON: {err}") from err
    if not isinstance(conf, dict):
        raise CniFailure(6, "network configuration is not a JSON object")
    version = conf.get("cniVersion")
    if version not in VERSIONS:
        raise CniFailure(1, f"cniVersion {version!r} is not supported", ", ".join(VERSIONS))
    binding = conf.get("binding", "bridge")
    if binding != "bridge":
        raise CniFailure(7, f"binding {binding!r}: vmnet-cni implements the bridge binding")
    cache = conf.get("cacheDir", DEFAULT_CACHE)
    if not isinstance(cache, str) or not cache.startswith("/"):
        raise CniFailure(7, f"cacheDir {cache!r} is not an absolute path")
    return conf


def _network(conf: Mapping[str, Any]) -> str:
    args = conf.get("args")
    cni_args = args.get("cni") if isinstance(args, dict) else None
    name = cni_args.get("logicNetworkName") if isinstance(cni_args, dict) else None
    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name):
        raise CniFailure(
            7, "args.cni.logicNetworkName: missing or not a VMI network name (KubeVirt sets it)"
        )
    return name


def _env(env: Mapping[str, str], key: str) -> str:
    value = env.get(key, "")
    if not value:
        raise CniFailure(4, f"{key} is not set")
    return value


def _k8s(env: Mapping[str, str]) -> dict[str, str]:
    pairs = (item.partition("=") for item in env.get("CNI_ARGS", "").split(";") if item)
    return {k: v for k, _, v in pairs}


def _attachment(conf: Mapping[str, Any], env: Mapping[str, str]) -> tuple[str, str]:
    """(network, cache directory) of this attachment."""
    network = _network(conf)
    container = _env(env, "CNI_CONTAINERID")
    if not _SAFE.match(container):
        raise CniFailure(4, f"CNI_CONTAINERID {container!r} is not a container id")
    return network, os.path.join(conf.get("cacheDir", DEFAULT_CACHE), f"{container}-{network}")


def _vmi(network: str, primary: bool, env: Mapping[str, str]) -> Vmi:
    """The VMI as far as phase 1 of one network needs it: its namespace and
    name (from the pod: virt-launcher-<vmi>-xxxxx) and that one network."""
    from vmnet import manifest

    k8s = _k8s(env)
    pod = k8s.get("K8S_POD_NAME", "")
    match = _POD_NAME.match(pod)
    source = {"pod": {}} if primary else {"multus": {"networkName": network}}
    return manifest.parse(
        {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {
                "name": (match.group("vmi") if match else pod or "vmi")[:63].strip("-.") or "vmi",
                "namespace": k8s.get("K8S_POD_NAMESPACE") or "default",
                **({"uid": k8s["K8S_POD_UID"]} if k8s.get("K8S_POD_UID") else {}),
            },
            "spec": {
                "domain": {"devices": {"interfaces": [{"name": network, "bridge": {}}]}},
                "networks": [{"name": network, **source}],
            },
        },
        source="CNI_ARGS",
    )


def _is_primary(names: set[str], network: str) -> bool:
    """The pod network's NIC is eth0; a Multus network's is pod<hash> (present or already bound)."""
    stem = hashed_pod_iface(network)
    return not ({stem, f"{stem[3:]}-nic"} & names)


def _add(conf: Mapping[str, Any], env: Mapping[str, str]) -> None:
    from vmnet.apply.drivers import real
    from vmnet.core.netns import check_netns
    from vmnet.phases import phase1
    from vmnet.store.cache import Cache

    network, root = _attachment(conf, env)
    netns = _env(env, "CNI_NETNS")
    _env(env, "CNI_IFNAME")
    owner = conf.get("tapOwner", 107)
    if not isinstance(owner, int) or isinstance(owner, bool) or not 0 <= owner < 2**31:
        raise CniFailure(7, f"tapOwner {owner!r} is not a UID")
    check_netns(netns)
    drivers = real(netns)  # read before and after the plug, which opens its own (and locks)
    try:
        names = {link.name for link in drivers.netlink.links(addresses=False)}
        vmi = _vmi(network, _is_primary(names, network), env)
        options = phase1.PlugOptions(tap_uid=owner, tap_gid=owner, sysctls=(UNPRIVILEGED_PORTS,))
        cache = Cache(root)
        result = phase1.plug(vmi, netns, cache, options)
        _hand_off(drivers, cache, network)
    finally:
        drivers.close()
    log.info("ADD %s: %d changes", network, len(result.mutations))


def _hand_off(drivers: Any, cache: Any, network: str) -> None:
    """Leave the lease on the bridge, for the sidecar (`handoff`)."""
    from vmnet.core.names import LinkNames
    from vmnet.phases import leases
    from vmnet.protocols.dhcp4 import handoff

    record, lease = cache.network(network), leases.lease(cache, network)
    if record is None or lease is None:
        return
    from vmnet.core.addr import is_global_unicast

    lease6 = leases.lease6(cache, network)
    v6 = [
        a.interface
        for a in record.pod_nic.link.addresses
        if a.interface.version == 6 and is_global_unicast(a.interface.ip)
    ]
    bridge = LinkNames.derive(record.pod_iface, primary=record.primary).bridge
    link = drivers.netlink.link(name=bridge, addresses=False)
    if link is None:
        raise CniFailure(101, f"{bridge} is missing after ADD")
    ipv6 = lease6.address if lease6 is not None else v6[0] if v6 else None
    drivers.netlink.set_alias(link.index, handoff.to_alias(lease, ipv6))


def _del(conf: Mapping[str, Any], env: Mapping[str, str]) -> None:
    from vmnet.phases import phase1
    from vmnet.store.cache import Cache

    network, root = _attachment(conf, env)
    netns = env.get("CNI_NETNS", "")
    cache = Cache(root)
    records = cache.networks() if os.path.isdir(root) else []
    if records and netns and os.path.exists(netns):
        vmi = _vmi(network, records[0].primary, env)
        phase1.unplug(vmi, netns, cache)
    import shutil

    shutil.rmtree(root, ignore_errors=True)


def _check(conf: Mapping[str, Any], env: Mapping[str, str]) -> None:
    from vmnet.phases import phase1
    from vmnet.store.cache import Cache

    network, root = _attachment(conf, env)
    netns = _env(env, "CNI_NETNS")
    cache = Cache(root)
    records = cache.networks() if os.path.isdir(root) else []
    if not records:
        raise CniFailure(100, f"network {network}: not plugged (no record in {root})")
    drift = phase1.check(_vmi(network, records[0].primary, env), netns, cache)
    if drift:
        raise CniFailure(
            100, f"network {network}: the pod differs from what ADD made", "; ".join(drift)
        )


def _gc(conf: Mapping[str, Any]) -> None:
    """Forget the records of attachments the runtime no longer knows."""
    import shutil

    valid = conf.get("cni.dev/valid-attachments", [])
    if not isinstance(valid, list):
        raise CniFailure(7, "cni.dev/valid-attachments is not a list")
    keep = {str(a.get("containerID")) for a in valid if isinstance(a, dict)}
    root = conf.get("cacheDir", DEFAULT_CACHE)
    try:
        entries = os.listdir(root)
    except FileNotFoundError:
        return
    for entry in entries:
        if not any(entry.startswith(f"{container}-") for container in keep):
            shutil.rmtree(os.path.join(root, entry), ignore_errors=True)


def run() -> NoReturn:
    """The `vmnet-cni` executable: main(), then a prompt exit (vmnet.core.process)."""
    from vmnet.core.process import exit_now, short_lived

    short_lived()
    exit_now(main())


if __name__ == "__main__":
    run()
