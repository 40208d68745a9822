"""Evaluation inputs and outputs: TREC runs and qrels, BEIR directories and downloads, synthetic data."""

from __future__ import annotations

import functools
import http.server
import json
import socket
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from crossrank.cli import main
from crossrank.errors import DownloadFailed, InvalidInput
from crossrank.evaluate.beir import BeirDataset, resolve_dataset
from crossrank.evaluate.metrics import evaluate
from crossrank.evaluate.synthetic import write_synthetic_beir
from crossrank.evaluate.trec import (
    RunWriter,
    completed_queries,
    iter_run,
    read_run,
    read_trec_qrels,
    write_run,
    write_trec_qrels,
)


# -- TREC ---------------------------------------------------------------------------------------
def test_run_round_trip_keeps_order_ranks_and_tag(tmp_path: Path) -> None:
    path = tmp_path / "run.trec"
    write_run(path, [("q1", [("b", 2.5), ("a", 1.0)]), ("q2", [("c", -1.0)])], tag="mine")
    assert path.read_text().splitlines() == [
        "q1 Q0 b 1 2.500000 mine",
        "q1 Q0 a 2 1.000000 mine",
        "q2 Q0 c 1 -1.000000 mine",
    ]
    assert read_run(path) == {"q1": ["b", "a"], "q2": ["c"]}


def test_iter_run_streams_one_query_at_a_time_sorted_by_score(tmp_path: Path) -> None:
    path = tmp_path / "run.trec"
    path.write_text("q1 Q0 a 2 1.0 t\nq1 Q0 b 1 3.0 t\n\nq2 Q0 c 1 0.5 t\n")
    groups = iter_run(path)
    qid, rows = next(groups)
    assert qid == "q1" and [r.docid for r in rows] == ["b", "a"]
    assert next(groups)[0] == "q2"


def test_split_query_lines_are_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "run.trec"
    path.write_text("q1 Q0 a 1 1.0 t\nq2 Q0 b 1 1.0 t\nq1 Q0 c 2 0.5 t\n")
    with pytest.raises(InvalidInput, match="not contiguous.*sort -s -k1,1"):
        read_run(path)


@pytest.mark.parametrize(
    "line, message",
    [("q1 Q0 a 1 1.0", "6 columns"), ("q1 Q0 a one 1.0 t", "rank must be an integer")],
)
def test_malformed_run_lines_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "run.trec"
    path.write_text(line + "\n")
    with pytest.raises(InvalidInput, match=message):
        read_run(path)
    assert f"{path}:1" in str(pytest.raises(InvalidInput, read_run, path).value)


def test_run_fields_with_whitespace_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="whitespace"):
        write_run(tmp_path / "r.trec", [("q 1", [("a", 1.0)])], tag="t")


def test_completed_queries_drops_the_last_possibly_cut_query(tmp_path: Path) -> None:
    path = tmp_path / "out.trec"
    with RunWriter(path, "t") as writer:
        writer.write("q1", [("a", 2.0), ("b", 1.0)])
        writer.write("q2", [("c", 2.0), ("d", 1.0)])
    with open(path, "a") as handle:
        handle.write("q3 Q0 e 1 2.0 t\nq3 Q0 f 2 1")  # a crash mid-line
    assert completed_queries(path) == {"q1", "q2"}
    assert read_run(path) == {"q1": ["a", "b"], "q2": ["c", "d"]}  # q3 removed, to be redone
    assert completed_queries(tmp_path / "absent.trec") == set()


