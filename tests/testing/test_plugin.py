"""The plugin as a user gets it: loaded with -p in a project of its own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import vmnet
from vmnet.testing import namespaces as ns
from vmnet.testing.plugin import missing

REPO = Path(vmnet.__file__).resolve().parents[1]

INNER = """
import os
import pytest

from vmnet.testing import namespaces as ns


@pytest.mark.netns
def test_uses_netns(netns):
    assert os.path.exists(f"/run/netns/{netns}")
    with open("record", "a") as f:
        f.write(netns + "\\n")


@pytest.mark.cni("nosuchplugin")
def test_needs_a_missing_plugin():
    raise AssertionError("must be skipped")


@pytest.mark.skipif(not os.environ.get("VMT_FAIL"), reason="only when asked")
def test_fails_with_everything_in_use(pod, calico_pod, netns, guest_factory):
    ns.ip_batch(netns, ["tuntap add tap0 mode tap", "link set tap0 up"])
    guest = guest_factory(netns, "tap0", "52:54:00:00:00:01")
    with open("record", "a") as f:
        f.write(" ".join([pod.netns, pod.node.netns, calico_pod.netns, netns,
                          guest.netns, guest.wire_netns]) + "\\n")
    raise AssertionError("failing on purpose")


def test_leaks_only_on_request():
    if os.environ.get("VMT_LEAK"):
        with open("record", "a") as f:
            f.write(ns.create_netns() + "\\n")
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.delenv("VMT_LEAK", raising=False)
    monkeypatch.delenv("VMT_FAIL", raising=False)
    pytester.makepyfile(test_inner=INNER)
    return pytester


def _recorded(project: pytest.Pytester) -> list[str]:
    return (project.path / "record").read_text().split()


@pytest.mark.netns
def test_loads_with_p_and_cleans_up(project: pytest.Pytester) -> None:
    run = project.runpytest_subprocess("-p", "vmnet.testing", "--strict-markers", "-rs")
    run.assert_outcomes(passed=2, skipped=2)
    run.stdout.fnmatch_lines(["*needs CNI plugin 'nosuchplugin' in /opt/cni/bin:/usr/lib/cni*"])
    (name,) = _recorded(project)
    assert not os.path.exists(f"/run/netns/{name}")


@pytest.mark.netns
def test_session_fails_listing_a_leaked_namespace(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMT_LEAK", "1")
    run = project.runpytest_subprocess("-p", "vmnet.testing", "--vmnet-leak-check")
    leaked = _recorded(project)[-1]
    try:
        run.assert_outcomes(passed=2, skipped=2, errors=1)
        run.stdout.fnmatch_lines(["*vmnet.testing leaked:*", f"*netns {leaked} still exists*"])
    finally:
        ns.remove_netns(leaked)


@pytest.mark.netns
def test_leak_check_is_off_unless_asked_for(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMT_LEAK", "1")
    run = project.runpytest_subprocess("-p", "vmnet.testing")
    try:
        run.assert_outcomes(passed=2, skipped=2)
    finally:
        ns.remove_netns(_recorded(project)[-1])


@pytest.mark.netns
@pytest.mark.cni
def test_fixtures_clean_up_when_the_test_fails(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMT_FAIL", "1")
    run = project.runpytest_subprocess("-p", "vmnet.testing", "--vmnet-leak-check")
    run.assert_outcomes(passed=2, skipped=1, failed=1)
    run.stdout.no_fnmatch_line("*leaked*")
    names = _recorded(project)
    assert len(names) == 7
    assert not [name for name in names if os.path.exists(f"/run/netns/{name}")]


@pytest.mark.netns
def test_missing_names_the_missing_piece() -> None:
    assert missing("cni", "nosuch") == (
        "needs CNI plugin 'nosuch' in /opt/cni/bin:/usr/lib/cni (--cni-path, ini vmnet_cni_path)"
    )
    assert missing("unrelated-marker") is None


def test_installing_vmnet_changes_no_other_suite(pytester: pytest.Pytester) -> None:
    """Without `-p vmnet.testing`, a project's run knows none of the plugin's
    markers, fixtures or options, even with plugin autoloading on."""
    pytester.makepyfile(test_other="def test_plain():\n    pass\n")
    run = pytester.runpytest_subprocess("--markers", "--fixtures")
    run.stdout.no_fnmatch_line("*needs root and network namespaces*")
    run.stdout.no_fnmatch_line("*guest_factory*")
    assert pytester.runpytest_subprocess("--vmnet-leak-check").ret != 0


def test_star_import_gives_the_documented_fixtures_and_types() -> None:
    import vmnet.testing

    names: dict[str, object] = {}
    exec("from vmnet.testing import *", names)
    fixtures = {
        "netns",
        "node",
        "pod",
        "pod_factory",
        "calico_pod",
        "guest_factory",
        "plugged",
        "vm",
    }
    types = {
        "CniPod",
        "Node",
        "Guest",
        "QemuGuest",
        "LibvirtGuest",
        "GuestShell",
        "Lease",
        "Plugged",
        "CommandResult",
        "NetSnapshot",
    }
    assert fixtures | types <= set(names)
    assert set(vmnet.testing.__all__) == set(names) - {"__builtins__"}
    assert "pytest_addoption" not in names and "vmnet_leak_check" not in names


OWN_BUILD = """
from vmnet.testing import cni


def test_pod_from_my_build(pod):
    assert cni.find_plugin("bridge").startswith({build!r})
    assert pod.address.ip.version == 4
"""


@pytest.mark.netns
@pytest.mark.parametrize("how", ["option", "ini", "env"])
def test_a_cni_project_points_the_plugin_at_its_own_build(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """Its own plugin binaries (here copies of Debian's) are the ones run."""
    build = pytester.path / "bin"
    build.mkdir()
    for plugin in ("bridge", "host-local"):
        (build / plugin).write_bytes(Path("/usr/lib/cni", plugin).read_bytes())
        (build / plugin).chmod(0o755)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.delenv("CNI_PATH", raising=False)
    pytester.makepyfile(test_own=OWN_BUILD.format(build=str(build)))
    args = ["-p", "vmnet.testing"]
    if how == "option":
        args.append(f"--cni-path={build}")
    elif how == "ini":
        pytester.makeini(f"[pytest]\nvmnet_cni_path = {build}\n")
    else:
        monkeypatch.setenv("CNI_PATH", str(build))
    pytester.runpytest_subprocess(*args).assert_outcomes(passed=1)


@pytest.mark.netns
def test_strict_mode_turns_a_missing_component_into_a_failure(project: pytest.Pytester) -> None:
    run = project.runpytest_subprocess("-p", "vmnet.testing", "--vmnet-strict", "-k", "missing")
    run.assert_outcomes(errors=1)
    run.stdout.fnmatch_lines(["*missing component (--vmnet-strict): needs CNI plugin*"])
    project.makeini("[pytest]\nvmnet_strict = true\n")
    run = project.runpytest_subprocess("-p", "vmnet.testing", "-k", "missing")
    run.assert_outcomes(errors=1)
