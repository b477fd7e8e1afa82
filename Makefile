# The two commands of the README: `make demo` and `make test`. Both set everything up first.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEB_PACKAGES := espeak-ng postgresql sox chromium fonts-noto-cjk
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test setup sysdeps lint typecheck pytest bench clean

setup: sysdeps $(VENV)/.installed

# Debian packages the offline TTS and the PostgreSQL store tests need; installed only when missing.
sysdeps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

demo: setup
	$(BIN)/outreach demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy .

pytest: setup
	OUTREACH_REQUIRE_PG=1 $(BIN)/python -m pytest -q -p no:cacheprovider

test: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy .
	OUTREACH_REQUIRE_PG=1 $(BIN)/python -m pytest -q -p no:cacheprovider

bench: setup
	for b in import_bench nlu_bench tts_bench media_bench campaign_bench loop_bench asterisk_bench web_bench sms_bench; do echo "== $$b"; $(BIN)/python bench/$$b.py; done

clean:
	rm -rf $(VENV) var demo build *.egg-info
