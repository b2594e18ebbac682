# `make run` and `make test` do all set-up on a fresh machine (Python 3.11 is all they need).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
STREAMLIT_FLAGS := --server.headless true --server.address 127.0.0.1 --browser.gatherUsageStats false

.PHONY: run test bench lint format install clean-local

$(STAMP): requirements.txt requirements-nodeps.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -r requirements-nodeps.txt
	touch $(STAMP)

install: $(STAMP)

## Console, worker and demo traffic on the embedded default (SQLite, no Redis). Ctrl-C stops all three.
run: $(STAMP)
	$(BIN)/python -m observability.bootstrap --demo
	@bash -c 'trap "kill \$$(jobs -p) 2>/dev/null; wait" EXIT; \
	  $(BIN)/python -m observability.worker & \
	  $(BIN)/python -m observability.simulate & \
	  $(BIN)/streamlit run app.py $(STREAMLIT_FLAGS)'

## The whole test suite (PostgreSQL/Redis tests skip without TEST_DATABASE_URL / TEST_REDIS_URL).
## Test files run in parallel (each file on one process: its servers and fixtures stay shared), then
## the timing tests alone. TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 3
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not serial" $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)
	$(BIN)/python -m pytest -q -m serial

## Benchmarks (need PostgreSQL and Redis; see README). Figures land in bench/results/.
bench: $(STAMP)
	$(BIN)/python bench/sdk.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/queries.py
	$(BIN)/python bench/pages.py
	$(BIN)/python bench/api.py
	$(BIN)/python bench/otlp.py
	$(BIN)/python bench/sign_in.py

lint: $(STAMP)
	$(BIN)/ruff check observability tests bench pages Home.py app.py
	$(BIN)/ruff format --check observability tests bench pages Home.py app.py

format: $(STAMP)
	$(BIN)/ruff format observability tests bench pages Home.py app.py
	$(BIN)/ruff check --fix observability tests bench pages Home.py app.py

clean-local:
	rm -rf data/local/*.db* data/local/spool
