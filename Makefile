# The one entry point. Every target sets up what it needs on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
PROTOS := $(shell find proto -name '*.proto' | sort)
GEN_OUT ?= gen/python

.PHONY: help install gen gen-check lint docker-engine test-images ipfs-install test fuzz demo bench clean \
	base-image image

help:
	@echo "make install    create .venv and install the package with its pinned toolchain"
	@echo "make gen        regenerate gen/ from proto/ (grpcio-tools + betterproto2)"
	@echo "make gen-check  fail if gen/ differs from a fresh regeneration"
	@echo "make lint       ruff, buf lint (STANDARD), import-linter layer contracts"
	@echo "make helm-lint  lint and render the Helm chart (default + ci/ values, real Helm SDK), validate for Kubernetes"
	@echo "make docker-engine  start a private dockerd if no Docker engine answers (installs docker.io)"
	@echo "make test-images    build the tests' local Docker image (no registry needed)"
	@echo "make ipfs-install   install js-ipfs (the tests' real IPFS node) into a cache folder, once"
	@echo "make image     build the services' image bacalhau-grpc:<version> and :latest (BASE_IMAGE=... to"
	@echo "               build on a registry image instead of the local Debian base: make base-image)"
	@echo "make test       the test suite (pytest; starts the Docker engine and builds the test image)"
	@echo "make fuzz       fuzz every public RPC and job files against real servers (FUZZ_CASES=10000)"
	@echo "make demo       start a devstack, run one job through its whole lifecycle, stop it"
	@echo "make bench      benchmarks: the model codecs, and noop jobs through a devstack"

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(STAMP)

# Writes the wire/model stubs to $(GEN_OUT)/bacalhau and the SDK dataclasses to $(GEN_OUT)/bacalhau_sdk.
gen: $(STAMP)
	rm -rf $(GEN_OUT)/bacalhau $(GEN_OUT)/bacalhau_sdk
	mkdir -p $(GEN_OUT)/bacalhau_sdk
	$(PY) -m grpc_tools.protoc -I proto --python_out=$(GEN_OUT) --pyi_out=$(GEN_OUT) \
		--grpc_python_out=$(GEN_OUT) $(PROTOS)
	find $(GEN_OUT)/bacalhau -type d -exec touch {}/__init__.py \;
	PATH="$(abspath $(BIN)):$$PATH" $(PY) -m grpc_tools.protoc -I proto \
		--python_betterproto2_opt=client_generation=none --python_betterproto2_out=$(GEN_OUT)/bacalhau_sdk $(PROTOS) 2> >(grep -v "^Writing " >&2)

gen-check: $(STAMP)
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(MAKE) --no-print-directory gen GEN_OUT=$$tmp > /dev/null && \
	if diff -r -x __pycache__ gen/python "$$tmp"; then echo "gen/ is up to date"; \
	else echo "gen/ is stale: run 'make gen' and commit the result" >&2; exit 1; fi

lint: $(STAMP)
	$(BIN)/ruff check services tests bench setup.py
	$(BIN)/ruff format --check services tests bench setup.py
	$(BIN)/buf lint
	$(BIN)/lint-imports

# The Helm chart (helm/bacalhau-grpc): `helm lint --strict`, render with its default values and each
# ci/*-values.yaml through the Helm v4 Go SDK (helm-python-sdk), every object validated with
# kubernetes-validate (strict). No helm binary and no cluster needed.
.PHONY: helm-lint
helm-lint: $(STAMP)
	$(PY) scripts/helm_check.py

docker-engine:
	scripts/docker-engine.sh

test-images: docker-engine
	scripts/test-images.sh

ipfs-install:
	scripts/ipfs-daemon.sh install

# The services' image (Dockerfile). Its base is a local debootstrap of Debian bookworm
# (scripts/base-image.sh, built once) unless BASE_IMAGE names another, e.g. debian:bookworm-slim.
# The build trusts the CA certificates added to this host (HOST_CA_DIR) when it downloads from PyPI,
# as the host does behind a TLS-intercepting proxy; they stay out of the final image.
LOCAL_BASE_IMAGE := bacalhau-grpc/base:bookworm
BASE_IMAGE ?= $(LOCAL_BASE_IMAGE)
IMAGE_NAME ?= bacalhau-grpc
HOST_CA_DIR ?= /usr/local/share/ca-certificates
VERSION := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' pyproject.toml)

base-image: docker-engine
	scripts/base-image.sh

image: docker-engine $(if $(filter $(LOCAL_BASE_IMAGE),$(BASE_IMAGE)),base-image)
	docker build --network host --build-arg BASE_IMAGE=$(BASE_IMAGE) --build-arg VERSION=$(VERSION) \
		--build-arg REVISION="$$(git rev-parse --verify -q HEAD)" \
		--build-arg EXTRA_CA_CERTS="$$(find $(HOST_CA_DIR) -name '*.crt' -exec cat {} + 2> /dev/null)" \
		-t $(IMAGE_NAME):$(VERSION) -t $(IMAGE_NAME):latest .

test: $(STAMP) test-images ipfs-install
	$(BIN)/pytest -q

# Hypothesis over job files and every public RPC's requests against one real network (tests/fuzz);
# `make test` runs the same targets with FUZZ_CASES' small default.
FUZZ_CASES ?= 10000
fuzz: $(STAMP)
	FUZZ_CASES=$(FUZZ_CASES) $(BIN)/pytest -q -s -p no:logging tests/fuzz

demo: $(STAMP)
	$(PY) -m bacalhau_grpc.cli.demo

bench: $(STAMP)
	$(PY) bench/bench_model.py
	$(PY) bench/bench_network.py
	$(PY) bench/bench_docker.py
	$(PY) bench/bench_wasm.py
	$(PY) bench/bench_sharding.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis

# The WASM test modules in tests/wasm (committed; rebuild after editing a source). Needs clang, lld,
# wasi-libc and libclang-rt-14-dev-wasm32 (apt); the tests themselves only use the built modules.
WASM_DIR := tests/wasm
WASM_CFLAGS := --target=wasm32-wasi -O2 -Wl,--strip-all
.PHONY: wasm-modules
wasm-modules: $(STAMP)
	for src in hello exit_code files spin alloc unresolved_import uses_math; do \
		clang $(WASM_CFLAGS) -o $(WASM_DIR)/$$src.wasm $(WASM_DIR)/$$src.c || exit 1; \
	done
	clang $(WASM_CFLAGS) -mexec-model=reactor -o $(WASM_DIR)/entry_points.wasm $(WASM_DIR)/entry_points.c
	$(PY) -c 'import sys, wasmtime; open(sys.argv[2], "wb").write(wasmtime.wat2wasm(open(sys.argv[1]).read()))' \
		$(WASM_DIR)/math.wat $(WASM_DIR)/math.wasm
