# Two commands do all set-up on a fresh machine:
#   make demo   creates .venv, installs imgclf, runs the whole lifecycle on a synthetic dataset
#   make test   creates .venv, installs imgclf with test tools, runs the test suite
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint install clean promtool

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Pinned: requirements.lock holds the exact versions of every dependency.
$(STAMP): $(BIN)/python pyproject.toml requirements.lock
	$(BIN)/python -m pip install --quiet --upgrade "pip==25.3"
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/imgclf demo --out demo_output

test: $(STAMP)
	$(BIN)/lint-imports  # the layer contracts in pyproject.toml
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# promtool (Debian's prometheus package, unpacked into .venv/bin) lets the tests check the alert rules.
promtool: $(BIN)/promtool

$(BIN)/promtool: $(BIN)/python
	rm -rf $(VENV)/prometheus-deb && mkdir -p $(VENV)/prometheus-deb
	cd $(VENV)/prometheus-deb && apt-get download prometheus >/dev/null 2>&1
	dpkg-deb -x $(VENV)/prometheus-deb/prometheus_*.deb $(VENV)/prometheus-deb/root
	cp $(VENV)/prometheus-deb/root/usr/bin/promtool $(BIN)/promtool
	rm -rf $(VENV)/prometheus-deb

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) demo_output .pytest_cache
