"""Options shared by commands that load a cross-encoder."""

from __future__ import annotations

import argparse
from typing import Any

from crossrank.models.llm_head import TEMPLATES
from crossrank.models.remote_code import MEANING

DEFAULT_MODEL = "cross-encoder/ms-marco-MiniLM-L6-v2"


def add_reranker_options(
    parser: argparse.ArgumentParser, *, default_model: str | None = DEFAULT_MODEL, several: bool = False
) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        action="append" if several else "store",
        default=None if several else default_model,
        help="hub id, catalogue alias (see `crossrank models`) or local directory "
        + ("; repeat it to compare several models side by side " if several else "")
        + f"(default: {default_model})",
    )
    group.add_argument("--revision", help="hub branch, tag or commit to pin (default: main)")
    group.add_argument(
        "--max-length", type=int, help="max tokens per (query, document) pair; lower is faster, "
        "but more of each document is cut (default: the model's limit)"
    )
    group.add_argument(
        "--batch-size", type=int, default=32,
        help="pairs per model call; larger batches amortise overhead but pad more (default: 32)",
    )
    group.add_argument(
        "--threads", type=int, help="CPU threads for inference (default: all cores)"
    )
    group.add_argument(
        "--mode", choices=("exact", "fast", "auto", "int8"), default="exact",
        help="exact: fp32, the model's own scores; fast: bf16 OpenVINO on CPUs with AMX/AVX-512 BF16 "
        "(fp16 on a GPU), several times faster, same ranking; auto: fast where available; int8: int8 calibrated "
        "on --calibration by ONNX Runtime or OpenVINO, whichever measured faster here, ops that move the ranking "
        "kept in higher precision (CPU) (default: exact)",
    )
    group.add_argument(
        "--calibration", metavar="FILE",
        help="--mode int8: your own (query, document) pairs to calibrate on, JSON Lines "
        '{"query": ..., "documents": [...]} or TSV query<TAB>document (quantized once, cached)',
    )
    group.add_argument(
        "--device", choices=("cpu", "cuda"), default="cpu",
        help="cuda: run on an NVIDIA GPU (needs a CUDA build of torch: pip install 'crossrank[torch]'); "
        "falls back to the CPU with a warning when none is usable (default: cpu)",
    )
    add_trust_remote_code(group)
    group.add_argument(
        "--template", choices=tuple(TEMPLATES),
        help="the prompt template of an LLM yes/no reranker whose files do not name one and that the catalogue "
        "does not know (a bare *ForCausalLM repo); a causal LM is never taken for a reranker without it",
    )
    group.add_argument(
        "--raw-scores", action="store_true", help="print raw logits instead of sigmoid scores in 0..1"
    )
    group.add_argument(
        "--long-documents", choices=("truncate", "window"), default="truncate",
        help="truncate: score the start of long documents (fast); window: score overlapping "
        "windows and keep the best (finds relevant text past the limit, costs one pass per window)",
    )


def add_trust_remote_code(group: Any) -> None:
    """``--trust-remote-code``: the one opt-in to a model repository's own Python code."""
    group.add_argument(
        "--trust-remote-code", action="store_true",
        help=f"allow a model whose repository ships its own modelling code: this {MEANING} "
        "(default: such models are refused; a repository's ONNX file never needs it)",
    )


def reranker_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "trust_remote_code": bool(getattr(args, "trust_remote_code", False)),
        "revision": args.revision,
        "max_length": args.max_length,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "activation": "none" if args.raw_scores else "sigmoid",
        "long_documents": args.long_documents,
        "mode": args.mode,
        "calibration": getattr(args, "calibration", None),
        "providers": ["cuda"] if args.device == "cuda" else None,
        "template": args.template,
    }
