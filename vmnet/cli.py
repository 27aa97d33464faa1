"""The `vmnet` command.

Exit codes (a contract other tools rely on): 0 success, 2 bad input (nothing
in the pod netns changed), 3 critical network error, 1 anything else. Every
error is one line on stderr: `vmnet <command>: <operation> <object>: <cause>`.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence

from vmnet import __version__
from vmnet.core.errors import (
    CacheError,
    ConfigError,
    CriticalNetworkError,
    DriverError,
    VmnetError,
)

TYPE_CHECKING = False  # typing is not imported at run time: every command starts here
if TYPE_CHECKING:
    from typing import NoReturn

    from vmnet.manifest import Vmi
    from vmnet.plan.state import NetworkRecord
    from vmnet.protocols.counters import Counters
    from vmnet.store.cache import Cache

DEFAULT_CACHE_ROOT = "/run/vmnet"


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter, sized from the terminal without importing shutil
    (argparse makes one for every option it adds, and shutil brings bz2, lzma
    and zlib: a few milliseconds of every command)."""

    def __init__(self, prog: str) -> None:
        try:
            columns = os.get_terminal_size(sys.stdout.fileno()).columns
        except (OSError, ValueError):
            columns = int(os.environ.get("COLUMNS", "0") or 0) or 80
        super().__init__(prog, width=max(columns - 2, 40))


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"vmnet: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="vmnet",
        description="Connect a VM to its Kubernetes pod's network.",
        allow_abbrev=False,
        formatter_class=_Formatter,
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    p.add_argument("--version", action="version", version=f"vmnet {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help, allow_abbrev=False, formatter_class=_Formatter)
        # -v works after the subcommand too; SUPPRESS keeps a count made before it
        cmd.add_argument(
            "-v", "--verbose", action="count", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
        return cmd

    plug = command("plug", help="phase 1: bind every interface of the VM (privileged)")
    _ns(plug)
    _vmi(plug)
    _cache(plug)
    plug.add_argument(
        "--tap-owner",
        default="0",
        metavar="UID[:GID]",
        help="owner of the taps (KubeVirt: 107 for non-root VMs, else 0)",
    )
    plug.add_argument(
        "--cache-owner",
        metavar="UID[:GID]",
        help="the phase-2 user, who alone may read the cache (default: the --tap-owner)",
    )
    plug.add_argument(
        "--iface",
        action="append",
        default=[],
        metavar="NETWORK=PODIFACE",
        help="pod interface name of a network, overriding KubeVirt's scheme",
    )
    plug.add_argument(
        "--mac-source",
        choices=["stable", "pod"],
        default="stable",
        help="VM MAC when the manifest has none: 'stable' (derived from the VM "
        "identity, the same in every pod; default) or 'pod' (the pod NIC's "
        "original MAC, as KubeVirt)",
    )
    plug.add_argument(
        "--migration-target",
        action="store_true",
        help="this pod is a live-migration target (checked as KubeVirt does)",
    )
    plug.add_argument(
        "--dry-run",
        action="store_true",
        help="print the changes a plug would make now, and make none",
    )
    plug.add_argument("--json", action="store_true", help="machine-readable output")

    domain = command("domain", help="phase 2: decorate the libvirt domain XML")
    _vmi(domain)
    _cache(domain)
    domain.add_argument(
        "--domain", metavar="IN.xml", help="domain to decorate (default: a skeleton)"
    )
    domain.add_argument(
        "-o", "--output", metavar="OUT.xml", help="where to write (default: stdout)"
    )

    dhcp = command("dhcp", help="phase 2: serve DHCP for every interface until SIGTERM")
    _ns(dhcp, required=False)
    _vmi(dhcp)
    _cache(dhcp)
    dhcp.add_argument(
        "--resolv-conf",
        metavar="PATH",
        help="where DNS servers and search domains come from (default: the pod's own: "
        "/proc/PID/root/etc/resolv.conf for --netns /proc/PID/ns/net, "
        "/etc/netns/NAME/resolv.conf for a named one, else /etc/resolv.conf)",
    )

    unplug = command("unplug", help="undo phase 1: give the pod netns back as CNI left it")
    _ns(unplug)
    _vmi(unplug)
    _cache(unplug)

    sidecar = command("sidecar", help="KubeVirt hook sidecar of the vmnet binding plugin")
    sidecar.add_argument(
        "--socket-dir",
        default="/var/run/kubevirt-hooks",
        metavar="DIR",
        help="where virt-launcher looks for hook sockets (default: %(default)s)",
    )

    check = command("check", help="compare the pod with what the cache says phase 1 made")
    _ns(check)
    _vmi(check)
    _cache(check)
    check.add_argument("--json", action="store_true", help="machine-readable output")

    status = command("status", help="show what phase 1 recorded")
    status.add_argument(
        "--vmi", metavar="FILE", help="the VM's manifest (to find its default cache dir)"
    )
    _cache(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")

    return p


def _ns(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument(
        "--netns",
        required=required,
        metavar="NS",
        help="pod network namespace: a name in /run/netns or a path (/proc/PID/ns/net)"
        + ("" if required else "; default: this process's own (inside the pod)"),
    )


def _vmi(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--vmi",
        required=True,
        metavar="FILE",
        help="KubeVirt VirtualMachine or VirtualMachineInstance manifest (YAML/JSON; - for stdin)",
    )


def _cache(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cache-dir",
        metavar="DIR",
        help=f"phase-1 cache directory (default: {DEFAULT_CACHE_ROOT}/<namespace>/<name> "
        "of the manifest)",
    )


def _load(args: argparse.Namespace) -> tuple[Vmi, Cache]:
    from vmnet import manifest
    from vmnet.store.cache import Cache

    vmi = manifest.load(args.vmi)
    return vmi, Cache(args.cache_dir or default_cache_dir(vmi))


def default_cache_dir(vmi: Vmi) -> str:
    return os.path.join(DEFAULT_CACHE_ROOT, vmi.namespace, vmi.name)


def _owner(text: str, option: str) -> tuple[int, int]:
    uid, _, gid = text.partition(":")
    try:
        u, g = int(uid), int(gid or uid)
    except ValueError:
        raise ConfigError(option, f"{text!r} is not UID[:GID]") from None
    if not (0 <= u < 2**32 - 1 and 0 <= g < 2**32 - 1):
        raise ConfigError(option, f"{text!r} is out of range")
    return u, g


def _iface_map(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        net, sep, pod = item.partition("=")
        if not sep or not net or not pod:
            raise ConfigError("--iface", f"{item!r} is not NETWORK=PODIFACE")
        out[net] = pod
    return out


def cmd_plug(args: argparse.Namespace) -> int:
    from vmnet.core import faults
    from vmnet.phases import phase1

    vmi, cache = _load(args)
    uid, gid = _owner(args.tap_owner, "--tap-owner")
    cache_owner = _owner(args.cache_owner, "--cache-owner") if args.cache_owner else (uid, gid)
    from vmnet.plan.bindings import MacSource

    options = phase1.PlugOptions(
        tap_uid=uid,
        tap_gid=gid,
        iface_map=_iface_map(args.iface),
        mac_source=MacSource(args.mac_source),
        migration_target=args.migration_target,
        cache_owner=None if cache_owner == (0, 0) else cache_owner,
    )
    if args.dry_run:
        result = phase1.preview(vmi, args.netns, cache, options)
    else:
        result = phase1.plug(vmi, args.netns, cache, options, on_mutation=faults.crash_hook())
    if args.json:
        print(
            json.dumps(
                {
                    "dryRun": args.dry_run,
                    "cacheDir": cache.root,
                    "networks": result.networks,
                    "unplugged": result.unplugged,
                    "changes": result.mutations,
                    "warnings": result.warnings,
                },
                indent=2,
            )
        )
        return 0
    unplugged = f"; unplugged {', '.join(result.unplugged)}" if result.unplugged else ""
    verb = "would plug" if args.dry_run else "plugged"
    print(
        f"{verb} {', '.join(result.networks) or 'nothing'}{unplugged} "
        f"({len(result.mutations)} changes; cache {cache.root})"
    )
    if args.dry_run:
        for change in result.mutations:
            print(f"  {change}")
    return 0


def cmd_sidecar(args: argparse.Namespace) -> int:
    """Serve KubeVirt's hooks until the Shutdown hook or SIGTERM; exit 0."""
    try:
        from vmnet.serve.hooks import HookServer
    except ImportError as err:
        raise ConfigError("sidecar", f"needs grpcio ({err}); install vmnet[sidecar]") from err
    from vmnet.core.process import serving
    from vmnet.phases import sidecar

    plugin = os.environ.get("NETWORK_BINDING_PLUGIN_NAME") or sidecar.VMNET
    try:
        os.makedirs(args.socket_dir, exist_ok=True)
    except OSError as err:
        raise ConfigError("--socket-dir", f"{args.socket_dir}: {err.strerror}") from err
    path = os.path.join(args.socket_dir, f"vmnet-{plugin}.sock")  # unique per binding plugin

    state = sidecar.Sidecar(plugin, _link_mtu, _link_alias)
    server = HookServer(path, plugin, state.define)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    serving()
    print(f"serving KubeVirt hooks for binding plugin {plugin} on {path}", flush=True)
    try:
        while not stop.wait(0.2) and not server.shutdown.is_set():
            pass
    finally:
        server.stop()
        state.close()
    return 0


def _link_attr(name: str, attr: str) -> str | None:
    """A sysfs attribute of a link in this network namespace, None if there is no such link."""
    try:
        with open(f"/sys/class/net/{name}/{attr}", encoding="utf-8") as f:
            return f.read().strip() or None
    except OSError:
        return None


def _link_alias(name: str) -> str | None:
    return _link_attr(name, "ifalias")


def _link_mtu(name: str) -> int | None:
    mtu = _link_attr(name, "mtu")
    return int(mtu) if mtu and mtu.isdigit() else None


def cmd_check(args: argparse.Namespace) -> int:
    """Exit 0 when the pod is as the cache says, 1 (listing how not) otherwise."""
    from vmnet.phases import phase1

    vmi, cache = _load(args)
    drift = phase1.check(vmi, args.netns, cache)
    if args.json:
        print(json.dumps({"cacheDir": cache.root, "inSync": not drift, "drift": drift}, indent=2))
    elif drift:
        print(f"pod and cache {cache.root} differ:")
        for line in drift:
            print(f"  {line}")
    else:
        print(f"pod matches cache {cache.root}")
    return 1 if drift else 0


def cmd_unplug(args: argparse.Namespace) -> int:
    from vmnet.core import faults
    from vmnet.phases import phase1

    vmi, cache = _load(args)
    result = phase1.unplug(vmi, args.netns, cache, on_mutation=faults.crash_hook())
    print(f"unplugged {', '.join(result.networks) or 'nothing'} ({len(result.mutations)} changes)")
    return 0


def cmd_domain(args: argparse.Namespace) -> int:
    from vmnet.phases import phase2

    vmi, cache = _load(args)
    source = None
    if args.domain:
        source = _read(args.domain, "--domain")
    out = phase2.decorate(vmi, cache, source)
    if args.output:
        _write(args.output, out)
    else:
        sys.stdout.buffer.write(out)
    return 0


def _read(path: str, field: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:
        raise ConfigError(field, f"{path}: {err.strerror}") from err


def _write(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as err:
        raise ConfigError("-o", f"{path}: {err.strerror}") from err


def cmd_dhcp(args: argparse.Namespace) -> int:
    import logging

    from vmnet.core.netns import check_netns, resolv_conf_of
    from vmnet.core.process import serving
    from vmnet.phases import leases
    from vmnet.protocols import resolvconf
    from vmnet.serve.service import Service

    log = logging.getLogger("vmnet")
    vmi, cache = _load(args)
    check_netns(args.netns)
    resolv = resolvconf.load(args.resolv_conf or resolv_conf_of(args.netns))
    v4 = leases.dhcp_configs(vmi, cache, resolv)
    v6 = leases.dhcp6_configs(vmi, cache, resolv)
    if not v4 and not v6:
        print("no interface needs DHCP")
        return 0
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        service = Service(args.netns, v4, v6)
    except DriverError as err:
        if err.errno == errno.ENODEV:  # the bridge is not here: the wrong namespace
            where = "this network namespace" if args.netns is None else f"namespace {args.netns}"
            raise ConfigError(
                "--netns",
                f"{err.target} is not in {where}: run vmnet dhcp inside the pod, or give the "
                "pod's --netns",
            ) from err
        raise
    try:
        for bridge, config in v4:
            print(f"serving {config.address} to {config.client_mac} on {bridge}", flush=True)
        for bridge, config6 in v6:
            print(
                f"serving {config6.address} (DHCPv6, RA) to {config6.client_mac} on {bridge}",
                flush=True,
            )
        serving()
        service.wait(stop)
    finally:
        service.stop()
        served: list[tuple[object, Counters]] = [
            (r.config.client_mac, r.stats) for r in service.responders
        ]
        served += [(r.config.client_mac, r.stats) for r in service.responders6]
        for mac, stats in served:
            log.info("dhcp: served %s: %s", mac, stats.nonzero())
    if service.lost:
        raise CriticalNetworkError(
            f"{', '.join(service.lost)} is gone (the pod network was torn down); stopped serving"
        )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from vmnet.phases import leases

    if args.cache_dir is None and args.vmi is None:
        raise ConfigError("--cache-dir", "give the cache directory, or the VM's --vmi")
    from vmnet.store.cache import Cache

    cache = _load(args)[1] if args.cache_dir is None else Cache(args.cache_dir)
    if not os.path.isdir(cache.root):
        raise CacheError(f"no vmnet cache at {cache.root}: not a directory")
    records = cache.networks()
    if args.json:
        print(json.dumps(_status(cache, records), indent=2))
        return 0
    if not records:
        print(f"nothing plugged (cache {cache.root})")
    for r in records:
        dhcp = leases.lease(cache, r.network)
        lease = f"lease {dhcp.address}" if dhcp else "no DHCP"
        print(
            f"{r.vmi} {r.network}: {r.binding} on pod NIC {r.pod_iface} "
            f"(mac {r.pod_nic.link.mac}), VM mac {r.vm_mac}, {lease}, "
            f"{r.state.name.lower()}"
        )
    return 0


def _status(cache: Cache, records: Sequence[NetworkRecord]) -> dict[str, object]:
    """What `status --json` prints: one camelCase key per fact, no netlink numbers."""
    from vmnet.phases import leases
    from vmnet.store import codec

    out: dict[str, object] = {"cacheDir": cache.root}
    vmis = {r.vmi for r in records}
    if len(vmis) == 1:
        namespace, _, name = next(iter(vmis)).partition("/")
        out["vmi"] = {"namespace": namespace, "name": name}
    networks = []
    for r in records:
        link = r.pod_nic.link
        dhcp, dhcp6 = leases.lease(cache, r.network), leases.lease6(cache, r.network)
        networks.append(
            {
                "network": r.network,
                "binding": r.binding,
                "state": r.state.name.lower(),
                "primary": r.primary,
                "index": r.index,
                "vmMac": str(r.vm_mac),
                "podNic": {
                    "name": r.pod_iface,
                    "mac": None if link.mac is None else str(link.mac),
                    "mtu": link.mtu,
                    "addresses": [str(a.interface) for a in link.addresses],
                    "routes": [
                        {"destination": str(rt.destination), "gateway": _str_or_none(rt.gateway)}
                        for rt in r.pod_nic.routes
                    ],
                },
                "nicMac": str(r.nic_mac),
                "tap": codec.encode(r.tap),
                "warnings": list(r.warnings),
                "dhcp": None if dhcp is None else codec.encode(dhcp),
                "dhcp6": None if dhcp6 is None else codec.encode(dhcp6),
            }
        )
    out["networks"] = networks
    return out


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


COMMANDS = {
    "plug": cmd_plug,
    "unplug": cmd_unplug,
    "domain": cmd_domain,
    "dhcp": cmd_dhcp,
    "status": cmd_status,
    "check": cmd_check,
    "sidecar": cmd_sidecar,
}


def main(argv: Sequence[str] | None = None) -> int:
    if list(sys.argv[1:] if argv is None else argv) == ["--version"]:
        print(f"vmnet {__version__}")  # asked before every upgrade: no parser to build
        return 0
    import logging

    args = _parser().parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="vmnet: %(levelname)s: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except VmnetError as err:
        sys.stderr.write(f"vmnet {args.command}: {err}\n")
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # the last line of defence: no traceback reaches a user
        if args.verbose >= 2:
            raise
        sys.stderr.write(f"vmnet {args.command}: internal error: {type(err).__name__}: {err}\n")
        return 1


def run() -> NoReturn:
    """The `vmnet` console script: main(), then a prompt exit (vmnet.core.process)."""
    from vmnet.core.process import exit_now, short_lived

    short_lived()
    exit_now(main())


if __name__ == "__main__":
    run()
