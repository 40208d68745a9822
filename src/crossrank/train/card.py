"""The model card (README.md) of a trained model: what it was trained on, and what it buys."""

from __future__ import annotations

from typing import Any


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def model_card(summary: dict[str, Any]) -> str:
    config, counts, mining, base = summary["config"], summary["counts"], summary["mining"], summary["base"]
    before, after = summary.get("dev_ndcg@10_before"), summary.get("dev_ndcg@10_after")
    lift = f"{after - before:+.4f}" if before is not None and after is not None else "-"
    epochs = "\n".join(f"| {e['epoch']:g} | {e['step']} | {e['dev_ndcg@10']:.4f} |" for e in summary.get("dev_per_epoch", []))
    head = "a new classification head (random init) on the encoder body" if base["new_head"] else "its own head"
    return f"""---
library_name: sentence-transformers
pipeline_tag: text-ranking
base_model: {base['name']}
tags: [cross-encoder, reranker, crossrank]
---

# Cross-encoder fine-tuned with crossrank

Fine-tuned from `{base['name']}` ({base['model_type']}, {head}) on `{counts['dataset']}`.
Load it with `crossrank.Reranker("<this directory>")`, `crossrank serve` or `crossrank eval --model`;
`onnx/model.onnx` is the ONNX Runtime graph crossrank runs (sentence-transformers' `CrossEncoder`
loads the weights).

## Data

| | |
|---|---:|
| corpus documents | {counts['documents']} |
| train queries (with a relevant document) | {counts['train_queries']} |
| train positives | {counts['train_positives']} |
| judged negatives (grade 0) | {mining['judged_negatives']} |
| hard negatives mined ({mining['first_stage']} top {mining['depth']} minus positives) | {mining['mined_negatives']} |
| negatives per query (asked) | {mining['negatives_per_query']} |
| dropped as likely false negatives (margin {_fmt(mining['false_negative_margin'])}) | {mining['dropped_as_false_negatives']} |
| training pairs | {mining['pairs']} |
| grades | {', '.join(map(str, counts['grades']))} |
| dev queries (held out) | {counts['dev_queries']} |

## Training

Loss `{config['loss']}`, {config['epochs']} epochs at most (early stopping after {config['patience']} without
a better dev nDCG@10), batch {config['batch_size']}, learning rate {config['learning_rate']}, max length
{config['max_length']}, seed {config['seed']}, on `{summary.get('device')}`; {summary.get('global_step')} steps,
{_fmt(summary.get('pairs_per_second'))} pairs/s.

## Dev nDCG@10 ({config['first_stage']} top {config['dev_top_n']} reranked)

| model | nDCG@10 |
|---|---:|
| base | {_fmt(before)} |
| fine-tuned | {_fmt(after)} ({lift}) |

| epoch | step | dev nDCG@10 |
|---:|---:|---:|
{epochs}
"""
