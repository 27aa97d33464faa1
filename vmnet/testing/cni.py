"""Pods whose NIC is made by a real CNI plugin, on a throwaway node.

A `Node` is a namespace playing the Kubernetes node: CNI plugins run
inside it (so `cbr0`, ptp host veths and NAT rules land there, never in
the machine's root namespace), and it owns an `uplink0` veth with an
address and a default route, the macvlan master and the route proxy ARP
needs. Its host-local IPAM store is a private temporary directory.

A plugin is run exactly as a runtime does (CNI spec 1.0, "Execution
Protocol"): CNI_COMMAND/CNI_CONTAINERID/CNI_NETNS/CNI_IFNAME/CNI_PATH in
the environment, the network configuration on stdin, the result JSON on
stdout, an error JSON and a non-zero exit on failure.

Every pod is deleted (CNI DEL with the ADD result as `prevResult`) before
its namespace goes, and a node deletes its pods, newest first, before
itself. Deleting twice is a no-op.

Pods built without CNI (plain veth, Calico-like) get a synthesized result,
so every pod answers `.address`, `.gateway`, `.mac`, `.mtu` the same way.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vmnet.core.addr import IPAddress, IPInterface, MacAddress
from vmnet.core.errors import ConfigError, DriverError
from vmnet.core.netns import netns_path
from vmnet.testing import namespaces as ns
from vmnet.testing.cnidata import (
    CONFIGS,
    UPLINK,
    CniIP,
    CniResult,
    bridge_config,
    host_local,
    macvlan_config,
    ptp_config,
    static_ipam,
)

CNI_BIN = "/usr/lib/cni"
CNI_VERSION = "1.0.0"
UPLINK_ADDR = "192.168.255.1/24"
UPLINK_GW = "192.168.255.254"
CALICO_GW = "169.254.1.1"
CALICO_HOST_MAC = MacAddress.parse("ee:ee:ee:ee:ee:ee")

__all__ = [
    "CNI_BIN",
    "CONFIGS",
    "CniError",
    "CniPod",
    "CniResult",
    "Node",
    "bridge_config",
    "find_plugin",
    "host_local",
    "macvlan_config",
    "plugin_path",
    "ptp_config",
    "search_path",
    "set_search_path",
    "static_ipam",
]


@dataclass(frozen=True, slots=True)
class _HandMade:
    """A pod NIC built without CNI: node end `host`, pod end `ifname`."""

    host: str
    ifname: str
    mtu: int | None
    ip: CniIP
    node_cmds: tuple[str, ...]
    pod_cmds: tuple[str, ...]
    host_mac: MacAddress | None = None


class CniError(DriverError):
    """A CNI plugin failed; the message carries the plugin's own error text."""


# Where plugins are looked for, in order, as CNI runtimes do with CNI_PATH: the
# environment's CNI_PATH, else the conventional /opt/cni/bin, then Debian's
# /usr/lib/cni. The pytest plugin sets it from --cni-path / ini `vmnet_cni_path`.
_search_path: list[str] = []


def search_path() -> list[str]:
    """The directories plugins are looked for in, first match wins."""
    if _search_path:
        return list(_search_path)
    env = os.environ.get("CNI_PATH")
    return [d for d in env.split(":") if d] if env else ["/opt/cni/bin", CNI_BIN]


def set_search_path(dirs: Sequence[str] | str | None) -> None:
    """Look for plugins in `dirs` (a list or a colon-separated string); None: the default."""
    if isinstance(dirs, str):
        dirs = dirs.split(":")
    _search_path[:] = [d for d in (dirs or ()) if d]


def find_plugin(plugin: str) -> str | None:
    """The executable of a CNI plugin on the search path, or None."""
    if "/" in plugin or not plugin:
        return None
    for directory in search_path():
        path = os.path.join(directory, plugin)
        if os.access(path, os.X_OK) and os.path.isfile(path):
            return path
    return None


def plugin_path(plugin: str) -> str:
    """The executable of a CNI plugin, or ConfigError naming what is missing."""
    path = find_plugin(plugin)
    if path is None:
        raise ConfigError("cni", f"plugin {plugin!r} not found in {':'.join(search_path())}")
    return path


