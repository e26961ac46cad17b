# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench bench-all clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e ".[test,examples]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/quickstart.py

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile -q --doctest-modules pymc_sgd tests

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
	rm -rf $(VENV) *.egg-info
