"""The single-lease DHCPv6 policy: one request in, at most one reply out.

Pure: no I/O. Time and logging are injected; counters live in `stats`.

Only the VM is answered. With `config.client_mac` set, a request counts
as the VM's when the frame's source MAC (`src_mac`, given by the server)
is that MAC; without a frame, when the Client Identifier is a DUID-LLT or
DUID-LL carrying it. The frame decides when known: a guest may build its
DUID from another NIC or use DUID-UUID (RFC 6355). Others are ignored and
counted (KubeVirt answers anyone, docs/kubevirt.md, DHCPv6 and router advertisements).

Messages are validated as RFC 8415 §16 says (Client Identifier present,
Server Identifier absent or ours as the type requires, no IA in an
Information-request); invalid ones are dropped and counted.

Replies (RFC 8415 §18.3): SOLICIT -> ADVERTISE with Preference 255, so the
client need not wait for other servers (§18.2.1); with Rapid Commit ->
REPLY with Rapid Commit. REQUEST, RENEW, REBIND -> REPLY. CONFIRM -> REPLY
with Success when every address is the lease, else NotOnLink: the client
then solicits again and takes the current lease (stricter than the
on-link test of §18.3.3, the v6 twin of the v4 NAK; KubeVirt answers a
CONFIRM with the lease and no status). A CONFIRM without addresses gets
no reply (§18.3.3).
INFORMATION-REQUEST -> REPLY with DNS and search only. RELEASE, DECLINE ->
REPLY with status Success. Anything else -> None.

The first IA_NA of a request gets the lease with its IAID echoed,
preferred = valid = `lease_time`, T1/T2 = 50%/80% of it (0, "client's
choice", for an infinite lease, §21.4). In RENEW/REBIND every other
address the client lists in it comes back with lifetimes 0, so the guest
drops it (§18.3.4). Further IA_NA and any IA_TA get NoAddrsAvail
(NoBinding in RENEW/REBIND), IA_PD gets NoPrefixAvail.

Reply options: Client Identifier (echoed), Server Identifier (DUID-LL of
`server_mac`, as KubeVirt), then Rapid Commit/Preference, the IAs, a
status, DNS servers (23) and domain list (24) when configured.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from vmnet.core.addr import MacAddress
from vmnet.protocols.counters import Counters
from vmnet.protocols.dhcp6.codec import (
    Dhcp6Message,
    Ia,
    IaAddress,
    MessageType,
    OptionCode,
    Options,
    Status,
    StatusCode,
)
from vmnet.protocols.dhcp6.config import Dhcp6Config
from vmnet.protocols.dhcp6.options import domain_list, duid_ll, duid_mac, ipv6_list

INFINITY = 0xFFFFFFFF
MAX_PREFERENCE = b"\xff"
_ABSENT, _OURS, _OPTIONAL = "absent", "ours", "optional"
_RULES: dict[int, tuple[bool, str]] = {  # RFC 8415 §16: (client id required, server id)
    MessageType.SOLICIT: (True, _ABSENT),
    MessageType.REQUEST: (True, _OURS),
    MessageType.CONFIRM: (True, _ABSENT),
    MessageType.RENEW: (True, _OURS),
    MessageType.REBIND: (True, _ABSENT),
    MessageType.RELEASE: (True, _OURS),
    MessageType.DECLINE: (True, _OURS),
    MessageType.INFORMATION_REQUEST: (False, _OPTIONAL),
}

log = logging.getLogger("vmnet.protocols.dhcp6")


@dataclass(slots=True)
class Stats6(Counters):
    """The DHCPv6 and RA counters; `respond` updates the DHCP ones, the server the rest."""

    advertised: int = 0
    replied: int = 0
    rapid_commits: int = 0
    confirmed: int = 0
    not_on_link: int = 0
    informed: int = 0
    released: int = 0
    declined: int = 0
    ignored_invalid: int = 0
    rs_received: int = 0
    rs_ignored: int = 0
    ra_sent: int = 0
    ra_deferred: int = 0
    last_reply: float | None = None


@dataclass(slots=True)
class Responder6:
    """Answers one client with one IPv6 lease (see the module rules)."""

    config: Dhcp6Config
    now: Callable[[], float] = time.monotonic
    logger: logging.Logger = log
    stats: Stats6 = field(default_factory=Stats6)
    server_duid: bytes = field(init=False)

    def __post_init__(self) -> None:
        self.server_duid = duid_ll(self.config.server_mac)

    def respond(
        self, msg: Dhcp6Message, *, src_mac: MacAddress | None = None
    ) -> Dhcp6Message | None:
        """The reply to `msg` (whose frame came from `src_mac`, if known), or None."""
        self.stats.received += 1
        rule = _RULES.get(msg.msg_type)
        if rule is None:
            self.stats.ignored_other += 1
            return None
        if not self._valid(msg, *rule):
            return None
        if not self._from_client(msg, src_mac):
            self.stats.ignored_foreign += 1
            self.logger.debug("dhcp6: ignoring type %d from %s", msg.msg_type, src_mac)
            return None
        return self._dispatch(msg)

    def _valid(self, msg: Dhcp6Message, needs_client: bool, server: str) -> bool:
        sid = msg.server_id
        if (server == _ABSENT and sid is not None) or (server == _OURS and sid is None):
            self.stats.ignored_invalid += 1
            return False
        if sid is not None and sid != self.server_duid:
            self.stats.ignored_other_server += 1
            return False
        informing = msg.msg_type == MessageType.INFORMATION_REQUEST
        if (needs_client and msg.client_id is None) or (informing and msg.ias):
            self.stats.ignored_invalid += 1
            return False
        return True

    def _from_client(self, msg: Dhcp6Message, src_mac: MacAddress | None) -> bool:
        want = self.config.client_mac
        if want is None:
            return True
        return (src_mac if src_mac is not None else duid_mac(msg.client_id)) == want

    def _dispatch(self, msg: Dhcp6Message) -> Dhcp6Message | None:
        kind = msg.msg_type
        if kind == MessageType.SOLICIT and not msg.rapid_commit:
            self.stats.advertised += 1
            self.logger.info(
                "dhcp6: SOLICIT from %s: ADVERTISE %s", _hex(msg.client_id), self.config.address.ip
            )
            extra: Options = ((int(OptionCode.PREFERENCE), MAX_PREFERENCE),)
            return self._reply(msg, MessageType.ADVERTISE, extra + self._ias(msg) + self._info())
        if kind in (
            MessageType.SOLICIT,
            MessageType.REQUEST,
            MessageType.RENEW,
            MessageType.REBIND,
        ):
            return self._lease(msg)
        if kind == MessageType.CONFIRM:
            return self._confirm(msg)
        if kind == MessageType.INFORMATION_REQUEST:
            self.stats.informed += 1
            return self._reply(msg, MessageType.REPLY, self._info())
        if kind == MessageType.RELEASE:
            self.stats.released += 1
        else:
            self.stats.declined += 1
        self.logger.info("dhcp6: %s from %s", MessageType(kind).name, _hex(msg.client_id))
        return self._reply(msg, MessageType.REPLY, (Status(StatusCode.SUCCESS).option(),))

    def _lease(self, msg: Dhcp6Message) -> Dhcp6Message:
        self.stats.replied += 1
        self.stats.last_reply = self.now()
        extra: Options = ()
        if msg.msg_type == MessageType.SOLICIT:
            self.stats.rapid_commits += 1
            extra = ((int(OptionCode.RAPID_COMMIT), b""),)
        self.logger.info(
            "dhcp6: %s from %s: REPLY %s",
            MessageType(msg.msg_type).name,
            _hex(msg.client_id),
            self.config.address.ip,
        )
        return self._reply(msg, MessageType.REPLY, extra + self._ias(msg) + self._info())

    def _confirm(self, msg: Dhcp6Message) -> Dhcp6Message | None:
        listed = [a.address for ia in msg.ias for a in ia.addresses]
        if not listed:
            self.stats.ignored_invalid += 1
            return None
        lease = self.config.address.ip
        if all(address == lease for address in listed):
            self.stats.confirmed += 1
            status = Status(StatusCode.SUCCESS, "the address is the lease")
        else:
            self.stats.not_on_link += 1
            self.logger.info("dhcp6: NotOnLink for %s (lease is %s)", listed, lease)
            status = Status(StatusCode.NOT_ON_LINK, f"the lease is {lease}")
        return self._reply(msg, MessageType.REPLY, (status.option(),))

    def _ias(self, msg: Dhcp6Message) -> Options:
        keeping = msg.msg_type in (MessageType.RENEW, MessageType.REBIND)
        out: list[tuple[int, bytes]] = []
        leased = False
        for ia in msg.ias:
            if ia.kind == OptionCode.IA_NA and not leased:
                leased = True
                out.append(self._lease_ia(ia, stale=ia.addresses if keeping else ()))
                continue
            code = StatusCode.NO_BINDING if keeping else StatusCode.NO_ADDRS_AVAIL
            if ia.kind == OptionCode.IA_PD:
                code = StatusCode.NO_PREFIX_AVAIL
            out.append(Ia(ia.kind, ia.iaid, options=(Status(code).option(),)).option())
        if not leased:
            out.append(Status(StatusCode.NO_ADDRS_AVAIL, "no IA_NA in the request").option())
        return tuple(out)

    def _lease_ia(self, ia: Ia, stale: tuple[IaAddress, ...]) -> tuple[int, bytes]:
        life = self.config.lease_time
        t1, t2 = (0, 0) if life == INFINITY else (life // 2, life * 4 // 5)
        lease = self.config.address.ip
        addrs = [IaAddress(lease, life, life).option()]
        addrs += [IaAddress(a.address, 0, 0).option() for a in stale if a.address != lease]
        return Ia(OptionCode.IA_NA, ia.iaid, t1, t2, tuple(addrs)).option()

    def _info(self) -> Options:
        out: list[tuple[int, bytes]] = []
        if self.config.dns:
            out.append((int(OptionCode.DNS_SERVERS), ipv6_list(self.config.dns)))
        if self.config.search:
            out.append((int(OptionCode.DOMAIN_LIST), domain_list(self.config.search)))
        return tuple(out)

    def _reply(self, msg: Dhcp6Message, kind: MessageType, body: Options) -> Dhcp6Message:
        head: list[tuple[int, bytes]] = []
        if msg.client_id is not None:
            head.append((int(OptionCode.CLIENTID), msg.client_id))
        head.append((int(OptionCode.SERVERID), self.server_duid))
        return Dhcp6Message(int(kind), msg.transaction_id, tuple(head) + body)


def _hex(data: bytes | None) -> str:
    return "-" if data is None else data.hex(":")
