# Two set-up commands on a fresh machine with only Python: `make demo`, `make test`.
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed

.PHONY: install demo test test-clean-clone slurm bench clean

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

# Two workers: every test that starts Ray runs on one (one head, one shared smoke grid), the
# other files beside it, each file whole on one worker (tests/conftest.py sets the groups).
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadgroup

# The committed HEAD cloned into a temporary folder with nothing beside it, no data root
# (ER_GRID_DATA_ROOT unset, HOME empty) and no internet needed: the data, download and README
# tests must pass there (real-MNIST tests skip). The clone uses this checkout's venv.
CLEAN_CLONE_TESTS := tests/er_core/test_data.py tests/er_core/test_download.py \
	tests/grid/trial/test_data_staging.py tests/grid/cli/test_data_cli.py tests/test_readme.py

test-clean-clone: $(STAMP)
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	git clone --quiet . "$$tmp/er-grid" && mkdir "$$tmp/home" && cd "$$tmp/er-grid" && \
	env -u ER_GRID_DATA_ROOT HOME="$$tmp/home" PYTHONPATH="$$tmp/er-grid" \
	"$(abspath $(PY))" -m pytest -q -p no:cacheprovider $(CLEAN_CLONE_TESTS)

# The SLURM scenario alone: tools/slurm_local.sh installs SLURM where it can (root and apt-get)
# and starts a one-machine cluster in a temporary folder; the test sbatches a small grid through
# cluster/slurm/er-grid.sbatch, checks its rows and stops the daemons by their PIDs.
slurm: $(STAMP)
	$(PY) -m pytest -q -p no:xdist tests/grid/scenarios/test_slurm.py

# On a CPU-only machine the full settings take hours (AutoAttack/RayS/C&W on 1,000 MNIST
# samples); `make bench` uses each benchmark's --quick setting, `make bench BENCH_FLAGS=` the full one.
BENCH_FLAGS ?= --quick

bench: $(STAMP)
	$(PY) bench/run_all.py $(BENCH_FLAGS)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
