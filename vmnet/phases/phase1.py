"""Phase 1: the privileged part, run against a pod network namespace.

Validate and discover everything first; the first mutation happens only
when every network of the VM is known to be plannable. Bad input exits 2
with the pod netns untouched.

Per network: record (with the discovered pod NIC) as STARTED, apply the
plan, write the DHCP cache, mark FINISHED. A re-run plans from the record,
so it converges after a crash and changes nothing after a success.

Unplug applies each binding's undo plan from the record, then restores the
sysctls vmnet changed to the values they had before the first plug.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from vmnet.apply.applier import Applier
from vmnet.apply.discovery import discover, link_names
from vmnet.apply.drivers import Drivers, real
from vmnet.core.addr import IPAddress, MacAddress
from vmnet.core.errors import CacheError, ConfigError, DiscoveryError, VmnetError
from vmnet.core.names import (
    PRIMARY_POD_IFACE,
    LinkNames,
    check_ifname,
    hashed_pod_iface,
    ordinal_pod_iface,
    uses_ordinal_scheme,
)
from vmnet.core.netns import check_netns, locked
from vmnet.manifest import Binding, Interface, Vmi
from vmnet.phases.identity import check_same_vmi, vmi_key
from vmnet.plan.bindings import BindContext, BindMechanism, MacSource, binding_for, choose_vm_mac
from vmnet.plan.state import NetPlan, NetworkRecord, NetworkState, PodNic, RouteState, TapSpec
from vmnet.store.cache import Cache

log = logging.getLogger(__name__)
SYSCTL_RECORD = "sysctl"
_SYSCTL_KEY = re.compile(r"^net/[A-Za-z0-9_.\-/]+$")


ALLOW_BRIDGE_MIGRATION = "kubevirt.io/allow-pod-bridge-network-live-migration"


@dataclass(frozen=True)
class PlugOptions:
    tap_uid: int = 0
    tap_gid: int = 0
    iface_map: Mapping[str, str] = field(default_factory=dict)
    mac_source: MacSource = MacSource.STABLE
    migration_target: bool = False
    cache_owner: tuple[int, int] | None = None  # the phase-2 user; None: root keeps it
    # pod-wide sysctls to set as well (vmnet-cni: the unprivileged sidecar's low ports);
    # unplug restores them with the bindings' own
    sysctls: tuple[tuple[str, str], ...] = ()


@dataclass
class PlugResult:
    networks: list[str] = field(default_factory=list)
    unplugged: list[str] = field(default_factory=list)
    mutations: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def pod_iface_names(vmi: Vmi, existing: list[str], iface_map: Mapping[str, str]) -> dict[str, str]:
    """Network name -> pod interface name (docs/kubevirt.md, Names), overrides first."""
    unknown = set(iface_map) - {n.name for n in vmi.networks}
    if unknown:
        raise ConfigError("--iface", f"no network named {min(unknown)!r} in the manifest")
    ordinal = uses_ordinal_scheme(existing)
    out: dict[str, str] = {}
    position = 0
    primary = vmi.primary
    for net in vmi.networks:
        if net is primary:
            name = PRIMARY_POD_IFACE
        else:
            position += 1
            name = ordinal_pod_iface(position) if ordinal else hashed_pod_iface(net.name)
        out[net.name] = check_ifname(iface_map.get(net.name, name), f"--iface {net.name}")
    taken = [name for name in out.values() if list(out.values()).count(name) > 1]
    if taken:
        nets = sorted(n for n, name in out.items() if name == taken[0])
        raise ConfigError("--iface", f"networks {nets} would share pod interface {taken[0]!r}")
    return out


def prepare(vmi: Vmi, drivers: Drivers, cache: Cache, options: PlugOptions) -> list[BindContext]:
    """Discover and plan every network; raise before any mutation."""
    check_migration(vmi, options)
    # only secondary networks can use the ordinal scheme: no need to list links otherwise
    secondary = any(not net.is_primary for net in vmi.networks)
    existing = link_names(drivers.netlink) if secondary else []
    pod_names = pod_iface_names(vmi, existing, options.iface_map)
    out = []
    routes: list[RouteState] | None = None
    for index, (iface, net) in enumerate(vmi.pairs()):
        if iface.state == "absent" or iface.binding == Binding.SRIOV:
            continue  # SR-IOV is a host device: nothing in the pod netns is vmnet's
        binding = binding_for(iface.binding)
        record = cache.network(net.name)
        if record is not None and record.binding != binding.name:
            raise ConfigError(
                "--vmi",
                f"network {net.name!r} was plugged with the "
                f"{record.binding} binding, the manifest now says {binding.name}: "
                "unplug with the old manifest first",
            )
        if record is None:
            primary = net is vmi.primary
            names = LinkNames.derive(pod_names[net.name], primary=primary)
            if routes is None:
                routes = drivers.netlink.routes()
            try:
                pod_nic = discover(drivers.netlink, pod_names[net.name], routes)
            except DiscoveryError:
                _refuse_foreign_plug(names, existing or link_names(drivers.netlink), cache)
                raise
            if pod_nic.link.kind == "dummy":  # the dummy vmnet leaves where eth0 was
                _refuse_foreign_plug(names, existing or link_names(drivers.netlink), cache)
            if binding.needs_router6:
                pod_nic = _with_router6(pod_nic, drivers)
            record = NetworkRecord(
                network=net.name,
                binding=binding.name,
                state=NetworkState.PENDING,
                pod_iface=pod_names[net.name],
                index=index,
                primary=primary,
                pod_nic=pod_nic,
                nic_mac=MacAddress.random_local(),
                tap=TapSpec(options.tap_uid, options.tap_gid, 1),
                vm_mac=choose_vm_mac(
                    iface.mac,
                    _mac_source(iface, options),
                    vmi.namespace,
                    vmi.name,
                    net.name,
                    pod_nic.link.mac,
                ),
                vmi=vmi_key(vmi),
                vmi_uid=vmi.uid or "",
            )
        ctx = BindContext(vmi, iface, net, record)
        binding.dhcp_config(ctx)
        binding.plan(ctx)
        out.append(ctx)
    return out


def _with_router6(pod_nic: PodNic, drivers: Drivers) -> PodNic:
    """`pod_nic` with the router of its IPv6 default route, asked for on its link."""
    gateway = pod_nic.gateway6
    if pod_nic.ipv6 is None or gateway is None or drivers.router6 is None:
        return pod_nic
    router = drivers.router6.find(pod_nic.link.index, gateway)
    if router is None:
        log.warning(
            "%s: IPv6 gateway %s did not answer on the pod's link: the VM gets %s "
            "but no IPv6 default route",
            pod_nic.name,
            gateway,
            pod_nic.ipv6.ip,
        )
        return pod_nic
    return dataclasses.replace(pod_nic, router6=router)


def _refuse_foreign_plug(names: LinkNames, existing: list[str], cache: Cache) -> None:
    """A pod NIC that vmnet already bound, with no record here, was plugged
    with another cache directory: planning it afresh would take vmnet's own
    links for the CNI's. Checked when the pod NIC is missing (the bridge
    binding renamed it) or is a dummy (the one vmnet leaves in its place), so
    a fresh pod pays no extra link dump."""
    ours = [name for name in (names.bridge, names.nic) if name in existing]
    if ours:
        raise DiscoveryError(
            f"discover {names.pod_iface}: pod NIC {names.pod_iface} is already bound by vmnet "
            f"({' and '.join(ours)} exist), but cache {cache.root} has no record of it: "
            "it was plugged with another --cache-dir; use that one"
        )


def _mac_source(iface: Interface, options: PlugOptions) -> MacSource:
    # A CNI-made tap belongs to an SDN that addresses the VM by that tap's MAC.
    return MacSource.POD if iface.binding == Binding.MANAGED_TAP else options.mac_source


def check_migration(vmi: Vmi, options: PlugOptions) -> None:
    """Refuse a migration target KubeVirt would refuse, or that would change the VM MAC."""
    if not options.migration_target:
        return
    allowed = vmi.annotations.get(ALLOW_BRIDGE_MIGRATION) is not None
    for iface, net in vmi.pairs():
        if iface.binding == Binding.BRIDGE and net.is_primary and not allowed:
            raise ConfigError(
                "--migration-target",
                f"interface {iface.name!r} has the bridge "
                f"binding on the pod network; it migrates only with the "
                f"{ALLOW_BRIDGE_MIGRATION} annotation",
            )
        if iface.mac is None and options.mac_source == MacSource.POD:
            raise ConfigError(
                "--migration-target",
                f"interface {iface.name!r} would get the "
                "target pod's MAC: set macAddress or use --mac-source stable",
            )


def _saved_sysctls(cache: Cache) -> dict[str, str | None]:
    """The sysctl record: `net/...` keys to the value before plug (None: absent)."""
    saved: dict[str, str | None] = cache.load(SYSCTL_RECORD, None, dict[str, str | None]) or {}
    for key in saved:
        if not _SYSCTL_KEY.match(key) or ".." in key.split("/"):
            raise CacheError(
                f"read cache {cache.path(SYSCTL_RECORD)}: {key!r} is not a net/ sysctl"
            )
    return saved


def _save_sysctls(cache: Cache, drivers: Drivers, keys: list[str]) -> None:
    saved = _saved_sysctls(cache)
    missing = [k for k in keys if k not in saved]
    if missing:
        saved.update({k: drivers.sysctl.get(k) for k in missing})
        cache.save(SYSCTL_RECORD, None, saved)


@contextlib.contextmanager
def _drivers_for(netns: str | None, given: Drivers | None) -> Iterator[Drivers]:
    """`given`, or real drivers opened on `netns` and closed afterwards; those
    hold the namespace's lock meanwhile."""
    if given is not None:
        yield given
        return
    check_netns(netns)
    with locked(netns):
        opened = real(netns)
        try:
            yield opened
        finally:
            opened.close()


