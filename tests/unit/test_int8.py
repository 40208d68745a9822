"""mode="int8": static int8 quantization calibrated on the user's pairs, cached; its inputs and refusals.

The tiny random models here check the mechanics (it loads, scores track exact, the quantized
model is reused, errors are clear); the ranking fidelity on a trained model is measured by
benchmarks/int8.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from crossrank import Reranker
from crossrank.errors import InvalidInput, MissingExtra
from crossrank.runtime import int8
from crossrank.runtime.calibration import Calibration, read_calibration
from crossrank.runtime.select import choose_runtime
from crossrank.server.config import model_entry

pytest.importorskip("openvino")
pytest.importorskip("nncf")

WORDS = "crocs clog sandal leather boots kids women running shoes comfort summer garden".split()


def pairs(queries: int = 6, documents: int = 8, seed: int = 0) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    return [(" ".join(rng.choice(WORDS, 3)), " ".join(rng.choice(WORDS, 12))) for _ in range(queries)
            for _ in range(documents)]


def grouped(queries: int = 6, documents: int = 8) -> list[tuple[str, str]]:
    rng = np.random.default_rng(1)
    out = []
    for q in range(queries):
        query = f"query {q} " + " ".join(rng.choice(WORDS, 2))
        out += [(query, " ".join(rng.choice(WORDS, 12))) for _ in range(documents)]
    return out


class Counted:
    """quantize_graph, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.original = int8.quantize_graph

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.original(*args, **kwargs)


@pytest.fixture(scope="module")
def quantized(bert_dir: Path, model_cache: Path) -> Iterator[tuple[Reranker, Counted, Path]]:
    """One int8 load (max_drop 2: every op quantized, no search), with the counter on (this calibration set
    is quantized nowhere else)."""
    cache = model_cache
    counter = Counted()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(int8, "quantize_graph", counter)
        reranker = Reranker(bert_dir, mode="int8", cache_dir=cache, batch_size=8,
                            calibration=Calibration(tuple(grouped()), max_drop=2.0, min_overlap=0.0))
        yield reranker, counter, cache


def test_int8_mode_quantizes_matmuls_and_scores_track_exact(quantized: tuple[Reranker, Counted, Path],
                                                            bert_reranker: Reranker) -> None:
    reranker, counter, _ = quantized
    assert counter.calls == 1 and reranker.mode == "int8" and reranker.choice.precision == "int8"
    report = reranker.int8_report
    assert report is not None and report["matrix_ops_int8"] > 0  # max_drop 2 keeps every quantized op
    assert report["matrix_ops"] == report["matrix_ops_int8"] + report["matrix_ops_kept_in_higher_precision"]
    assert reranker.describe()["int8"] == report and "matrix ops int8" in reranker.choice.reason
    speed = report["speed"]  # measured at quantization, on the held-out lists, against the unquantized model
    assert speed["unquantized_ms"] > 0 and speed["int8_ms"] > 0
    assert speed["speedup"] == pytest.approx(speed["unquantized_ms"] / speed["int8_ms"], rel=0.05)
    assert "the unquantized model's speed here" in reranker.choice.reason
    assert "int8" in reranker.runtime.providers[0]
    docs = [d for _, d in pairs(1, 24, seed=7)]
    got = reranker.score("crocs for kids", docs, activation="none")
    ref = bert_reranker.score("crocs for kids", docs, activation="none")
    # a random tiny model is far more fragile than a trained one: a loose bound, for the mechanics (a wrong
    # graph or output scores near 0). Measured: 0.78 on an AVX2-only CPU (0.68 there without the overflow fix)
    assert np.corrcoef(got, ref)[0, 1] > 0.6
    assert np.abs(got - ref).max() < 0.5 * np.abs(ref).max() + 1


