# Two commands matter: `make serve` (run a node with embedded defaults) and
# `make test` (the whole suite; CI runs exactly this). Both create/reuse .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
# pytest-xdist workers: most tests wait on real time (media at real rate, timeouts), so
# three files at once on two cores cut the wall time; `make test TEST_WORKERS=0` = serial.
TEST_WORKERS ?= 3

.PHONY: serve test lint deps sysdeps bench soak clean

$(STAMP): pyproject.toml
	@PYTHON=$(PYTHON) scripts/ensure-sysdeps.sh --venv
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

deps: $(STAMP) $(NODE_STAMP)

# The web console's browser dependencies (hls.js, mpegts.js): pinned with integrity
# hashes in package-lock.json, installed into node_modules (never committed); the node
# serves them at /console/vendor/.
$(NODE_STAMP): package.json package-lock.json
	@scripts/ensure-sysdeps.sh --node
	npm ci --no-audit --no-fund --ignore-scripts
	touch $(NODE_STAMP)

# ffmpeg (test publisher/player, HLS/SRT sources), nginx-rtmp (foreign origin in tests,
# bench peer), node (console signer test) and chromium (console browser tests).
sysdeps:
	@scripts/ensure-sysdeps.sh

serve: $(STAMP)
	@$(MAKE) --no-print-directory $(NODE_STAMP) || echo "warning: npm ci failed: the console's preview player is missing (the node runs without it)" >&2
	@scripts/ensure-sysdeps.sh --optional
	$(BIN)/liverelay serve $(ARGS)

test: $(STAMP) $(NODE_STAMP) sysdeps
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

bench: $(STAMP) sysdeps
	$(BIN)/python -m bench $(ARGS)

# Endurance soak (not in CI; 10 minutes by default): make soak ARGS='--minutes 60'.
# tests/integration/test_soak_short.py runs a one-minute version inside `make test`.
soak: $(STAMP) sysdeps
	$(BIN)/python -m bench.soak $(ARGS)

clean:
	rm -rf $(VENV) .liverelay-data node_modules test-artifacts