def plug(
    vmi: Vmi,
    netns: str | None,
    cache: Cache,
    options: PlugOptions | None = None,
    drivers: Drivers | None = None,
    on_mutation: Callable[[str], None] | None = None,
) -> PlugResult:
    """Phase 1: bind every interface of `vmi` in the pod namespace `netns`.

    Args:
        vmi: the parsed manifest (`vmnet.load`).
        netns: the pod's network namespace, a name in /run/netns or a path
            such as /proc/PID/ns/net; None for the caller's own.
        cache: where the records phase 2 and unplug read are kept.
        options: tap owner, pod interface overrides, MAC source, migration.
        drivers: the side effects to use (default: real ones on `netns`).
        on_mutation: called after every change (the crash-test hook).

    Returns:
        What was plugged and unplugged, and every change made.

    Raises:
        ConfigError, DiscoveryError, CacheError: bad input; nothing changed.
        DriverError, CriticalNetworkError: a change failed; a re-run converges.
    """
    with _drivers_for(netns, drivers) as opened, cache.locked():
        return _plug(vmi, cache, options or PlugOptions(), opened, on_mutation)


def preview(
    vmi: Vmi,
    netns: str | None,
    cache: Cache,
    options: PlugOptions | None = None,
    drivers: Drivers | None = None,
) -> PlugResult:
    """What `plug` would do, done to a copy: the pod namespace is read into
    stateful fakes (`vmnet.apply.drivers.fake.shadow`) and the cache copied to
    a scratch directory; the plug runs on those, so its `mutations` are the
    changes a real plug would make now, and nothing real changes.

    Errors are those of `plug` for bad input; the pod is never touched.
    """
    import shutil
    import tempfile

    from vmnet.apply.drivers.fake import shadow  # a preview only: plug never loads the fakes

    options = dataclasses.replace(options or PlugOptions(), cache_owner=None)
    with (
        _drivers_for(netns, drivers) as opened,
        cache.locked(),
        tempfile.TemporaryDirectory(prefix="vmnet-preview-") as scratch,
    ):
        copy = Cache(os.path.join(scratch, "cache"))
        if os.path.isdir(cache.root):
            shutil.copytree(cache.root, copy.root)
        return _plug(vmi, copy, options, shadow(opened, _link_kinds()), None)


