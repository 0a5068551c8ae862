# llmservice-operator: every developer and CI task. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CRD    := crds/llmservices.llmsvc.io.yaml
N      ?= 100

.PHONY: help
help: ## show this help
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

.PHONY: venv
venv: $(STAMP) ## create .venv with the package and its dev tools

.PHONY: test
test: venv lint lowest-deps gitops-test rules-test cluster-bins vllm-env ## everything CI runs: lint, lowest deps, GitOps health, rules check, unit tests, real vLLM, e2e
	$(BIN)/pytest tests e2e

.PHONY: gitops-test
gitops-test: ## Flux kstatus and Argo CD's Lua check (gopher-lua) on planner statuses (Go, cached)
	cd e2e/gitops && go test -count=1 ./...

.PHONY: rules-test
rules-test: ## the chart's alert rules and dashboard queries through Prometheus's rulefmt and PromQL parser (Go, cached; ~80 s cold)
	cd e2e/promrules && go test -count=1 ./...

.PHONY: lowest-deps
lowest-deps: ## runtime deps at their pyproject floors: imports, --help, unit tests (cached venv)
	$(PYTHON) scripts/lowest_deps.py

.PHONY: unit
unit: venv ## unit tests only (no cluster, no real vLLM, seconds)
	$(BIN)/pytest tests -m "not vllm"

.PHONY: vllm-env
vllm-env: ## real vLLM (CPU build) in its own venv under ~/.cache/llmsvc (idempotent; ~6 min cold)
	scripts/vllm-env.sh >/dev/null

.PHONY: test-vllm
test-vllm: venv vllm-env ## only the tests against real vLLM (marker vllm; ~10 min on 2 cores)
	$(BIN)/pytest tests -m vllm

.PHONY: e2e
e2e: venv cluster-bins ## e2e tests on the local control plane (builds it when missing)
	$(BIN)/pytest e2e

.PHONY: generate
generate: venv ## regenerate the CRD from the pydantic models (and its copy in the Helm chart)
	$(BIN)/llmsvc crd > $(CRD)
	cp $(CRD) charts/llmservice-operator/crds/

.PHONY: lint
lint: venv ## ruff, mypy --strict and the import contracts
	$(BIN)/ruff check operator tests e2e bench
	$(BIN)/ruff format --check operator tests e2e bench
	$(BIN)/mypy
	cd bench/router && ../../$(BIN)/mypy --config-file ../../pyproject.toml .
	cd bench/pull && ../../$(BIN)/mypy --config-file ../../pyproject.toml .
	$(BIN)/lint-imports

.PHONY: verify
verify: generate lint ## generate + fail on drift + lint
	git diff --exit-code -- crds/ charts/llmservice-operator/crds/

.PHONY: fmt
fmt: venv ## format and autofix
	$(BIN)/ruff format operator tests e2e
	$(BIN)/ruff check --fix operator tests e2e

.PHONY: demo
demo: venv cluster-bins ## the main job: local cluster, operator, an example reaching Ready, router + sims
	scripts/demo.sh

.PHONY: cluster-bins
cluster-bins: venv ## build the local control plane binaries into ~/.cache/llmsvc (idempotent)
	@if [ -x e2e/cluster/build.sh ]; then e2e/cluster/build.sh; fi

.PHONY: cluster-up
cluster-up: cluster-bins ## start (or reuse) the local control plane with fake GPU nodes
	e2e/cluster/up.sh

.PHONY: cluster-down
cluster-down: ## stop and delete the local control plane
	e2e/cluster/down.sh

.PHONY: bench-router
bench-router: venv ## router vs nginx least_conn vs direct, 4 llmsvc sim backends on loopback (~8 min)
	@PATH="$$PATH:/usr/sbin" command -v nginx >/dev/null || echo "nginx not found; install it to compare: apt-get update && apt-get install -y nginx-light"
	PATH="$$PATH:/usr/sbin" $(PY) bench/router/run.py $(BENCH_ROUTER_ARGS)

.PHONY: bench-pull
bench-pull: venv ## llmsvc pull vs curl: 2 GiB synthetic model from local HTTP and S3 (moto) servers (~2 min)
	$(PY) bench/pull/run.py $(BENCH_PULL_ARGS)

.PHONY: bench-autoscale
bench-autoscale: venv cluster-bins ## step load through the router: queue -> HPA decision -> new group Ready -> drained (~2 min)
	$(PY) bench/autoscale/run.py $(BENCH_AUTOSCALE_ARGS)

.PHONY: bench-operator
bench-operator: venv cluster-bins ## N LLMServices (up to 1000) to Ready vs plain StatefulSets; reads/writes/CPU at rest; BENCH_OPERATOR_ARGS=--lws adds LeaderWorkerSet
	$(PY) bench/operator/run.py --n $(N) $(BENCH_OPERATOR_ARGS)
