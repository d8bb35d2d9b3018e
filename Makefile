# coldrec: `make demo` runs the main job, `make test` the tests. Both set up .venv first.
VENV ?= .venv
TORCH := 2.13.0
# a failing pip inside `pip ... | grep` must fail the target
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PY := $(VENV)/bin/python
DATA ?= ../shared/data
MODEL ?= models/amazon14-office
HOST ?= 127.0.0.1
PORT ?= 8000
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo build serve loadtest lint test test-all bench bench-encode lock clean

# requirements.lock: coldrec[serve,lm] (what runs); requirements-dev.lock: what tests and lint add (coldrec[dev])
$(VENV)/.installed: requirements.lock requirements-dev.lock pyproject.toml
	@echo "setup 1/3: a virtual environment in $(VENV) (first run only: a few minutes)"
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@echo "setup 2/3: torch $(TORCH) (CPU build)"
	# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build
	$(PY) -m pip install --progress-bar off torch==$(TORCH) | { grep -v '^Requirement already' || true; }
	@echo "setup 3/3: the pinned packages of requirements.lock and requirements-dev.lock, then coldrec"
	$(PY) -m pip install --progress-bar off -r requirements.lock -r requirements-dev.lock \
		| { grep -E '^(Collecting|Installing|Successfully)' || true; }
	$(PY) -m pip install -q --no-deps -e .
	touch $@

install: $(VENV)/.installed

# the main job: set up, build the Office model once, serve it with the demo page
demo: serve

# built once; `rm -r $(MODEL)` to rebuild
$(MODEL)/.built: | $(VENV)/.installed
	$(VENV)/bin/coldrec build -d amazon14-office --data $(DATA) --out $(MODEL) --tune
	touch $@

build: $(MODEL)/.built

serve: install build
	@echo "coldrec demo page: http://$(HOST):$(PORT)/  (API docs: http://$(HOST):$(PORT)/docs; Ctrl-C stops)"
	$(VENV)/bin/coldrec serve --model $(MODEL) --host $(HOST) --port $(PORT)

# /recommend and /search at 100 req/s and at peak, on the Office model and on a synthetic 100k-item shop;
# each run starts its own server process with a throw-away state
loadtest: install build
	$(VENV)/bin/coldrec loadtest --model $(MODEL) --workers 2 --endpoint recommend --endpoint search --endpoint items \
		--endpoint writes --out reports/loadtest-office.png
	$(VENV)/bin/coldrec loadtest --synthetic 100000 --workers 2 --out reports/loadtest-synthetic-100k.png

# ruff and mypy (settings in pyproject.toml), no import cycle in coldrec.encode (nor any at import time),
# and lock files that match pyproject.toml's extras as installed
lint: install
	$(VENV)/bin/ruff check src .ci
	$(VENV)/bin/mypy src .ci
	$(PY) .ci/import_cycles.py --fail-on coldrec.encode
	$(PY) .ci/lock.py --check

test: install
	$(PY) -m pytest -q

test-all: install
	$(PY) -m pytest -q -m "slow or not slow"

bench: install
	$(VENV)/bin/coldrec evaluate --data $(DATA) -d amazon14-office --models all
	$(VENV)/bin/coldrec evaluate --data $(DATA) -d uci-online-retail --models all
	$(VENV)/bin/coldrec evaluate --data $(DATA) -d homedepot-search --models bm25,dense,rrf,weighted
	$(VENV)/bin/coldrec search-bench --data $(DATA)

bench-encode: install
	$(VENV)/bin/coldrec encode --bench --data $(DATA)

# both lock files from what .venv has installed for pyproject.toml's extras (torch stays ==$(TORCH), no +cpu)
lock:
	$(PY) .ci/lock.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
