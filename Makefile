# Everything runs from a project virtualenv that these targets create on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export SAM_CLI_TELEMETRY := 0
STAMP := $(VENV)/.installed
# Every package of the development environment (extras dev and local), pinned for Python 3.11+
# on any platform; the layer's requirements are pinned from it. Both are written by `make lock`.
LOCK := requirements/dev.lock
LAYER_REQUIREMENTS := layers/i2v/requirements.txt

.PHONY: venv demo test unit check static typecheck test-lambda-python lint build bench lock clean

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

## demo: run one sample image through the embedded local stack; outputs land in ./out/
demo: $(STAMP)
	$(BIN)/i2v local run local/i2v_local/samples/harbour.jpg --out out

## test: the whole suite (unit, integration, template checks, end to end)
test: $(STAMP)
	$(BIN)/python -m pytest

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

## check: the fast tier, well under a minute: lint, format, types, then the unit tests and template
## rules (tests/unit; no local stack, no SAM CLI, nothing marked e2e or slow) on every core
check: static
	$(BIN)/python -m pytest tests/unit -q -n auto -m "not e2e and not slow"

## static: ruff's lint and format checks and mypy (CI runs these before the suite)
static: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(MAKE) --no-print-directory typecheck

typecheck: $(STAMP)
	$(BIN)/mypy

## test-lambda-python: the unit tests again on the Lambda runtime's Python (3.12), in .venv-lambda
LAMBDA_PYTHON ?= python3.12
LAMBDA_VENV := .venv-lambda
# Only what the unit tests need, at the lock's versions.
$(LAMBDA_VENV)/.installed: pyproject.toml $(LOCK)
	$(LAMBDA_PYTHON) -m venv $(LAMBDA_VENV)
	$(LAMBDA_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LAMBDA_VENV)/bin/python -m pip install --quiet -c $(LOCK) -e '.[local]' pytest cfn-lint
	touch $@

test-lambda-python: $(LAMBDA_VENV)/.installed
	$(LAMBDA_VENV)/bin/python -m pytest tests/unit

## lint: cfn-lint and SAM's own validation of template.yaml
lint: $(STAMP)
	$(BIN)/cfn-lint template.yaml
	$(BIN)/sam validate --lint --template template.yaml

## build: sam build (the layer is built by layers/i2v/Makefile for arm64 / python3.12)
build: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/sam build --template template.yaml

bench: $(STAMP)
	$(BIN)/python -m benchmarks

## lock: re-resolve requirements/dev.lock after a change to pyproject.toml (pins that still fit
## are kept) and pin the layer's requirements from it; `make lock UPGRADE=1` moves everything to
## the newest releases that fit, `make lock UPGRADE="moto pillow"` only those packages
UV_COMPILE = $(BIN)/uv pip compile pyproject.toml --quiet --custom-compile-command "make lock"
LOCK_FLAGS = --extra dev --extra local --universal --python-version 3.11
ifeq ($(UPGRADE),1)
UPGRADE_FLAGS := --upgrade
else
UPGRADE_FLAGS := $(addprefix --upgrade-package ,$(UPGRADE))
endif
lock: $(STAMP)
	$(UV_COMPILE) $(LOCK_FLAGS) $(UPGRADE_FLAGS) -o $(LOCK)
	@# The layer carries botocore, so it must carry the boto3 released with it (same version):
	@# resolve again with botocore held at boto3's version.
	sed -n 's/^boto3==/botocore==/p' $(LOCK) > requirements/sdk.txt
	$(UV_COMPILE) $(LOCK_FLAGS) -c requirements/sdk.txt -o $(LOCK)
	{ cat requirements/layer-header.txt; \
	  $(UV_COMPILE) -c $(LOCK) --python-platform aarch64-manylinux_2_28 --python-version 3.12 \
	    --no-header --annotation-style line; } > $(LAYER_REQUIREMENTS).new
	mv $(LAYER_REQUIREMENTS).new $(LAYER_REQUIREMENTS)

clean:
	rm -rf $(VENV) $(LAMBDA_VENV) .aws-sam out .pytest_cache .mypy_cache .ruff_cache
