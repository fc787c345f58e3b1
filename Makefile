# kubecost-integration — the front door. `make help` lists the targets.
# Tools and the Python venv live in a cache OUTSIDE the repo, so a fresh clone (and CI) reuses them.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

KCI_CACHE ?= $(HOME)/.cache/kubecost-integration
# KCI_VENV: a second checkout (a git worktree) can keep its own venv beside the shared tools
KCI_VENV  ?= $(KCI_CACHE)/venv
VENV      := $(KCI_VENV)
export KCI_VENV
PY        := $(VENV)/bin/python
export KCI_CACHE
export PATH := $(KCI_CACHE)/bin:$(VENV)/bin:$(PATH)

PYTEST ?= $(PY) -m pytest
PYTEST_ARGS ?=

.PHONY: help
help: ## List the targets
	@awk 'BEGIN{FS=":.*## "} /^[a-zA-Z0-9_.-]+:.*## /{printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: venv
venv: ## Python venv in the cache with the exporter and pinned dev deps (idempotent)
	@scripts/venv.sh

.PHONY: tools
tools: venv ## Build/install all pinned tools into $(KCI_CACHE)/bin (idempotent, see tools/versions.env)
	@scripts/tools.sh

.PHONY: lint
lint: tools ## ruff, mypy --strict, helm lint, ct lint, helm-docs check, actionlint, hadolint, renovate validator
	@scripts/lint.sh

# The tools each layer runs (scripts/tools.sh takes names): `make demo` builds only these, not the whole set.
# helm renders the chart; thanos is Receive + Query; prometheus3 is the upstream agent (Debian's drops the
# tenant header).
DEMO_TOOLS  := helm thanos prometheus3
CHECK_TOOLS := helm helm4
# The chart render smoke of `make check`: the quick start under both Helm majors, and the rendered exporter
# settings accepted by the exporter itself.
CHECK_CHART_TESTS := quickstart or exporter_contract or test_exporter_env_carries

# pytest-xdist workers, one group per shared bench or file (conftest.py). The unit tests of `make check` use the
# CPU: one worker per core. The layers other than kind mostly wait on processes and sockets (they keep 2 cores
# 60 % busy): three workers (12 min 11 s against 14 min 6 s with two, same code, same quiet machine). Kind runs
# after them, alone, so its cluster never loads the machine under the timing tests.
CHECK_WORKERS ?= 2
TEST_WORKERS ?= 3

.PHONY: check
check: venv ## Inner loop (< 2 min warm): ruff + mypy on all Python, unit tests, chart render smoke (helm 3 and 4)
	@scripts/tools.sh $(CHECK_TOOLS)
	@scripts/lint.sh python
	$(PYTEST) -q -p no:cacheprovider -m "unit and not soak and not realdep" -n $(CHECK_WORKERS) --dist loadscope $(PYTEST_ARGS)
	$(PYTEST) -q -p no:cacheprovider charts/kubecost-integration/tests -k "$(CHECK_CHART_TESTS)" $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: venv ## Exporter unit tests only (fast)
	$(PYTEST) -m "unit and not soak and not realdep" $(PYTEST_ARGS)

.PHONY: test-chart
test-chart: tools ## Chart rendering, lint and schema tests (real helm 3 and 4)
	$(PYTEST) -m "chart and not soak and not realdep" $(PYTEST_ARGS)

.PHONY: test-e2e
test-e2e: tools ## Pipeline e2e: simulator -> exporter -> Prometheus agent -> Thanos Receive/Query
	$(PYTEST) -m "e2e and not soak and not realdep" $(PYTEST_ARGS)

.PHONY: test-controlplane
test-controlplane: tools ## Control-plane e2e: kube-apiserver+etcd+kcm+scheduler+kwok, helm install/upgrade/test/uninstall
	$(PYTEST) -m "controlplane and not soak and not realdep" $(PYTEST_ARGS)

