"""Responder6: the single-lease policy, message by message (RFC 8415 §16, §18.3)."""

from ipaddress import IPv6Address, IPv6Interface

import pytest

from vmnet.core.addr import MacAddress
from vmnet.protocols.dhcp6.codec import (
    Dhcp6Message,
    Ia,
    IaAddress,
    MessageType,
    OptionCode,
    Status,
    StatusCode,
    decode,
    encode,
)
from vmnet.protocols.dhcp6.config import Dhcp6Config
from vmnet.protocols.dhcp6.options import domain_list, duid_ll
from vmnet.protocols.dhcp6.responder import Responder6

GUEST = MacAddress.parse("52:54:00:aa:bb:02")
OTHER = MacAddress.parse("52:54:00:aa:bb:99")
BRIDGE = MacAddress.parse("02:00:00:00:00:00")
LEASE = IPv6Address("fd10:0:2::2")
STALE = IPv6Address("fd10:0:2::77")
CLIENT_ID = bytes.fromhex("0001000100000001") + GUEST.packed
SERVER_ID = duid_ll(BRIDGE)
DNS = IPv6Address("fd00::10")
LIFE = 7200


def config(**over: object) -> Dhcp6Config:
    base: dict[str, object] = {
        "client_mac": GUEST,
        "address": IPv6Interface("fd10:0:2::2/120"),
        "server_mac": BRIDGE,
        "dns": (DNS,),
        "search": ("svc.cluster.local",),
        "lease_time": LIFE,
    }
    return Dhcp6Config(**(base | over))  # type: ignore[arg-type]


def ia_na(iaid: int = 7, *addrs: IPv6Address) -> tuple[int, bytes]:
    return Ia(
        OptionCode.IA_NA, iaid, options=tuple(IaAddress(a, 0, 0).option() for a in addrs)
    ).option()


def request(
    kind: int,
    *options: tuple[int, bytes],
    client_id: bytes | None = CLIENT_ID,
    server_id: bytes | None = None,
) -> Dhcp6Message:
    head = [] if client_id is None else [(int(OptionCode.CLIENTID), client_id)]
    head += [] if server_id is None else [(int(OptionCode.SERVERID), server_id)]
    return Dhcp6Message(kind, 0xABCDEF, tuple(head) + options)


def lease_ia(iaid: int = 7, *extra: IaAddress) -> tuple[int, bytes]:
    addrs = (IaAddress(LEASE, LIFE, LIFE), *extra)
    return Ia(OptionCode.IA_NA, iaid, 3600, 5760, tuple(a.option() for a in addrs)).option()


HEAD = ((OptionCode.CLIENTID, CLIENT_ID), (OptionCode.SERVERID, SERVER_ID))
INFO = (
    (OptionCode.DNS_SERVERS, DNS.packed),
    (OptionCode.DOMAIN_LIST, domain_list(["svc.cluster.local"])),
)


def respond(
    msg: Dhcp6Message, cfg: Dhcp6Config | None = None, *, src_mac: MacAddress | None = GUEST
) -> tuple[Dhcp6Message | None, Responder6]:
    responder = Responder6(cfg or config(), now=lambda: 42.0)
    reply = responder.respond(decode(encode(msg)), src_mac=src_mac)
    if reply is not None:
        assert decode(encode(reply)) == reply
        assert reply.transaction_id == 0xABCDEF
    return reply, responder


def test_solicit_gets_an_advertise_with_preference_255() -> None:
    reply, r = respond(request(MessageType.SOLICIT, ia_na()))
    assert reply == Dhcp6Message(
        MessageType.ADVERTISE,
        0xABCDEF,
        (*HEAD, (OptionCode.PREFERENCE, b"\xff"), lease_ia(), *INFO),
    )
    assert r.stats.advertised == 1 and r.stats.replied == 0


def test_solicit_with_rapid_commit_gets_a_committed_reply() -> None:
    reply, r = respond(request(MessageType.SOLICIT, ia_na(), (OptionCode.RAPID_COMMIT, b"")))
    assert reply == Dhcp6Message(
        MessageType.REPLY, 0xABCDEF, (*HEAD, (OptionCode.RAPID_COMMIT, b""), lease_ia(), *INFO)
    )
    assert (r.stats.replied, r.stats.rapid_commits, r.stats.last_reply) == (1, 1, 42.0)


@pytest.mark.parametrize("kind", [MessageType.REQUEST, MessageType.RENEW])
def test_request_and_renew_with_our_server_id_get_the_lease(kind: int) -> None:
    reply, r = respond(request(kind, ia_na(9, LEASE), server_id=SERVER_ID))
    assert reply == Dhcp6Message(MessageType.REPLY, 0xABCDEF, (*HEAD, lease_ia(9), *INFO))
    assert r.stats.replied == 1


