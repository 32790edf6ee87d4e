# podkit: every entry point a person or CI uses. `make test` is the README's test command.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST := $(PY) -m pytest

.PHONY: help venv test test-unit test-fuzz fuzz test-integration test-go test-e2e bench-handover bench-state bench-wrapped bench-probe bench-scale bench-swap bench-resources chaos lint k8s images cluster-up cluster-down demo clean

help:
	@echo "make demo            the main job: a real A/B upgrade on a local cluster beside a kubelet"
	@echo "                     restart and a rolling update, 1 kHz probes; out/demo/report.json"
	@echo "                     and out/demo/jitter.png (KEEP=1 leaves the cluster up)"
	@echo "make test            every test: lint, unit, fuzz, integration, Go patch tests, e2e on a local cluster"
	@echo "make lint            ruff, mypy and the import-linter contracts of the layout"
	@echo "make fuzz            the runtime's wire-format parsers fuzzed for FUZZ_SECONDS (300) in"
	@echo "                     all; last line JSON: inputs and crashes per target (FUZZ_SEED=...)"
	@echo "make cluster-up      start the local cluster (cluster-down stops it); make images builds the images"
	@echo "make bench-handover  1,000 hand-overs between two slot processes (JSON)"
	@echo "make bench-state     state and sockets across swaps (JSON)"
	@echo "make bench-wrapped   unmodified nginx, 20 wrapped swaps: binding its port vs inherited"
	@echo "                     listeners, side by side (JSON: failed, sent, max_gap_ms per mode)"
	@echo "make bench-probe     the prober's CPU per request and send lateness, per design (JSON)"
	@echo "make bench-scale     PODS (10000) pods on kwok released in BATCHES (5): per-batch times (JSON)"
	@echo "                     PEER=kruise: then OpenKruise's CloneSet of the same pods, and the ratios"
	@echo "make bench-swap      SWAPS (6) A/B swaps of the demo pod on the real kubelet, step by step (JSON)"
	@echo "make bench-resources the serving slot while the other burns CPU: pod-level resources"
	@echo "                     vs podkit's per-slot requests, ROUNDS (2) each (JSON)"
	@echo "make chaos           RUNS seeded fault-injected releases from SEED (default 100 from 1;"
	@echo "                     ONLY=n replays one) on API-only clusters, JOBS=1 of them side"
	@echo "                     by side; last line JSON;"
	@echo "                     MODE=kubelet: on the full testbed, real processes probed"
	@echo "make k8s             build the patched Kubernetes binaries (cached)"

venv: $(VENV)/.installed

# Four distributions, all editable: the runtime (.), the operator, the demo service, the tools.
DISTS := pyproject.toml operator/pyproject.toml demo_service/pyproject.toml tools/pyproject.toml

$(VENV)/.installed: $(DISTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,lint]' -e ./operator -e ./demo_service -e ./tools
	touch $@

test: lint test-unit test-fuzz test-integration test-go test-e2e

# ruff (style, imports, bugbear), mypy (every package), import-linter (the layering).
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test-unit: venv
	$(PYTEST) -q tests/unit

# The fuzz targets for a fixed, derandomized budget (tests/fuzz/conftest.py), about 30 s.
test-fuzz: venv
	$(PYTEST) -q tests/fuzz

# Random inputs for FUZZ_SECONDS (default 300) shared by the targets; FUZZ_SEED repeats a run.
fuzz: venv
	$(PY) tests/fuzz/run.py

test-integration: venv
	$(PYTEST) -q --durations=15 tests/integration

test-e2e: venv
	$(PYTEST) -q --durations=15 tests/e2e

test-go:
	bash apiserver-patches/test.sh

k8s:
	bash apiserver-patches/build.sh

images: venv
	$(PY) -m testbed.images build

cluster-up: venv
	$(PY) -m testbed up

cluster-down: venv
	$(PY) -m testbed down

bench-handover: venv
	$(PY) -m benchmarks.handover

bench-state: venv
	$(PY) -m benchmarks.swaps

bench-wrapped: venv
	$(PY) -m benchmarks.wrapped

# PODS=200 BATCHES=5 for a quick look; what it prints: docs/operator.md, "Many pods".
PODS ?= 10000
BATCHES ?= 5
PEER ?=
bench-scale: venv
	$(PY) -m scale_bench --pods $(PODS) --batches $(BATCHES) $(if $(PEER),--peer $(PEER))

# What it prints: docs/operator.md, "One swap on a real kubelet".
SWAPS ?= 6
bench-swap: venv
	KEEP=$(KEEP) $(PY) -m upgrade_demo.swap_steps --swaps $(SWAPS)

ROUNDS ?= 2
bench-resources: venv
	KEEP=$(KEEP) $(PY) -m upgrade_demo.slot_resources --rounds $(ROUNDS)

RUNS ?= 100
SEED ?= 1
MODE ?= kwok
JOBS ?= 1
chaos: venv
	$(PY) -m chaos --mode $(MODE) --runs $(RUNS) --seed $(SEED) --jobs $(JOBS) \
		$(if $(ONLY),--only $(ONLY))

bench-probe: venv
	$(PY) -m upgrade_demo.prober.bench

# KEEP=1 leaves the cluster, the operator and the demo's namespace running afterwards.
demo: venv
	KEEP=$(KEEP) $(PY) -m upgrade_demo --out out/demo

clean:
	rm -rf $(VENV) out build *.egg-info