def check(vmi: Vmi, netns: str | None, cache: Cache, drivers: Drivers | None = None) -> list[str]:
    """How the pod differs from what the cache says phase 1 made: networks not
    (or not fully) plugged, and every change a plug would make. [] when they agree."""
    drift = []
    for iface, net in vmi.pairs():
        if iface.state == "absent" or iface.binding == Binding.SRIOV:
            continue
        record = cache.network(net.name)
        if record is None:
            drift.append(f"network {net.name}: not plugged (no record in {cache.root})")
        elif record.state != NetworkState.FINISHED:
            drift.append(f"network {net.name}: phase 1 {record.state.name.lower()}, not finished")
    drift += preview(vmi, netns, cache, drivers=drivers).mutations
    return drift


def _link_kinds() -> frozenset[str]:
    """The link kinds this kernel can make, for a preview: the fakes' own
    (bridge, veth, tun) and dummy if its module is loaded or installed."""
    import glob

    release = os.uname().release
    dummy = os.path.isdir("/sys/module/dummy") or bool(
        glob.glob(f"/lib/modules/{release}/kernel/drivers/net/dummy.ko*")
    )
    return frozenset({"bridge", "veth", "tun"} | ({"dummy"} if dummy else set()))


def _plug(
    vmi: Vmi,
    cache: Cache,
    options: PlugOptions,
    drivers: Drivers,
    on_mutation: Callable[[str], None] | None,
) -> PlugResult:
    result = PlugResult()
    check_same_vmi(vmi, cache.networks(), cache.root)
    prepared = prepare(vmi, drivers, cache, options)
    if options.cache_owner is not None:
        cache.hand_to(*options.cache_owner)
    binding_keys = [k for ctx in prepared for k in binding_for(ctx.iface.binding).sysctl_keys(ctx)]
    _save_sysctls(cache, drivers, binding_keys + [key for key, _ in options.sysctls])
    applier = Applier(drivers, on_mutation)
    for iface, net in vmi.pairs():
        record = cache.network(net.name) if iface.state == "absent" else None
        if record is not None:  # hot-unplug: the interface was plugged, now it is absent
            _unplug_record(applier, cache, BindContext(vmi, iface, net, record))
            result.unplugged.append(net.name)
    for ctx in prepared:
        record = ctx.record
        binding = binding_for(ctx.iface.binding)
        if record.state != NetworkState.STARTED:
            cache.put_network(_with_state(record, NetworkState.STARTED))
        applier.apply(binding.plan(ctx))
        if not options.migration_target:  # a target's VM still runs on the source
            _announce(drivers, ctx, binding.announced(ctx))
        _write_leases(cache, ctx.network.name, binding.dhcp_config(ctx), binding.dhcp6_config(ctx))
        cache.put_network(_with_state(record, NetworkState.FINISHED, applier.warnings))
        result.networks.append(ctx.network.name)
    if options.sysctls:
        applier.apply(NetPlan(sysctls=options.sysctls))
    result.mutations = applier.mutations
    result.warnings = applier.warnings
    return result


