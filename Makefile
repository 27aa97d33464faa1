# vmnet: `make demo` and `make test` work on a fresh Debian 12 machine, as root.
# Each installs what it needs first: Debian packages (apt-get, only the missing
# ones), a virtualenv in .venv, and vmnet itself in it (editable).

PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PYTEST_ARGS ?=

# The real components tests and the demo use (see README "What is installed").
APT_PACKAGES = \
	iproute2 iputils-ping procps kmod python3-venv \
	containernetworking-plugins \
	busybox-static isc-dhcp-client dhcpcd-base klibc-utils \
	qemu-system-x86 linux-image-cloud-amd64 pkg-config \
	libxml2-utils nftables passt dnsmasq-base tcpdump ethtool zstd time \
	mmdebstrap e2fsprogs genisoimage

# libvirt 11 (passt support) from Debian 12's bookworm-backports, by name only
# (scripts/debian-backports.sh: the suite comes from the machine's own apt source)
LIBVIRT_PACKAGES = libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients libvirt-dev libvirt0

.PHONY: all deps venv cni-bundle demo-migration guests gates lint format type layers test test-fast coverage demo fuzz bench clean

all: test

deps:
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@sh scripts/debian-backports.sh $(LIBVIRT_PACKAGES)
	@getent group kvm >/dev/null || groupadd -r kvm
	@getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
	@getent passwd libvirt-qemu >/dev/null || useradd -r -g kvm -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
	@mkdir -p /run/netns /var/log/libvirt /var/run/libvirt

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,dev,sidecar,testing]' --config-settings editable_mode=compat
	touch $@

# Phase 2 as the launcher user (UID 107) needs a python every user can run:
# Debian's own, with vmnet's runtime dependencies (tests run vmnet's source on it).
PHASE2_VENV ?= /var/cache/vmnet/phase2-venv
$(PHASE2_VENV)/.installed: pyproject.toml
	mkdir -p $(dir $(PHASE2_VENV))
	/usr/bin/python3 -m venv $(PHASE2_VENV)
	$(PHASE2_VENV)/bin/pip install -q "pyroute2>=0.9" "lxml>=4.9" "PyYAML>=6" "grpcio>=1.50"
	chmod -R a+rX $(PHASE2_VENV)
	touch $@

# The self-contained vmnet-cni (deploy/bundle.py) is frozen with PyInstaller on
# Debian's python, which has the shared libpython a bundle needs.
BUNDLE_VENV ?= /var/cache/vmnet/bundle-venv
$(BUNDLE_VENV)/.installed: Makefile
	mkdir -p $(dir $(BUNDLE_VENV))
	/usr/bin/python3 -m venv $(BUNDLE_VENV)
	$(BUNDLE_VENV)/bin/pip install -q "pyinstaller==6.22.3"
	touch $@

venv: $(VENV)/.installed $(PHASE2_VENV)/.installed $(BUNDLE_VENV)/.installed

# dist/vmnet-cni/: what deploy/Containerfile.cni puts on every node
cni-bundle: $(BUNDLE_VENV)/.installed
	$(BUNDLE_VENV)/bin/python deploy/bundle.py --dist dist

test: deps venv
	@$(PY) -m vmnet.testing.leaks --save .leaks-before.json
	VMNET_NO_SKIP=1 $(PY) -m pytest --vmnet-strict $(PYTEST_ARGS)
	@$(PY) -m vmnet.testing.leaks --check .leaks-before.json

test-fast: venv
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

# the suite of `make test` under coverage (children included); prints the figure
coverage: deps venv
	rm -rf .coverage-data && mkdir -p .coverage-data && chmod 1777 .coverage-data
	VMNET_NO_SKIP=1 $(PY) -m coverage run -m pytest --vmnet-strict $(PYTEST_ARGS)
	$(PY) -m coverage combine -q
	$(PY) -m coverage report --sort=cover | tail -n 25

demo: deps venv
	$(PY) -m vmnet.testing.demo

# Debian 12 guest images (vmnet.testing.distro), built once into the guest cache
guests: deps venv
	$(PY) -c "from vmnet.testing import distro; [print(distro.build_image(s)) for s in distro.STACKS]"

# a running VM live-migrated between two pods, bridge and masquerade, with the downtime
demo-migration: deps venv
	$(PY) -m vmnet.testing.migration

# The gates .ci/run runs before the tests (tool versions pinned in pyproject's dev extra).
SOURCES = vmnet tests benchmarks examples

gates: lint format type layers

lint: venv
	$(VENV)/bin/ruff check $(SOURCES)

format: venv
	$(VENV)/bin/ruff format --check $(SOURCES)

type: venv
	$(VENV)/bin/mypy vmnet

layers: venv
	$(VENV)/bin/lint-imports

# The long fuzz run (not part of `make test`): VMNET_FUZZ_SECONDS, VMNET_FUZZ_EXAMPLES.
fuzz: venv
	$(PY) -m pip install -q atheris
	VMNET_FUZZ_EXAMPLES=$${VMNET_FUZZ_EXAMPLES:-20000} $(PY) -m pytest -m "not netns" -p no:cacheprovider \
		tests/reliability/test_dhcp_fuzz.py tests/reliability/test_cache_files.py
	$(PY) tests/reliability/fuzz_atheris.py -max_total_time=$${VMNET_FUZZ_SECONDS:-300}

# Benchmarks (docs/performance.md): `make bench` for the full run, BENCH_ARGS=--quick for a short one.
bench: deps venv
	$(PY) -m pip install -q -e '.[bench]' --config-settings editable_mode=compat
	$(PY) benchmarks/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
