# adbench: `make demo` runs the main job on the embedded demo data, `make test` runs the tests.
# Both create .venv and install everything on a fresh machine (CPU is enough).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
ANOMALIB_VENV ?= .venv-anomalib
BENCH_ARGS ?=

export WANDB_MODE ?= offline
export HF_HUB_OFFLINE ?= 1
export NO_ALBUMENTATIONS_UPDATE ?= 1
export MPLBACKEND ?= Agg

.PHONY: install demo test lint bench bench-metrics bench-models bench-patchcore bench-anomalib-env benchmark benchmark-demo clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install $(TORCH_PINS)
	$(PY) -m pip install -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install  ## PatchCore and ADTR on four demo categories (2-core CPU: about 20 minutes), prints the metrics tables
	$(VENV)/bin/adbench data demo
	$(VENV)/bin/adbench benchmark --config configs/benchmark_demo_adtr.yaml

test: install  ## the test suite (CPU, offline)
	$(PY) -m pytest -q tests

lint: install
	$(VENV)/bin/ruff check adbench tests benchmarks
	$(VENV)/bin/ruff format --check adbench tests benchmarks

benchmark: install  ## every model x MVTec AD category (configs/benchmark.yaml), one results table
	$(VENV)/bin/adbench benchmark --config configs/benchmark.yaml

benchmark-demo: install  ## every model on the demo data, CPU-sized schedules
	$(VENV)/bin/adbench data demo
	$(VENV)/bin/adbench benchmark --config configs/benchmark_demo.yaml

bench-metrics: install  ## time every metric on 500 maps of 256x256 (CPU, and GPU when present)
	$(PY) benchmarks/bench_metrics.py

bench-models: install  ## time every model at 256x256: ms/image, images/s, training, peak memory -> bench/results.{json,md}
	$(PY) benchmarks/bench_models.py --anomalib-python $(ANOMALIB_VENV)/bin/python $(BENCH_ARGS)

bench-patchcore: install  ## PatchCore vs anomalib 2.7 on one demo category (needs bench-anomalib-env) -> docs/bench_patchcore.md
	$(VENV)/bin/adbench data demo
	$(PY) benchmarks/bench_patchcore.py --anomalib-python $(ANOMALIB_VENV)/bin/python

bench-anomalib-env:  ## separate virtualenv with anomalib 2.7 for the side-by-side timings of bench-models (DSR) and bench-patchcore
	test -x $(ANOMALIB_VENV)/bin/python || $(PYTHON) -m venv $(ANOMALIB_VENV)
	$(ANOMALIB_VENV)/bin/python -m pip install $(TORCH_PINS) 'anomalib==2.7.*'

bench: bench-metrics bench-models

clean:
	rm -rf results .pytest_cache .ruff_cache
