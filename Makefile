# hardening.docker_authz: every target does its own set-up (scripts/setup.sh is idempotent).
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := $(CURDIR)/.venv
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PYTHONDONTWRITEBYTECODE := 1
MODULES := $(basename $(notdir $(wildcard collection/plugins/modules/*.py)))
PYTEST_ARGS ?=
# pytest-xdist workers: each test file runs whole, in order, in one worker (--dist loadfile).
PYTEST_WORKERS ?= 2

.PHONY: help setup env demo test test-vm lint pytest build molecule molecule-vm clean bench-policy bench-fleet ee

help:
	@echo "make demo   - harden a disposable Docker host with the embedded defaults and show the result"
	@echo "make demo CLEAN=1 - remove the demo host"
	@echo "make test   - set up everything, lint, and run the whole test suite (molecule default and vm included)"
	@echo "make lint   - ruff, ansible-lint (production profile), ansible-doc on every module"
	@echo "make molecule - the molecule scenario default (Docker-in-Docker hosts over SSH)"
	@echo "make molecule-vm - the molecule scenario vm (QEMU Debian VMs: systemd, journald, AppArmor, reboot)"
	@echo "make build  - build the collection tarball into dist/"
	@echo "make ee     - build the AWX execution environment image (EE_TAG=registry/name:tag to tag it for a push)"
	@echo "make env    - start the real dockerd and the local registry the tests use"

setup:
	@scripts/setup.sh

env: setup
	@scripts/testenv.sh up

lint: setup
	ruff check .
	ansible-lint --profile production
	@for m in $(MODULES); do \
	  ansible-doc -t module hardening.docker_authz.$$m >/dev/null || { echo "ansible-doc failed for $$m" >&2; exit 1; }; \
	  echo "ansible-doc hardening.docker_authz.$$m: ok"; \
	done

# tests/vm (QEMU virtual machines) runs in `make test-vm`, not here (see test-vm below).
# --durations: the 30 slowest tests in every run's log, to keep the suite inside CI's 90 minutes.
# Two workers on CI's two cores: the end-to-end files mostly wait on their hosts, the policy
# files are one busy core each.
pytest: env
	python -m pytest -n $(PYTEST_WORKERS) --dist loadfile --ignore=tests/vm --durations=30 $(PYTEST_ARGS)

test: lint pytest molecule molecule-vm

build: setup
	scripts/build_collection.sh dist

demo: env
	@CLEAN="$(CLEAN)" scripts/demo.sh

# Molecule scenario `default`: two Docker-in-Docker hosts over SSH (create, converge, idempotence,
# check, verify, destroy).
molecule: env
	cd tests/fleet && molecule test -s default

# Molecule scenario `vm`: the same on two QEMU virtual machines (tests/images/vm.py), plus what
# only real hosts show (systemd reload, journald, AppArmor, a reboot). KVM when a probe boot
# works, software emulation otherwise. HARDENING_VM_SUITE=bullseye|bookworm|trixie (default bookworm).
molecule-vm: env
	cd tests/fleet && molecule test -s vm

# The real-VM tests: the machinery (tests/vm, pytest) and the scenario vm. `make test` runs the
# scenario (molecule-vm); tests/vm checks the VM helper itself and runs here only.
test-vm: env
	python -m pytest tests/vm $(PYTEST_ARGS)
	cd tests/fleet && molecule test -s vm

clean:
	rm -rf build dist .pytest_cache .ruff_cache

# Benchmark (not a test): per-request compile+evaluate of the restricted policy vs the how-to's.
bench-policy: setup
	python -m tests.policy.bench_policy $(BENCH_ARGS)

# Benchmark (not a test): harden.yml wall time and tasks per host on 1, 4 and 8 DinD hosts.
bench-fleet: env
	python -m tests.bench.bench_fleet $(BENCH_ARGS)

# The execution environment for AWX / Automation Controller (execution-environment.yml, docs/awx.md):
# local/hardening-ee:<key> and :latest, built offline from local images (tests/images/ee.py).
# EE_TAG=registry.example/hardening-ee:0.1.0 tags it too; EE_BASE_IMAGE=REF uses your base image.
ee: env
	python -m tests.images.ee $(if $(EE_TAG),--tag $(EE_TAG)) $(if $(EE_BASE_IMAGE),--base-image $(EE_BASE_IMAGE))
