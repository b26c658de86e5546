# Two commands matter: `make serve` (run a node with embedded defaults) and
# `make test` (the whole suite; CI runs exactly this). Both create/reuse .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test lint deps sysdeps bench clean

$(STAMP): pyproject.toml
	@PYTHON=$(PYTHON) scripts/ensure-sysdeps.sh --venv
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

deps: $(STAMP)

# ffmpeg (test publisher/player, HLS/SRT sources) and nginx-rtmp (foreign origin in tests, bench peer).
sysdeps:
	@scripts/ensure-sysdeps.sh

serve: $(STAMP)
	@scripts/ensure-sysdeps.sh --optional
	$(BIN)/liverelay serve $(ARGS)

test: $(STAMP) sysdeps
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

bench: $(STAMP) sysdeps
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) .liverelay-data
