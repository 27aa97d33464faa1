"""resolv.conf parsing and the subdomain rule, as in KubeVirt's resolveconf_test
(docs/kubevirt.md, resolv.conf)."""

from ipaddress import ip_address

import pytest

from vmnet.core.errors import ConfigError
from vmnet.protocols import resolvconf


def test_nameservers_of_both_families_keep_order() -> None:
    conf = resolvconf.parse("nameserver 10.96.0.10\nnameserver fd00::10\nnameserver 1.1.1.1\n")
    assert conf.nameservers == (
        ip_address("10.96.0.10"),
        ip_address("fd00::10"),
        ip_address("1.1.1.1"),
    )
    assert conf.ipv4_nameservers == (ip_address("10.96.0.10"), ip_address("1.1.1.1"))


def test_bad_nameserver_lines_are_skipped() -> None:
    conf = resolvconf.parse(
        "nameserver mynameserver\nnameserver 1.2.3.4 extra\nnameserver 9.9.9.9\n"
    )
    assert conf.nameservers == (ip_address("9.9.9.9"),)


def test_fallbacks_when_empty() -> None:
    conf = resolvconf.parse("options ndots:5\ndomain example.com\n")
    assert conf.nameservers == (ip_address("8.8.8.8"),)
    assert conf.search == ("cluster.local",)


def test_ipv6_only_nameservers_do_not_trigger_fallback() -> None:
    conf = resolvconf.parse("nameserver fd00::1\n")
    assert conf.nameservers == (ip_address("fd00::1"),)
    assert conf.ipv4_nameservers == ()


def test_search_lines_accumulate_lowercased_across_tabs() -> None:
    conf = resolvconf.parse(
        "search Default.svc.cluster.local\tsvc.cluster.local\nsearch Cluster.Local\n"
    )
    assert conf.search == ("default.svc.cluster.local", "svc.cluster.local", "cluster.local")


@pytest.mark.parametrize(
    ("search", "sub", "expected"),
    [
        (
            ("ns.svc.cluster.local", "svc.cluster.local", "cluster.local"),
            "mysub",
            (
                "mysub.ns.svc.cluster.local",
                "ns.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
            ),
        ),
        (
            ("mysub.ns.svc.cluster.local", "ns.svc.cluster.local"),
            "mysub",
            ("mysub.ns.svc.cluster.local", "ns.svc.cluster.local"),
        ),
        (("example.com",), "mysub", ("example.com",)),
        (("ns.svc.cluster.local",), "", ("ns.svc.cluster.local",)),
        (("ns.svc.cluster.local",), None, ("ns.svc.cluster.local",)),
        (("a.svc.x", "bb.svc.x"), "s", ("s.bb.svc.x", "a.svc.x", "bb.svc.x")),
    ],
)
def test_with_subdomain(
    search: tuple[str, ...], sub: str | None, expected: tuple[str, ...]
) -> None:
    assert resolvconf.with_subdomain(search, sub) == expected


def test_load_reads_file_and_reports_missing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "resolv.conf"
    path.write_text("nameserver 10.0.0.1\nsearch a.b\n")
    assert resolvconf.load(str(path)).search == ("a.b",)
    with pytest.raises(ConfigError, match="No such file"):
        resolvconf.load(str(tmp_path / "missing"))
