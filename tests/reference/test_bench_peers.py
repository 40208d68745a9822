"""`crossrank bench --compare`'s peers in a separate environment, and the fidelity columns.

The peer environment itself (``make peers``) is not built here: the worker's protocol is
exercised with this environment's Python on sentence-transformers' torch backend, which is
installed here, through the same client the benchmark uses.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from crossrank.bench import close_backends, prepare_backends, run_bench
from crossrank.bench.backends import Backend, ModelSource
from crossrank.bench.peer_env import calibration_texts, default_peer_python, venv_peer_backends
from crossrank.bench.report import detail_table, to_json
from crossrank.bench.runner import spearman
from crossrank.cli import main
from tolerances import PROBABILITY_ATOL


def _scorer(name: str, transform: float, timer: float | None = None) -> Backend:
    def score(query: str, docs: list[str]) -> np.ndarray:
        return np.asarray([transform * (len(d) + 1e-3 * i) for i, d in enumerate(docs)])

    return Backend(name, f"{name} label", score, timer=(lambda: timer) if timer is not None else None)


def test_every_peer_row_carries_its_top10_overlap_and_spearman_against_the_reference() -> None:
    backends = [_scorer("ref", 1.0), _scorer("same-order", 2.0), _scorer("reversed", -1.0)]
    result = run_bench(backends, sizes=(2, 30), kinds=("passages",), repeats=1, pause_s=0)
    same, reverse = result.cell("same-order", "passages", 30), result.cell("reversed", "passages", 30)
    assert same is not None and same.top10_overlap == 10 and same.spearman == pytest.approx(1.0)
    assert reverse is not None and reverse.top10_overlap == 0 and reverse.spearman == pytest.approx(-1.0)
    small = result.cell("reversed", "passages", 2)
    assert small is not None and small.spearman is None  # two documents rank nothing worth a correlation
    table = detail_table(result)
    assert "| top-10 overlap | Spearman |" in table and "| 0/10 | -1.0000 |" in table
    assert to_json(result, {})["cells"][-1]["spearman"] == pytest.approx(-1.0)
    assert spearman(np.array([1.0, 2.0, 3.0]), np.array([10.0, 30.0, 20.0])) == pytest.approx(0.5)


def test_a_backend_that_times_itself_is_recorded_with_its_own_timing() -> None:
    """A peer in another process times the call there: the transfer stays out of the figure."""
    backends = [_scorer("ref", 1.0), _scorer("remote", 1.0, timer=0.25)]
    result = run_bench(backends, sizes=(3,), kinds=("titles",), repeats=3, pause_s=0)
    cell = result.cell("remote", "titles", 3)
    assert cell is not None and cell.seconds == [0.25, 0.25, 0.25]


def test_the_peer_worker_scores_like_sentence_transformers_in_process(
    bert_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The worker, run with this environment's Python on the torch backend: loads, scores the
    same as sentence-transformers in this process, reports its versions and its own timings,
    answers an unknown peer with a reason (that peer is skipped) and ends when closed."""
    pytest.importorskip("sentence_transformers")
    from crossrank.bench.backends import sentence_transformers_backend

    source = ModelSource(bert_dir, bert_dir / "unused.onnx")
    reference = sentence_transformers_backend(source, 1, tmp_path)
    with caplog.at_level("WARNING"):
        peers = venv_peer_backends(["st-nothing", "st-torch"], source, Path(sys.executable), 1, tmp_path)
    assert [b.name for b in peers] == ["st-torch"]
    assert "skipping st-nothing" in caplog.text and "unknown peer 'st-nothing'" in caplog.text
    assert "make peers" in caplog.text
    peer = peers[0]
    assert peer.label == "sentence-transformers CrossEncoder (torch fp32)" and peer.load_seconds > 0
    assert peer.info["versions"]["sentence-transformers"] and peer.info["python"] == sys.executable
    assert peer.timer is not None
    seen: list[float] = []
    timer = peer.timer
    peer.timer = lambda: seen.append(timer()) or seen[-1]  # type: ignore[func-returns-value]
    try:
        result = run_bench([reference, peer], sizes=(12,), kinds=("passages",), repeats=2, pause_s=0)
    finally:
        close_backends(peers)
    cell = result.cell("st-torch", "passages", 12)
    assert cell is not None and cell.seconds == seen and all(s > 0 for s in seen)
    assert cell.max_abs_diff is not None and cell.max_abs_diff <= PROBABILITY_ATOL  # sigmoid scores
    assert cell.top10_overlap == 10 and cell.spearman == pytest.approx(1.0)
    with pytest.raises(Exception, match="peer worker is gone|exited"):
        peer.score("q", ["d"])


def test_without_a_peer_environment_its_rows_are_skipped_with_how_to_build_it(
    bert_dir: Path, model_cache: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING"):
        backends = prepare_backends(
            bert_dir, modes=(), peers=("st-onnx", "st-openvino-int8"), threads=1,
            cache_dir=model_cache, work_dir=tmp_path, peer_python=None,
        )
    assert backends == []
    assert "skipping st-onnx, st-openvino-int8: no peer environment found" in caplog.text
    assert "make peers" in caplog.text


def test_the_bench_command_finds_the_peer_environment_or_says_how_to_build_it(
    bert_dir: Path, tmp_path: Path, isolated_hf_home: Path, capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert main(["bench", "--compare", "--peers", "st-onnx", "--peer-python", str(tmp_path / "nope"),
                 "--no-chart", "--quiet", "--out", str(tmp_path / "o")]) == 2
    assert "make peers" in capsys.readouterr().err
    monkeypatch.setattr("crossrank.bench.peer_env.default_peer_python", lambda: None)
    out = tmp_path / "out"
    with caplog.at_level("WARNING"):
        assert main(["bench", "--model", str(bert_dir), "--modes", "exact", "--sizes", "2", "--kinds", "titles",
                     "--repeats", "1", "--threads", "1", "--out", str(out), "--no-chart", "--quiet",
                     "--compare", "--peers", "st-openvino"]) == 0
    assert "skipping st-openvino: no peer environment found" in caplog.text and "make peers" in caplog.text
    assert json.loads((out / "bench.json").read_text())["settings"]["peer_python"] is None
    venv = tmp_path / "checkout" / ".venv-peers" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").write_text("")
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path / "checkout")
    assert default_peer_python() == Path.cwd() / ".venv-peers" / "bin" / "python"


def test_the_int8_peer_calibrates_on_local_texts_that_are_never_timed() -> None:
    from crossrank.bench.inputs import make_workload

    texts = calibration_texts()
    assert len(texts) == 300 and len(set(texts)) == 300
    timed = {doc for kind in ("titles", "passages") for n in (1, 10, 100)
             for doc in make_workload(kind, n).documents}
    assert not any(text.split(" ", 6)[-1] in timed for text in texts)
