# Every target sets itself up: `make sweep` / `make test` on a fresh machine create .venv and install
# kgsearch into it (torch pinned to the CPU build through constraints.txt). Re-runs skip the install
# unless pyproject.toml or constraints.txt changed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SWEEP  ?= dans_umls
ARGS   ?=

# glibc returns freed memory to the OS too eagerly for embedding training
# (docs/ray.md, "glibc malloc settings").
export MALLOC_MMAP_THRESHOLD_ := 33554432
export MALLOC_TRIM_THRESHOLD_ := 17179869184
export MALLOC_TOP_PAD_        := 1073741824

.PHONY: install sweep test test-all bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $(STAMP)

sweep: $(STAMP)
	$(PY) -m kgsearch.sweep $(SWEEP) $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(ARGS)

test-all: $(STAMP)
	$(PY) -m pytest -q -m "slow or not slow" $(ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
