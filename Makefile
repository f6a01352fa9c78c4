# Two commands do everything on a fresh machine: `make all-studies` and `make test`.
# Both create the virtual environment first if it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TOOLKIT := $(VENV)/bin/toolkit
OUT ?= results
JOBS ?= 1

.PHONY: install test lint format all-studies rf-attention st-dit benchmark clean-cache

install: $(VENV)/.installed

# The CPU wheel of torch is installed before the package so that pip does not
# resolve torch to a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

rf-attention: install
	$(TOOLKIT) run rf-attention --profile default --jobs $(JOBS) --out $(OUT)

st-dit: install
	$(TOOLKIT) run st-dit --profile default --jobs $(JOBS) --out $(OUT)
	$(PY) -c "import pandas, pathlib; from studies.spatiotemporal_dit import figures; \
	figures(pandas.read_csv('$(OUT)/st_dit.csv'), pathlib.Path('$(OUT)'))"

all-studies: rf-attention st-dit

benchmark: install
	$(PY) benchmarks/rf_attention_fit.py

clean-cache:
	rm -rf $(OUT)/.cache