def test_a_second_load_reuses_the_quantized_model(quantized: tuple[Reranker, Counted, Path], bert_dir: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    first, counter, cache = quantized
    monkeypatch.setattr(int8, "quantize_graph", counter)
    again = Reranker(bert_dir, mode="int8", cache_dir=cache, batch_size=8,
                     calibration=Calibration(tuple(grouped()), max_drop=2.0, min_overlap=0.0))
    assert counter.calls == 1  # no second quantization
    assert again.int8_report == first.int8_report
    docs = [d for _, d in pairs(1, 10, seed=3)]
    assert np.allclose(again.score("kids clog", docs), first.score("kids clog", docs), atol=1e-6)


def test_below_the_bound_the_search_keeps_matrix_ops_in_higher_precision(
        quantized: tuple[Reranker, Counted, Path], bert_dir: Path, model_cache: Path) -> None:
    """max_drop 0 on a random tiny model (which int8 reorders): the search goes on past 'none kept'."""
    steps: list[str] = []
    original = int8._matmul_groups

    def groups(model: object) -> list[tuple[str, list[str]]]:
        found = original(model)
        steps.extend(name for name, _ in found)
        return found

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(int8, "_matmul_groups", groups)
        strict = Reranker(bert_dir, mode="int8", cache_dir=model_cache, batch_size=8,
                          calibration=Calibration(tuple(grouped(4, 4)), max_drop=0.0))
    assert steps[0] == "none" and "feed-forward down projections" in steps and steps[-1] == "every matrix op"
    report, loose = strict.int8_report, quantized[0].int8_report
    assert report is not None and loose is not None
    assert report["matrix_ops_kept_in_higher_precision"] > loose["matrix_ops_kept_in_higher_precision"]
    assert report["fidelity"]["fidelity"] >= loose["fidelity"]["fidelity"] or report["fidelity"]["fidelity"] == 1.0


def test_the_fidelity_metric_is_one_for_the_same_ranking_and_falls_when_it_moves() -> None:
    ref = np.arange(40, dtype=np.float64)
    assert int8.fidelity(ref * 2 + 1, ref) == 1.0
    swapped = ref.copy()
    swapped[[29, 39]] = swapped[[39, 29]]  # one document leaves the top 10
    assert int8.overlap(swapped, ref) == 0.9 and 0.9 < int8.fidelity(swapped, ref) < 1.0
    assert int8.fidelity(-ref, ref) < 0


def test_the_search_accepts_by_the_worst_query_not_the_mean() -> None:
    """A mean over queries let one query with 8 of its top 10 and Spearman 0.97 through (what a
    100-document list then showed); the bound now holds for the worst held-out query."""
    calibration = Calibration(tuple(grouped()))
    assert calibration.accepts(spearman_min=0.995, overlap_min=0.9)
    assert not calibration.accepts(spearman_min=0.97, overlap_min=1.0)
    assert not calibration.accepts(spearman_min=0.999, overlap_min=0.8)
    with pytest.raises(InvalidInput, match="min_overlap"):
        Calibration(tuple(grouped()), min_overlap=1.5)


def test_held_out_queries_are_never_calibrated_on() -> None:
    calibration = Calibration(tuple((f"query {q}", f"document {q}-{d}") for q in range(8) for d in range(5)))
    calibrate, held = calibration.split()
    assert len(held) == 2 and all(len({q for q, _ in group}) == 1 for group in held)
    assert not {q for g in held for q, _ in g} & {q for q, _ in calibrate}
    assert not {d for g in held for _, d in g} & {d for _, d in calibrate}
    assert len(calibrate) == 30
    # each held-out query ranks every held-out document, its own first: lists as long as served ones
    assert [len(group) for group in held] == [10, 10]
    assert [d for _, d in held[0][:5]] == [f"document 3-{d}" for d in range(5)]
    assert {d for _, d in held[0]} == {d for _, d in held[1]}
    single = Calibration(tuple((f"q{i}", f"d{i}") for i in range(12)))  # one document per query: pooled
    rest, pooled = single.split()
    assert len(pooled) == 1 and len(pooled[0]) == 3 and not set(pooled[0]) & set(rest)


def test_int8_without_a_calibration_set_is_refused_naming_the_option(bert_dir: Path) -> None:
    with pytest.raises(InvalidInput, match="calibration=.*--calibration FILE.*'calibration: FILE'"):
        Reranker(bert_dir, mode="int8")
    with pytest.raises(InvalidInput, match="mode='int8' only"):
        Reranker(bert_dir, mode="fast", calibration=pairs())


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    ("", "holds no"),
    ("\n  \n", "holds no"),
    ('{"query": "crocs", "documents": ["a clog"]\n', "line 1: not valid JSON"),
    ('{"query": "crocs", "documents": []}\n', 'line 1: "documents" must be a non-empty list'),
    ('{"documents": ["a"]}\n', 'line 1: "query" must be a non-empty string'),
    ("crocs\ta clog\njust one field\n", "line 2: a TSV line needs exactly two"),
    ("crocs\ta clog\n", "needs at least 8"),
])
def test_bad_calibration_files_say_what_is_wrong_and_the_format(bert_dir: Path, tmp_path: Path, content: str | None,
                                                               message: str) -> None:
    path = tmp_path / "calibration.jsonl"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InvalidInput, match=message) as caught:
        Reranker(bert_dir, mode="int8", calibration=path)
    if "at least" not in message:
        assert "query<TAB>document" in str(caught.value)


