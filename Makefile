# Every target sets itself up from nothing: it creates .venv and installs what it needs once.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# uv installs what pip would (the same pins, from PyPI) with parallel downloads; pip installs uv, pinned, its own
# upgrade (tests and the docs' commands use it) and torch (see .train). --compile-bytecode: as pip does, the .pyc
# files written at install; without them, where PYTHONDONTWRITEBYTECODE is set (containers, CI), every process
# compiles timm, numpy, matplotlib, scipy ... again as it imports them (16-22 s for the trainer's imports, not 10).
UV_VERSION ?= 0.13.10
UV := $(VENV)/bin/uv
INSTALL := $(UV) pip install -q --compile-bytecode --python $(PY)
RECIPE ?= manifests/1p-frac.json
OUT ?= shards/1p-frac
RUN ?= runs/pretrain

# The torch build for this platform; torchvision must match it.
ifeq ($(shell uname -m),aarch64)
TORCH := torch==2.9.1 torchvision==0.24.1
else
TORCH := torch==2.14.1 torchvision==0.29.1
endif

.PHONY: help run test lint bench docs setup setup-train clean pretrain experiment faults gpu-check gpu-wheels

run: $(VENV)/.core  ## render RECIPE (manifests/1p-frac.json) into OUT (shards/1p-frac)
	$(VENV)/bin/fracbuild render $(RECIPE) -o $(OUT)

# In TEST_JOBS processes (pytest-xdist; one per core, TEST_JOBS=0 runs the suite in this one); each module stays
# on one worker, so that tests sharing a module fixture or running in order (the README blocks) keep it.
# Not --dist loadgroup: with pytest 9 and xdist 3.8 it ignores the xdist_group marks and split the README blocks.
TEST_JOBS ?= auto
test: $(VENV)/.train  ## the test suite, in parallel (TEST_JOBS processes), fault injection at 1 trial
	$(PY) -m pytest -q -n $(TEST_JOBS) --dist loadfile

lint: $(VENV)/.dev  ## ruff over the project
	$(VENV)/bin/ruff check .

bench: $(VENV)/.train  ## the benchmarks (benchmarks/bench.py)
	$(PY) benchmarks/bench.py

# The documentation site from docs/ (mkdocs.yml) into site/; a warning (a broken link) fails it.
docs: $(VENV)/.docs  ## the documentation site from docs/ into site/ (strict)
	$(VENV)/bin/mkdocs build --strict

# Fault injection, long: FAULT_TRIALS trials of every kind that kills a render or a training run and 5 times as
# many of the cheap kinds (`make test` runs 1 and 5, seeded), then the table of trials, survived and data lost.
# FAULT_SEED moves where the faults land. About 60 minutes on 2 cores (docs/reliability.md).
FAULT_TRIALS ?= 20
FAULT_SEED ?= 0
faults: $(VENV)/.train  ## fault injection, long: FAULT_TRIALS trials of each kind (about 60 min)
	FAULT_TRIALS=$(FAULT_TRIALS) FAULT_SEED=$(FAULT_SEED) $(PY) -m pytest -q -m faults tests/faults

# Pre-train on the default dataset: the paper preset where there are GPUs (several under trainer.launch), else the
# cpu preset on the default recipe rendered at the cpu model's size; each dataset rendered once, if missing; a run
# already in $(RUN) resumed. trainer/default_run.py decides.
pretrain: $(VENV)/.train  ## pre-train on the default dataset (paper preset on GPUs, else cpu), into RUN
	$(PY) -m trainer pretrain-default --recipe $(RECIPE) --data $(OUT) --out $(RUN)

# The paper's Table 2 over 3 pre-training x 3 fine-tuning seeds: at gpu size where torch sees a GPU (the default
# dataset, ViT-Tiny at 224 px, experiments/REPORT-gpu.md), else in miniature (about two hours on 2 cores:
# experiments/REPORT.md).
# Each renders its own datasets; re-running skips finished runs.
experiment: $(VENV)/.train  ## the paper's Table 2, at gpu size or in miniature on a CPU
	@size=$$($(PY) -c "import torch; print('gpu' if torch.cuda.is_available() else 'cpu')"); set -x; \
	$(PY) -m trainer experiment --size $$size --report experiments

# The GPU check (benchmarks/gpu_check.py): inside 7 minutes of wall on one GPU by its own budget (--budget-s 420), its
# report in $OUT/gpu-check.md where OUT is set in the environment, else gpu-check/; on a CPU, a tiny run that checks
# the script. A GPU host without internet needs .whl/ (make gpu-wheels, here) and shards/1p-frac (make run) carried.
gpu-check:  ## the GPU check (benchmarks/gpu_check.py), report in $OUT/gpu-check.md
	bash benchmarks/gpu-check.sh $(GPU_CHECK_ARGS)

# Only the listed wheels: .whl/ is emptied first (gpu-check.sh installs every wheel in it).
gpu-wheels:  ## download the wheels a GPU host without internet needs into .whl/
	rm -rf .whl
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
	  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl -r benchmarks/gpu-wheels.txt

setup: $(VENV)/.core  ## create .venv with fracbuild
setup-train: $(VENV)/.train  ## .venv with the training, dev, dask, ray, image and docs extras

# Every target with a `## ` comment on its line, in the order written.
help:  ## list the targets
	@awk -F ':.*## ' '/^[a-z][a-z-]*:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(UV):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip uv==$(UV_VERSION)

$(VENV)/.core: pyproject.toml | $(UV)
	$(INSTALL) -e .
	touch $@

$(VENV)/.dev: $(VENV)/.core
	$(INSTALL) -e '.[dev]'
	touch $@

$(VENV)/.docs: $(VENV)/.core
	$(INSTALL) -e '.[docs]'
	touch $@

# Torch first, by pip: pip takes this platform's build from local wheels where the machine has them (PIP_FIND_LINKS),
# which uv does not look at. Then the extras with torch pinned in the same resolve, so that they never pull another
# build: uv finds it installed and downloads nothing of it.
$(VENV)/.train: $(VENV)/.core
	$(PY) -m pip install -q $(TORCH)
	$(INSTALL) $(TORCH) -e '.[train,dev,dask,ray,image,docs]'
	touch $@

clean:  ## remove .venv, build, site and tool caches
	rm -rf $(VENV) build site *.egg-info .pytest_cache .ruff_cache
