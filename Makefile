# Homeroom: `make run` to try it, `make test` to test it, `make check` to lint and type-check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The whole environment, every package pinned with its hashes: `make lock` after a change of
# pyproject.toml's dependencies regenerates it; setup installs exactly it.
LOCK := requirements.lock
UV_VERSION := 0.13.8
STAMP := $(VENV)/.installed-$(shell cat $(LOCK) pyproject.toml | cksum | cut -d' ' -f1)
NODE_STAMP := tests/node/node_modules/.installed
WEB_DIR := clients/web
WEB_STAMP := $(WEB_DIR)/dist/index.html
# Root installs Debian packages directly; anyone else through sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: setup run test test-long test-all check web browser clean live-deps redis-deps lb-deps lock fuzz

$(STAMP): $(LOCK) pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes -r $(LOCK)
	$(BIN)/pip install -q --no-deps -e .
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

# Regenerate the lock file from pyproject.toml (keeps the versions it has unless they no longer
# fit; `make lock UPGRADE=1` takes the newest that fit).
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(BIN)/uv || $(BIN)/pip install -q uv==$(UV_VERSION)
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra fast --generate-hashes \
		--python-version 3.11 --python-platform x86_64-manylinux_2_28 $(if $(UPGRADE),--upgrade) \
		--quiet -o $(LOCK)

$(NODE_STAMP): tests/node/package.json tests/node/package-lock.json
	cd tests/node && npm ci --no-audit --no-fund --silent
	touch $(NODE_STAMP)

# The browser app (clients/web): install its packages when the lock file is newer, then build
# dist/ (served by the server at /).
web:
	@if [ -f $(WEB_DIR)/package.json ]; then \
		cd $(WEB_DIR) && { [ node_modules/.package-lock.json -nt package-lock.json ] || \
			npm ci --no-audit --no-fund --silent; } && npm run --silent build; \
	fi

# Headless Chromium (from Debian, never `playwright install`) and CJK fonts for tests/web.
browser:
	@command -v chromium >/dev/null && dpkg -s fonts-noto-cjk >/dev/null 2>&1 || { \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			chromium fonts-noto-cjk; }

setup: $(STAMP) web

# Real peers the live tests drive (tests/live): headless Chromium and coturn's turnserver; tc
# (iproute2) shapes a viewer's link in the layers scenario (tests/media), openssl makes the
# TURN-over-TLS test's certificate.
live-deps:
	@command -v chromium >/dev/null && command -v turnserver >/dev/null && \
		PATH="$$PATH:/usr/sbin:/sbin" command -v tc >/dev/null && command -v openssl >/dev/null && \
		PATH="$$PATH:/usr/sbin:/sbin" command -v nft >/dev/null || { \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			chromium coturn iproute2 nftables openssl; }

# A redis-server of the tests' own (tests/test_bus_outage.py starts and stops it).
redis-deps:
	@command -v redis-server >/dev/null || { \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			redis-server; }

# nginx, the load balancer tests/test_loadbalancer.py puts in front of three nodes (it runs its
# own nginx from a config of its own; Debian's service is not needed).
lb-deps:
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || { \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			nginx; }

run: setup
	mkdir -p var
	$(BIN)/homeroom serve --demo --host $(HOST) --port $(PORT)

# `make test`: the suite but its long end-to-end runs (tests/conftest.py, LONG), which
# `make test-long` runs; `make test-all` both. CI runs both.
TEST_DEPS := setup $(NODE_STAMP) live-deps browser redis-deps lb-deps
test: $(TEST_DEPS)
	$(BIN)/python -m pytest -m "not long"

test-long: $(TEST_DEPS)
	$(BIN)/python -m pytest -m long

test-all: $(TEST_DEPS)
	$(BIN)/python -m pytest

# The long fuzzing run (tests/test_fuzz.py runs a bounded one): FUZZ_ARGS="--socket 20000".
FUZZ_ARGS ?= --socket 5000 --rest 3000
fuzz: $(STAMP)
	$(BIN)/python bench/fuzz.py $(FUZZ_ARGS)

check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) var build $(WEB_DIR)/dist $(WEB_DIR)/node_modules tests/node/node_modules
