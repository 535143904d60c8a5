# Kassa. `make run` runs the whole mesh on the embedded local stack; `make test` passes the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROTOS := $(shell find proto -name '*.proto' | sort)
# Tests run in parallel; 2 workers fit a 2-core machine.
PYTEST_WORKERS ?= 2

.PHONY: help install proto proto-check proto-baseline openapi openapi-check sdk third_party lint k8s-check fmt test test-unit test-replicas fuzz run demo migrate seed bench bench-compare bench-warehouse bench-floor bench-gateway bench-spans bench-admission chaos clean clean-gen browser console-screenshots

help:
	@echo "make run    - start Postgres, Redis, NATS, the six services, the sandbox provider and the gateway (REPLICAS=2: two of each service and of the gateway)"
	@echo "make demo   - place a scripted order against the running stack"
	@echo "make test   - install, start a private stack on free ports and run every test"
	@echo "make test-replicas - the end-to-end tests against a mesh with 2 replicas of each service and of the gateway"
	@echo "make lint   - buf lint, ruff, import contracts, mypy (strict on model/ and biz/), generated code up to date"
	@echo "make k8s-check - render deploy/k8s and validate every object; check Dockerfile and compose.yaml offline"
	@echo "make proto  - regenerate gen/ from proto/"
	@echo "make openapi - regenerate gateway/openapi.json (the REST contract) from the protos' annotations"
	@echo "make sdk    - build the kassa-client wheel (sdk/python) into dist/"
	@echo "make proto-baseline - at a release: record the protos as the baseline buf breaking compares with"
	@echo "make bench-warehouse - ReserveStock calls/s on spread-out and hot skus"
	@echo "make bench-floor - CPU floor of one RPC and one write transaction; the checkouts/s ceiling it implies"
	@echo "make bench-gateway - the gateway's own CPU per REST request, backends stubbed in-process"
	@echo "make bench-spans - CPU per span recorded and exported (infra.tracing, the real SDK and JSON-lines exporter)"
	@echo "make bench-admission - flash sale (no 503s) and 10x overload (refused fast, with Retry-After) over REST"
	@echo "make bench  - full checkouts/s, latency and invariants on a private stack (BENCH_ARGS='--transport rest ...')"
	@echo "make bench-compare BEFORE=<tree> - make bench in <tree> and here, interleaved: medians and ratios per process"
	@echo "make chaos  - 2,000 checkouts while processes die and servers restart, then every invariant (CHAOS_ARGS='--seed 42 ...')"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# google/api/{annotations,http}.proto come from the googleapis-common-protos wheel.
third_party: $(STAMP)
	@mkdir -p third_party/proto/google/api
	@api=$$($(PY) -c 'import google.api as a; print(list(a.__path__)[0])'); \
	  cp $$api/annotations.proto $$api/http.proto third_party/proto/google/api/

proto: third_party
	rm -rf gen
	mkdir -p gen
	$(PY) -m grpc_tools.protoc -Iproto -Ithird_party/proto \
	  --python_out=gen --pyi_out=gen --grpc_python_out=gen $(PROTOS)

# CI fails when generated code is stale: regenerate and compare with what is committed.
proto-check: proto
	@git diff --exit-code --stat -- gen || { echo "gen/ is stale: run 'make proto' and commit"; exit 1; }
	@test -z "$$(git status --porcelain --untracked-files=all -- gen)" || { git status --short -- gen; echo "gen/ is stale: run 'make proto' and commit"; exit 1; }

# The REST contract, generated from the google.api.http annotations and the proto comments (gateway.openapi).
openapi: third_party
	$(PY) -m gateway.openapi --out gateway/openapi.json

openapi-check: openapi
	@git diff --exit-code --stat -- gateway/openapi.json || { echo "gateway/openapi.json is stale: run 'make openapi' and commit"; exit 1; }

# buf breaking compares the protos with proto/baseline.binpb, the image of the last release's protos. At a
# release (and only then), run this and commit the new image; a deliberate break between releases needs a
# v2 package instead.
proto-baseline: third_party
	$(VENV)/bin/buf build proto --exclude-source-info -o proto/baseline.binpb

# The client SDK: gen/kassa staged beside sdk/python, built as its own wheel (kassa_client + kassa) into dist/.
SDK_STAGE := build/sdk-python
sdk: $(STAMP)
	rm -rf $(SDK_STAGE) && mkdir -p $(SDK_STAGE) dist
	cp -r sdk/python/pyproject.toml sdk/python/README.md sdk/python/kassa_client $(SDK_STAGE)/
	cp -r gen/kassa $(SDK_STAGE)/kassa
	find $(SDK_STAGE) -name __pycache__ -prune -exec rm -rf {} +
	$(PY) -m pip wheel --quiet --no-deps --wheel-dir dist $(SDK_STAGE)

lint: third_party
	$(VENV)/bin/buf lint
	$(VENV)/bin/buf format --diff --exit-code proto
	$(VENV)/bin/buf breaking proto --against proto/baseline.binpb
	$(VENV)/bin/openapi-spec-validator gateway/openapi.json
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

