"""The sans-IO DHCPv6 modules import no I/O library (STYLE rule 1)."""

import ast
from pathlib import Path

import pytest

import vmnet.dhcp6

FORBIDDEN = {"socket", "asyncio", "pyroute2", "selectors", "subprocess", "select", "fcntl"}
PURE = ["codec.py", "config.py", "responder.py", "ra.py"]
HERE = Path(vmnet.dhcp6.__file__).parent


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_io(module: str) -> None:
    assert imported_modules(HERE / module) & FORBIDDEN == set()


def test_scan_sees_imports() -> None:
    assert {"socket", "selectors"} <= imported_modules(HERE / "server.py")


@pytest.mark.parametrize("module", sorted(p.name for p in HERE.glob("*.py")))
def test_module_size_limit(module: str) -> None:
    assert len((HERE / module).read_text().splitlines()) <= 300
