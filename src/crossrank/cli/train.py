"""``crossrank train``: fine-tune a cross-encoder on your judgements, with hard negatives from your index."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    from crossrank.train.run import LOSSES

    parser = sub.add_parser(
        "train",
        help="fine-tune a cross-encoder on your own judgements (hard negatives mined from crossrank's index)",
        description=(
            "Fine-tune a cross-encoder (or an encoder body, which gets a new head) on a BEIR-format directory "
            "(qrels/train.tsv, qrels/dev.tsv) or JSONL of {query, positive[, negatives]}. Hard negatives come "
            "from crossrank's own index (the first stage's top N minus the judged positives); training runs "
            "through sentence-transformers' CrossEncoder trainer; dev nDCG@10 (first stage + the model, computed "
            "as `crossrank eval` does) after each epoch picks the best epoch and stops early.\n\n"
            "Writes OUT/model: a Hugging Face model directory with onnx/model.onnx and a model card, loadable by "
            "Reranker, `crossrank serve` and `crossrank eval --model OUT/model`. Checkpoints go to OUT/checkpoints; "
            "after a crash, run the same command with --resume.\n\n"
            "examples:\n"
            "  crossrank train --data ./my-beir --base cross-encoder/ms-marco-MiniLM-L6-v2 --out ft\n"
            "  crossrank train --data train.jsonl --dev-data dev.jsonl --base sentence-transformers/all-MiniLM-L6-v2 "
            "--out ft --epochs 5\n"
            "  crossrank train --data ./my-beir --base ./ce --out ft --resume"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data = parser.add_argument_group("data")
    data.add_argument("--data", required=True, help="a BEIR-format directory or a JSONL file of {query, positive[, negatives]}")
    data.add_argument("--dev-data", help="with JSONL --data: a JSONL file of held-out dev examples")
    data.add_argument("--train-split", default="train", help="qrels split to train on (default: train)")
    data.add_argument("--dev-split", default="dev",
                      help="qrels split for dev nDCG@10 and early stopping; 'none' trains without (default: dev)")
    model = parser.add_argument_group("model")
    model.add_argument("--base", required=True,
                       help="a cross-encoder (hub id, alias, directory) or an encoder body that gets a new head")
    model.add_argument("--revision", help="hub revision of --base")
    model.add_argument("--max-length", type=int, default=256, help="tokens per (query, document) pair (default: 256)")
    mining = parser.add_argument_group("hard negatives")
    mining.add_argument("--first-stage", choices=("bm25", "dense", "hybrid"), default="bm25",
                        help="where negatives come from, and the dev first stage (default: bm25)")
    mining.add_argument("--encoder", help="bi-encoder for dense/hybrid (default: sentence-transformers/all-MiniLM-L6-v2)")
    mining.add_argument("--index", type=Path, help="an index of the corpus (e.g. the one `crossrank index` or `crossrank "
                        "eval --index` built) to mine from (default: built at OUT/index)")
    mining.add_argument("--negatives", type=int, default=4, help="negatives per query (default: 4)")
    mining.add_argument("--mine-depth", type=int, default=30, help="first-stage candidates searched per query (default: 30)")
    mining.add_argument("--false-negative-margin", type=float,
                        help="drop candidates the base model scores above (weakest positive's score - MARGIN): likely "
                        "unjudged relevant documents (needs a base with a trained head; e.g. 0.1)")
    training = parser.add_argument_group("training")
    training.add_argument("--loss", choices=LOSSES, default="bce",
                          help="bce: pointwise binary cross-entropy with graded labels; listnet/lambda: listwise per query "
                          "(default: bce)")
    training.add_argument("--epochs", type=int, default=3, help="epochs at most (default: 3)")
    training.add_argument("--batch-size", type=int, default=16, help="examples per step (default: 16)")
    training.add_argument("--learning-rate", type=float, default=2e-5, help="(default: 2e-5)")
    training.add_argument("--patience", type=int, default=2,
                          help="epochs without a better dev nDCG@10 before stopping (default: 2)")
    training.add_argument("--dev-top-n", type=int, default=100,
                          help="first-stage candidates reranked for dev nDCG@10 (default: 100)")
    training.add_argument("--seed", type=int, default=12, help="(default: 12)")
    training.add_argument("--device", choices=("cpu", "cuda"),
                          help="default: CUDA when torch has it, else the CPU")
    parser.add_argument("--out", type=Path, required=True, help="output directory (the model goes to OUT/model)")
    parser.add_argument("--resume", action="store_true", help="continue the run in OUT from its last complete checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from crossrank.train.run import TrainConfig, train

    config = TrainConfig(
        data=args.data, base=args.base, out=args.out, dev_data=args.dev_data, train_split=args.train_split,
        dev_split=None if args.dev_split.lower() == "none" else args.dev_split, revision=args.revision,
        first_stage=args.first_stage, encoder=args.encoder, index=args.index, negatives=args.negatives,
        mine_depth=args.mine_depth,
        false_negative_margin=args.false_negative_margin, loss=args.loss, epochs=args.epochs,
        batch_size=args.batch_size, learning_rate=args.learning_rate, max_length=args.max_length,
        patience=args.patience, dev_top_n=args.dev_top_n, dev_depth=max(100, args.dev_top_n), seed=args.seed,
        device=args.device, resume=args.resume, progress=not args.no_progress,
    )
    result = train(config)
    print(format_summary(result.summary, result.model_dir))
    return 0


def format_summary(summary: dict[str, Any], model_dir: Path) -> str:
    counts, mining = summary["counts"], summary["mining"]
    before, after = summary.get("dev_ndcg@10_before"), summary.get("dev_ndcg@10_after")
    lines = [
        "",
        f"trained on {counts['train_queries']} queries ({counts['train_positives']} positives, "
        f"{mining['judged_negatives']} judged + {mining['mined_negatives']} mined negatives from "
        f"{mining['first_stage']} top {mining['depth']}, {mining['dropped_as_false_negatives']} dropped as likely "
        f"false negatives) = {mining['pairs']} pairs; {counts['documents']} documents",
        f"base: {summary['base']['name']}" + (" (new head)" if summary["base"]["new_head"] else ""),
        f"device: {summary['device']}; loss {summary['config']['loss']}; {summary['global_step']} steps "
        f"({summary['steps_run_this_session']} in this run"
        + (f", resumed from step {summary['resumed_from_step']}" if summary["resumed_from_step"] else "")
        + f"); {summary['train_seconds_this_session']:.1f}s, {summary['pairs_per_second']} pairs/s"
        + ("; stopped early" if summary.get("stopped_early") else ""),
    ]
    if before is not None and after is not None:
        per_epoch = ", ".join(f"{e['dev_ndcg@10']:.4f}" for e in summary["dev_per_epoch"])
        lines.append(f"dev nDCG@10 ({counts['dev_queries']} queries): base {before:.4f} -> best {after:.4f} "
                     f"({after - before:+.4f}); per epoch: {per_epoch}")
    lines.append(f"model:   {model_dir}  (onnx/model.onnx, README.md model card)")
    lines.append(f"next:    crossrank eval --data DATA --split test --stages bm25,bm25+ce --model {model_dir}")
    return "\n".join(lines)
