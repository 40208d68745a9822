"""``crossrank train`` as a library call: data -> index -> hard negatives -> trainer -> model directory.

>>> result = train(TrainConfig(data="my-beir-dir", base="cross-encoder/ms-marco-MiniLM-L6-v2", out=Path("ft")))  # doctest: +SKIP
>>> Reranker(result.model_dir).rank("query", ["a", "b"])  # doctest: +SKIP

Layout of ``out``: ``data/`` (JSONL input as BEIR), ``index/`` (the first stage),
``base/`` (the base model's plain files), ``examples.jsonl`` (the mined training examples,
reused on resume so the resumed run sees the very same data), ``checkpoints/`` (one per
epoch, the trainer's own), ``run.json`` (what was trained on), and ``model/``: the result in
the Hugging Face layout with ``onnx/model.onnx`` and a model card, moved into place only
when complete.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from crossrank.errors import InvalidInput
from crossrank.extras import require
from crossrank.train.base import BaseModel, prepare_base
from crossrank.train.checkpoints import clear_incomplete, last_complete_checkpoint
from crossrank.train.data import TrainingData, jsonl_to_beir, load_training_data
from crossrank.train.examples import build_examples, read_examples, write_examples
from crossrank.train.finish import finish_model

log = logging.getLogger(__name__)

Loss = Literal["bce", "listnet", "lambda"]
LOSSES: tuple[str, ...] = ("bce", "listnet", "lambda")
#: the options a resumed run must share with the run it resumes
_SAME_ON_RESUME = ("data", "dev_data", "train_split", "dev_split", "base", "first_stage", "negatives", "loss",
                   "epochs", "batch_size", "learning_rate", "seed", "max_length")


@dataclass
class TrainConfig:
    data: str  #: a BEIR directory, or a JSONL file of {query, positive[, negatives]}
    base: str  #: a cross-encoder or an encoder body (hub id, alias or directory)
    out: Path
    dev_data: str | None = None  #: with JSONL data: a JSONL file of dev examples
    train_split: str = "train"
    dev_split: str | None = "dev"  #: None: no dev evaluation (no early stopping, the last epoch is kept)
    revision: str | None = None
    first_stage: str = "bm25"  #: bm25, dense or hybrid: where hard negatives come from
    encoder: str | None = None  #: bi-encoder for dense/hybrid mining
    index: Path | None = None  #: an index of the corpus to mine from (default: built at OUT/index)
    negatives: int = 4  #: negatives per query
    mine_depth: int = 30  #: first-stage candidates searched per query
    false_negative_margin: float | None = None  #: drop candidates the base scores within this of a positive
    loss: str = "bce"
    epochs: int = 3
    batch_size: int = 16
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    max_length: int = 256
    patience: int = 2  #: epochs without a better dev nDCG@10 before stopping
    dev_top_n: int = 100
    dev_depth: int = 100
    seed: int = 12
    device: str | None = None  #: None: CUDA when torch has it, else the CPU
    resume: bool = False
    progress: bool = True
    cache_dir: Path | None = None  #: where crossrank caches ONNX exports (default: $HF_HOME/crossrank)


@dataclass
class TrainResult:
    model_dir: Path
    summary: dict[str, Any] = field(default_factory=dict)


def _check(config: TrainConfig) -> None:
    if config.loss not in LOSSES:
        raise InvalidInput(f"loss must be one of {', '.join(LOSSES)}, got {config.loss!r}")
    if config.first_stage not in ("bm25", "dense", "hybrid"):
        raise InvalidInput("first_stage must be bm25, dense or hybrid")
    for name in ("negatives", "mine_depth", "epochs", "batch_size", "max_length", "patience", "dev_top_n", "dev_depth"):
        if int(getattr(config, name)) < 1:
            raise InvalidInput(f"{name.replace('_', '-')} must be positive")
    if not config.learning_rate > 0:
        raise InvalidInput("learning rate must be positive")


def _dataset(config: TrainConfig) -> tuple[str, str | None]:
    """The BEIR directory to train on (JSONL input written as one under OUT/data) and the dev split."""
    path = Path(config.data)
    if path.is_file():
        if config.dev_data is not None and not Path(config.dev_data).is_file():
            raise InvalidInput(f"--dev-data {config.dev_data}: no such file")
        target = jsonl_to_beir(path, config.dev_data, Path(config.out) / "data")
        return str(target), ("dev" if config.dev_data is not None else None)
    if config.dev_data is not None:
        raise InvalidInput("--dev-data goes with JSONL training data; a BEIR directory has its dev split in qrels/")
    if not path.is_dir():
        raise InvalidInput(f"{config.data}: no such BEIR directory or JSONL file")
    return str(path), config.dev_split


def _resume_state(config: TrainConfig, out: Path) -> dict[str, Any] | None:
    state_path = out / "run.json"
    if not config.resume:
        if (out / "checkpoints").is_dir() and any((out / "checkpoints").iterdir()):
            raise InvalidInput(f"{out} already holds a training run: pass --resume to continue it, or choose "
                               "another --out")
        return None
    if not state_path.is_file():
        log.warning("nothing to resume in %s: starting a new run", out)
        return None
    state: dict[str, Any] = json.loads(state_path.read_text())
    changed = [k for k in _SAME_ON_RESUME if state["config"].get(k) != json.loads(json.dumps(asdict(config), default=str))[k]]
    if changed:
        raise InvalidInput(f"--resume with other options than the run in {out} ({', '.join(changed)} differ): "
                           "resume with the same options, or train into another --out")
    return state


def train(config: TrainConfig) -> TrainResult:
    """Check the data and the base model, mine negatives, train, evaluate, and write the model."""
    _check(config)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    state = _resume_state(config, out)
    dataset, dev_split = _dataset(config)
    data = load_training_data(dataset, train_split=config.train_split, dev_split=dev_split)
    base = prepare_base(config.base, out / "base", revision=config.revision)  # checked before any training
    if config.false_negative_margin is not None and base.new_head:
        raise InvalidInput(f"the false-negative filter scores with the base model, but {config.base} has no trained "
                           "head (its scores would be random): drop --false-negative-margin or start from a cross-encoder")

    require("datasets", "train", "Training a cross-encoder")
    from sentence_transformers.cross_encoder import CrossEncoder
    from transformers import set_seed

    if not config.progress:
        import transformers

        transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    set_seed(config.seed)  # a new head is initialised at random: the same seed gives the same head
    device = config.device
    model = CrossEncoder(str(base.directory), num_labels=1, max_length=config.max_length, device=device)
    log.info("training on %s", model.device)
    retriever = _retriever(config, data, out)
    examples_path = out / "examples.jsonl"
    if state is not None and examples_path.is_file():
        examples, mining = read_examples(examples_path), state["mining"]
    else:
        examples, mining = build_examples(data, retriever, model, config)
        write_examples(examples_path, examples)
    dev = None
    if data.dev is not None:
        from crossrank.train.dev import DevEvaluator

        dev = DevEvaluator(retriever, data.queries, data.dev, depth=config.dev_depth, top_n=config.dev_top_n,
                           batch_size=max(config.batch_size, 32))
    if state is None:
        before = dev.ndcg(model) if dev is not None else None
        state = {"config": json.loads(json.dumps(asdict(config), default=str)), "counts": data.counts(),
                 "base": {"name": base.name, "model_type": base.model_type, "new_head": base.new_head},
                 "mining": mining, "dev_ndcg@10_before": before}
        _write_json(out / "run.json", state)
    from crossrank.train.trainer import run_trainer

    checkpoints = out / "checkpoints"
    clear_incomplete(checkpoints)
    resume_from = last_complete_checkpoint(checkpoints) if config.resume else None
    outcome = run_trainer(model, examples, dev, config, checkpoints, resume_from)
    summary = {**state, **outcome, "seconds_total_this_session": round(time.perf_counter() - started, 1)}
    model_dir = finish_model(outcome["model"], out, summary, data, cache_dir=config.cache_dir)
    summary.pop("model", None)
    _write_json(out / "summary.json", summary)
    return TrainResult(model_dir, summary)


def _retriever(config: TrainConfig, data: TrainingData, out: Path) -> Any:
    from crossrank.evaluate.runner import DEFAULT_ENCODER, prepare_index

    encoder = None
    name = None
    if config.first_stage != "bm25":
        from crossrank.encode import Encoder

        name = config.encoder or DEFAULT_ENCODER
        encoder = Encoder(name)
    index, _ = prepare_index(data.dataset, Path(config.index) if config.index else out / "index", encoder=encoder,
                             encoder_name=name, progress=config.progress, managed=config.index is None)
    return index.retriever(config.first_stage, encoder=encoder)


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    os.replace(tmp, path)


__all__ = ["BaseModel", "TrainConfig", "TrainResult", "train"]
