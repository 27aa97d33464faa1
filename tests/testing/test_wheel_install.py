"""The plugin as a CNI project gets it: a wheel installed in a venv of its own.

The wheel is built from this checkout and installed without the checkout on
the path; a test file in an empty directory then uses the `netns` and `pod`
fixtures through `pytest -p vmnet.testing`. Dependencies are borrowed from
the running environment (a .pth line), so nothing is downloaded.
"""

import os
import pathlib
import subprocess
import sys
import sysconfig

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

USER_TEST = """
import vmnet
import vmnet.testing.plugin as plugin


def test_from_the_wheel(netns):
    assert "site-packages" in vmnet.__file__, vmnet.__file__
    assert netns.startswith("vmt-")


@pytest.mark.parametrize("pod", ["bridge"], indirect=True)
def test_a_real_cni_pod(pod):
    assert pod.address.version == 4
"""


@pytest.mark.netns
def test_pip_installed_wheel_works_from_another_directory(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
            str(ROOT),
        ],
        check=True,
        timeout=120,
    )
    (wheel,) = dist.glob("vmnet-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    pathlib.Path(site, "borrowed-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        timeout=120,
    )
    project = tmp_path / "my-cni-project"
    project.mkdir()
    (project / "test_vm_networking.py").write_text("import pytest\n" + USER_TEST)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # only what `-p` loads
    run = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pytest",
            "-p",
            "vmnet.testing",
            "-q",
            "-p",
            "no:cacheprovider",
            str(project),
        ],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 passed" in run.stdout


PIP_WHEEL = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
# docs/performance.md, "Installing for speed": how a launcher or a node installs vmnet
LAUNCHER_INSTALL = [
    "python3 -m venv /opt/vmnet",
    "/opt/vmnet/bin/pip install vmnet-0.1.0-py3-none-any.whl",
    "/opt/vmnet/bin/vmnet --version",
]


@pytest.mark.netns
def test_the_documented_launcher_install_has_no_editable_finder_and_is_compiled(tmp_path):
    """The commands as documented, with /opt/vmnet in a scratch directory and
    the wheel built from this checkout; vmnet's dependencies come from the
    machine's package index, as they would on a node."""
    dist = tmp_path / "dist"
    subprocess.run(
        [*PIP_WHEEL, "-w", str(dist), str(ROOT)],
        check=True,
        timeout=120,
    )
    (wheel,) = dist.glob("vmnet-*.whl")
    assert wheel.name == "vmnet-0.1.0-py3-none-any.whl"
    prefix = tmp_path / "opt-vmnet"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    outputs = []
    for command in LAUNCHER_INSTALL:
        argv = command.replace("/opt/vmnet", str(prefix)).split()
        argv = [str(wheel) if a == wheel.name else a for a in argv]
        if argv[0] == "python3":
            argv[0] = "/usr/bin/python3"
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
        assert done.returncode == 0, (command, done.stderr[-2000:])
        outputs.append(done.stdout)
    assert outputs[-1].strip() == "vmnet 0.1.0"
    (site,) = prefix.glob("lib/python3*/site-packages")
    assert not list(site.glob("__editable__*")) and not list(site.glob("*.egg-link"))
    assert list((site / "vmnet" / "__pycache__").glob("cli.*.pyc"))  # compiled at install
    assert list((site / "vmnet" / "apply" / "drivers" / "__pycache__").glob("rtnl.*.pyc"))
