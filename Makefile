# `make run`: set up, train FIT + Two-Tower on the embedded synthetic data, publish, serve :8000.
# `make test`: set up and run the whole suite (real Redis, real uvicorn, real ONNX Runtime).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARTIFACTS ?= $(or $(PRERANK_ARTIFACTS_DIR),artifacts)

.PHONY: setup run train serve test lint typecheck reproduce compare soak load bench bench-memory bench-scale bench-train-memory bench-data bench-ids bench-events profile stack images podman-up podman-down clean

$(STAMP): requirements.txt requirements-service.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==25.3
	$(PY) -m pip install --quiet -r requirements.txt -c constraints.txt
	touch $(STAMP)

setup: $(STAMP)

train: setup
	PRERANK_ARTIFACTS_DIR=$(ARTIFACTS) $(PY) -m offline_jobs run

serve: setup
	PRERANK_BUNDLE_DIR=$${PRERANK_BUNDLE_DIR:-$(ARTIFACTS)/bundles/current} $(PY) -m service

run: train serve

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -q

# The paper's MovieLens tables (all models x seeds, K sweep, efficiency): docs/results/. Long: about
# an hour on 2 cores; interrupted runs resume. Arguments: make reproduce ARGS="--seeds 1 --k".
reproduce: setup
	$(PY) -m research.reproduce $(ARGS)

# Every model (the six and FIT's ablations) on any dataset spec for a list of seeds: AUC, logloss,
# RelaImpr, s/epoch, /prerank p50, bytes/item, the Pareto front and the model to serve, in
# docs/results/compare-<name>.md/.json/-pareto.png. make compare SPEC=offline_jobs/data/specs/ml-100k.yaml
# ARGS="--seeds 1"; the shipped MovieLens specs convert GroupLens' files first when needed.
compare: setup
	@test -n "$(SPEC)" || { echo "usage: make compare SPEC=path/to/spec.yaml [ARGS=...]" >&2; exit 2; }
	$(PY) -m research.compare $(SPEC) $(ARGS)

# Bounded load with a hot swap midway: errors, p99 drift, RSS growth (10 min; ARGS="--seconds 60").
soak: setup
	$(PY) -m research.soak $(ARGS)

# Headless Locust against a running service for a bounded time; CSV + HTML report under
# results/locust/<UTC time>/, exit 1 on any failed request (ARGS="--shape", "--seconds 30").
load: setup
	$(PY) -m loadtest.run $(ARGS)

# Latency against the echo floor in JSON, columnar JSON and MessagePack, FIT vs Two-Tower, the
# scorer vs its FLOPs, 2-worker throughput of FIT vs the floor, the naive per-pair path as
# information: docs/benchmarks/latency.md + .png (about 10 minutes; needs `make train`'s bundles).
bench: setup
	$(PY) -m research.bench $(ARGS)

# py-spy on the service under load: docs/benchmarks/profile.md (top functions) + profile.svg.
profile: setup
	$(PY) -m research.profile $(ARGS)

# 10k vs 1M items: precompute, publish, Redis memory, service start, p50: docs/benchmarks/scale.md.
bench-scale: setup
	$(PY) -m research.scale $(ARGS)

# Memory per worker at a 1M-item catalogue: docs/benchmarks/memory.md.
bench-memory: setup
	$(PY) -m research.memory $(ARGS)

# Peak RSS of one training epoch from a sample store vs in memory, 1M and 8M samples (about 10
# minutes): docs/benchmarks/train_memory.md.
bench-train-memory: setup
	$(PY) -m research.train_memory $(ARGS)

# Spec loader on 10M generated interactions: time, peak RSS, per stage: docs/benchmarks/data.md.
bench-data: setup
	$(PY) -m research.data_bench $(ARGS)

# /prerank p50 with 5,000 string ids against integer ids, the real service: docs/benchmarks/ids.md.
bench-ids: setup
	$(PY) -m research.id_bench $(ARGS)

# One event consumer: sustained events/s, XADD -> visible p50/p99 at 2,000 events/s (about 30 s;
# needs Redis): docs/benchmarks/events.md.
bench-events: setup
	$(PY) -m research.event_bench $(ARGS)

# docker-compose.yml's topology as local processes: Redis, the offline job, 2 service replicas,
# Prometheus (installed from Debian's packages when missing and possible). Ctrl-C stops it.
stack: setup
	$(PY) -m loadtest.stack $(ARGS)

# The service and offline images of docker-compose.yml, built with podman (docker format, so the
# HEALTHCHECK is kept; layers cached). Where the pinned Python base cannot be pulled it builds one
# from Debian's packages (mmdebstrap) and says so; podman, runc, mmdebstrap and podman-compose are
# installed from Debian's packages when missing (ARGS="--only service").
images: setup
	$(PY) -m docker.images $(ARGS)

# docker-compose.yml under podman-compose: the images built, stand-ins from Debian's packages for
# pulled images that cannot be pulled, the rest left out with the reason (docs/OPERATIONS.md).
podman-up: setup
	$(PY) -m docker.compose up $(ARGS)

# Stops and removes the stack of `make podman-up`; its volumes are kept (ARGS=--volumes: gone too).
podman-down: setup
	$(PY) -m docker.compose down $(ARGS)

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: setup
	$(PY) -m mypy

clean:
	rm -rf $(ARTIFACTS) .pytest_cache .ruff_cache .mypy_cache
