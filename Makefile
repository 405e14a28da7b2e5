# kensa-gql: `make run` starts the gateway on the embedded defaults (`make run PORT=8080` picks the
# port); `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed
PORT ?= 8000
HOST ?= 127.0.0.1

.PHONY: run test install install-run bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Running needs only the runtime dependencies; the test extras (and the Node client) come with `make install`.
$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $(RUN_STAMP)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP) $(RUN_STAMP)

# The Node graphql-ws client that tests/e2e drives (node_modules are never committed).
NODE_CLIENT := tests/e2e/node
$(NODE_CLIENT)/node_modules/.package-lock.json: $(NODE_CLIENT)/package-lock.json
	cd $(NODE_CLIENT) && npm ci --no-audit --no-fund --loglevel=error

install-run: $(RUN_STAMP)

install: $(STAMP) $(NODE_CLIENT)/node_modules/.package-lock.json

# ensure-demo prints a demo API key (creating the user once; later runs revoke the previous key).
run: install-run
	$(BIN)/kensa-gql db upgrade
	$(BIN)/kensa-gql users ensure-demo
	@echo "Web console: http://$(HOST):$(PORT)/ (sign in with the API key above); GraphiQL: http://$(HOST):$(PORT)/graphql"
	$(BIN)/kensa-gql serve --host $(HOST) --port $(PORT)

# The GraphQL suite runs a second time on stock Strawberry (KENSA_GRAPHQL_FASTPATH=false): every
# behaviour it checks must hold on both paths. The fast path's own tests are not part of that run.
GRAPHQL_SUITE := tests/api/graphql tests/e2e/test_node_graphql_ws.py --ignore=tests/api/graphql/fastpath

test: install
	$(BIN)/python -m pytest -q
	KENSA_GRAPHQL_FASTPATH=false $(BIN)/python -m pytest -q $(GRAPHQL_SUITE)

# Both databases (PostgreSQL: KENSA_BENCH_POSTGRES_URL, default the local server). wrk drives the load when it can be installed; otherwise bench falls back to its Python load generator.
bench: install
	@command -v wrk >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null 2>&1 || \
		echo "wrk could not be installed: using the Python load generator"
	$(BIN)/python -m bench $(BENCH_ARGS)
	$(BIN)/python -m bench --database postgres $(BENCH_ARGS)

lint: install
	$(BIN)/ruff check kensa_gql tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) media kensa.db kensa.db-wal kensa.db-shm
