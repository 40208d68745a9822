# Two commands do all the set-up: `make demo` and `make test`. Each creates .venv on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

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

test: $(STAMP)
	@sh scripts/ensure-debian-package.sh "initdb /usr/lib/postgresql/*/bin/initdb" postgresql "the PostgreSQL retriever tests"
	@sh scripts/ensure-debian-package.sh "haproxy /usr/sbin/haproxy" haproxy "the replica failover test"
	@sh scripts/ensure-debian-package.sh java openjdk-17-jre-headless "the Spark tests"
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build src/*.egg-info
