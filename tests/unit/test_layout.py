"""The tree keeps its layering: the contracts in pyproject.toml hold, they fail
when a forbidden import is added, and no module uses another's private names."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import vmnet

ROOT = Path(vmnet.__file__).resolve().parents[1]
PACKAGE = ROOT / "vmnet"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
    )


def test_the_contracts_hold() -> None:
    run = _lint_imports(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 kept, 0 broken" in run.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("vmnet/plan/state.py", "import socket", "pure layers do no network or process I/O"),
        ("vmnet/cli.py", "import vmnet.testing.cni", "layers:"),
        ("vmnet/protocols/dhcp4/codec.py", "import vmnet.serve.dhcp4", "layers:"),
        ("vmnet/serve/dhcp4.py", "import pyroute2", "only the drivers speak netlink"),
    ],
)
def test_a_forbidden_import_breaks_a_contract(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    shutil.copytree(PACKAGE, tmp_path / "vmnet", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with open(tmp_path / module, "a") as f:
        f.write(f"\n{line}\n")
    run = _lint_imports(tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    broken = run.stdout.split("Broken contracts")[-1]
    assert contract in broken


def private_uses(path: Path) -> list[str]:
    """`from vmnet.x import _name` and `module._name` for a vmnet module."""
    tree = ast.parse(path.read_text())
    modules: set[str] = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vmnet"):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path}:{node.lineno}: from {node.module} import {alias.name}")
                modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            modules.update(
                a.asname or a.name.split(".")[0] for a in node.names if a.name.startswith("vmnet")
            )
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in modules and not node.attr.startswith("__"):
                found.append(f"{path}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_module_uses_another_modules_private_names() -> None:
    found = [use for path in sorted(PACKAGE.rglob("*.py")) for use in private_uses(path)]
    assert found == []


def test_the_private_name_scan_sees_a_private_use(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text(
        "from vmnet.core import netns\nfrom vmnet.core.names import _stem\nnetns._setns_call\n"
    )
    assert len(private_uses(path)) == 2


def test_the_version_has_one_home() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in text and "\nversion =" not in text.split("[tool")[0]