def _announce(drivers: Drivers, ctx: BindContext, ips: Sequence[IPAddress]) -> None:
    """Tell the pod's network that `ips` are at the VM's MAC now (`vmnet.protocols.announce`)."""
    if not ips or drivers.frames is None:
        return
    from vmnet.protocols.announce import announcements

    try:
        drivers.frames.send(ctx.names.nic, announcements(ctx.nic_mac, ctx.vm_mac, list(ips)))
    except VmnetError as err:  # neighbours then learn the VM's MAC when their entries expire
        log.warning("announce %s at %s: %s", ", ".join(map(str, ips)), ctx.vm_mac, err)


def _write_leases(cache: Cache, network: str, v4: object, v6: object) -> None:
    for kind, config in (("dhcp", v4), ("dhcp6", v6)):
        if config is not None:
            cache.save(kind, network, config)
        else:
            cache.remove(kind, network)


def _with_state(
    record: NetworkRecord, state: NetworkState, warnings: list[str] | None = None
) -> NetworkRecord:
    from dataclasses import replace

    return replace(
        record, state=state, warnings=tuple(warnings) if warnings is not None else record.warnings
    )


def unplug(
    vmi: Vmi,
    netns: str | None,
    cache: Cache,
    drivers: Drivers | None = None,
    on_mutation: Callable[[str], None] | None = None,
) -> PlugResult:
    """Undo phase 1 for every network recorded in `cache`: the pod namespace
    goes back to what the CNI plugin left (names, MACs, MTUs, addresses,
    routes, sysctls), and the records are removed.

    Args and errors are those of `plug`; a manifest that lacks a network the
    cache has is a ConfigError.
    """
    with _drivers_for(netns, drivers) as opened, cache.locked():
        return _unplug(vmi, cache, opened, on_mutation)


