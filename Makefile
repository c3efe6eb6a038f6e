# The two commands a new machine needs are `make demo` and `make test`; both bootstrap .venv.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | sha1sum | cut -c1-12)
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: demo test lint typecheck imports unit dev bench lock clean

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q uv==0.13.8
	@# uv installs exactly the locked versions; byte-compiling halves import time here.
	$(BIN)/uv pip install --python $(BIN)/python --compile-bytecode -q -r requirements.lock -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

$(DAGSTER_HOME)/dagster.yaml: deploy/dagster.yaml
	@mkdir -p $(DAGSTER_HOME)
	@cp deploy/dagster.yaml $@

demo: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/leadsync demo

test: lint unit

lint: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/pyright
	$(BIN)/leadsync definition validate
	$(BIN)/leadsync templates lint
	$(BIN)/dagster definitions validate -w workspace.yaml 2>&1 | grep -v SupersessionWarning | tail -1

# The template preview test runs in a real Chromium (OS package), and the end-to-end tests run on
# a real PostgreSQL server (OS package, started in .leadsync/pg/ and left running for the next
# run; scripts/stop_postgres.sh stops it) as well as on SQLite; the Celery executor test uses a
# Redis broker (OS package, started in .leadsync/redis/ and left running likewise;
# scripts/stop_redis.sh stops it). In CI none of them may skip.
unit: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	scripts/install_browser.sh
	pg_env="$$(scripts/start_postgres.sh)" && eval "$$pg_env" && \
	redis_env="$$(scripts/start_redis.sh)" && eval "$$redis_env" && \
	LEADSYNC_REQUIRE_BROWSER=1 LEADSYNC_REQUIRE_PG=1 LEADSYNC_REQUIRE_REDIS=1 $(BIN)/pytest -q

# The Dagster UI against freshly started sandboxes (Ctrl-C stops both).
dev: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	@set -m; \
	$(BIN)/leadsync sandbox up > $(DAGSTER_HOME)/sandbox.env & sandbox=$$!; \
	trap 'kill -INT $$sandbox 2>/dev/null' EXIT; \
	for _ in $$(seq 100); do grep -q LEADSYNC_CA_BUNDLE $(DAGSTER_HOME)/sandbox.env 2>/dev/null && break; sleep 0.2; done; \
	source $(DAGSTER_HOME)/sandbox.env; \
	export LEADSYNC_DB_URL=sqlite:///$(DAGSTER_HOME)/state.db; \
	$(BIN)/dagster dev -w workspace.yaml

# The identity and scoring benchmarks share helpers in benchmarks/ (identity_data, identity_eval,
# identity_scale), so they run as modules; their data sets are generated once and cached in
# .bench_cache/.
BENCH_SCRIPTS := $(sort $(filter-out benchmarks/__init__.py benchmarks/identity_%.py benchmarks/scoring_%.py,$(wildcard benchmarks/*.py)))
bench: $(STAMP)
	@set -e; for script in $(BENCH_SCRIPTS); do echo "== $$script"; $(BIN)/python "$$script"; done
	@echo "== benchmarks/identity_quality.py"; $(BIN)/python -m benchmarks.identity_quality
	@echo "== benchmarks/identity_ceiling.py"; $(BIN)/python -m benchmarks.identity_ceiling
	@echo "== benchmarks/identity_scale.py"; $(BIN)/python -m benchmarks.identity_scale --records 1000000
	@echo "== benchmarks/scoring_scale.py"; $(BIN)/python -m benchmarks.scoring_scale

# Re-resolve pinned versions after editing pyproject.toml.
lock:
	$(BIN)/uv pip compile pyproject.toml --extra dev -o requirements.lock -q --python $(BIN)/python

clean:
	rm -rf $(VENV) $(DAGSTER_HOME) .leadsync .pytest_cache .ruff_cache