def test_files_that_are_not_utf8_name_the_line(tmp_path: Path) -> None:
    run = tmp_path / "run.trec"
    run.write_bytes(b"q1 Q0 a 1 2.0 t\r\nq1 Q0 b 2 1.0 t\r\nq2 Q0 caf\xe9 1 1.0 t\n")  # Latin-1, CRLF
    with pytest.raises(InvalidInput, match=r"run.trec:3: not UTF-8 text \(byte 0xe9 at column 10\)"):
        read_run(run)
    run.write_bytes(b"q1 Q0 a 1 2.0 t\r\nq1 Q0 b 2 1.0 t\r\n")
    assert read_run(run) == {"q1": ["a", "b"]}  # CRLF line ends are fine
    qrels = tmp_path / "qrels.txt"
    qrels.write_bytes(b"q1 0 a 1\nq\xff 0 b 1\n")
    with pytest.raises(InvalidInput, match=r"qrels.txt:2: not UTF-8"):
        read_trec_qrels(qrels)
    info = write_synthetic_beir(tmp_path / "syn", queries=2, documents=20)
    queries = info.path / "queries.jsonl"
    queries.write_bytes(queries.read_bytes() + b'{"_id": "q-extra", "text": "half \\ud83d"}\n')
    with pytest.raises(InvalidInput, match=r"queries.jsonl:\d+: the query's 'text' contains an unpaired UTF-16"):
        BeirDataset.open(info.path).queries()
    (info.path / "qrels" / "test.tsv").write_bytes(b"query-id\tcorpus-id\tscore\n\x80\tb\t1\n")
    with pytest.raises(InvalidInput, match=r"test.tsv:2: not UTF-8"):
        BeirDataset.open(info.path).qrels("test")


def test_trec_qrels_round_trip(tmp_path: Path) -> None:
    qrels = {"q1": {"a": 2, "b": 0}, "q2": {"c": 1}}
    write_trec_qrels(tmp_path / "qrels.txt", qrels)
    assert read_trec_qrels(tmp_path / "qrels.txt") == qrels


# -- BEIR and the synthetic dataset ---------------------------------------------------------------
def test_synthetic_dataset_is_valid_beir_with_planted_grades(tmp_path: Path) -> None:
    info = write_synthetic_beir(tmp_path / "syn", queries=4, documents=40)
    data = BeirDataset.open(info.path)
    qrels = data.qrels("test")
    queries = data.queries(qrels)
    records = {r.id: r.text for r in data.records()}
    assert data.splits() == ["test"] and len(records) == info.documents == 40
    assert set(queries) == set(qrels) and len(queries) == info.queries == 5
    assert info.no_relevant_query is not None
    assert qrels[info.no_relevant_query] and set(qrels[info.no_relevant_query].values()) == {0}
    for qid in ("q0", "q3"):
        terms = queries[qid].split()
        for doc, grade in qrels[qid].items():
            present = sum(term in records[doc].split() for term in terms)
            assert present == {2: 3, 1: 2, 0: 1}[grade]
    # a ranking by grade reaches the advertised ideal metrics
    by_grade = {qid: sorted(docs, key=lambda d: -docs[d]) for qid, docs in qrels.items()}
    assert evaluate(qrels, by_grade).mean == pytest.approx(info.ideal)


def test_synthetic_dataset_is_deterministic(tmp_path: Path) -> None:
    write_synthetic_beir(tmp_path / "a", queries=3, documents=30)
    write_synthetic_beir(tmp_path / "b", queries=3, documents=30)
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_not_a_beir_directory_says_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "corpus.jsonl").write_text("")
    with pytest.raises(InvalidInput, match="missing queries.jsonl, qrels"):
        BeirDataset.open(tmp_path)


def test_unknown_split_lists_the_available_ones(tmp_path: Path) -> None:
    info = write_synthetic_beir(tmp_path / "syn", queries=2, documents=20)
    with pytest.raises(InvalidInput, match="no split 'dev' \\(available: test\\)"):
        BeirDataset.open(info.path).qrels("dev")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.timeout(60)
