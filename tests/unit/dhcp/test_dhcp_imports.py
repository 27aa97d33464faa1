"""The sans-IO modules import no I/O library (STYLE rule 1)."""

import ast
from pathlib import Path

import pytest

import vmnet.dhcp

FORBIDDEN = {"socket", "asyncio", "pyroute2", "selectors", "subprocess", "select"}
PURE = ["codec.py", "options.py", "responder.py", "config.py", "resolvconf.py"]


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
    path = Path(vmnet.dhcp.__file__).parent / module
    assert imported_modules(path) & FORBIDDEN == set()


def test_scan_sees_imports() -> None:
    server = Path(vmnet.dhcp.__file__).parent / "server.py"
    assert {"socket", "selectors"} <= imported_modules(server)
