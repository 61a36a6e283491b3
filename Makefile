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

# `make wheel` keeps its own tool venv: it must work from a fresh clone with no .venv.
WHEEL_VENV ?= .venv-wheel
WHEEL_BIN := $(abspath $(WHEEL_VENV))/bin
# manylinux2014 = glibc 2.17, the oldest policy maturin's zig linking targets: the wheel installs
# on RHEL 7/8, Ubuntu 18.04+, Debian 10+, Amazon Linux 2.
WHEEL_POLICY ?= manylinux2014

.PHONY: wheel
wheel: ## build dist/tickwire-*.whl: abi3, manylinux2014 (zig), stripped, licences in; auditwheel show
	test -x $(WHEEL_BIN)/python || python3 -m venv $(WHEEL_VENV)
	$(WHEEL_BIN)/pip install -q 'maturin[zig]>=1.9,<2' auditwheel
	rm -f dist/tickwire-*.whl
	PATH="$(WHEEL_BIN):$$PATH" $(WHEEL_BIN)/maturin build --release --strip --zig \
		--compatibility $(WHEEL_POLICY) --out dist
	@echo "wheel: $$(ls dist/tickwire-*.whl)"
	$(WHEEL_BIN)/auditwheel show dist/tickwire-*.whl
	@$(WHEEL_BIN)/python -c 'import sys, zipfile; n = zipfile.ZipFile(sys.argv[1]).namelist(); \
		missing = [f for f in ("LICENSE-MIT", "LICENSE-APACHE") if not any(x.endswith("/licenses/" + f) for x in n)]; \
		sys.exit("licence files missing from the wheel: %s" % missing if missing else 0)' dist/tickwire-*.whl
	@echo "licence files: in the wheel"

.PHONY: sdist
sdist: ## build dist/tickwire-*.tar.gz (needs cargo; installing it needs Rust too)
	test -x $(WHEEL_BIN)/python || python3 -m venv $(WHEEL_VENV)
	$(WHEEL_BIN)/pip install -q 'maturin>=1.9,<2'
	rm -f dist/tickwire-*.tar.gz
	$(WHEEL_BIN)/maturin sdist --out dist

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
