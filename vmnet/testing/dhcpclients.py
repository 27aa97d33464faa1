"""Run unmodified DHCP clients (busybox udhcpc, ISC dhclient, dhcpcd,
systemd-networkd) in a netns.

The binaries are the distribution's; only command line, config and hook
script are ours. Each client configures the interface itself (udhcpc via
our -s script, dhclient via Debian's dhclient-script, dhcpcd and networkd
natively).

The lease is parsed from the client's own hook environment (networkd: its
own lease file, /run/systemd/netif/leases/IFINDEX); the raw variables are
kept in `Lease.raw`. networkd runs as Ubuntu and Debian cloud images run
it, from one `.network` file with `DHCP=ipv4`, without systemd as PID 1: a
private mount namespace gives it tmpfs over /run/systemd and
/etc/systemd/network and a read-only /sys (so it expects no udev); its
state directory is bound to the work directory so the lease can be read.
Its lease counts as taken once its link state file says the link is
configured (address and routes set).

Runs are `ip netns exec NS unshare --uts ...`: the netns resolv.conf is
bind-mounted (created under /etc/netns/NS when absent, removed after) and
option 12 cannot rename the machine. dhcpcd gets private bind mounts over
its fixed state directories. Failures raise `ClientError` with the output.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

from vmnet.core.errors import ConfigError, VmnetError
from vmnet.core.netns import check_netns
from vmnet.protocols.dhcp4.options import parse_classless_routes
from vmnet.testing.lease import Lease

CLIENTS = ("udhcpc", "dhclient", "dhcpcd", "networkd")
NETWORKD = "/lib/systemd/systemd-networkd"
POLL = 0.05

_DUMP = 'env > "{dir}/env.tmp" && mv "{dir}/env.tmp" "{dir}/$reason.env"\n'
_UDHCPC_SCRIPT = (
    """#!/bin/sh
