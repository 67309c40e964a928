# The two commands of the README: `make run` serves the built-in study,
# `make test` runs the test suite. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STUDY ?= studies/easyvqa_simulation.yaml
PORT ?= 8501

.PHONY: install run test bench clean-data

$(BIN)/mviz: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(BIN)/mviz

install: $(BIN)/mviz

run: install
	$(BIN)/mviz serve $(STUDY) --port $(PORT)

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python bench/bench_stages.py
	$(BIN)/python bench/bench_prepare.py