.PHONY: images
images: tools ## Build every container image offline into our own Docker Engine (exporter, Prometheus, Thanos, OpenCost, kind node)
	@scripts/images.sh

.PHONY: image
image: tools ## The exporter image only, then its checks: --version as uid 65532, /metrics read-only with no capabilities, no installer, size, CycloneDX SBOM
	@scripts/images.sh exporter
	@$(PY) scripts/image_check.py

.PHONY: kind-up
kind-up: images ## Real kind cluster from the offline images, with Thanos Receive + Query; prints KUBECONFIG and the Thanos Query URL
	@scripts/kind.sh up

.PHONY: kind-down
kind-down: ## Delete the kind cluster and stop our Docker Engine (never another daemon)
	@scripts/kind.sh down
	@scripts/docker.sh down

.PHONY: test-kind
test-kind: images ## Kind layer: the chart's real pods, helm test/upgrade/uninstall, ct install, PSA restricted, NetworkPolicy, real OpenCost
	$(PYTEST) -m "kind and not soak and not realdep" $(PYTEST_ARGS)

.PHONY: release-check
release-check: venv ## One version story: chart version/appVersion, exporter __version__, image tags, CHANGELOG and UPGRADING agree
	@$(PY) scripts/release_check.py

.PHONY: release
release: venv ## Prepare a release commit: make release VERSION=X.Y.Z (versions, CHANGELOG/UPGRADING dated, chart README)
	@test -n "$(VERSION)" || { echo "usage: make release VERSION=X.Y.Z" >&2; exit 2; }
	@$(PY) scripts/release.py $(VERSION)

.PHONY: test

test: tools lint release-check images image ## Everything: lint, then unit, chart, pipeline e2e, control-plane e2e (3 workers), then kind
	$(PYTEST) -m "not kind and not soak and not realdep" -n $(TEST_WORKERS) --dist loadscope $(PYTEST_ARGS)
	$(PYTEST) -m "kind and not soak and not realdep" $(PYTEST_ARGS)

.PHONY: bench
bench: venv ## Benchmark the exporter (10/1k/10k namespaces, 100k pods) against same-run baselines and the sizing presets (exporter and a Prometheus agent), 3 rounds; writes .run/bench/
	@scripts/tools.sh prometheus
	$(PY) bench/run.py $(BENCH_ARGS)

.PHONY: bench-update-docs
bench-update-docs: venv ## Like bench, but writes its results into docs/benchmarks.md and docs/bench-results.json
	@scripts/tools.sh prometheus
	$(PY) bench/run.py --out docs/benchmarks.md $(BENCH_ARGS)

.PHONY: audit
audit: venv ## pip-audit of the venv against live advisory data; exit 3 (and why) when the service is unreachable
	@scripts/audit.sh

.PHONY: soak
soak: venv ## Long tests (not in `make test`): thousands of exporter refreshes with random API faults (SOAK_SECONDS=300); end-to-end latency at the chart's default intervals (~10 min)
	$(PYTEST) -m soak -s $(PYTEST_ARGS)

.PHONY: demo
demo: venv ## Run the whole pipeline locally from the chart's rendered config; print costs read back from Thanos
	@scripts/tools.sh $(DEMO_TOOLS)
	@$(PY) tests-e2e/demo.py

.PHONY: demo-up
demo-up: venv ## Like demo, but keep everything running and print the URLs (Ctrl-C stops)
	@scripts/tools.sh $(DEMO_TOOLS)
	@$(PY) tests-e2e/demo.py --keep-running

.PHONY: clean
clean: ## Remove local run state (not the tool cache)
	rm -rf .run .pytest_cache .mypy_cache .ruff_cache

.PHONY: clean-cache
clean-cache: ## Remove the tool cache $(KCI_CACHE), images and kind cluster included (next `make tools` rebuilds everything)
	@if [[ -x scripts/kind.sh && -S $(KCI_CACHE)/docker/docker.sock ]]; then scripts/kind.sh down || true; fi
	@scripts/docker.sh down
	rm -rf $(KCI_CACHE)