class CniPod:
    """One pod NIC (`ifname` in namespace `netns`) and what made it."""

    def __init__(
        self,
        node: Node,
        netns: str,
        ifname: str,
        result: CniResult,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.node = node
        self.netns = netns
        self.ifname = ifname
        self.result = result
        self.config = config
        self.container_id = f"{netns}-{ifname}"
        self.owns_netns = True
        self.mtu = _mtu(netns, ifname)
        self.closed = False

    @property
    def address(self) -> IPInterface:
        """The first address the result gives the pod interface."""
        ips = self.result.ips_of(self.ifname)
        if not ips:
            raise ConfigError("pod", f"CNI result has no address for {self.ifname}")
        return ips[0].address

    @property
    def gateway(self) -> IPAddress | None:
        ips = self.result.ips_of(self.ifname)
        return ips[0].gateway if ips else None

    @property
    def mac(self) -> MacAddress:
        iface = self.result.interface(self.ifname)
        if iface is None or iface.mac is None:
            raise ConfigError("pod", f"CNI result has no MAC for {self.ifname}")
        return iface.mac

    def close(self) -> None:
        """CNI DEL (if a plugin made the NIC), then remove the pod namespace."""
        if self.closed:
            return
        self.closed = True
        try:
            if self.config is not None:
                conf = dict(self.config, prevResult=self.result.raw)
                self.node.invoke("DEL", conf, self.netns, self.ifname, self.container_id)
        finally:
            if self.owns_netns:
                ns.remove_netns(self.netns)

    def __repr__(self) -> str:
        return f"CniPod({self.netns}/{self.ifname} {self.result.summary()})"


class Node:
    """A node namespace that runs CNI plugins and hosts pods."""

    def __init__(self) -> None:
        self.netns = ns.create_netns()
        self.data_dir = tempfile.mkdtemp(prefix="vmt-cni-")
        self.pods: list[CniPod] = []
        try:
            ns.create_veth(ns.VethEnd(self.netns, UPLINK), ns.VethEnd(self.netns, UPLINK + "p"))
            ns.ip_batch(
                self.netns,
                [
                    f"addr add {UPLINK_ADDR} dev {UPLINK}",
                    f"route add default via {UPLINK_GW} dev {UPLINK}",
                ],
            )
            ns.write_sysctl(self.netns, "net.ipv4.ip_forward", "1")
        except BaseException:
            self.close()
            raise

    def add_pod(
        self,
        config: Mapping[str, Any] | None = None,
        *,
        ifname: str = "eth0",
        netns: str | None = None,
    ) -> CniPod:
        """CNI ADD `config` (default: bridge + host-local) for `ifname`.

        Args:
            config: a network configuration; cniVersion, name and the
                host-local dataDir are filled in when absent.
            ifname: CNI_IFNAME (eth0, or a secondary name like pod914f438d88d).
            netns: an existing pod namespace (a second NIC); default: a new one.

        Raises:
            ConfigError: the configuration is unusable or its plugin missing.
            CniError: the plugin failed.
        """
        conf = self._complete(config if config is not None else bridge_config())
        pod_ns = netns or ns.create_netns()
        try:
            raw = self.invoke("ADD", conf, pod_ns, ifname, f"{pod_ns}-{ifname}")
            pod = CniPod(self, pod_ns, ifname, CniResult.from_json(raw), conf)
        except BaseException:
            if netns is None:
                ns.remove_netns(pod_ns)
            raise
        pod.owns_netns = netns is None
        self.pods.append(pod)
        return pod

    def _complete(self, config: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(config, Mapping) or not isinstance(config.get("type"), str):
            raise ConfigError("cni", "a network configuration is a mapping with a 'type'")
        plugin_path(config["type"])
        conf: dict[str, Any] = json.loads(json.dumps(dict(config)))
        conf.setdefault("cniVersion", CNI_VERSION)
        conf.setdefault("name", f"vmt-{conf['type']}")
        ipam = conf.get("ipam") or {}
        if ipam.get("type"):
            plugin_path(ipam["type"])
        if ipam.get("type") == "host-local":
            ipam.setdefault("dataDir", self.data_dir)
        return conf

    def invoke(
        self, command: str, conf: Mapping[str, Any], pod_ns: str, ifname: str, container_id: str
    ) -> dict[str, Any]:
        """Run the plugin of `conf` once and return its parsed stdout."""
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": netns_path(pod_ns),
            "CNI_IFNAME": ifname,
            "CNI_PATH": ":".join(search_path()),
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        }
        done = ns.exec_in(
            self.netns,
            [plugin_path(conf["type"])],
            input=json.dumps(conf),
            env=env,
            check=False,
            timeout=30.0,
        )
        out = json.loads(done.stdout) if done.stdout.strip() else {}
        if done.returncode != 0:
            why = out.get("msg") or done.stderr.strip() or f"exit {done.returncode}"
            detail = f" ({out['details']})" if out.get("details") else ""
            raise CniError(f"cni {command}", f"{conf['type']} {pod_ns}/{ifname}", why + detail)
        return out

    def veth_pod(
        self,
        address: str = "10.26.0.2/24",
        gateway: str = "10.26.0.1",
        *,
        ifname: str = "eth0",
        mtu: int | None = None,
    ) -> CniPod:
        """A pod without CNI: a veth whose node end holds the gateway address."""
        addr = ipaddress.ip_interface(address)
        host = "veth" + secrets.token_hex(5)
        return self._manual_pod(
            _HandMade(
                host,
                ifname,
                mtu,
                CniIP(addr, ipaddress.ip_address(gateway)),
                node_cmds=(f"addr add {gateway}/{addr.network.prefixlen} dev {host}",),
                pod_cmds=(
                    f"addr add {address} dev {ifname}",
                    f"route add default via {gateway} dev {ifname}",
                ),
            )
        )

    def calico_pod(
        self, address: str = "10.27.0.5", *, ifname: str = "eth0", mtu: int | None = None
    ) -> CniPod:
        """A Calico-shaped pod: /32 address, on-link 169.254.1.1 default gateway.

        The node end (`cali...`, MAC ee:ee:ee:ee:ee:ee) answers ARP for
        169.254.1.1 by proxy ARP and routes the pod's /32 to it, as Calico does.
        """
        host = "cali" + secrets.token_hex(5)
        addr = ipaddress.ip_interface(f"{address}/32")
        pod = self._manual_pod(
            _HandMade(
                host,
                ifname,
                mtu,
                CniIP(addr, ipaddress.ip_address(CALICO_GW)),
                node_cmds=(f"route add {addr} dev {host} scope link",),
                pod_cmds=(
                    f"addr add {addr} dev {ifname}",
                    f"route add {CALICO_GW} dev {ifname} scope link",
                    f"route add default via {CALICO_GW} dev {ifname}",
                ),
                host_mac=CALICO_HOST_MAC,
            )
        )
        ns.write_sysctl(self.netns, f"net/ipv4/conf/{host}/proxy_arp", "1")
        ns.write_sysctl(self.netns, f"net/ipv4/neigh/{host}/proxy_delay", "0")
        return pod

    def _manual_pod(self, nic: _HandMade) -> CniPod:
        pod_ns = ns.create_netns()
        try:
            ns.create_veth(
                ns.VethEnd(self.netns, nic.host, nic.host_mac, nic.mtu),
                ns.VethEnd(pod_ns, nic.ifname, MacAddress.random_local(), nic.mtu),
            )
            ns.ip_batch(self.netns, nic.node_cmds)
            ns.ip_batch(pod_ns, nic.pod_cmds)
            mac = _mac(pod_ns, nic.ifname)
            pod = CniPod(
                self, pod_ns, nic.ifname, CniResult.manual(pod_ns, nic.ifname, mac, nic.ip)
            )
        except BaseException:
            ns.remove_netns(pod_ns)
            raise
        self.pods.append(pod)
        return pod

    def close(self) -> None:
        """Delete every pod (newest first), then the node namespace and IPAM store."""
        try:
            while self.pods:
                self.pods.pop().close()
        finally:
            ns.remove_netns(self.netns)
            shutil.rmtree(self.data_dir, ignore_errors=True)


def _mtu(netns: str, ifname: str) -> int:
    with ns.open_ipr(netns) as ipr:
        return int(ipr.get_links(ns.link_index(ipr, ifname))[0].get("mtu"))


def _mac(netns: str, ifname: str) -> MacAddress:
    with ns.open_ipr(netns) as ipr:
        return MacAddress.parse(ipr.get_links(ns.link_index(ipr, ifname))[0].get("address"))
