"""Option encoders: KubeVirt's vectors (docs/kubevirt.md, Test vectors) and RFC worked examples."""

from ipaddress import IPv4Address, IPv4Network

import pytest

from vmnet.core.errors import ConfigError
from vmnet.protocols.dhcp4 import options
from vmnet.protocols.dhcp4.config import Route


def r(dst: str, gw: str | None) -> Route:
    return Route(IPv4Network(dst), None if gw is None else IPv4Address(gw))


@pytest.mark.parametrize(
    ("routes", "expected"),
    [
        (
            [r("224.0.0.0/4", None), r("192.168.1.0/24", "192.168.2.1")],
            [4, 224, 0, 0, 0, 0, 24, 192, 168, 1, 192, 168, 2, 1],
        ),
        ([], []),
        (
            [r("0.0.0.0/0", "10.129.0.1"), r("10.128.0.0/14", None), r("224.0.0.0/4", None)],
            [14, 10, 128, 0, 0, 0, 0, 4, 224, 0, 0, 0, 0, 0, 10, 129, 0, 1],
        ),
        (
            [r("0.0.0.0/0", "169.254.1.1"), r("169.254.1.1/32", None)],
            [32, 169, 254, 1, 1, 0, 0, 0, 0, 0, 169, 254, 1, 1],
        ),
        ([r("10.17.0.0/25", "10.0.0.1")], [25, 10, 17, 0, 0, 10, 0, 0, 1]),
    ],
    ids=["multicast+gw", "none", "openshift", "calico", "odd-prefix"],
)
def test_classless_routes_kubevirt_vectors(routes: list[Route], expected: list[int]) -> None:
    data = options.classless_routes(routes)
    assert data == bytes(expected)
    parsed = options.parse_classless_routes(data)
    assert sorted(parsed, key=str) == sorted(((x.destination, x.gateway) for x in routes), key=str)


def test_parse_classless_routes_rejects_truncation() -> None:
    with pytest.raises(ValueError):
        options.parse_classless_routes(bytes([24, 10, 0, 0, 10, 0]))
    with pytest.raises(ValueError):
        options.parse_classless_routes(bytes([33, 0, 0, 0, 0, 0, 0, 0, 0, 0]))


def test_domain_search_kubevirt_vector() -> None:
    assert (
        options.domain_search(["foo.com", "foo.local"]) == b"\x03foo\x03com\x00\x03foo\x05local\x00"
    )
    assert options.parse_domain_search(b"\x03foo\x03com\x00\x03foo\x05local\x00") == (
        "foo.com",
        "foo.local",
    )


def test_parse_domain_search_follows_compression_pointers() -> None:
    # RFC 3397 §2 example style: "eng.apple.com", then "marketing" + pointer to "apple.com".
    data = b"\x03eng\x05apple\x03com\x00\x09marketing\xc0\x04"
    assert options.parse_domain_search(data) == ("eng.apple.com", "marketing.apple.com")
    with pytest.raises(ValueError):
        options.parse_domain_search(b"\xc0\x00")


@pytest.mark.parametrize(
    "bad",
    [
        "foo,com",
        "-foo.com",
        "foo.com-",
        "a" * 250 + ".com",
        "a" * 64 + ".com",
        "foo\n.com",
        "foo.com\n",
        "",
        "foo.123",
    ],
)
def test_domain_search_rejects_invalid_domains(bad: str) -> None:
    with pytest.raises(ConfigError, match="Search domain is not valid"):
        options.domain_search([bad])


@pytest.mark.parametrize(
    "good",
    [
        "a" * 63 + ".com",
        "example.default.svc.cluster.local",
        "example.default.svc.cluster.local.",
        "local",
        "_tcp.Example.org",
    ],
)
def test_domain_search_accepts_valid_domains(good: str) -> None:
    assert options.domain_search([good]).endswith(b"\x00")


def test_domain_search_caps_at_255_bytes() -> None:
    domains = ["a" * 40 + f"{i}.example.com" for i in range(6)]
    with pytest.raises(ConfigError, match=r"exceeded allowable size: was 3.. long"):
        options.domain_search(domains)
    assert len(options.domain_search(domains[:4])) <= 255


def test_longest_domain_first_wins_on_ties() -> None:
    search = (
        "a.svc.cluster.local",
        "svc.cluster.local",
        "14wg5xngig6vzfqjww4kocnky3c9dqjpwkewzlwpf.com",
        "cluster.local",
        "xyz.com",
    )
    assert options.longest_domain(search) == "14wg5xngig6vzfqjww4kocnky3c9dqjpwkewzlwpf.com"
    assert options.longest_domain(("ab.c", "cd.e")) == "ab.c"
    assert options.longest_domain(()) is None


def test_scalar_encoders() -> None:
    assert options.u16(1500) == b"\x05\xdc"
    assert options.u32(86313600) == b"\x05\x25\x0a\x80"
    assert options.ipv4_list([IPv4Address("192.168.2.2"), IPv4Address("192.168.2.3")]) == bytes(
        [192, 168, 2, 2, 192, 168, 2, 3]
    )
    assert options.text("tftp.kubevirt.io", "tftp_server") == b"tftp.kubevirt.io"
    for bad in ("", "x" * 256, "caf\u00e9", "a\0b"):
        with pytest.raises(ConfigError):
            options.text(bad, "hostname")
