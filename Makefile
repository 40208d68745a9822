# Two commands do all the set-up: `make demo` and `make test` (lint, then the tests). Each creates .venv on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo lint test install clean peers infinity

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: the pin resolves to the local CPU wheel; anything else pulls CUDA.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[export,torch,server,eval,index,qdrant,postgres,elasticsearch,fast,int8,bench,train,ray,spark,langchain,llamaindex,haystack,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/crossrank demo

# ruff (style, import order, likely bugs) and mypy --strict over the package and the tests.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m mypy src tests

# The tests run in TEST_WORKERS processes, each test file whole in one of them (its module fixtures,
# servers and clusters built once): most of the slow tests wait on processes they started, so on
# 2 cores two workers took the suite from 1,002 s to 684 s. `make test TEST_WORKERS=0` runs in one process.
TEST_WORKERS ?= 2

test: lint
	@sh scripts/ensure-debian-package.sh "initdb /usr/lib/postgresql/*/bin/initdb" postgresql "the PostgreSQL retriever tests"
	@sh scripts/ensure-debian-package.sh "haproxy /usr/sbin/haproxy" haproxy "the replica failover test"
	@sh scripts/ensure-debian-package.sh java openjdk-17-jre-headless "the Spark tests"
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# The peer environment for `crossrank bench --compare`'s sentence-transformers ONNX/OpenVINO rows:
# a separate venv, since their packages pin an older transformers than crossrank's (see the file).
PEERS_VENV := .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.installed

$(PEERS_STAMP): benchmarks/peers/requirements.txt benchmarks/peers/constraints.txt
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install -q --upgrade pip
	$(PEERS_VENV)/bin/pip install -q torch==2.13.0
	$(PEERS_VENV)/bin/pip install -q -c benchmarks/peers/constraints.txt -r benchmarks/peers/requirements.txt
	touch $(PEERS_STAMP)

peers: $(PEERS_STAMP)

# Infinity, the server peer of benchmarks/server_load.py (--infinity-python .venv-infinity/bin/python).
INFINITY_VENV := .venv-infinity
INFINITY_STAMP := $(INFINITY_VENV)/.installed

$(INFINITY_STAMP): benchmarks/peers/infinity-requirements.txt
	$(PYTHON) -m venv $(INFINITY_VENV)
	$(INFINITY_VENV)/bin/pip install -q --upgrade pip
	$(INFINITY_VENV)/bin/pip install -q torch==2.13.0
	$(INFINITY_VENV)/bin/pip install -q -r benchmarks/peers/infinity-requirements.txt
	touch $(INFINITY_STAMP)

infinity: $(INFINITY_STAMP)

clean:
	rm -rf $(VENV) $(PEERS_VENV) $(INFINITY_VENV) build src/*.egg-info
