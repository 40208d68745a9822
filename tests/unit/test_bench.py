"""`crossrank bench`: inputs, the interleaved runner, reports and the command itself."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from crossrank.bench import prepare_backends, run_bench
from crossrank.bench.backends import Backend
from crossrank.bench.inputs import WORDS, make_workload
from crossrank.bench.report import detail_table, latency_table, ratio_table, write_chart, write_json
from crossrank.cli import main


def test_workloads_are_deterministic_and_sized() -> None:
    a = make_workload("passages", 7, seed=1)
    assert a == make_workload("passages", 7, seed=1)
    assert a != make_workload("passages", 7, seed=2)
    assert len(a.documents) == 7 and a.pairs[0] == (a.query, a.documents[0])
    for kind in ("titles", "passages"):
        words = [len(d.split()) for d in make_workload(kind, 50).documents]
        assert 0.8 * WORDS[kind] <= min(words) and max(words) <= 1.2 * WORDS[kind]
        assert len(set(words)) > 1  # lengths vary, as real candidates do
    with pytest.raises(ValueError):
        make_workload("tweets", 3)  # type: ignore[arg-type]


Scorer = Callable[[str, list[str]], np.ndarray]


def _fake(name: str, offset: float) -> Backend:
    """A deterministic scorer for runner tests (the runner is what is tested, not a model)."""

    def score(query: str, docs: list[str]) -> np.ndarray:
        return np.asarray([len(d) / 1000 + offset for d in docs])

    return Backend(name, f"{name} label", score)


def _recording(score: Scorer, name: str, calls: list[str]) -> Scorer:
    """``score`` that appends ``name`` to ``calls`` first."""

    def recorded(query: str, docs: list[str]) -> np.ndarray:
        calls.append(name)
        return score(query, docs)

    return recorded


def test_runner_interleaves_measures_and_compares() -> None:
    calls: list[str] = []
    backends = [_fake("ref", 0.0), _fake("shifted", 0.5)]
    for b in backends:
        b.score = _recording(b.score, b.name, calls)
    messages: list[str] = []
    result = run_bench(backends, sizes=(1, 12), kinds=("titles",), repeats=3, progress=messages.append)
    assert len(result.cells) == 4 and messages
    assert calls[2:8] == ["ref", "shifted"] * 3  # warm-up, then strictly alternating rounds
    cell = result.cell("shifted", "titles", 12)
    assert cell is not None and len(cell.seconds) == 3
    assert cell.max_abs_diff == pytest.approx(0.5) and cell.top10_overlap == 10
    assert cell.p10_ms <= cell.median_ms <= cell.p90_ms and cell.pairs_per_s > 0
    ref_one = result.cell("ref", "titles", 1)
    assert ref_one is not None and ref_one.max_abs_diff == 0 and ref_one.top10_overlap is None


def test_reports_render_every_backend(tmp_path: Path) -> None:
    peers = [_fake("sentence-transformers", 0), _fake("mine", 0)]
    result = run_bench(peers, sizes=(1, 3), kinds=("titles", "passages"), repeats=1)
    table = latency_table(result)
    assert "| 1 title | 3 titles | 1 passage | 3 passages |" in table and "mine label" in table
    assert "1.00×" in ratio_table(result, "sentence-transformers")
    assert detail_table(result).count("\n") == 2 + 8 - 1
    write_json(result, {"threads": 1}, tmp_path / "b.json")
    data = json.loads((tmp_path / "b.json").read_text())
    assert {c["backend"] for c in data["cells"]} == {"sentence-transformers", "mine"}
    assert data["machine"]["cores"] >= 1 and "median_ms" in data["cells"][0]
    pytest.importorskip("matplotlib")
    write_chart(result, tmp_path / "b.png", "test")
    assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.reference  # runs the peer libraries
def test_crossrank_and_peer_backends_agree_on_one_model(bert_dir: Path, model_cache: Path, tmp_path: Path) -> None:
    pytest.importorskip("fastembed")
    pytest.importorskip("sentence_transformers")
    backends = prepare_backends(
        bert_dir, modes=("exact",), peers=("sentence-transformers", "fastembed"), threads=1,
        cache_dir=model_cache, work_dir=tmp_path,
    )
    assert [b.name for b in backends] == ["sentence-transformers", "fastembed", "crossrank-exact"]
    result = run_bench(backends, sizes=(12,), kinds=("passages",), repeats=1)
    for name in ("fastembed", "crossrank-exact"):
        cell = result.cell(name, "passages", 12)
        assert cell is not None and cell.max_abs_diff is not None and cell.max_abs_diff < 1e-4
        assert cell.top10_overlap == 10


def test_bench_command_writes_table_json_and_chart(
    bert_dir: Path, tmp_path: Path, isolated_hf_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main([
        "bench", "--model", str(bert_dir), "--modes", "exact", "--sizes", "1,2", "--kinds", "titles",
        "--repeats", "2", "--threads", "1", "--out", str(out), "--compare", "--peers", "sentence-transformers",
    ])
    printed = capsys.readouterr()
    assert code == 0
    assert "| sentence-transformers CrossEncoder (torch fp32) |" in printed.out
    assert "speed-up vs sentence-transformers" in printed.out
    assert "round" in printed.err  # progress lines
    data = json.loads((out / "bench.json").read_text())
    assert {c["backend"] for c in data["cells"]} == {"sentence-transformers", "crossrank-exact"}
    assert data["settings"]["threads"] == 1
    if (out / "bench.png").exists():
        assert (out / "bench.png").stat().st_size > 1000


def test_bench_times_the_int8_mode_calibrated_on_a_file(
    bert_dir: Path, tmp_path: Path, isolated_hf_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from crossrank.bench.inputs import calibration_pairs

    calibration = tmp_path / "pairs.tsv"
    calibration.write_text("".join(f"{q}\t{d}\n" for q, d in calibration_pairs(8, 4)))
    out = tmp_path / "out"
    code = main(["bench", "--model", str(bert_dir), "--modes", "exact,int8", "--calibration", str(calibration),
                 "--sizes", "2", "--kinds", "titles", "--repeats", "1", "--threads", "1", "--out", str(out),
                 "--no-chart", "--quiet"])
    assert code == 0
    assert "| crossrank int8 (int8 " in capsys.readouterr().out  # the row names the engine the load kept
    assert {c["backend"] for c in json.loads((out / "bench.json").read_text())["cells"]} == {
        "crossrank-exact", "crossrank-int8"}


def test_the_benchmark_calibration_pairs_are_never_timed() -> None:
    from crossrank.bench.inputs import calibration_pairs

    pairs = calibration_pairs()
    assert len(pairs) == 2 * 16 * 20 and len({q for q, _ in pairs}) == 32
    timed = {text for kind in ("titles", "passages") for n in (1, 10, 100) for seed in range(110)
             for w in [make_workload(kind, n, seed=seed)] for text in (w.query, *w.documents)}
    assert not timed & {text for pair in pairs for text in pair}


def test_bench_command_rejects_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--modes", "ludicrous", "--no-chart"]) == 2
    assert "unknown mode" in capsys.readouterr().err
    assert main(["bench", "--modes", "exact", "--calibration", "pairs.tsv", "--no-chart"]) == 2
    assert "add int8 to --modes" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--sizes", "0"])
    for argv, message in ((["--cell-budget", "-1"], "--cell-budget must be"), (["--threads", "0"], "--threads must be")):
        assert main(["bench", *argv, "--no-chart"]) == 2
        assert message in capsys.readouterr().err


def test_bench_command_checks_the_output_directory_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a-file").write_text("")
    assert main(["bench", "--out", str(tmp_path / "a-file" / "out"), "--no-chart", "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "Not a directory" in captured.err
    assert captured.out == ""  # refused before anything was timed (the table prints after the run)


def test_bench_on_a_missing_gpu_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    from crossrank.runtime.torch import cuda_available

    if cuda_available():
        pytest.skip("a CUDA GPU is usable here")
    assert main(["bench", "--device", "cuda", "--no-chart"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err


@pytest.mark.reference  # runs the peer libraries
def test_gpu_comparison_keeps_only_gpu_peers(
    bert_dir: Path, model_cache: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """--device cuda skips the CPU-only peers by name (here no GPU: crossrank itself falls back)."""
    with caplog.at_level("WARNING"):
        backends = prepare_backends(
            bert_dir, modes=("exact",), peers=("fastembed", "flashrank"), threads=1,
            cache_dir=model_cache, work_dir=tmp_path, device="cuda",
        )
    assert [b.name for b in backends] == ["crossrank-exact"]
    assert "skipping fastembed" in caplog.text and "skipping flashrank" in caplog.text


def test_caveats_name_a_busy_machine_and_a_random_weight_model() -> None:
    from crossrank.bench.report import caveats

    assert caveats(0.3, 2, random_weights=False) == []
    busy, random = caveats(5.0, 2, random_weights=True)
    assert "busy" in busy and "load average 5.0 on 2 cores" in busy
    assert "random weights" in random and "--model" in random


def test_bench_shape_builds_a_marked_random_model_and_warns(
    tmp_path: Path, isolated_hf_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--shape`` times a family's architecture with random weights, built once with a marker, and
    the run says that its fidelity columns and (on a busy machine) its timings mean little."""
    from crossrank.bench import shapes
    from crossrank.models.synthetic import build_random_model

    built: list[Path] = []

    def tiny(out: Path) -> None:
        built.append(out)
        build_random_model(out, layers=1)

    monkeypatch.setitem(shapes.SHAPES, "tiny", shapes.Shape("tiny", "a one-layer BERT", tiny))
    monkeypatch.setattr("crossrank.models.export.default_cache_dir", lambda: tmp_path / "cache")
    monkeypatch.setattr("crossrank.cli.bench.os.getloadavg", lambda: (9.0, 9.0, 9.0))
    out = tmp_path / "out"
    argv = ["bench", "--shape", "tiny", "--modes", "exact", "--sizes", "2", "--kinds", "titles", "--repeats", "1",
            "--threads", "1", "--out", str(out), "--no-chart", "--quiet"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "the model has random weights" in err and "the machine was busy" in err
    data = json.loads((out / "bench.json").read_text())
    assert shapes.is_random(data["settings"]["model"]) and len(data["settings"]["warnings"]) == 2
    assert main(argv) == 0 and len(built) == 1  # built once, then reused
    assert main(["bench", "--shape", "tiny", "--model", "x", "--no-chart"]) == 2
    assert "--model or --shape" in capsys.readouterr().err


def test_an_llm_reranker_is_timed_without_the_peer_that_cannot_run_it(
    tmp_path: Path, model_cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from crossrank.models.synthetic import build_qwen3_reranker

    model = build_qwen3_reranker(tmp_path / "qwen3")
    with caplog.at_level("WARNING"):
        backends = prepare_backends(model, modes=("exact",), peers=("sentence-transformers",), cache_dir=model_cache)
    assert [b.name for b in backends] == ["crossrank-exact"]
    assert "skipping sentence-transformers" in caplog.text
    result = run_bench(backends, sizes=[2], kinds=["titles"], repeats=1, min_repeats=1)
    assert [c.backend for c in result.cells] == ["crossrank-exact"]
