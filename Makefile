# The only commands a person needs: `make serve` and `make test` (both set up first).
# `make site` builds the static site into site/ (`make site DOCS=properdocs` with ProperDocs).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/python -m pip --disable-pip-version-check

# Where pip also looks for torch: PyTorch's CPU-only index. Its wheels sort above PyPI's
# (2.13.0+cpu > 2.13.0), so a Linux machine without a GPU gets the ~200 MB CPU build, not
# PyPI's multi-GB CUDA one; macOS and Windows get the same wheels as from PyPI. A host
# it cannot reach is skipped, and pip takes torch from where else it looks (a wheel in
# pip's find-links): after one retry, not five, which cost minutes of
# backoff for each package. `make setup TORCH_INDEX=` asks PyPI alone (CUDA).
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_INDEX_ARGS := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
# The take-aways test makes a reader's venv with torch from the same place.
export TORCH_INDEX

# The site generator: mkdocs, or properdocs (the maintained fork of MkDocs 1.x), which
# builds the same site from the same mkdocs.yml.
DOCS ?= mkdocs

# Same input, same bytes: the build date is the last commit's date.
export SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null)

.PHONY: setup serve site test lint lock benchmark clean

setup: $(STAMP)

# Everything but torch comes hash-checked from the lock (LOCK: requirements.txt, and the
# build backend in requirements-build.txt); then the project itself, editable, whose only
# other requirement, torch (pinned in pyproject.toml), comes from TORCH_INDEX or PyPI,
# and the docexec plugin from its own folder (docexec/), editable, as a distribution of
# its own: the site uses it as any site would.
# Built with the locked setuptools (no isolation), so nothing unlocked is installed;
# `pip check` fails on a lock that no longer fits.
LOCK := requirements.txt requirements-build.txt
$(STAMP): pyproject.toml docexec/pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --require-hashes $(addprefix --requirement ,$(LOCK))
	$(PIP) install --quiet $(TORCH_INDEX_ARGS) $(if $(TORCH_INDEX),--retries 1) \
		--no-build-isolation --editable '.[docs,test]' --editable ./docexec
	$(PIP) check
	touch $(STAMP)

# A busy port is said in one line before anything is built: make serve PORT=8001.
PORT ?= 8000
serve: setup
	@$(BIN)/python -c 'import socket, sys; s = socket.socket(); \
	s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); \
	sys.exit(0) if s.connect_ex(("127.0.0.1", $(PORT))) else \
	sys.exit("make serve: port $(PORT) is in use; try make serve PORT=8001")'
	SITE_URL="$${SITE_URL:-http://127.0.0.1:$(PORT)/}" \
		$(BIN)/mkdocs serve --livereload --dev-addr 127.0.0.1:$(PORT)

# Build into a scratch folder and swap it in only on success: a failed build
# never leaves a half-built site/ behind.
site: setup
	rm -rf .site-build
	$(BIN)/$(DOCS) build --strict --config-file mkdocs.yml --site-dir .site-build
	rm -rf site
	mv .site-build site

# The browser tests need a Chromium: ensure-chromium finds one or installs it
# (a missing one fails under CI=true, and only skips those tests elsewhere).
test: setup
	$(BIN)/python scripts/ensure-chromium
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check src docexec tests
	$(BIN)/ruff format --check src docexec tests

# Rewrite the lock with pip-compile (pip-tools), run from a venv of its own so it adds
# nothing to .venv: every package `make setup` installs, with the hashes of all their
# files on the index. scripts/lock-inputs first writes pyproject.toml's requirements (the
# project's, and its docs and test extras) into requirements.in, with TORCH_INDEX as an
# extra index so that torch's own requirements are the CPU build's (no nvidia-*
# packages), and [build-system] requires into requirements-build.in. requirements.txt
# locks the first but for torch (its wheel, and so its hash, depends on the index) and
# setuptools, left out as unsafe packages; requirements-build.txt locks setuptools.
# Dependabot's weekly pip updates recompile both pairs: they read these options back
# from each file's header (tests/test_lock.py keeps to the options they read).
LOCK_TOOLS := .lock-tools
PIP_TOOLS := pip-tools==7.6.2
PIP_COMPILE := $(LOCK_TOOLS)/bin/pip-compile --quiet --generate-hashes --strip-extras \
	--no-emit-index-url --no-emit-find-links --pip-args '--retries 1'
lock:
	test -x $(LOCK_TOOLS)/bin/python || $(PYTHON) -m venv $(LOCK_TOOLS)
	$(LOCK_TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check $(PIP_TOOLS)
	$(LOCK_TOOLS)/bin/python scripts/lock-inputs $(TORCH_INDEX)
	$(PIP_COMPILE) --unsafe-package setuptools --unsafe-package torch \
		--output-file requirements.txt requirements.in
	$(PIP_COMPILE) --allow-unsafe --output-file requirements-build.txt requirements-build.in

# Figures, not assertions: how long each page's examples take to run, then cold and
# warm builds and edit-to-screen latency under mkdocs serve.
benchmark: setup
	$(BIN)/python benchmarks/page_times.py
	$(BIN)/python benchmarks/build_and_serve.py
	$(BIN)/python benchmarks/at_scale.py

# The value of a variable, for a workflow: make --no-print-directory print-TORCH_INDEX.
print-%:
	@echo '$($*)'

clean:
	rm -rf site .site-build .cache/docexec
