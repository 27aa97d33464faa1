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