def test_download_offline_fails_fast_with_an_actionable_message(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/beir"
    with pytest.raises(DownloadFailed) as caught:
        resolve_dataset("beir/scifact", cache_dir=tmp_path, base_url=url, timeout=2, progress=False)
    message = str(caught.value)
    assert f"{url}/scifact.zip" in message and "needs internet access" in message
    assert "--data /path/to/scifact" in message
    assert list(tmp_path.iterdir()) == []  # no partial download left behind


@pytest.mark.timeout(60)
def test_download_from_a_silent_endpoint_times_out(tmp_path: Path) -> None:
    # the server accepts the connection (kernel backlog) but never answers: only the timeout ends it
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(DownloadFailed, match="timed out.*needs internet access"):
            resolve_dataset("beir/nfcorpus", cache_dir=tmp_path, base_url=url, timeout=1, progress=False)


@pytest.fixture()
def zip_server(tmp_path: Path) -> Iterator[str]:
    """A local HTTP server offering syn.zip, laid out like the BEIR zips (a top folder)."""
    info = write_synthetic_beir(tmp_path / "src" / "syn", queries=2, documents=20)
    served = tmp_path / "served"
    served.mkdir()
    with zipfile.ZipFile(served / "syn.zip", "w") as archive:
        for file in info.path.rglob("*"):
            archive.write(file, f"syn/{file.relative_to(info.path)}")
    with zipfile.ZipFile(served / "multi.zip", "w") as archive:  # like cqadupstack: one folder per part
        for part in ("android", "gis"):
            for file in info.path.rglob("*"):
                archive.write(file, f"multi/{part}/{file.relative_to(info.path)}")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_download_unpacks_into_the_cache_once(tmp_path: Path, zip_server: str) -> None:
    cache = tmp_path / "cache"
    data = resolve_dataset("beir/syn", cache_dir=cache, base_url=zip_server, timeout=5, progress=False)
    assert data.root == cache / "syn" and data.splits() == ["test"]
    assert len(data.queries()) == 3 and sorted(p.name for p in cache.iterdir()) == ["syn"]
    again = resolve_dataset("beir/syn", cache_dir=cache, base_url="http://127.0.0.1:9", timeout=1, progress=False)
    assert again.root == data.root  # served from the cache, no network


def test_cli_reports_the_offline_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main([
        "eval", "--dataset", "beir/scifact", "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "o"),
        "--beir-url", f"http://127.0.0.1:{_closed_port()}", "--timeout", "2", "--stages", "bm25", "--no-progress",
    ])
    assert code == 1  # the network failed, not the options (crossrank.errors.ANSWERS: DownloadFailed is a 503)
    assert "cannot download BEIR dataset 'scifact'" in capsys.readouterr().err


def test_cli_checks_the_dataset_and_options_before_loading_models(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    missing_model = str(tmp_path / "no-such-model")  # loading it would fail: it must never be reached
    assert main(["eval", "--data", str(tmp_path / "nope"), "--model", missing_model, "--no-progress"]) == 2
    assert "is not a BEIR dataset" in capsys.readouterr().err
    assert main(["eval", "--synthetic", "--max-queries", "0", "--model", missing_model]) == 2
    assert "--max-queries must be positive" in capsys.readouterr().err


def test_cli_reports_an_unwritable_output_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a-file").write_text("")
    code = main(["eval", "--synthetic", "--stages", "bm25", "--out", str(tmp_path / "a-file" / "out"), "--no-progress"])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: Not a directory: ") and "a-file" in err and "Traceback" not in err


def test_results_json_is_plain_json(tmp_path: Path) -> None:
    # guard for the report writer: per-query values must be JSON numbers
    from crossrank.evaluate.report import write_results_json

    write_results_json(tmp_path / "r.json", {"x": evaluate({"q": {"a": 1}}, {"q": ["a"]}).per_query})
    assert json.loads((tmp_path / "r.json").read_text()) == {"x": {"q": dict.fromkeys(
        ["nDCG@10", "MRR@10", "MAP@100", "Recall@10", "Recall@100"], 1.0)}}


def test_download_of_an_unknown_dataset_names_the_public_ones(tmp_path: Path, zip_server: str) -> None:
    with pytest.raises(DownloadFailed, match="answered HTTP 404.*scifact"):
        resolve_dataset("beir/nosuch", cache_dir=tmp_path / "c", base_url=zip_server, timeout=5, progress=False)


def test_archive_with_several_datasets_needs_a_part(tmp_path: Path, zip_server: str) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(InvalidInput, match="several datasets: pass one of beir/multi/android, beir/multi/gis"):
        resolve_dataset("beir/multi", cache_dir=cache, base_url=zip_server, timeout=5, progress=False)
    part = resolve_dataset("beir/multi/gis", cache_dir=cache, base_url="http://127.0.0.1:9", timeout=1, progress=False)
    assert part.root == cache / "multi" / "gis" and part.splits() == ["test"]
