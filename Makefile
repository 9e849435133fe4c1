# cxrtriage: one-command set-up. `make demo` triages example images; `make test` runs the offline test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
IMG ?=

.PHONY: install demo test test-slow bench evaluate train export clean help

help:
	@echo "make install   create .venv and install cxrtriage with what the demo and tests need"
	@echo "make demo      triage example chest X-rays on the bundled model (or IMG=path/to/image)"
	@echo "make test      run the offline test suite"
	@echo "make bench     speed / memory benchmark of the bundled model"
	@echo "make evaluate  metrics on held-out test patients (needs the data directory)"
	@echo "make train export   retrain and re-export the bundled model (needs the data directory)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[train,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/cxrtriage demo $(IMG)

test: install
	$(BIN)/pytest -q

test-slow: install
	$(BIN)/pytest -q -m slow

bench: install
	$(BIN)/cxrtriage bench --checkpoint runs/bundled/checkpoint.pt --out runs/bench.json

evaluate: install
	$(BIN)/cxrtriage evaluate --update-card

train: install
	$(BIN)/cxrtriage train --out runs/bundled

export: install
	$(BIN)/cxrtriage export --checkpoint runs/bundled/checkpoint.pt --trace runs/bundled/export_trace.txt

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
