# Tally: two commands for a new user: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export TALLY_LANDING_DIR   ?= $(CURDIR)/data/landing
export TALLY_WAREHOUSE_PATH ?= $(CURDIR)/data/warehouse.duckdb
export DAGSTER_HOME        ?= $(CURDIR)/.dagster_home

.PHONY: demo test ui check-defs venv clean bench bench-cycle recover

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or make PYTHON=/path/to/python3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	@mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

## Generate the sample extracts, land and bill them month by month through Dagster (ingest, bill_cycle, finalize,
## apply_payments), print a summary.
demo: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m pipelines.demo

## Run the test suite in the same environment (with the dev extras).
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

## Dagster webserver and daemon on 127.0.0.1:$(PORT) (default 3000) over the same warehouse; the code location is
## `tally` (pyproject.toml [tool.dagster]).
PORT ?= 3000
ui: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -h 127.0.0.1 -p $(PORT)

## Load and validate the Dagster definitions as `dg` does (pyproject.toml [tool.dg]); CI runs it.
check-defs: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dg check defs

## Fail the runs whose worker died and free their duckdb_writer slots, then show what holds the pool;
## RUN=<run id> frees the slots of that one run (its worker on another host). See docs/operations.md.
recover: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m pipelines.recover $(if $(RUN),--free $(RUN))

## Rating (20M events, fastest of 3), rating against a hand-written statement (20M, fastest of 3), then settling and finalizing a month for ACCOUNTS accounts, then revenue over their ledger (docs/performance.md).
ACCOUNTS ?= 1000000
bench: $(STAMP)
	$(BIN)/python -m benchmarks.rating --repeat 3
	$(BIN)/python -m benchmarks.rating_simple --repeat 3
	$(BIN)/python -m benchmarks.invoicing --accounts $(ACCOUNTS)
	$(BIN)/python -m benchmarks.revenue --accounts $(ACCOUNTS)

## The whole bill cycle through Dagster for two consecutive months at SCALE usage events a month (1M customers per
## 100M events), stage by stage, against the floor; SCALE=1000000,10000000,100000000 prints the scale curve.
## The landing zone is generated once into benchmarks/data/cycle/ (docs/performance.md).
SCALE ?= 100000000
bench-cycle: $(STAMP)
	$(BIN)/python -m benchmarks.cycle --events $(SCALE)

clean:
	rm -rf data .dagster_home
