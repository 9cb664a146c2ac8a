# Two set-up commands on a fresh machine with only Python: `make demo`, `make test`.
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# A local Ray head with token auth, `ray job submit jobs/full_grid.py --preset smoke`,
# `er-grid query` of the results, head stopped (grid/demo.py).
demo: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m grid.demo

test: $(STAMP)
	$(PY) -m pytest -q

# On a CPU-only machine the full settings take hours (AutoAttack/RayS/C&W on 1,000 MNIST
# samples); `make bench` uses each benchmark's --quick setting, `make bench BENCH_FLAGS=` the full one.
BENCH_FLAGS ?= --quick

bench: $(STAMP)
	$(PY) bench/run_all.py $(BENCH_FLAGS)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
