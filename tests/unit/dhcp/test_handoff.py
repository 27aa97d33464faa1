"""The one-line lease vmnet-cni leaves on the bridge for the sidecar."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmnet.core.errors import ConfigError
from vmnet.protocols.dhcp4 import handoff
from vmnet.protocols.dhcp4.config import DhcpConfig, Route

CALICO = DhcpConfig(
    None,
    IPv4Interface("10.27.0.5/32"),
    IPv4Address("169.254.75.10"),
    router=IPv4Address("169.254.1.1"),
    routes=(
        Route(IPv4Network("169.254.1.1/32"), None),
        Route(IPv4Network("0.0.0.0/0"), IPv4Address("169.254.1.1")),
    ),
    mtu=1450,
)


def test_the_form_is_short_and_reads_back() -> None:
    text = handoff.to_alias(CALICO)
    assert text == (
        "vmnet1 a=10.27.0.5/32 s=169.254.75.10 g=169.254.1.1 m=1450 "
        "r=169.254.1.1/32@-,0.0.0.0/0@169.254.1.1"
    )
    assert handoff.from_alias(text + "\n") == CALICO


@given(
    st.integers(1, 30).flatmap(
        lambda n: st.lists(
            st.builds(
                lambda net, gw: Route(IPv4Network((net, 24), strict=False), gw),
                st.integers(0, 2**32 - 1),
                st.none() | st.integers(1, 2**32 - 2).map(IPv4Address),
            ),
            max_size=n,
        )
    )
)
def test_any_lease_that_fits_round_trips_and_one_that_does_not_is_refused(routes) -> None:  # type: ignore[no-untyped-def]
    config = DhcpConfig(
        None, IPv4Interface("10.0.0.2/24"), IPv4Address("10.0.0.1"), routes=tuple(routes)
    )
    try:
        text = handoff.to_alias(config)
    except ConfigError as err:
        assert "do not fit" in str(err)
        return
    assert len(text.encode()) <= handoff.MAX_ALIAS
    assert handoff.from_alias(text) == config


@pytest.mark.parametrize("text", ["", "hello", "vmnet1", "vmnet1 a=10.0.0.2/24", "vmnet1 a=x s=y"])
def test_anything_else_is_one_error(text: str) -> None:
    with pytest.raises(ConfigError, match="lease"):
        handoff.from_alias(text)


def test_a_dual_stack_lease_names_its_ipv6_address_and_still_reads_back() -> None:
    from ipaddress import IPv6Interface

    text = handoff.to_alias(CALICO, IPv6Interface("fd00:24::5/64"))
    assert " 6=fd00:24::5/64 " in text
    assert handoff.ipv6_of(text) == "fd00:24::5/64"
    assert handoff.from_alias(text) == CALICO
    assert handoff.ipv6_of(handoff.to_alias(CALICO)) is None
