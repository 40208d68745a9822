"""``crossrank train``: the lift on held-out queries, bad input refused before training, SIGKILL and resume.

The lift test trains a tiny random-weight BERT (1 layer, hidden 64, the real BERT uncased
tokenizer) on generated data whose relevance signal BM25 cannot see (see
``crossrank.train.synthetic``). Over data/model seeds 1-5 the fine-tuned model lifted bm25+ce
nDCG@10 on the test queries by 0.26 to 0.44 over the base model (bm25+trained 0.95 to 1.0); the
test asserts a lift of at least 0.15.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from crossrank import Reranker
from crossrank.cli import main
from crossrank.errors import InvalidInput, ModelError
from crossrank.models.synthetic import build_random_model
from crossrank.server.launch import ServerProcess
from crossrank.train import TrainConfig, TrainResult, jsonl_to_beir, load_training_data, train
from crossrank.train.base import prepare_base
from crossrank.train.checkpoints import last_complete_checkpoint
from crossrank.train.synthetic import CONFIRMING, write_learnable_beir

pytest.importorskip("sentence_transformers")
pytest.importorskip("datasets")
pytest.importorskip("accelerate")

TINY: dict[str, Any] = {"layers": 1, "hidden_size": 64, "num_attention_heads": 2, "intermediate_size": 128}
LIFT = 0.15  #: asserted; observed 0.26-0.44 over seeds 1-5


@pytest.fixture(scope="module")
def learnable(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_learnable_beir(tmp_path_factory.mktemp("learnable") / "data", seed=1)


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny cross-encoder with a random head (its reranking is noise)."""
    return build_random_model(tmp_path_factory.mktemp("tiny-ce"), num_labels=1, seed=1, **TINY)


