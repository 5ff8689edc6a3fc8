# The only commands a person needs: `make serve` and `make test` (both set up first).
# `make site` builds the static site into site/.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Same input, same bytes: the build date is the last commit's date.
export SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null)
export NO_MKDOCS_2_WARNING := 1

.PHONY: setup serve site test lint lock benchmark clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		--constraint requirements.lock --editable '.[docs,test]'
	touch $(STAMP)

# A busy port is said in one line before anything is built: make serve PORT=8001.
PORT ?= 8000
serve: setup
	@$(BIN)/python -c 'import socket, sys; s = socket.socket(); \
	s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); \
	sys.exit(0) if s.connect_ex(("127.0.0.1", $(PORT))) else \
	sys.exit("make serve: port $(PORT) is in use; try make serve PORT=8001")'
	$(BIN)/mkdocs serve --livereload --dev-addr 127.0.0.1:$(PORT)

# Build into a scratch folder and swap it in only on success: a failed build
# never leaves a half-built site/ behind.
site: setup
	rm -rf .site-build
	$(BIN)/mkdocs build --strict --site-dir .site-build
	rm -rf site
	mv .site-build site

# The browser tests need a Chromium: ensure-chromium finds one or installs it
# (a missing one fails under CI=true, and only skips those tests elsewhere).
test: setup
	$(BIN)/python scripts/ensure-chromium
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

# Rewrite requirements.lock from what the environment holds now.
lock: setup
	$(BIN)/python -m pip freeze --exclude-editable | sed 's/+cpu$$//' \
		| sed '1i # Exact versions of everything the build and the tests import. Regenerate with `make lock`.' \
		> requirements.lock

# Figures, not assertions: how long each page's examples take to run, then cold and
# warm builds and edit-to-screen latency under mkdocs serve.
benchmark: setup
	$(BIN)/python benchmarks/page_times.py
	$(BIN)/python benchmarks/build_and_serve.py

clean:
	rm -rf site .site-build .cache/docexec
