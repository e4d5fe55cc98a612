# Meshfleet: the two commands a fresh machine needs are `make demo` and `make test`.
# Both do their own setup (Python .venv from uv.lock, Galaxy content from the
# `ansible` package, and the pinned Go tool build cached under ~/.cache/meshfleet).
SHELL := /bin/bash
VENV := .venv
INVENTORY ?= inventories/real-pods
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# The pinned tools: upstream release artefacts or the Go build (TOOLS_SOURCE, default
# $MESHFLEET_TOOLS_SOURCE or auto; tools/README.md). `make tools` fetches/builds them;
# modules find them through MESHFLEET_TOOLS_BIN, worked out when a recipe runs (after
# `tools`), for the same tool set: the demo's inventory needs, or every tool for tests.
TOOLS_SOURCE ?=
TOOLS_ARGS := $(if $(TOOLS_SOURCE),--source $(TOOLS_SOURCE))
demo verify: TOOLS_ARGS += --inventory $(INVENTORY)
# an inventory with real-node clusters (inventories/real-pods) also needs the node set and images
DEMO_NODE := $(if $(shell grep -ls 'real_node: *true' $(INVENTORY)/*.yml 2>/dev/null),node images)
export MESHFLEET_TOOLS_BIN = $(shell bash tools/build-tools.sh --print-bin $(TOOLS_ARGS) 2>/dev/null)

.PHONY: setup tools node bench-tools browser images demo validate test unit lint sanity integration molecule verify teardown bench clean help

help:
	@echo "make demo      converge the local demo mesh ($(INVENTORY))"
	@echo "make validate  check $(INVENTORY), change nothing (exit code 2 on any problem)"
	@echo "make test      run every test (unit, lint, sanity, integration, molecule)"
	@echo "make verify    run playbooks/verify.yml against $(INVENTORY)"
	@echo "make teardown  remove the local demo mesh"
	@echo "make bench     run the benchmarks under bench/"

setup:
	@scripts/setup.sh

tools:
	@scripts/setup.sh --tools $(TOOLS_ARGS)

# Debian's Chromium, for the mesh report's headless-browser test (only when missing)
browser:
	@scripts/setup.sh --browser

# What a real node of a local cluster needs (`real_node: true`): Debian's containerd, runc,
# CNI plugins and iptables, and the node tool set (kubelet, kube-proxy, coredns), cached
node:
	@scripts/setup.sh --node --tools $(TOOLS_ARGS)

# Debian's umoci, skopeo and gcc, which build the real-pod images (only when missing)
images:
	@scripts/setup.sh --images

# The bench tool set (fortio, the load generator of bench/bench_real_pods.py), cached in its
# own folder: it never changes the main or node sets' cache keys
bench-tools: setup
	@bash tools/build-tools.sh --bench

demo: tools $(DEMO_NODE)
	$(VENV)/bin/ansible-playbook -i $(INVENTORY) playbooks/site.yml
	$(VENV)/bin/ansible-playbook -i $(INVENTORY) playbooks/verify.yml

validate: setup
	$(VENV)/bin/ansible-playbook -i $(INVENTORY) playbooks/validate.yml

verify: tools
	$(VENV)/bin/ansible-playbook -i $(INVENTORY) playbooks/verify.yml

teardown: setup
	$(VENV)/bin/ansible-playbook -i $(INVENTORY) playbooks/teardown.yml

test: tools node browser images
	@scripts/test.sh all

unit: setup
	@scripts/test.sh unit

lint: setup
	@scripts/test.sh lint

sanity: setup
	@scripts/test.sh sanity

integration: tools node browser images
	@scripts/test.sh integration

molecule: tools node images
	@scripts/test.sh molecule

bench: tools node images bench-tools
	@for b in bench/bench_*.py; do echo "== $$b"; $(VENV)/bin/python $$b || exit 1; done

clean:
	rm -rf $(VENV) tests/output .pytest_cache