def test_jsonl_and_tsv_lines_mix_in_one_file(tmp_path: Path) -> None:
    path = tmp_path / "calibration.txt"
    path.write_text(json.dumps({"query": "crocs", "documents": ["a clog", "boots"]}) + "\n\n"
                    + "".join(f"kids shoes\tdocument {i}\n" for i in range(6)))
    calibration = read_calibration(path)
    assert calibration.pairs[:2] == (("crocs", "a clog"), ("crocs", "boots")) and len(calibration.pairs) == 8
    assert read_calibration(str(path)).digest() == calibration.digest() != read_calibration(pairs()).digest()
    with pytest.raises(InvalidInput, match="list of \\(query, document\\) pairs"):
        read_calibration([("only a query",)] * 8)  # type: ignore[list-item]


def test_int8_refuses_llm_rerankers_and_the_gpu(tmp_path: Path) -> None:
    from crossrank.models.synthetic import build_qwen3_reranker

    with pytest.raises(InvalidInput, match="runs on the CPU with OpenVINO"):
        choose_runtime("int8", providers=["cuda"])
    with pytest.raises(InvalidInput, match="runs on the CPU with OpenVINO"):
        choose_runtime("int8", runtime="torch")
    qwen = build_qwen3_reranker(tmp_path / "qwen3", layers=1)
    with pytest.raises(InvalidInput, match="LLM reranker"):
        Reranker(qwen, mode="int8", calibration=pairs(), cache_dir=tmp_path / "cache")


def test_without_nncf_int8_names_the_extra(bert_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nncf", None)  # import nncf now fails as if it were not installed
    with pytest.raises(MissingExtra, match=r"pip install 'crossrank\[int8\]'"):
        Reranker(bert_dir, mode="int8", calibration=pairs())


def test_server_config_and_cli_take_int8_with_a_calibration_file(bert_dir: Path, tmp_path: Path,
                                                                 isolated_hf_home: Path) -> None:
    entry = model_entry("m", {"model": "x", "mode": "int8", "calibration": "pairs.tsv"})
    assert entry.mode == "int8" and entry.calibration == "pairs.tsv"
    with pytest.raises(InvalidInput, match="used with 'mode: int8'"):
        model_entry("m", {"model": "x", "calibration": "pairs.tsv"})
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    for extra, message in (([], "--calibration FILE"), (["--calibration", str(empty)], "holds no")):
        out = subprocess.run([sys.executable, "-m", "crossrank.cli", "rerank", "--model", str(bert_dir), "-q", "x",
                              "--doc", "d", "--mode", "int8", *extra], capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize(("flags", "expected"), [
    ({"avx2", "amx_int8", "avx512_vnni"}, "AMX, AVX-512 VNNI"),
    ({"avx2", "avx_vnni"}, "AVX-VNNI"),
    ({"avx2"}, "none (no VNNI or AMX)"),
])
def test_int8_instructions_name_what_the_cpu_has(flags: set[str], expected: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import crossrank.runtime.select as select

    monkeypatch.setattr(select, "cpu_flags", lambda: frozenset(flags))
    assert int8.int8_instructions() == expected
    # without VNNI or AMX int8 products saturate 16-bit sums: every layer's weights get 7 bits
    assert int8.overflow_fix() == ("enable" if expected.startswith("none") else "first_layer_only")


@pytest.mark.parametrize(("queries", "warned"), [(8, True), (24, False)])
def test_too_few_held_out_queries_are_named(queries: int, warned: bool) -> None:
    """A quarter of the queries is held out; fewer than MIN_HELD_OUT bound unseen queries loosely."""
    from crossrank.runtime.calibration import MIN_HELD_OUT, held_out_warning

    calibration = Calibration(tuple(grouped(queries=queries, documents=4)), source="pairs.jsonl")
    _, held = calibration.split()
    assert len(held) == queries // 4
    message = held_out_warning(len(held), calibration.source)
    assert (message is not None) == warned
    if message:
        assert "pairs.jsonl" in message and f"at least {4 * MIN_HELD_OUT} queries" in message