def config(data: Path, base: Path, out: Path, **overrides: object) -> TrainConfig:
    settings: dict[str, object] = dict(epochs=8, batch_size=16, learning_rate=3e-3, max_length=48, dev_top_n=10,
                                       dev_depth=10, progress=False, seed=1, cache_dir=out.parent / "cache")
    settings.update(overrides)
    return TrainConfig(data=str(data), base=str(base), out=out, **settings)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def trained(learnable: Path, tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    return train(config(learnable, tiny_base, tmp_path_factory.mktemp("train") / "out"))


def test_training_lifts_bm25_ce_on_held_out_queries(trained: TrainResult, learnable: Path, tiny_base: Path,
                                                    tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``crossrank eval --model BASE --model TRAINED``: both side by side on the held-out test queries."""
    out = tmp_path / "eval"
    code = main(["eval", "--data", str(learnable), "--split", "test", "--stages", "bm25,bm25+ce", "--depth", "10",
                 "--top-n", "10", "--model", str(tiny_base), "--model", str(trained.model_dir), "--out", str(out),
                 "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    base, tuned = f"bm25+ce@{tiny_base.name}", f"bm25+ce@{trained.model_dir.parent.name}"
    results = json.loads((out / "results.json").read_text())
    ndcg = {row["stage"]: row["metrics"]["nDCG@10"] for row in results["stages"]}
    assert list(ndcg) == ["bm25", base, tuned]
    assert ndcg["bm25"] < 0.5  # BM25 ranks the repeated-word hard negatives first
    assert ndcg[tuned] - ndcg[base] >= LIFT, ndcg
    assert ndcg[tuned] >= 0.8, ndcg
    for stage in ndcg:  # one table, one run file per model, one report
        assert stage in printed and (out / "runs" / f"{stage}.trec").is_file()
    report = (out / "report.html").read_text()
    assert base in report and tuned in report and f"{tiny_base.name}: " in report


def test_the_model_directory_serves_and_tells_what_it_was_trained_on(trained: TrainResult, tmp_path: Path) -> None:
    model = trained.model_dir
    assert (model / "onnx" / "model.onnx").is_file() and (model / "model.safetensors").is_file()
    assert not (model / "modules.json").exists()  # a plain Hugging Face sequence-classification directory
    summary = json.loads((model / "training.json").read_text())
    assert summary["counts"]["train_queries"] == 40 and summary["counts"]["dev_queries"] == 10
    assert summary["mining"]["judged_negatives"] == 40 and summary["mining"]["mined_negatives"] == 80
    assert summary["mining"]["pairs"] == 160
    assert summary["onnx_max_abs_diff"] < 1e-4  # the ONNX graph scores like the trained weights
    assert [e["epoch"] for e in summary["dev_per_epoch"]] == [float(i) for i in range(1, len(summary["dev_per_epoch"]) + 1)]
    assert summary["dev_ndcg@10_after"] > summary["dev_ndcg@10_before"]
    card = (model / "README.md").read_text()
    assert "| train queries (with a relevant document) | 40 |" in card and "| fine-tuned |" in card
    pairs = [("is the claim confirmed", "the claim is confirmed"), ("is the claim confirmed", "unrelated")]
    expected = Reranker(model).score_pairs(pairs)
    with ServerProcess(["--model", str(model), "--threads", "1"], log_path=tmp_path / "serve.log") as server:
        answer = httpx.post(f"{server.url}/rerank", json={"query": pairs[0][0], "texts": [d for _, d in pairs]},
                            timeout=60)
    assert answer.status_code == 200, answer.text
    served = sorted(answer.json(), key=lambda item: item["index"])
    assert [item["score"] for item in served] == pytest.approx(list(expected), abs=1e-6)


# -- bad input: refused with counts, before any training ---------------------------------------------
def _copy(learnable: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(learnable, tmp_path / "data"))


def _append(path: Path, lines: list[str]) -> None:
    with open(path, "a") as handle:
        handle.writelines(line + "\n" for line in lines)


def test_qrels_naming_unknown_queries_and_documents(learnable: Path, tiny_base: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    data = _copy(learnable, tmp_path)
    _append(data / "qrels" / "train.tsv", ["q0\tnope-1\t1", "q1\tnope-2\t1", "q2\tnope-2\t0", "ghost\td0-rel\t1"])
    _append(data / "qrels" / "dev.tsv", ["ghost2\tnope-3\t1"])
    with pytest.raises(InvalidInput) as caught:
        load_training_data(data)
    message = str(caught.value)
    assert "2 judged queries are not in queries.jsonl (ghost, ghost2)" in message
    assert "3 judged documents are not in corpus.jsonl (4 judgements name them: nope-1, nope-2, nope-3)" in message
    out = tmp_path / "out"
    assert main(["train", "--data", str(data), "--base", str(tiny_base), "--out", str(out), "--no-progress"]) == 2
    assert "judged documents are not in corpus.jsonl" in capsys.readouterr().err
    assert not (out / "checkpoints").exists() and not (out / "base").exists()  # stopped before the model


def test_empty_and_missing_splits(learnable: Path, tmp_path: Path) -> None:
    data = _copy(learnable, tmp_path)
    (data / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\n")
    with pytest.raises(InvalidInput, match="the dev split 'dev' is empty"):
        load_training_data(data)
    with pytest.raises(InvalidInput, match="no train split 'training'.*available: dev, test, train"):
        load_training_data(data, train_split="training")
    with pytest.raises(InvalidInput, match="no dev split 'valid'.*--dev-split none"):
        load_training_data(data, dev_split="valid")
    (data / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq0\td0-neg0\t0\n")
    with pytest.raises(InvalidInput, match="no relevant judgement .* in any of its 1 queries"):
        load_training_data(data, dev_split=None)


def test_dev_overlapping_train(learnable: Path, tmp_path: Path) -> None:
    data = _copy(learnable, tmp_path)
    train_lines = (data / "qrels" / "train.tsv").read_text().splitlines()[1:]
    _append(data / "qrels" / "dev.tsv", [line for line in train_lines if line.startswith(("q0\t", "q1\t"))])
    with pytest.raises(InvalidInput, match=r"2 of 12 dev queries are also in the train split \(q0, q1\)"):
        load_training_data(data)


def test_jsonl_examples_and_their_overlap(tmp_path: Path) -> None:
    rows = [{"query": "red shoes", "positive": "red running shoes", "negatives": ["blue hat"]},
            {"query": "green tea", "positive": ["green tea leaves", "matcha"]}]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "dev.jsonl").write_text(json.dumps({"query": "black coffee", "positive": "espresso"}) + "\n")
    data = load_training_data(jsonl_to_beir(tmp_path / "train.jsonl", tmp_path / "dev.jsonl", tmp_path / "a"))
    assert data.counts()["train_positives"] == 3 and data.counts()["train_judged_negatives"] == 1
    assert data.documents == 5 and list(data.dev or {}) == ["q2"]
    (tmp_path / "dev.jsonl").write_text(json.dumps({"query": "green tea", "positive": "sencha"}) + "\n")
    with pytest.raises(InvalidInput, match="1 of 1 dev queries are also in the train split"):
        load_training_data(jsonl_to_beir(tmp_path / "train.jsonl", tmp_path / "dev.jsonl", tmp_path / "b"))
    (tmp_path / "bad.jsonl").write_text(json.dumps({"query": "x", "negatives": ["y"]}) + "\n")
    with pytest.raises(InvalidInput, match="bad.jsonl:1: 'positive' must be"):
        jsonl_to_beir(tmp_path / "bad.jsonl", None, tmp_path / "c")


def test_base_model_that_is_not_a_text_encoder(tmp_path: Path, tiny_base: Path) -> None:
    vision = tmp_path / "vision"
    vision.mkdir()
    (vision / "config.json").write_text(json.dumps({"model_type": "vit", "architectures": ["ViTModel"]}))
    (vision / "model.safetensors").write_bytes(b"\0" * 16)
    with pytest.raises(ModelError, match="'vit' model, not a text encoder"):
        prepare_base(vision, tmp_path / "staged")
    untokenized = Path(shutil.copytree(tiny_base, tmp_path / "no-tokenizer"))
    for name in ("tokenizer.json", "vocab.txt"):
        (untokenized / name).unlink()
    with pytest.raises(ModelError, match="has no text tokenizer"):
        prepare_base(untokenized, tmp_path / "staged")


def test_a_second_run_into_the_same_directory_needs_resume(trained: TrainResult, learnable: Path,
                                                           tiny_base: Path) -> None:
    with pytest.raises(InvalidInput, match="already holds a training run: pass --resume"):
        train(config(learnable, tiny_base, trained.model_dir.parent))
    with pytest.raises(InvalidInput, match=r"--resume with other options .*\(epochs differ\)"):
        train(config(learnable, tiny_base, trained.model_dir.parent, epochs=9, resume=True))


# -- SIGKILL, then --resume ---------------------------------------------------------------------------
def test_sigkill_then_resume_continues_from_the_last_checkpoint(learnable: Path, tiny_base: Path,
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    command = [sys.executable, "-m", "crossrank.cli", "train", "--data", str(learnable), "--base", str(tiny_base),
               "--out", str(out), "--dev-split", "none", "--epochs", "4", "--batch-size", "16",
               "--learning-rate", "3e-3", "--max-length", "48", "--no-progress"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while last_complete_checkpoint(out / "checkpoints") is None and process.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint was written"
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode() if process.stderr else ""
    checkpoint = last_complete_checkpoint(out / "checkpoints")
    assert checkpoint is not None and not (out / "model").exists()
    done = int(checkpoint.name.split("-")[1])
    examples = (out / "examples.jsonl").read_bytes()
    torn = out / "checkpoints" / f"checkpoint-{done + 10}"  # as if killed while saving the next one
    torn.mkdir(exist_ok=True)
    (torn / "model.safetensors").write_bytes(b"partial")

    resumed = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((out / "summary.json").read_text())
    total = 4 * 10  # 160 examples / batch 16 = 10 steps per epoch
    assert summary["resumed_from_step"] == done
    assert summary["steps_run_this_session"] == total - done  # no finished step is run again
    assert summary["global_step"] == total
    assert (out / "examples.jsonl").read_bytes() == examples  # the very same training data
    assert f"resumed from step {done}" in resumed.stdout
    assert Reranker(out / "model", cache_dir=tmp_path / "cache").score("apple river", ["a", "b"]).shape == (2,)


# -- mining -------------------------------------------------------------------------------------------
def test_mined_negatives_exclude_positives_and_likely_false_negatives(learnable: Path, tmp_path: Path) -> None:
    from crossrank.evaluate.runner import prepare_index
    from crossrank.train.mine import mine_negatives

    data = load_training_data(learnable)
    index, _ = prepare_index(data.dataset, tmp_path / "index", encoder=None, encoder_name=None, progress=False)
    retriever = index.retriever("bm25")
    mined = mine_negatives(data, retriever, per_query=3, depth=30, progress=False)
    for qid, negatives in mined.negatives.items():
        assert not set(negatives) & set(data.positives(qid))
        assert {doc for doc, grade in data.train[qid].items() if grade == 0} <= set(negatives)
        assert len(negatives) == 3  # the judged negative first, then two mined ones
    assert (mined.judged, mined.mined, mined.dropped_false_negatives) == (40, 80, 0)

    def doubting_is_relevant(query: str, texts: Sequence[str]) -> list[float]:  # a base that loves "rumored"
        return [1.0 if "rumored" in t.split() else 0.9 if set(t.split()) & set(CONFIRMING) else 0.1 for t in texts]

    filtered = mine_negatives(data, retriever, per_query=3, depth=30, scorer=doubting_is_relevant, margin=0.1,
                              progress=False)
    kept = [text for negatives in filtered.negatives.values() for text in negatives.values()]
    assert filtered.dropped_false_negatives > 0 and filtered.mined > 0
    judged = {data.texts[d] for docs in data.train.values() for d, g in docs.items() if g == 0}
    assert not [t for t in kept if "rumored" in t.split() and t not in judged]  # judged negatives stay


def test_false_negative_filter_needs_a_trained_head(learnable: Path, tmp_path: Path) -> None:
    body = build_random_model(tmp_path / "body", num_labels=None, **TINY)
    with pytest.raises(InvalidInput, match="has no trained head"):
        train(config(learnable, body, tmp_path / "out", false_negative_margin=0.1))


def test_listwise_loss_trains(learnable: Path, tiny_base: Path, tmp_path: Path) -> None:
    result = train(config(learnable, tiny_base, tmp_path / "out", loss="listnet", epochs=1, dev_split=None))
    assert result.summary["mining"]["examples"] == 40 and result.summary["mining"]["pairs"] == 160
    assert result.summary["global_step"] == 3 and (result.model_dir / "onnx" / "model.onnx").is_file()
