# Two commands do everything on a fresh machine: `make all-studies` and `make test`.
# Both create the virtual environment first if it is missing. `make test-fast` skips the
# tests marked slow (see pyproject.toml): under 2 minutes, against about 4.5.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TOOLKIT := $(VENV)/bin/toolkit
OUT ?= results
JOBS ?= 1

.PHONY: install test test-fast lint format all-studies report rf-attention conditional-diffusion st-dit \
	inverse-problem other-profiles rf-keys rf-heads st-dit-depth benchmark clean-cache

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

test-fast: install
	$(PY) -m pytest -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

rf-attention: install
	$(TOOLKIT) run rf-attention --profile default --jobs $(JOBS) --out $(OUT)

# The diffusion studies train small networks: two single-threaded workers beat one
# two-threaded process there, while rf-attention's large Gram products use both threads.
conditional-diffusion: install
	$(TOOLKIT) run conditional-diffusion --profile default --jobs 2 --out $(OUT)

st-dit: install
	$(TOOLKIT) run st-dit --profile default --jobs 2 --out $(OUT)

inverse-problem: install
	$(TOOLKIT) run inverse-problem --profile default --jobs 2 --out $(OUT)

# Every study on its default profile, then the report (rates.csv, comparisons.csv,
# sample_complexity.csv, figures/ including st-dit's attention maps, REPORT.md), rebuilt
# from the CSVs; ends with the wall time of each step.
STUDIES := rf-attention conditional-diffusion st-dit inverse-problem
all-studies: install
	@summary=""; \
	for step in $(STUDIES) report; do \
	  start=$$(date +%s); \
	  $(MAKE) --no-print-directory $$step || exit 1; \
	  summary="$$summary  $$step: $$(( $$(date +%s) - start )) s\n"; \
	done; \
	printf "\nall-studies, wall time per step:\n$$summary"

# Reports $(OUT) and every profile folder in it (results/rf_attention_keys, ...).
report: install
	$(TOOLKIT) report --results $(OUT) --jobs 2

# The profiles beside the defaults, each into its own folder under $(OUT) (about 75 min
# on 2 cores in all; not part of all-studies); `make report` then reports them too.
other-profiles: rf-keys rf-heads st-dit-depth

rf-keys: install
	$(TOOLKIT) run rf-attention --profile keys --jobs 1 --out $(OUT)/rf_attention_keys

rf-heads: install
	$(TOOLKIT) run rf-attention --profile heads --jobs 1 --out $(OUT)/rf_attention_heads

st-dit-depth: install
	$(TOOLKIT) run st-dit --profile depth --jobs 2 --out $(OUT)/st_dit_depth

benchmark: install
	$(PY) benchmarks/rf_attention_fit.py

clean-cache:
	rm -rf $(OUT)/.cache