# deploy/k8s (base and example overlay) rendered by kubectl's kustomize and validated against the pinned
# Kubernetes schemas; Dockerfile and compose.yaml checked against the code. Offline: no cluster, no Docker.
k8s-check: $(STAMP)
	$(PY) -m pytest tests/deployment -q

fmt: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The operator console's browser test drives Debian's chromium through Playwright (which never downloads a browser
# here): installed with apt when missing (as root, or with sudo), a no-op when it is there. make test (and .ci/run) call it.
CHROMIUM ?= /usr/bin/chromium
browser:
	@if [ -x $(CHROMIUM) ]; then echo "browser: $(CHROMIUM) is installed"; else \
	  command -v apt-get > /dev/null || { echo "browser: $(CHROMIUM) is missing and there is no apt-get" >&2; exit 1; }; \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq chromium > /dev/null; \
	  test -x $(CHROMIUM) || { echo "browser: apt-get installed no $(CHROMIUM)" >&2; exit 1; }; fi

# Refresh docs/console/*.png (the README's screenshots) from the console's browser test.
console-screenshots: $(STAMP) browser
	KASSA_CONSOLE_SCREENSHOTS=docs/console $(PY) -m pytest tests/e2e/test_console_browser.py -n 0 $(PYTEST_ARGS)

# A worker that crashes ends the run at once (--max-worker-restart 0) with the test it crashed on: pytest-xdist 3.8's
# loadgroup scheduling can hang for good replacing it (pytest-xdist issues 1323, 1327, 1378).
test: $(STAMP) browser
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup --max-worker-restart 0 --durations 10 $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(PY) -m pytest -m unit $(PYTEST_ARGS)

# The end-to-end suite against a mesh running 2 processes of every gRPC service and of the gateway.
TEST_REPLICAS ?= 2
test-replicas: $(STAMP)
	KASSA_TEST_REPLICAS=$(TEST_REPLICAS) $(PY) -m pytest tests/e2e -n 0 $(PYTEST_ARGS)

# Property-based fuzzing of every RPC over gRPC and every route over REST against a private mesh (tests/fuzz):
# FUZZ_EXAMPLES inputs per RPC and transport (make test runs 4), in one process so the table of inputs tried
# per RPC is printed at the end; it is also written to .hypothesis/fuzz-report.json.
FUZZ_EXAMPLES ?= 500
fuzz: $(STAMP)
	KASSA_FUZZ=long KASSA_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest tests/fuzz -n 0 --timeout 0 $(PYTEST_ARGS)

# REPLICAS=N runs N processes of each gRPC service and of the gateway (kassa up --replicas N).
REPLICAS ?= 1
run: $(STAMP)
	$(VENV)/bin/kassa up --replicas $(REPLICAS)

demo: $(STAMP)
	$(VENV)/bin/kassa demo

migrate: $(STAMP)
	$(VENV)/bin/kassa migrate

seed: $(STAMP)
	$(VENV)/bin/kassa seed

# Load runs are bounded in count and time and target loopback only.
bench: $(STAMP)
	$(PY) -m bench $(BENCH_ARGS)

# The same bench in the tree BEFORE (a worktree with its own .venv) and in this one, interleaved, COMPARE_RUNS
# rounds (default 3): per process, medians of each side, their ratio and each round's (README, Performance).
COMPARE_RUNS ?= 3
bench-compare: $(STAMP)
	@test -n "$(BEFORE)" || { echo "make bench-compare needs BEFORE=<the tree before, with its .venv>"; exit 2; }
	$(PY) -m bench.compare --before $(BEFORE) --runs $(COMPARE_RUNS) -- $(BENCH_ARGS)

# ReserveStock calls/s for 3-line carts, spread-out vs hot skus, on a private stack.
bench-warehouse: $(STAMP)
	$(PY) -m bench.warehouse $(BENCH_ARGS)

# CPU floor of one RPC and one write transaction, and the checkout ceiling they imply (private Postgres).
bench-floor: $(STAMP)
	$(PY) -m bench.floor $(BENCH_ARGS)

# The gateway's own CPU per REST request (a checkout's 11 requests into the ASGI app, backends stubbed in-process).
bench-gateway: $(STAMP)
	$(PY) -m bench.gateway $(BENCH_ARGS)

# CPU per span: recorded, ended and exported to a JSON-lines file by infra.tracing's own entry points.
bench-spans: $(STAMP)
	$(PY) -m bench.spans $(BENCH_ARGS)

# A flash sale (120 buyers, 40 in flight, goal: no 503) and a 10x overload (goal: >= 90 % of the closed-loop
# maximum completed, refusals fast and with Retry-After) over REST on a private stack.
bench-admission: $(STAMP)
	$(PY) -m bench.admission $(BENCH_ARGS)

# Checkouts over gRPC and REST under a seeded fault schedule on a private stack, a recovery window, then
# every DESIGN.md §4 invariant (devstack.check). Loopback only; bounded by --max-seconds and --recovery-seconds.
chaos: $(STAMP)
	$(PY) -m chaos $(CHAOS_ARGS)

clean-gen:
	rm -rf gen

clean:
	rm -rf third_party build/sdk-python .pytest_cache .ruff_cache .mypy_cache