def _unplug(
    vmi: Vmi, cache: Cache, drivers: Drivers, on_mutation: Callable[[str], None] | None
) -> PlugResult:
    pairs = {net.name: (i, iface, net) for i, (iface, net) in enumerate(vmi.pairs())}
    records = sorted(cache.networks(), key=lambda r: r.index, reverse=True)
    check_same_vmi(vmi, records, cache.root)
    for record in records:
        if record.network not in pairs:
            raise ConfigError(
                "--vmi", f"cache has network {record.network!r} that the manifest does not have"
            )
    saved_sysctls = _saved_sysctls(cache)
    applier = Applier(drivers, on_mutation)
    result = PlugResult()
    for record in records:
        _, iface, net = pairs[record.network]
        _unplug_record(applier, cache, BindContext(vmi, iface, net, record))
        result.networks.append(record.network)
    _restore_sysctls(cache, drivers, applier, saved_sysctls)
    result.mutations = applier.mutations
    return result


def _unplug_record(applier: Applier, cache: Cache, ctx: BindContext) -> None:
    """Undo one network, then forget it: the record goes last (it is the retry marker)."""
    record = ctx.record
    applier.apply(_recorded_binding(record).unplan(ctx))
    cache.remove("dhcp", record.network)
    cache.remove("dhcp6", record.network)
    cache.remove("network", record.network)


def _recorded_binding(record: NetworkRecord) -> BindMechanism:
    """The binding that plugged `record` (the manifest may say otherwise now)."""
    try:
        return binding_for(Binding(record.binding))
    except ValueError:
        raise CacheError(
            f"read cache {record.network}: unknown binding {record.binding!r}"
        ) from None


def _restore_sysctls(
    cache: Cache, drivers: Drivers, applier: Applier, saved: dict[str, str | None]
) -> None:
    """Put back what plug changed; a per-link key whose link is gone is skipped."""
    for key, value in saved.items():
        current = drivers.sysctl.get(key)
        if value is not None and current is not None and current != value:
            applier.mutate(f"sysctl {key}={value}", drivers.sysctl.set, key, value)
    cache.remove(SYSCTL_RECORD)


__all__ = ["PlugOptions", "PlugResult", "VmnetError", "plug", "prepare", "unplug"]
