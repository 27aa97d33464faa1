"""Build the self-contained vmnet-cni bundle: `python deploy/bundle.py [--dist DIR]`.

A CNI plugin runs on the node, outside any container, where there may be no
Python and certainly no project virtualenv. vmnet-cni needs only the
standard library (its netlink codec is vmnet's own, its input is JSON), so
PyInstaller can freeze it, with the Python runtime it runs on, into one
directory: DIR/vmnet-cni/vmnet-cni plus DIR/vmnet-cni/_internal. Run this
with a Python built with a shared libpython (Debian's /usr/bin/python3;
`make cni-bundle` does). The bundle runs on any x86-64 Linux node with a
glibc at least as new as the build machine's (Debian 12: 2.36).
"""

from __future__ import annotations

import argparse
import os
import pkgutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the layers vmnet-cni's lazy imports can reach; not the sidecar, DHCP serving or tests
PACKAGES = ("core", "manifest", "plan", "apply", "store", "domain", "protocols", "phases")
LEFT_OUT = ("yaml", "lxml", "pyroute2", "grpc", "vmnet.testing", "vmnet.serve")


def modules() -> list[str]:
    sys.path.insert(0, ROOT)
    import vmnet

    out = []
    for info in pkgutil.walk_packages(vmnet.__path__, "vmnet.", onerror=lambda _: None):
        if info.name.split(".")[1] in PACKAGES:
            out.append(info.name)
    return sorted(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dist", default=os.path.join(ROOT, "dist"))
    args = p.parse_args()
    import PyInstaller.__main__

    with tempfile.TemporaryDirectory(prefix="vmnet-bundle-") as work:
        entry = os.path.join(work, "vmnet-cni.py")
        with open(entry, "w") as f:
            f.write("from vmnet.cni import run\n\nrun()\n")
        argv = [entry, "--name", "vmnet-cni", "--onedir", "--noconfirm", "--log-level", "ERROR"]
        argv += ["--paths", ROOT, "--distpath", args.dist]
        argv += ["--workpath", os.path.join(work, "build"), "--specpath", work]
        for name in modules():
            argv += ["--hidden-import", name]
        for name in LEFT_OUT:
            argv += ["--exclude-module", name]
        PyInstaller.__main__.run(argv)
    print(os.path.join(args.dist, "vmnet-cni", "vmnet-cni"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
