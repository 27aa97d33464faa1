"""vmnet.domain output checked by libvirt itself.

Two checks per golden output and skeleton:
1. `virt-xml-validate FILE domain`: the RelaxNG schema of the installed libvirt.
2. `virsh define` against a private, unprivileged libvirtd (session mode, its
   own XDG directories under a temp dir, run as `nobody`), so libvirt's real
   parser and the qemu driver's checks see the XML. The domain is defined,
   never started. KubeVirt domains say `type='kvm'`; this machine has no KVM,
   so the define check rewrites that to `qemu` first.

The passt shapes (`<backend type='passt'/>`, and the vhost-user form of
KubeVirt >= 1.8) need libvirt 11 (bookworm-backports, which `make deps`
installs): Debian 12's own 9.0 is built without passt, and its schema wants a
`<source type='unix'>` for `vhostuser`. On such a machine those cases skip,
saying so; under `make test` nothing skips.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmnet.domain import canonical, parse_domain, to_bytes
from vmnet.testing.libvirt import passt_unsupported


def _unit_cases():  # type: ignore[no-untyped-def]
    path = Path(__file__).parent.parent / "unit" / "test_domain.py"
    spec = importlib.util.spec_from_file_location("vmnet_unit_test_domain", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_unit = _unit_cases()
DECORATE_CASES, SKELETON_CASES = _unit.DECORATE_CASES, _unit.SKELETON_CASES
GOLDEN, decorated = _unit.GOLDEN, _unit.decorated
NOBODY = 65534
CASES = sorted(DECORATE_CASES) + sorted(SKELETON_CASES)
PASST = {c for c in DECORATE_CASES if c.startswith("passt_")}
VHOSTUSER = {"passt_vhostuser"}

needs_validate = pytest.mark.skipif(
    shutil.which("virt-xml-validate") is None, reason="virt-xml-validate is not installed"
)
NO_PASST = passt_unsupported()


def _case(case: str):  # type: ignore[no-untyped-def]
    """A case as a parameter; a passt one skips where libvirt has no passt."""
    if case in PASST and NO_PASST:
        return pytest.param(case, marks=pytest.mark.skip(reason=NO_PASST))
    return case


def rendered(case: str) -> bytes:
    dom = SKELETON_CASES[case]() if case in SKELETON_CASES else decorated(case)
    data = to_bytes(dom)
    assert canonical(data) == canonical((GOLDEN / f"{case}.out.xml").read_bytes())
    return data


def virt_xml_validate(tmp_path: Path, case: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / f"{case}.xml"
    path.write_bytes(rendered(case))
    return subprocess.run(
        ["virt-xml-validate", str(path), "domain"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


@needs_validate
@pytest.mark.parametrize("case", [_case(c) for c in CASES])
def test_schema_accepts(tmp_path: Path, case: str) -> None:
    result = virt_xml_validate(tmp_path, case)
    assert result.returncode == 0, result.stderr


class SessionLibvirt:
    """An unprivileged libvirtd with private directories; `define` only."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {
            "PATH": "/usr/sbin:/usr/bin:/bin",
            "HOME": str(root),
            "XDG_RUNTIME_DIR": str(root / "run"),
            "XDG_CONFIG_HOME": str(root / "cfg"),
            "XDG_CACHE_HOME": str(root / "cache"),
            "LIBVIRT_AUTOSTART": "0",
        }
        (root / "run").mkdir(mode=0o700)
        for path in [root, *root.iterdir()]:
            os.chown(path, NOBODY, NOBODY)
        self.proc = subprocess.Popen(
            ["libvirtd"],
            env=self.env,
            user=NOBODY,
            group=NOBODY,
            extra_groups=[],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._wait_ready(root / "run" / "libvirt" / "libvirt-sock")

    def _wait_ready(self, sock: Path) -> None:
        deadline = time.monotonic() + 30
        while not sock.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                pytest.fail(f"libvirtd did not start: {self.proc.stderr.read()!r}")
            time.sleep(0.05)

    def define(self, name: str, xml: bytes) -> subprocess.CompletedProcess[str]:
        path = self.root / f"{name}.xml"
        path.write_bytes(xml)
        os.chown(path, NOBODY, NOBODY)
        return subprocess.run(
            ["virsh", "-c", "qemu:///session", "define", str(path)],
            env=self.env,
            user=NOBODY,
            group=NOBODY,
            extra_groups=[],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@pytest.fixture(scope="module")
def libvirt_session() -> Iterator[SessionLibvirt]:
    """Name: libvirt_session. Scope: module. Depends: root, libvirtd, virsh."""
    if shutil.which("libvirtd") is None or shutil.which("virsh") is None:
        pytest.skip("libvirtd or virsh is not installed")
    if os.geteuid() != 0:
        pytest.skip("needs root to run libvirtd as nobody")
    root = Path(tempfile.mkdtemp(prefix="vmnet-libvirt-", dir="/tmp"))
    session = None
    try:
        session = SessionLibvirt(root)
        yield session
    finally:
        if session is not None:
            session.close()
        shutil.rmtree(root, ignore_errors=True)


def for_this_machine(xml: bytes) -> bytes:
    dom = parse_domain(xml)
    dom.set("type", "qemu")
    return to_bytes(dom)


@pytest.mark.libvirt
@pytest.mark.parametrize("case", [_case(c) for c in CASES])
def test_libvirt_defines(libvirt_session: SessionLibvirt, case: str) -> None:
    result = libvirt_session.define(case, for_this_machine(rendered(case)))
    assert result.returncode == 0, result.stderr
    assert "defined" in result.stdout
