import pytest

from vmnet.core.errors import ConfigError
from vmnet.core.names import LinkNames, hashed_pod_iface, ordinal_pod_iface, uses_ordinal_scheme


@pytest.mark.parametrize(
    "network,expected",
    [
        ("secondnetwork", "pod914f438d88d"),
        ("network1", "poda7662f44d65"),
        ("network2", "pod27f4a77f94e"),
        ("red", "podb1f51a511f1"),
        ("green", "podba4788b226a"),
        ("testnet1", "pod7087ef4cd1f"),
        ("testnet2", "podbc6cc93fa1e"),
    ],
)
def test_hashed_names_match_kubevirt(network, expected):
    assert hashed_pod_iface(network) == expected


@pytest.mark.parametrize(
    "pod_iface,primary,expected",
    [
        ("eth0", True, ("k6t-eth0", "eth0-nic", "tap0", "eth0")),
        (
            "pod914f438d88d",
            False,
            ("k6t-914f438d88d", "914f438d88d-nic", "tap914f438d88d", "pod914f438d88d"),
        ),
        ("net1", False, ("k6t-net1", "net1-nic", "tap1", "net1")),
        ("cust-iface", True, ("k6t-cust-iface", "cust-iface-nic", "tap0", "cust-iface")),
    ],
)
def test_derived_link_names(pod_iface, primary, expected):
    names = LinkNames.derive(pod_iface, primary=primary)
    assert (names.bridge, names.nic, names.tap, names.dummy) == expected
    assert all(len(n) <= 15 for n in expected)


def test_too_long_custom_name_is_rejected():
    with pytest.raises(ConfigError, match="derived bridge name"):
        LinkNames.derive("a-very-long-nic", primary=True)


def test_ordinal_scheme_detection():
    assert uses_ordinal_scheme(["lo", "eth0", "net1"])
    assert not uses_ordinal_scheme(["lo", "eth0", "network1", "pod914f438d88d"])
    assert ordinal_pod_iface(2) == "net2"


def test_public_api_is_complete_and_lazy():
    import subprocess
    import sys

    import vmnet

    assert all(hasattr(vmnet, name) for name in vmnet.__all__)
    code = "import sys, vmnet; print('lxml' in sys.modules, 'pyroute2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
