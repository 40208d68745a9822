"""The cross-encoder graph is cut to token 0 after its last attention, with the same scores."""

from __future__ import annotations

import errno
import hashlib
import logging
import resource
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from crossrank import Reranker
from crossrank.models import first_token
from crossrank.models.derived import derived_dir
from crossrank.models.first_token import first_token_graph
from crossrank.models.load import load_model
from crossrank.runtime.onnx import OnnxRuntime

DOCUMENTS = [
    "a",
    "leather clogs for kids with a soft footbed",
    "the history of the river and the mountain city in the north, told over three long centuries " * 3,
    "blue",
]


def _slices(path: Path) -> list[str]:
    graph = onnx.load(str(path), load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type == "Slice" and n.name.startswith("crossrank_first_token")]


@pytest.mark.parametrize("fixture", ["bert_dir", "xlmr_dir", "bert2_dir"])
def test_the_reranker_runs_the_cut_graph_with_the_full_graphs_scores(
    fixture: str, request: pytest.FixtureRequest, model_cache: Path
) -> None:
    directory = request.getfixturevalue(fixture)
    reranker = Reranker(directory, cache_dir=model_cache, batch_size=3)
    full_graph = load_model(directory, task="sequence-classification", cache_dir=model_cache).onnx_path
    assert reranker.runtime.path != full_graph
    assert reranker.runtime.path.parent.parent == model_cache / "first-token"
    # the context after attention and the residual stream: two cuts, nothing else changed
    assert len(_slices(reranker.runtime.path)) == 2
    cut = reranker.score("soft clogs for kids", DOCUMENTS, activation="none")
    reranker.runtime = OnnxRuntime(full_graph)
    try:
        full = reranker.score("soft clogs for kids", DOCUMENTS, activation="none")
    finally:
        reranker.runtime = OnnxRuntime(first_token_graph(full_graph, model_cache / "first-token"))
    assert np.ptp(full) > 1e-3  # the documents really score differently
    np.testing.assert_allclose(cut, full, rtol=0, atol=1e-5)


def test_the_cut_copy_is_written_once(bert_dir: Path, tmp_path: Path) -> None:
    full_graph = load_model(bert_dir, task="sequence-classification", cache_dir=tmp_path).onnx_path
    first = first_token_graph(full_graph, tmp_path / "first-token")
    stamp = first.stat().st_mtime_ns
    assert first_token_graph(full_graph, tmp_path / "first-token") == first
    assert first.stat().st_mtime_ns == stamp
    assert [p.name for p in (tmp_path / "first-token").iterdir()] == [first.parent.name]  # no staging left


def test_a_graph_that_reads_every_token_is_used_as_it_is(minilm_dir: Path, model_cache: Path, tmp_path: Path) -> None:
    """A bi-encoder's output is every token's hidden state: nothing may be cut."""
    encoder_graph = load_model(minilm_dir, task="feature-extraction", cache_dir=model_cache).onnx_path
    assert first_token_graph(encoder_graph, tmp_path) == encoder_graph
    (marker,) = tmp_path.glob("*/unchanged")
    assert "gather of token 0" in marker.read_text()
    assert first_token_graph(encoder_graph, tmp_path) == encoder_graph  # the verdict is cached too


def test_a_cut_that_changes_scores_is_caught_and_the_full_graph_kept(
    bert_dir: Path, model_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    full_graph = load_model(bert_dir, task="sequence-classification", cache_dir=model_cache).onnx_path
    monkeypatch.setattr(first_token, "_KEEP", (1, 2))  # token 1 instead of token 0: wrong scores
    assert first_token_graph(full_graph, tmp_path, isolate=False) == full_graph
    (marker,) = tmp_path.glob("*/unchanged")
    assert "differ" in marker.read_text()


def test_an_unwritable_cache_runs_the_full_graph(
    bert_dir: Path, model_cache: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    full_graph = load_model(bert_dir, task="sequence-classification", cache_dir=model_cache).onnx_path
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with caplog.at_level(logging.WARNING, logger="crossrank.models.first_token"):
        assert first_token_graph(full_graph, blocker / "first-token") == full_graph
    assert "using it unpruned" in caplog.text


def test_a_corrupt_graph_is_left_for_the_runtime_to_report(tmp_path: Path) -> None:
    broken = tmp_path / "model.onnx"
    broken.write_bytes(b"not a protobuf")
    assert first_token_graph(broken, tmp_path / "cache") == broken


def test_a_full_disk_is_not_cached_as_a_verdict(
    bert_dir: Path, model_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """ENOSPC while writing the copy runs this load unpruned; the next load, with space again, prunes."""
    full_graph = load_model(bert_dir, task="sequence-classification", cache_dir=model_cache).onnx_path
    write = first_token._write
    failures: list[Path] = []

    def full_once(path: Path, data: bytes) -> None:
        if not failures:
            failures.append(path)
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        write(path, data)

    monkeypatch.setattr(first_token, "_write", full_once)
    with caplog.at_level(logging.WARNING, logger="crossrank.models.first_token"):
        assert first_token_graph(full_graph, tmp_path, isolate=False) == full_graph
    assert failures
    assert list(tmp_path.iterdir()) == []  # no verdict, no staging left
    pruned = first_token_graph(full_graph, tmp_path, isolate=False)
    assert pruned != full_graph and len(_slices(pruned)) == 2
    assert "No space left" in caplog.text and "trying again" in caplog.text


def test_a_write_error_in_the_cutting_process_is_retried(bert_dir: Path, model_cache: Path, tmp_path: Path) -> None:
    """The cut runs in a child process: its write errors are not cached either."""
    full_graph = load_model(bert_dir, task="sequence-classification", cache_dir=model_cache).onnx_path
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, hard))  # inherited: the copy (tens of MB) cannot be written
    try:
        assert first_token_graph(full_graph, tmp_path) == full_graph
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert list(tmp_path.iterdir()) == []
    pruned = first_token_graph(full_graph, tmp_path)
    assert pruned != full_graph and len(_slices(pruned)) == 2


@pytest.mark.integration  # starts a process
def test_the_cut_is_made_in_another_process(bert_dir: Path, model_cache: Path, tmp_path: Path) -> None:
    code = (
        "import sys\nfrom pathlib import Path\nfrom crossrank.models.first_token import first_token_graph\n"
        "out = first_token_graph(Path(sys.argv[1]), Path(sys.argv[2]))\n"
        "print('CUT', out != Path(sys.argv[1]), 'onnx' in sys.modules)\n"
    )
    full_graph = load_model(bert_dir, task="sequence-classification", cache_dir=model_cache).onnx_path
    out = subprocess.run([sys.executable, "-c", code, str(full_graph), str(tmp_path)], capture_output=True, text=True,
                         timeout=300)
    assert "CUT True False" in out.stdout, out.stdout + out.stderr


@pytest.mark.integration  # starts a process
def test_a_staging_dir_left_by_a_killed_process_is_removed(bert_dir: Path, model_cache: Path, tmp_path: Path) -> None:
    full_graph = load_model(bert_dir, task="sequence-classification", cache_dir=model_cache).onnx_path
    target = derived_dir(full_graph, tmp_path, f"first-token-{first_token.RECIPE_VERSION}")
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # its process id is now free: the owner of the staging directory is gone
    host = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
    stale = tmp_path / f"{target.name}.staging-{child.pid}-{host}-0badc0de"
    stale.mkdir(parents=True)
    (stale / "model.onnx").write_bytes(b"half a graph")
    assert first_token_graph(full_graph, tmp_path) == target / "model.onnx"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]