def test_request_for_another_address_still_gets_the_lease() -> None:
    reply, _ = respond(request(MessageType.REQUEST, ia_na(9, STALE), server_id=SERVER_ID))
    assert reply is not None and reply.ias[0].addresses == (IaAddress(LEASE, LIFE, LIFE),)


@pytest.mark.parametrize(
    "kind, server_id", [(MessageType.RENEW, SERVER_ID), (MessageType.REBIND, None)]
)
def test_renew_and_rebind_of_a_stale_address_expire_it(kind: int, server_id: bytes | None) -> None:
    reply, _ = respond(request(kind, ia_na(9, STALE, LEASE), server_id=server_id))
    assert reply is not None
    assert reply.ias == (Ia.parse(*lease_ia(9, IaAddress(STALE, 0, 0))),)


def test_confirm_of_the_lease_is_success() -> None:
    reply, r = respond(request(MessageType.CONFIRM, ia_na(9, LEASE)))
    assert reply == Dhcp6Message(
        MessageType.REPLY,
        0xABCDEF,
        (*HEAD, Status(StatusCode.SUCCESS, "the address is the lease").option()),
    )
    assert r.stats.confirmed == 1


def test_confirm_of_another_address_is_not_on_link() -> None:
    reply, r = respond(request(MessageType.CONFIRM, ia_na(9, LEASE), ia_na(10, STALE)))
    assert reply is not None and reply.ias == ()
    status = Status.parse(reply.option(OptionCode.STATUS_CODE) or b"")
    assert status == Status(StatusCode.NOT_ON_LINK, "the lease is fd10:0:2::2")
    assert r.stats.not_on_link == 1


def test_confirm_without_addresses_gets_no_reply() -> None:
    reply, r = respond(request(MessageType.CONFIRM, ia_na(9)))
    assert reply is None and r.stats.ignored_invalid == 1


def test_information_request_gets_dns_and_search_only() -> None:
    reply, r = respond(request(MessageType.INFORMATION_REQUEST))
    assert reply == Dhcp6Message(MessageType.REPLY, 0xABCDEF, (*HEAD, *INFO))
    assert r.stats.informed == 1


def test_information_request_without_client_id_is_answered_by_frame() -> None:
    reply, _ = respond(request(MessageType.INFORMATION_REQUEST, client_id=None))
    assert reply == Dhcp6Message(
        MessageType.REPLY, 0xABCDEF, ((OptionCode.SERVERID, SERVER_ID), *INFO)
    )
    reply, r = respond(request(MessageType.INFORMATION_REQUEST, client_id=None), src_mac=None)
    assert reply is None and r.stats.ignored_foreign == 1


@pytest.mark.parametrize(
    "kind, counter", [(MessageType.RELEASE, "released"), (MessageType.DECLINE, "declined")]
)
def test_release_and_decline_get_success(kind: int, counter: str) -> None:
    reply, r = respond(request(kind, ia_na(9, LEASE), server_id=SERVER_ID))
    assert reply == Dhcp6Message(
        MessageType.REPLY, 0xABCDEF, (*HEAD, Status(StatusCode.SUCCESS).option())
    )
    assert getattr(r.stats, counter) == 1


def test_extra_ias_get_statuses_and_the_first_ia_na_the_lease() -> None:
    pd = Ia(OptionCode.IA_PD, 3).option()
    ta = Ia(OptionCode.IA_TA, 4).option()
    reply, _ = respond(
        request(MessageType.REQUEST, pd, ia_na(1), ia_na(2), ta, server_id=SERVER_ID)
    )
    assert reply is not None

    def status(code: int) -> tuple[tuple[int, bytes]]:
        return (Status(code).option(),)

    assert reply.ias == (
        Ia(OptionCode.IA_PD, 3, options=status(StatusCode.NO_PREFIX_AVAIL)),
        Ia.parse(*lease_ia(1)),
        Ia(OptionCode.IA_NA, 2, options=status(StatusCode.NO_ADDRS_AVAIL)),
        Ia(OptionCode.IA_TA, 4, options=status(StatusCode.NO_ADDRS_AVAIL)),
    )


def test_second_ia_na_in_renew_has_no_binding() -> None:
    reply, _ = respond(request(MessageType.RENEW, ia_na(1), ia_na(2), server_id=SERVER_ID))
    assert reply is not None
    assert reply.ias[1] == Ia(
        OptionCode.IA_NA, 2, options=(Status(StatusCode.NO_BINDING).option(),)
    )


