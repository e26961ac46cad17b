# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.docs-installed

.PHONY: demo test docs bench bench-all clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e ".[test,examples,distributed]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/quickstart.py

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile -q --doctest-modules pymc_sgd tests

$(DOCS_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e ".[docs]"
	touch $(DOCS_STAMP)

# HTML into docs/_build/html, warnings as errors; notebooks rerun only when their text changed (myst-nb cache).
docs: $(DOCS_STAMP)
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html

bench: $(STAMP)
	$(BIN)/python benchmarks/throughput.py

# Every benchmark of issue 5 (about an hour; time_to_accuracy caches its NUTS reference).
bench-all: $(STAMP)
	$(BIN)/pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/vs_blackjax.py
	$(BIN)/python benchmarks/scaling.py
	$(BIN)/python benchmarks/time_to_accuracy.py

clean:
	rm -rf $(VENV) *.egg-info docs/_build docs/api/generated
