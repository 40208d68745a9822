"""Lexical retrieval with PostgreSQL full-text search (``tsvector`` + ``ts_rank_cd``) via psycopg 3.

The query's words are OR-ed (``plainto_tsquery`` with ``&`` turned into ``|``), as BM25
engines do, and ranked by cover density. Use a stored ``tsvector`` column with a GIN index
(what :func:`create_table` makes) for speed; without one the vector is computed per row.

>>> retriever = PostgresRetriever("postgresql://localhost/shop", table="products")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from crossrank.extras import require
from crossrank.retrieval.base import Candidate
from crossrank.retrieval.index import check_k
from crossrank.retrieval.records import Record


def _sql() -> Any:
    return require("psycopg.sql", "postgres", "the PostgreSQL retriever")


def create_table(conn: Any, table: str, records: Iterable[Record], *, config: str = "english") -> int:
    """Create ``table(id text primary key, text text, tsv tsvector generated, GIN index)`` and COPY records in."""
    sql = _sql()
    name = sql.Identifier(table)
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (id text PRIMARY KEY, text text NOT NULL, "
                "tsv tsvector GENERATED ALWAYS AS (to_tsvector({}::regconfig, text)) STORED)"
            ).format(name, sql.Literal(config))
        )
        cur.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING GIN (tsv)").format(
            sql.Identifier(f"{table}_tsv_idx"), name))
        count = 0
        with cur.copy(sql.SQL("COPY {} (id, text) FROM STDIN").format(name)) as copy:
            for record in records:
                copy.write_row((record.id, record.text))
                count += 1
    conn.commit()
    return count


class PostgresRetriever:
    """Top-k rows of a table by ``ts_rank_cd`` against the query's words."""

    name = "postgres"

    def __init__(
        self,
        conninfo: str | None = None,
        *,
        table: str,
        connection: Any | None = None,
        id_column: str = "id",
        text_column: str = "text",
        tsvector_column: str | None = "tsv",
        config: str = "english",
    ) -> None:
        psycopg = require("psycopg", "postgres", "the PostgreSQL retriever")
        if connection is None and conninfo is None:
            raise ValueError("give a conninfo string or a psycopg connection")
        self.conn = connection if connection is not None else psycopg.connect(conninfo, autocommit=True)
        self.config = config
        self.statement = self.build_query(table, id_column, text_column, tsvector_column)

    @staticmethod
    def build_query(table: str, id_column: str, text_column: str, tsvector_column: str | None) -> Any:
        """The parameterised statement: ``(config, query, config, limit)`` -> rows ``(id, text, score)``."""
        sql = _sql()
        vector = (
            sql.Identifier(tsvector_column)
            if tsvector_column
            else sql.SQL("to_tsvector(%(config)s::regconfig, {})").format(sql.Identifier(text_column))
        )
        return sql.SQL(
            "SELECT {id}::text, {text}, ts_rank_cd({vec}, q) AS score "
            "FROM {table}, CAST(replace(plainto_tsquery(%(config)s::regconfig, %(query)s)::text, '&', '|') AS tsquery) AS q "
            "WHERE {vec} @@ q ORDER BY score DESC, {id} LIMIT %(limit)s"
        ).format(id=sql.Identifier(id_column), text=sql.Identifier(text_column), vec=vector, table=sql.Identifier(table))

    def retrieve(self, query: str, k: int) -> list[Candidate]:
        check_k(k)
        if not query.strip():
            return []
        with self.conn.cursor() as cur:
            cur.execute(self.statement, {"config": self.config, "query": query, "limit": k})
            rows = cur.fetchall()
        return [Candidate(str(i), str(t), float(s), rank) for rank, (i, t, s) in enumerate(rows, start=1)]

    def close(self) -> None:
        self.conn.close()
