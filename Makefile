# Everything runs from a project virtualenv that these targets create on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export SAM_CLI_TELEMETRY := 0
STAMP := $(VENV)/.installed

.PHONY: venv demo test unit test-lambda-python lint build bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
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

## test-lambda-python: the unit tests again on the Lambda runtime's Python (3.12), in .venv-lambda
LAMBDA_PYTHON ?= python3.12
LAMBDA_VENV := .venv-lambda
$(LAMBDA_VENV)/.installed: pyproject.toml
	$(LAMBDA_PYTHON) -m venv $(LAMBDA_VENV)
	$(LAMBDA_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LAMBDA_VENV)/bin/python -m pip install --quiet -e '.[local]' pytest cfn-lint
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

clean:
	rm -rf $(VENV) $(LAMBDA_VENV) .aws-sam out .pytest_cache