reason="$1"
case "$reason" in
deconfig) ip -4 addr flush dev "$interface"; ip link set "$interface" up ;;
bound|renew)
  ip -4 addr flush dev "$interface"
  ip addr add "$ip/${mask:-32}" dev "$interface"
  [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
  if [ -n "$staticroutes" ]; then
    set -- $staticroutes
    while [ $# -ge 2 ]; do
      if [ "$2" = 0.0.0.0 ]; then ip route replace "$1" dev "$interface"
      else ip route replace "$1" via "$2" dev "$interface"; fi
      shift 2
    done
  elif [ -n "$router" ]; then
    set -- $router; ip route replace default via "$1" dev "$interface"
  fi ;;
esac
"""
    + _DUMP
)
DHCLIENT_SCRIPT = (
    """#!/bin/sh
/sbin/dhclient-script; rc=$?
"""
    + _DUMP
    + "exit $rc\n"
)
_DHCLIENT_CONF = """option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;
timeout {timeout}; retry 1; initial-interval 1;
request subnet-mask, broadcast-address, routers, domain-name, domain-name-servers,
  domain-search, host-name, interface-mtu, rfc3442-classless-static-routes, ntp-servers;
"""
DHCPCD_SCRIPT = "#!/bin/sh\n" + _DUMP
_DHCPCD_CONF = """option domain_name_servers, domain_name, domain_search, host_name, ntp_servers
option classless_static_routes, interface_mtu\nrequire dhcp_server_identifier\nnoarp
"""
_LEASE_REASONS = {
    "udhcpc": ("bound",),
    "dhclient": ("BOUND", "REBOOT"),
    "dhcpcd": ("BOUND", "REBOOT"),
    "networkd": (),  # see _networkd_configured
}
_NETWORKD_UNIT = """[Match]
Name={ifname}

[Network]
DHCP=ipv4
IPv6AcceptRA=no
LinkLocalAddressing=no

[DHCP]
RouteMetric=100
UseMTU=true
"""  # what netplan writes for `dhcp4: true` (Ubuntu and Debian cloud images), IPv4 only


class ClientError(VmnetError):
    """A DHCP client got no lease, or its output could not be parsed."""


def run_client(
    client: str,
    netns: str,
    ifname: str,
    *,
    timeout: float = 30.0,
    workdir: str | None = None,
    lease_file_text: str | None = None,
) -> Lease:
    """Run `client` once in `netns` on `ifname` and return the lease it took.

    Args:
        lease_file_text: dhclient only: seeds its lease file (e.g. an old
            `fixed-address` to make it INIT-REBOOT).

    Raises:
        ConfigError: unknown client.
        ClientError: no lease within `timeout` (message has the output).
    """
    session = ClientSession(
        client,
        netns,
        ifname,
        timeout=timeout,
        workdir=workdir,
        lease_file_text=lease_file_text,
        oneshot=True,
    )
    try:
        return session.wait_lease(timeout)
    finally:
        session.stop()


class ClientSession:
    """A client running in the background, for renewals (`renew`)."""

    def __init__(
        self,
        client: str,
        netns: str,
        ifname: str,
        *,
        timeout: float = 30.0,
        workdir: str | None = None,
        lease_file_text: str | None = None,
        oneshot: bool = False,
    ) -> None:
        if client not in CLIENTS:
            raise ConfigError("client", f"unknown DHCP client {client!r}; one of {CLIENTS}")
        check_netns(netns)
        self.client, self.netns, self.ifname = client, netns, ifname
        self._own_dir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix=f"vmnet-{client}-")
        self._resolv = ensure_resolv_conf(netns)
        argv = _prepare(client, ifname, self.workdir, timeout, lease_file_text, oneshot)
        self._log = open(os.path.join(self.workdir, "client.log"), "wb")  # noqa: SIM115 - the client's log, closed with it
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, "unshare", "--uts", *argv],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            start_new_session=True,
        )

    def wait_lease(self, timeout: float) -> Lease:
        """Block until the client reports a lease; parse it."""
        path = self.wait_lease_file(timeout)
        if self.client == "networkd":  # the lease is next to the link's state
            path = os.path.join(self.workdir, "netif", "leases", os.path.basename(path))
        return parse_env(self.client, read_env(path))

    def wait_lease_file(self, timeout: float) -> str:
        """Block until the client reports a lease: the path of its hook's dump,
        written once the client has configured the address (its mtime says when)."""
        return self._wait_env(_LEASE_REASONS[self.client], timeout)

    def renew(self, timeout: float = 10.0) -> Lease:
        """udhcpc only: SIGUSR1 makes it renew (unicast to the server id)."""
        if self.client != "udhcpc":
            raise ConfigError("client", "renew() drives udhcpc's SIGUSR1 only")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.workdir, "renew.env"))
        self.proc.send_signal(signal.SIGUSR1)
        return parse_env(self.client, read_env(self._wait_env(("renew",), timeout)))

    def output(self) -> str:
        self._log.flush()
        return Path(self.workdir, "client.log").read_text(errors="replace")

    def stop(self) -> None:
        """Kill the client (its configuration stays) and clean up."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._log.close()
        remove_resolv_conf(self._resolv)
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _wait_env(self, reasons: tuple[str, ...], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            exited = self.proc.poll() is not None
            for reason in reasons:
                path = os.path.join(self.workdir, f"{reason}.env")
                if os.path.exists(path):
                    return path
            if self.client == "networkd":
                configured = _networkd_configured(self.workdir)
                if configured is not None:
                    return configured
            if exited or time.monotonic() > deadline:
                break
            time.sleep(POLL)
        raise ClientError(
            f"{self.client} in {self.netns} on {self.ifname}: no lease within {timeout:g}s "
            f"(exit {self.proc.poll()}): {self.output()[-2000:]!r}"
        )


def write_file(path: str, text: str, mode: int = 0o644) -> str:
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def client_script(wd: str, name: str, template: str) -> str:
    # dhclient gives its script a fresh environment: the path is baked in.
    return write_file(os.path.join(wd, name), template.replace("{dir}", wd), 0o755)


def _prepare(
    client: str, ifname: str, wd: str, timeout: float, lease_text: str | None, oneshot: bool
) -> list[str]:
    tries = str(max(1, int(timeout)))
    if client == "udhcpc":
        script = client_script(wd, "udhcpc.sh", _UDHCPC_SCRIPT)
        opts = [
            a
            for o in ("mtu", "search", "staticroutes", "ntpsrv", "hostname", "domain")
            for a in ("-O", o)
        ]
        once = ["-q", "-n"] if oneshot else []
        return [
            "busybox",
            "udhcpc",
            "-f",
            *once,
            "-i",
            ifname,
            "-s",
            script,
            "-t",
            tries,
            "-T",
            "1",
            "-A",
            "1",
            *opts,
        ]
    if client == "dhclient":
        script = client_script(wd, "dhclient.sh", DHCLIENT_SCRIPT)
        conf = write_file(os.path.join(wd, "dhclient.conf"), _DHCLIENT_CONF.format(timeout=tries))
        lease = write_file(os.path.join(wd, "dhclient.leases"), lease_text or "")
        return [
            "dhclient",
            "-d",
            "-1",
            "-v",
            "-cf",
            conf,
            "-lf",
            lease,
            "-pf",
            os.path.join(wd, "dhclient.pid"),
            "-sf",
            script,
            ifname,
        ]
    if client == "networkd":
        return _networkd(ifname, wd)
    script = client_script(wd, "dhcpcd.sh", DHCPCD_SCRIPT)
    conf = write_file(os.path.join(wd, "dhcpcd.conf"), _DHCPCD_CONF)
    for sub in ("lib", "run"):
        os.makedirs(os.path.join(wd, sub), exist_ok=True)
    once = ["--oneshot"] if oneshot else []
    inner = (
        f"mount --bind {wd}/lib /var/lib/dhcpcd && mount --bind {wd}/run /run/dhcpcd && "
        f"exec dhcpcd -f {conf} -c {script} {' '.join(once)} --nobackground --noipv4ll "
        f"-4 -t {tries} {ifname}"
    )
    os.makedirs("/run/dhcpcd", exist_ok=True)
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", inner]


def _networkd(ifname: str, wd: str) -> list[str]:
    import pwd

    if not os.path.exists(NETWORKD):
        raise ClientError(f"networkd: {NETWORKD} is missing (Debian's systemd package)")
    user = pwd.getpwnam("systemd-network")
    netif = os.path.join(wd, "netif")
    os.makedirs(netif, exist_ok=True)
    os.chown(netif, user.pw_uid, user.pw_gid)
    os.chmod(wd, 0o755)  # networkd drops to systemd-network, which must reach netif/
    unit = write_file(os.path.join(wd, "10-vmnet.network"), _NETWORKD_UNIT.format(ifname=ifname))
    inner = (
        "mount -t tmpfs tmpfs /run/systemd && mkdir -p /run/systemd/netif && "
        f"mount --bind {netif} /run/systemd/netif && "
        f"mount -t tmpfs tmpfs /etc/systemd/network && cp {unit} /etc/systemd/network/ && "
        f"mount -o remount,ro /sys && exec {NETWORKD}"
    )
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", inner]


def _networkd_configured(wd: str) -> str | None:
    """networkd's state file of a link it has configured (DHCPv4 address and
    routes set), whose lease file exists; else None."""
    links = os.path.join(wd, "netif", "links")
    try:
        names = os.listdir(links)
    except FileNotFoundError:
        return None
    for name in names:
        path = os.path.join(links, name)
        state = read_env(path) if os.path.isfile(path) else {}
        lease = os.path.join(wd, "netif", "leases", name)
        if state.get("ADMIN_STATE") == "configured" and os.path.exists(lease):
            return path
    return None


def read_env(path: str) -> dict[str, str]:
    with open(path, errors="replace") as f:
        pairs = [line.rstrip("\n").partition("=") for line in f]
    return {k: v for k, sep, v in pairs if sep and k.isidentifier()}


def parse_env(client: str, env: dict[str, str]) -> Lease:
    """Turn one client's hook environment into a `Lease`."""
    try:
        return _parse(client, env)
    except (KeyError, ValueError) as err:
        raise ClientError(f"{client}: cannot parse lease ({err}): {env}") from err


def _ips(text: str | None) -> tuple[IPv4Address, ...]:
    return tuple(IPv4Address(a) for a in (text or "").split())


def _first(text: str | None) -> IPv4Address | None:
    return next(iter(_ips(text)), None)


def _int(text: str | None) -> int | None:
    return int(text) if text else None


def _pair_routes(text: str | None) -> tuple[tuple[IPv4Network, IPv4Address], ...]:
    words = (text or "").split()
    return tuple(
        (IPv4Network(d), IPv4Address(g)) for d, g in zip(words[::2], words[1::2], strict=False)
    )


def _networkd_routes(text: str | None) -> tuple[tuple[IPv4Network, IPv4Address], ...]:
    """`dst/len,gw dst/len,gw`, as networkd writes CLASSLESS_ROUTES."""
    pairs = (word.split(",", 1) for word in (text or "").split())
    return tuple((IPv4Network(d), IPv4Address(g)) for d, g in pairs)


def _rfc3442_routes(text: str | None) -> tuple[tuple[IPv4Network, IPv4Address], ...]:
    data = bytes(int(x) for x in (text or "").replace(",", " ").split())
    return tuple((d, g or IPv4Address(0)) for d, g in parse_classless_routes(data))


# Hook variable names: (address, mask, router, dns, search, domain, hostname,
# mtu, routes, server id, lease time), then the routes parser.
_NAMES = {
    "udhcpc": (
        "ip mask router dns search domain hostname mtu staticroutes serverid lease",
        _pair_routes,
    ),
    "dhclient": (
        "new_ip_address new_subnet_mask new_routers new_domain_name_servers "
        "new_domain_search new_domain_name new_host_name new_interface_mtu "
        "new_rfc3442_classless_static_routes new_dhcp_server_identifier "
        "new_dhcp_lease_time",
        _rfc3442_routes,
    ),
    "dhcpcd": (
        "new_ip_address new_subnet_cidr new_routers new_domain_name_servers "
        "new_domain_search new_domain_name new_host_name new_interface_mtu "
        "new_classless_static_routes new_dhcp_server_identifier new_dhcp_lease_time",
        _pair_routes,
    ),
    "networkd": (  # systemd-networkd's lease file (networkd-dhcp4.c, dhcp-lease-internal.h)
        "ADDRESS NETMASK ROUTER DNS DOMAIN_SEARCH_LIST DOMAINNAME HOSTNAME MTU "
        "CLASSLESS_ROUTES SERVER_ADDRESS LIFETIME",
        _networkd_routes,
    ),
}


def _parse(client: str, env: dict[str, str]) -> Lease:
    names, routes = _NAMES[client]
    ip, mask, router, dns, search, domain, host, mtu, rts, sid, lease = (
        env.get(n) or None for n in names.split()
    )
    return Lease(
        client,
        IPv4Interface(f"{ip}/{mask}"),
        router=_first(router),
        dns=_ips(dns),
        search=tuple(d.rstrip(".") for d in (search or "").split()),
        domain=domain,
        hostname=host,
        mtu=_int(mtu),
        routes=routes(rts),
        server_id=_first(sid),
        lease_time=_int(lease),
        raw=tuple(sorted(env.items())),
    )


def ensure_resolv_conf(netns: str) -> list[str]:
    """Create /etc/netns/NS/resolv.conf if missing; return what we created."""
    directory = os.path.join("/etc/netns", netns)
    path = os.path.join(directory, "resolv.conf")
    created = [p for p in (directory, path) if not os.path.exists(p)]
    os.makedirs(directory, exist_ok=True)
    if path in created:
        write_file(path, "# vmnet test namespace\n")
    return created


def remove_resolv_conf(created: list[str]) -> None:
    for path in reversed(created):
        with contextlib.suppress(OSError):
            os.rmdir(path) if os.path.isdir(path) else os.unlink(path)
