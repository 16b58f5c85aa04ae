# Two commands set everything up: `make cluster-up` (a local cluster) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
N      ?= 3
NAME   ?= default
PORT   ?= 5000
IMAGE  ?= sd-node:latest
DASH_PORT ?= 8089

.DEFAULT_GOAL := help
.PHONY: help install image node test test-unit test-integration lint browser dashboard check cluster-up cluster-status cluster-down gc bench experiment clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

install: $(VENV)/.installed ## create .venv with the node, harness, tests and tools

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt -e .
	@touch $@

image: ## build the node image (no pull, no network in docker build)
	docker/build-image.sh $(IMAGE)

node: install ## run one node on 127.0.0.1:$(PORT) (SEEDS=host:port,... to join others)
	$(BIN)/python -m node --port $(PORT) --db node-$(PORT).db $(if $(SEEDS),--seeds $(SEEDS))

test: install ## unit tests, then Docker and browser integration tests (image built when Docker is usable)
	@if docker info >/dev/null 2>&1; then $(MAKE) --no-print-directory image; \
	 else echo "Docker is not usable here: integration tests will skip (they fail under CI=true)"; fi
	@if [ "$$CI" = true ]; then $(MAKE) --no-print-directory browser; fi
	$(BIN)/python -m pytest tests

test-unit: install ## unit tests only (no Docker)
	$(BIN)/python -m pytest tests --ignore=tests/integration

test-integration: install image ## Docker integration tests only
	$(BIN)/python -m pytest tests/integration

lint: install ## ruff (style, complexity C901) and mypy over node/ and harness/
	$(BIN)/ruff check node harness tests bench
	$(BIN)/mypy

browser: ## install headless Chromium and its driver when missing (Debian packages; needs root and apt-get)
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then echo "chromium and chromedriver: present"; \
	 elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	   apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; \
	 else echo "no chromium here and no root apt-get to install it: the browser tests will skip (they fail under CI=true)"; fi

dashboard: install ## live page of cluster NAME on 127.0.0.1:$(DASH_PORT) (BACKEND=sim N=20: a simulated one)
	$(BIN)/python -m harness dashboard --name $(NAME) --port $(DASH_PORT) $(if $(BACKEND),--backend $(BACKEND) --nodes $(N))

check: install image ## Jepsen-style check: a short seeded Docker run with faults (writes runs/check-<timestamp>/)
	$(BIN)/python -m harness check --backend docker --nodes 5 --duration 60 --seed 1 --fault-seconds 6 \
	  --quiet-seconds 3 --faults isolate,halves,ring,one-way,kill,pause,skew,loss --image $(IMAGE) --name check-make

cluster-up: install image ## start an N-node cluster (make cluster-up N=5)
	$(BIN)/python -m harness tune-host --nodes $(N)
	$(BIN)/python -m harness up --name $(NAME) --nodes $(N)

cluster-status: install ## show every node's entries and digest
	$(BIN)/python -m harness status --name $(NAME)

cluster-down: install ## remove the cluster and its volumes
	$(BIN)/python -m harness down --name $(NAME)

gc: install ## remove whatever a crashed run left behind
	$(BIN)/python -m harness gc

experiment: install image ## convergence sweep: sim N=5..1000 beside docker N=5,10 (writes runs/<timestamp>/)
	$(BIN)/python -m harness experiment --backend both --nodes 5,10,20,40,100,1000 --docker-nodes 5,10 --repeats 10

bench: install image ## side-by-side benchmarks (several minutes each; see bench/)
	$(BIN)/python bench/node_cost.py
	$(BIN)/python bench/dissemination.py
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/failure_detection.py
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/serf_compare.py

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
