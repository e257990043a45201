# The README names these targets: `make run` starts everything, `make test` tests everything.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test install system-deps translations bench lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP) translations

# One .po file per capability in translations/parts/, merged and compiled into the catalog.
translations: $(STAMP)
	mkdir -p translations/vi/LC_MESSAGES
	cat translations/base.po $(wildcard translations/parts/*.po) > translations/vi/LC_MESSAGES/messages.po
	$(VENV)/bin/pybabel compile -f -l vi -i translations/vi/LC_MESSAGES/messages.po \
		-o translations/vi/LC_MESSAGES/messages.mo >/dev/null

# Debian packages the tests use: chromium for browser tests, poppler-utils for
# pdffonts/pdftotext, PostgreSQL for the database tests that matter.
system-deps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v pdffonts >/dev/null || missing="$$missing poppler-utils"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
		echo "Installing Debian packages:$$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

run: install
	$(PY) -m portal.launcher

test: install system-deps
	$(VENV)/bin/pytest -q

bench: install
	$(PY) bench/list_bench.py

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV)
