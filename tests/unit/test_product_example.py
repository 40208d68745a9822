"""The product-search example of docs/PIPELINE.md, run as written (models swapped for the test ones).

The CLI, Python and ``POST /search`` blocks are read from the document, so the example cannot
drift from what crossrank does.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from crossrank.cli import main

DOC = Path(__file__).resolve().parents[2] / "docs" / "PIPELINE.md"
ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
RERANKER = "cross-encoder/ms-marco-MiniLM-L6-v2"
BRANDS = ["Crocs", "Skechers", "Nike", "Native"]
COLORS = ["navy", "Navy", "red", "black", "pink"]
KINDS = ["Kids' Classic Clog", "Kids' Baya Clog", "Adult Clog", "Toddler Sandal", "Kids Sneaker", "Men's Boot"]


def _block(marker: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(f"<!-- example: {marker} -->")
    fence = text.index("```", start)
    body_start = text.index("\n", fence) + 1
    return text[body_start:text.index("```", body_start)]


def _esci(n: int = 120) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        brand = BRANDS[i % len(BRANDS)]
        rows.append({"asin": f"B{i:05d}", "title": f"{brand} {KINDS[i % len(KINDS)]} {i}", "brand": brand,
                     "price": round(15 + (i * 7) % 50 + 0.99, 2), "color": COLORS[(i // 3) % len(COLORS)]})
    return rows


def _matches(fields: dict[str, Any]) -> bool:
    return bool(fields["price"] < 40 and fields["color"].lower() == "navy")


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_hf_home: Path) -> Path:
    rows = _esci()
    (tmp_path / "esci.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    first = [r for r in rows if _matches(r) and r["brand"] == "Crocs"][:2]
    changed = dict(first[0], price=45.0)  # no longer under 40
    (tmp_path / "changed.jsonl").write_text(json.dumps(changed) + "\n")
    (tmp_path / "discontinued.txt").write_text(first[1]["asin"] + "\n")
    (tmp_path / "expected.json").write_text(json.dumps({"gone": [first[0]["asin"], first[1]["asin"]]}))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _commands(block: str, models: dict[str, str]) -> list[list[str]]:
    joined = block.replace("\\\n", " ")
    for name, local in models.items():
        joined = joined.replace(name, local)
    return [words[1:] for line in joined.splitlines() if (words := shlex.split(line, comments=True))]


def test_the_product_search_example_runs_as_documented(workdir: Path, minilm_dir: Path, bert_dir: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    models = {ENCODER: str(minilm_dir), RERANKER: str(bert_dir)}
    commands = _commands(_block("product-search-cli"), models)
    assert [c[0] for c in commands] == ["index", "search", "index", "index"]
    for args in commands:
        assert main(args) == 0, (args, capsys.readouterr().err)
        out = capsys.readouterr().out
        if args[0] == "search":
            rows = [line for line in out.splitlines()[2:] if line.strip()]
            assert rows and all("color=navy" in row.lower() for row in rows), out
            assert main([*args, "--json"]) == 0
            hits = json.loads(capsys.readouterr().out)["hits"]
            assert len(hits) == 5 and all(_matches(h["fields"]) for h in hits)
            assert all(set(h["fields"]) == {"title", "brand", "price", "color"} for h in hits)
            assert hits[0]["rerank_score"] is not None
    gone = set(json.loads((workdir / "expected.json").read_text())["gone"])

    # Python
    code = _block("product-search-python")
    for name, local in models.items():
        code = code.replace(name, local)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, str(DOC), "exec"), {})
    lines = printed.getvalue().splitlines()
    assert len(lines) == 5
    for line in lines:
        rank, asin, brand, price, color, *title = line.split()
        assert float(price) < 40 and color.lower() == "navy" and asin not in gone and brand in BRANDS

    # POST /search with the documented body
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from crossrank.server import ModelEntry, ServerSettings, create_app, load_served_models
    from crossrank.server.app import DEFAULT_ROUTERS
    from crossrank.server.search import build_router, open_search_indexes, parse_entry

    body = json.loads(re.search(r"-d '(\{.*\})'", _block("product-search-http")).group(1))  # type: ignore[union-attr]
    settings = ServerSettings()
    served = load_served_models([ModelEntry(name="ce", type="cross-encoder", model=str(bert_dir))], settings)
    app = create_app(served, settings, routers=(*DEFAULT_ROUTERS, build_router))
    app.state.search = open_search_indexes([parse_entry("products", {"index": str(workdir / "products.idx"),
                                                                     "retriever": "hybrid"})])
    with TestClient(app) as client:
        response = client.post("/search", json=body)
        assert response.status_code == 200, response.text
        hits = response.json()["hits"]
        assert len(hits) == 5 and all(_matches(h["fields"]) and h["id"] not in gone for h in hits)
        bad = client.post("/search", json={**body, "filter": {"size": {"lt": 3}}})
        assert bad.status_code == 422 and "stored fields: title, brand, price, color" in bad.text
        bad = client.post("/search", json={**body, "filter": {"price": {"lt": "cheap"}}})
        assert bad.status_code == 422 and "must be a number" in bad.text