def test_solicit_without_ia_na_says_no_addrs_avail() -> None:
    reply, _ = respond(request(MessageType.SOLICIT))
    assert reply is not None and reply.ias == ()
    assert (
        Status.parse(reply.option(OptionCode.STATUS_CODE) or b"").code == StatusCode.NO_ADDRS_AVAIL
    )


def test_infinite_lease_leaves_t1_t2_to_the_client() -> None:
    reply, _ = respond(request(MessageType.SOLICIT, ia_na()), config(lease_time=0xFFFFFFFF))
    assert reply is not None
    ia = reply.ias[0]
    assert (ia.t1, ia.t2) == (0, 0)
    assert ia.addresses == (IaAddress(LEASE, 0xFFFFFFFF, 0xFFFFFFFF),)


def test_default_lease_is_kubevirts_with_half_and_four_fifths() -> None:
    reply, _ = respond(request(MessageType.SOLICIT, ia_na()), config(lease_time=86313600))
    assert reply is not None
    assert (reply.ias[0].t1, reply.ias[0].t2) == (43156800, 69050880)


def test_no_dns_or_search_when_not_configured() -> None:
    reply, _ = respond(request(MessageType.INFORMATION_REQUEST), config(dns=(), search=()))
    assert reply == Dhcp6Message(MessageType.REPLY, 0xABCDEF, HEAD)


@pytest.mark.parametrize(
    "msg, counter",
    [
        (request(MessageType.SOLICIT, ia_na(), server_id=SERVER_ID), "ignored_invalid"),
        (request(MessageType.SOLICIT, ia_na(), client_id=None), "ignored_invalid"),
        (request(MessageType.REQUEST, ia_na()), "ignored_invalid"),
        (request(MessageType.REQUEST, ia_na(), server_id=duid_ll(OTHER)), "ignored_other_server"),
        (request(MessageType.RENEW, ia_na(), server_id=b"\x00\x02xyz"), "ignored_other_server"),
        (request(MessageType.REBIND, ia_na(), server_id=SERVER_ID), "ignored_invalid"),
        (request(MessageType.CONFIRM, ia_na(1, LEASE), server_id=SERVER_ID), "ignored_invalid"),
        (request(MessageType.RELEASE, ia_na()), "ignored_invalid"),
        (request(MessageType.INFORMATION_REQUEST, ia_na()), "ignored_invalid"),
        (
            request(MessageType.INFORMATION_REQUEST, server_id=duid_ll(OTHER)),
            "ignored_other_server",
        ),
        (request(MessageType.ADVERTISE, ia_na()), "ignored_other"),
        (request(MessageType.REPLY, ia_na()), "ignored_other"),
        (request(MessageType.RECONFIGURE), "ignored_other"),
        (request(200), "ignored_other"),
    ],
)
def test_invalid_and_other_messages_get_nothing(msg: Dhcp6Message, counter: str) -> None:
    reply, r = respond(msg)
    assert reply is None
    assert getattr(r.stats, counter) == 1 and r.stats.received == 1


OTHER_LLT = bytes.fromhex("0001000100000001") + OTHER.packed
UUID = bytes.fromhex("0004") + bytes(range(16))


@pytest.mark.parametrize(
    "client_id, src_mac, answered",
    [
        (CLIENT_ID, GUEST, True),
        (CLIENT_ID, OTHER, False),  # the frame decides, whatever the DUID says
        (OTHER_LLT, GUEST, True),  # DUID built from another NIC of the VM
        (UUID, GUEST, True),  # DUID-UUID: the frame is enough
        (CLIENT_ID, None, True),  # no frame: the DUID-LLT's MAC
        (bytes.fromhex("00030001") + GUEST.packed, None, True),
        (OTHER_LLT, None, False),
        (UUID, None, False),  # no frame and no MAC in the DUID
    ],
)
def test_only_the_vm_is_answered(
    client_id: bytes, src_mac: MacAddress | None, answered: bool
) -> None:
    reply, r = respond(request(MessageType.SOLICIT, ia_na(), client_id=client_id), src_mac=src_mac)
    assert (reply is not None) is answered
    assert r.stats.ignored_foreign == (0 if answered else 1)


def test_any_client_without_client_mac() -> None:
    reply, _ = respond(
        request(MessageType.SOLICIT, ia_na(), client_id=UUID), config(client_mac=None), src_mac=None
    )
    assert reply is not None and reply.msg_type == MessageType.ADVERTISE
