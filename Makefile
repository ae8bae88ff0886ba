# Two commands do all set-up on a fresh machine:
#   make demo   creates .venv, installs imgclf, runs the whole lifecycle on a synthetic dataset
#   make test   creates .venv, installs imgclf with test tools, runs the test suite
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint install clean promtool browser

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
	$(BIN)/python -m pytest -q --durations=15  # the slowest tests, so the suite stays well under 20 minutes

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

# The console's browser tests drive Debian's chromium with chromium-driver. Installed system-wide
# (/usr/bin/chromium, /usr/bin/chromedriver) they are used as they are; otherwise the two packages and
# whichever of their dependencies this machine lacks are unpacked into .venv/chromium (no root needed)
# and started through wrappers in .venv/bin that put the unpacked libraries on LD_LIBRARY_PATH.
browser: $(BIN)/chromedriver

$(BIN)/chromedriver: $(BIN)/python
	rm -rf $(VENV)/chromium $(VENV)/chromium-deb && mkdir -p $(VENV)/chromium-deb
	if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then \
	  ln -sf /usr/bin/chromium $(BIN)/chromium && ln -sf /usr/bin/chromedriver $(BIN)/chromedriver; exit 0; fi; \
	missing=$$(apt-get install --simulate --no-install-recommends chromium chromium-driver 2>/dev/null | awk '/^Inst /{print $$2}'); \
	[ -n "$$missing" ] || { echo "apt-get finds no chromium to install" >&2; exit 1; }; \
	(cd $(VENV)/chromium-deb && apt-get download $$missing >/dev/null) && \
	for deb in $(VENV)/chromium-deb/*.deb; do dpkg-deb -x $$deb $(VENV)/chromium || exit 1; done && \
	for tool in chromium:usr/lib/chromium/chromium chromedriver:usr/lib/chromium/chromedriver; do \
	  printf '%s\n' '#!/bin/sh' 'root="$$(dirname "$$(readlink -f "$$0")")/../chromium"' \
	    'export LD_LIBRARY_PATH="$$root/usr/lib/x86_64-linux-gnu:$$root/usr/lib/x86_64-linux-gnu/pulseaudio:$$root/lib/x86_64-linux-gnu:$$root/usr/lib/chromium$${LD_LIBRARY_PATH:+:$$LD_LIBRARY_PATH}"' \
	    "exec \"\$$root/$${tool#*:}\" \"\$$@\"" > $(BIN)/$${tool%%:*} && chmod +x $(BIN)/$${tool%%:*} || exit 1; \
	done
	rm -rf $(VENV)/chromium-deb

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) demo_output .pytest_cache
