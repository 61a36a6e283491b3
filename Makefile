# Developer entry points. `make help` lists them; each target's `## ` comment is its doc.
.DEFAULT_GOAL := help
SHELL := bash

VENV ?= .venv
PYTHON := $(VENV)/bin/python
BIN := $(VENV)/bin

.PHONY: install
install: ## create .venv and install tickwire (editable) with the test and dev tools
	python3 -m venv $(VENV)
	$(BIN)/pip install -U pip
	$(BIN)/pip install -e '.[dev]'

.PHONY: build-dev
build-dev: ## rebuild the extension in debug mode into .venv (maturin develop)
	VIRTUAL_ENV=$(abspath $(VENV)) $(BIN)/maturin develop

.PHONY: format
format: ## format Rust and Python, apply safe lint fixes
	cargo fmt --all
	$(BIN)/ruff check --fix python tests
	$(BIN)/ruff format python tests

.PHONY: lint-rust
lint-rust: ## rustfmt check and clippy with warnings as errors
	cargo fmt --all --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets --features python -- -D warnings

.PHONY: lint-python
lint-python: ## ruff check, ruff format check, mypy --strict on the package and the typing script
	$(BIN)/ruff check python tests
	$(BIN)/ruff format --check python tests
	$(BIN)/mypy --strict python/tickwire
	$(BIN)/mypy --strict tests/typing/user_script.py

.PHONY: lint
lint: lint-rust lint-python ## all linters

.PHONY: stubtest
stubtest: ## check python/tickwire/_core.pyi against the built extension
	$(PYTHON) -m mypy.stubtest tickwire._core $(if $(wildcard .mypy-stubtest-allowlist),--allowlist .mypy-stubtest-allowlist)

.PHONY: test
test: ## Rust unit tests, then pytest end to end (asyncio debug mode on)
	cargo test
	PYTHONASYNCIODEBUG=1 $(BIN)/pytest

.PHONY: help
help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'
