"""External first stages: Qdrant (embedded local mode), PostgreSQL (a real server), Elasticsearch (query shape)."""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from crossrank import Encoder, Reranker
from crossrank.retrieval import Pipeline, Record, Retriever
from crossrank.server.launch import free_port

DOCS = [
    "red clog for kids",
    "blue leather boot",
    "winter boot with warm lining",
    "kids sandal for the beach",
    "garden clog, waterproof and green",
    "wool socks keep feet warm",
]
RECORDS = [Record(f"doc-{i}", t) for i, t in enumerate(DOCS)]


# -- Qdrant ---------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["memory", "path"])
def test_qdrant_local_mode_matches_brute_force(mode: str, tmp_path: Path, minilm_encoder: Encoder,
                                                bert_reranker: Reranker) -> None:
    pytest.importorskip("qdrant_client")
    from crossrank.retrieval.external.qdrant import QdrantRetriever, connect, index_into_qdrant

    client = connect(path=str(tmp_path / "qdrant")) if mode == "path" else connect()
    assert index_into_qdrant(client, "shoes", RECORDS, minilm_encoder, batch_size=4) == len(DOCS)
    retriever = QdrantRetriever("shoes", minilm_encoder, client=client)
    assert isinstance(retriever, Retriever)
    query = "warm footwear for winter"
    sims = minilm_encoder.embed(DOCS) @ minilm_encoder.embed_query(query)
    order = np.argsort(-sims)[:3]
    got = retriever.retrieve(query, 3)
    assert [c.id for c in got] == [f"doc-{i}" for i in order]
    assert [c.text for c in got] == [DOCS[i] for i in order]
    np.testing.assert_allclose([c.score for c in got], sims[order], atol=1e-4)
    result = Pipeline(retriever, bert_reranker).search(query, candidates=4, top_k=2)
    assert len(result.hits) == 2 and result.retriever == "qdrant"
    assert {h.id for h in result.hits} <= {c.id for c in retriever.retrieve(query, 4)}
    client.close()


# -- PostgreSQL -----------------------------------------------------------------------------
def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@pytest.fixture(scope="module")
def postgres_dsn() -> Iterator[str]:
    """A throw-away PostgreSQL cluster on 127.0.0.1 and a random port (initdb + pg_ctl in a temp dir)."""
    pytest.importorskip("psycopg")
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not installed (`make test` installs Debian's postgresql as root)")
    prefix: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="crossrank-pg-"))
    if os.geteuid() == 0:  # initdb refuses to run as root: run the cluster as the postgres user
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to own the cluster")
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.skip("running as root without runuser")
        prefix = [runuser, "-u", "postgres", "--"]
        os.chown(base, user.pw_uid, user.pw_gid)
    data, port = base / "data", free_port()

    def run(*args: str) -> None:
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)

    run(str(bindir / "initdb"), "-D", str(data), "-U", "crossrank", "--auth=trust", "-E", "UTF8", "--no-sync")
    run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w", "-t", "60", "start",
        "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off")
    try:
        yield f"host=127.0.0.1 port={port} user=crossrank dbname=postgres"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


def test_postgres_full_text_retrieval_and_pipeline(postgres_dsn: str, bert_reranker: Reranker) -> None:
    import psycopg

    from crossrank.retrieval.external.postgres import PostgresRetriever, create_table

    with psycopg.connect(postgres_dsn) as conn:
        assert create_table(conn, "products", RECORDS) == len(DOCS)
    retriever = PostgresRetriever(postgres_dsn, table="products")
    assert isinstance(retriever, Retriever)
    got = retriever.retrieve("warm boots", 10)
    # OR semantics: every document with "warm" or "boot" (stemmed), and only those
    assert {c.id for c in got} == {"doc-1", "doc-2", "doc-5"}
    assert got[0].id == "doc-2"  # the only one with both words
    assert all(a.score >= b.score for a, b in zip(got, got[1:])) and got[0].text == DOCS[2]
    assert [c.id for c in retriever.retrieve("clogs", 1)] in (["doc-0"], ["doc-4"])
    assert retriever.retrieve("the of and", 5) == []  # only stop words
    assert retriever.retrieve("x'); DROP TABLE products; --", 5) == []  # parameters, not SQL text
    assert len(retriever.retrieve("clog", 5)) == 2
    # without the stored tsvector column, computed per row: same answer
    computed = PostgresRetriever(postgres_dsn, table="products", tsvector_column=None)
    assert [c.id for c in computed.retrieve("warm boots", 10)] == [c.id for c in got]
    result = Pipeline(retriever, bert_reranker).search("warm boots", candidates=10, top_k=2)
    scores = bert_reranker.score("warm boots", [c.text for c in got])
    assert [h.id for h in result.hits] == [got[i].id for i in np.argsort(-scores, kind="stable")[:2]]
    retriever.close()
    computed.close()


# -- Elasticsearch / OpenSearch -------------------------------------------------------------
class _FakeSearchEngine(BaseHTTPRequestHandler):
    """Answers ``_search`` like Elasticsearch does, and records what the client sent."""

    requests: list[tuple[str, dict[str, Any]]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        self.requests.append((self.path, body))
        reply = {"took": 1, "timed_out": False, "hits": {"total": {"value": 2, "relation": "eq"}, "hits": [
            {"_index": "products", "_id": "B1", "_score": 7.5, "_source": {"title": "Crocs Kids Baya Clog"}},
            {"_index": "products", "_id": "B2", "_score": 3.25, "_source": {}},
        ]}}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def test_elasticsearch_multi_match_query_shape() -> None:
    from crossrank.retrieval.external.elasticsearch import ElasticsearchRetriever

    retriever = ElasticsearchRetriever(object(), "products", fields=["title^2", "description"], match_type="most_fields")
    assert retriever.build_query("crocs for kids", 50) == {
        "query": {"multi_match": {"query": "crocs for kids", "fields": ["title^2", "description"], "type": "most_fields"}},
        "size": 50,
        "_source": ["title"],
    }
    with pytest.raises(ValueError):
        ElasticsearchRetriever(object(), "products", fields=[])
    with pytest.raises(ValueError):
        ElasticsearchRetriever(object(), "products", match_type="fuzzy")


def test_elasticsearch_official_client_round_trip() -> None:
    elasticsearch = pytest.importorskip("elasticsearch")
    from crossrank.retrieval.external.elasticsearch import ElasticsearchRetriever

    _FakeSearchEngine.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeSearchEngine)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = elasticsearch.Elasticsearch(f"http://127.0.0.1:{server.server_address[1]}", request_timeout=10)
        retriever = ElasticsearchRetriever(client, "products", fields=["title^2", "brand"])
        got = retriever.retrieve("crocs", 20)
    finally:
        server.shutdown()
        server.server_close()
    path, body = _FakeSearchEngine.requests[0]
    assert path.split("?")[0] == "/products/_search"
    assert body == retriever.build_query("crocs", 20)
    assert [(c.id, c.text, c.score, c.rank) for c in got] == [
        ("B1", "Crocs Kids Baya Clog", 7.5, 1), ("B2", "", 3.25, 2)]
