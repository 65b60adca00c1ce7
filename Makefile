# Everything runs from a project-local virtual environment that these targets create on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CAPTURE ?= pcaps/tls13-flag62-required-missing.pcap

.PHONY: venv demo test lint clean fuzz

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# The main job on a bundled capture: one JSON event per connection, then the summary.
demo: venv
	$(BIN)/helloscope analyze $(CAPTURE)

test: venv
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/pip install --quiet ruff mypy
	$(BIN)/ruff check parsers sniffer tests fuzz bench pcaps
	$(BIN)/mypy

# Long coverage-guided runs of every parser harness (fuzz/), FUZZ_JOBS at a time; exits 1 on a finding.
FUZZ_SECONDS ?= 600
FUZZ_JOBS ?= 2
CORPUS ?= ../shared/corpus
fuzz: venv
	$(BIN)/pip install --quiet -e '.[fuzz]'
	$(BIN)/python -m fuzz.campaign --seconds $(FUZZ_SECONDS) --jobs $(FUZZ_JOBS) $(if $(wildcard $(CORPUS)),--corpus $(CORPUS))

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .mypy_cache .ruff_cache *.egg-info
