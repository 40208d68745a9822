"""``crossrank bench``: latency of crossrank's modes, and of the installed peers with --compare."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from crossrank.bench import ALL_PEERS as _ALL_PEERS
from crossrank.bench.shapes import SHAPES
from crossrank.errors import InvalidInput


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from exc
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("sizes must be positive")
    return values


def _str_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "bench",
        help="measure reranking latency (1/10/100 titles and passages), optionally against peers",
        description=(
            "Time crossrank on generated inputs (one query, N documents; titles ~15 words, "
            "passages ~150 words; the same text on every run) and print a table of median "
            "latency, plus p10/p90 and pairs/s. With --compare the installed peers "
            "(sentence-transformers, FastEmbed, FlashRank) score the identical inputs in the "
            "same run, interleaved round by round so that machine noise hits all alike, and "
            "the speed-up over sentence-transformers is printed. Writes bench.json and "
            "bench.png to --out.\n\n"
            "sentence-transformers' ONNX and OpenVINO backends (st-onnx, st-onnx-o3, st-openvino, "
            "st-openvino-int8: static int8 calibrated on 300 generated local texts) need packages that "
            "pin an older transformers, so they run in a separate environment: `make peers` builds "
            ".venv-peers, found by default in the current directory or crossrank's checkout, or "
            "pass --peer-python. Each peer row carries its top-10 overlap and Spearman against "
            "the first row (sentence-transformers torch fp32); measure them on a trained model.\n\n"
            "Without --model, a random-weight model with the exact shape of "
            "ms-marco-MiniLM-L6-v2 is built once and used (same compute as the trained one); "
            "--shape picks another catalogued family's architecture (ettin-17m, gte-modernbert-base, "
            "bge-reranker-v2-m3, qwen3-reranker-0.6b...).\n\n"
            "examples:\n  crossrank bench --compare --threads 2\n"
            "  crossrank bench --shape ettin-17m --compare --peers sentence-transformers\n"
            "  make peers && crossrank bench --compare --model ./trained-model  # with the ONNX/OpenVINO rows\n"
            "  crossrank bench --shape qwen3-reranker-0.6b --compare --peers sentence-transformers  "
            "# an LLM: 1 and 4 documents, 3 rounds"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model",
        help="hub id, alias or local directory (default: a random-weight ms-marco-MiniLM-L6-v2-shaped model)",
    )
    parser.add_argument(
        "--shape", choices=sorted(SHAPES),
        help="time a random-weight model with this catalogued family's architecture (built once, cached; "
        "same compute as the trained model) instead of --model (default: minilm-l6)",
    )
    parser.add_argument(
        "--modes", type=_str_list, default=["exact", "fast"],
        help="crossrank modes to time, comma-separated from exact,fast,auto,int8 (default: exact,fast)",
    )
    parser.add_argument(
        "--calibration", type=Path, default=None, metavar="FILE",
        help="pairs the int8 mode calibrates on (JSON Lines or TSV, as `rerank --calibration`; default: 16 "
        "queries of each kind made with seeds no timed workload uses)",
    )
    parser.add_argument(
        "--compare", action="store_true",
        help="also time the installed peers on the same model and inputs (slower: the peers are)",
    )
    parser.add_argument(
        "--peers", type=_str_list, default=list(_ALL_PEERS),
        help=f"peers for --compare (default: {','.join(_ALL_PEERS)}; missing ones are skipped)",
    )
    parser.add_argument(
        "--peer-python", type=Path, default=None,
        help="Python of the environment `make peers` builds, for the st-onnx/st-openvino peers "
        "(default: .venv-peers/bin/python in the current directory or crossrank's checkout, if there)",
    )
    parser.add_argument(
        "--sizes", type=_int_list, default=None,
        help="documents per query (default: 1,10,100; 1,4 for an LLM --shape, seconds per pair on a CPU)",
    )
    parser.add_argument(
        "--kinds", type=_str_list, default=["titles", "passages"], help="document kinds (default: titles,passages)"
    )
    parser.add_argument(
        "--repeats", type=int, default=None,
        help="timed rounds per workload; more rounds steady the median (default: 20; 3 for an LLM --shape)",
    )
    parser.add_argument(
        "--cell-budget", type=float, default=60.0,
        help="stop a workload's rounds after this many seconds, once 5 rounds are done (default: 60)",
    )
    parser.add_argument(
        "--threads", type=int, default=None,
        help="CPU threads for every backend (default: all cores available to this process)",
    )
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default="cpu",
        help="cuda: run crossrank (fp16 fast / fp32 exact) and sentence-transformers on the GPU; "
        "the CPU-only peers are skipped (default: cpu)",
    )
    parser.add_argument("--out", default="bench-results", help="directory for bench.json and bench.png")
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG chart (no matplotlib needed)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from crossrank.bench import bench_model, close_backends, prepare_backends, run_bench
    from crossrank.bench.peer_env import default_peer_python
    from crossrank.bench.report import (
        caveats,
        detail_table,
        latency_table,
        machine,
        ratio_table,
        write_chart,
        write_json,
    )
    from crossrank.bench.shapes import is_random

    if args.shape and args.model:
        raise InvalidInput("give --model or --shape, not both")
    llm = bool(args.shape) and SHAPES[args.shape].llm
    args.sizes = args.sizes or ([1, 4] if llm else [1, 10, 100])
    args.repeats = args.repeats if args.repeats is not None else (3 if llm else 20)
    for mode in args.modes:
        if mode not in ("exact", "fast", "auto", "int8"):
            raise InvalidInput(f"--modes: unknown mode {mode!r} (choose from exact, fast, auto, int8)")
    if args.calibration is not None and "int8" not in args.modes:
        raise InvalidInput("--calibration is for the int8 mode: add int8 to --modes")
    for kind in args.kinds:
        if kind not in ("titles", "passages"):
            raise InvalidInput(f"--kinds: unknown kind {kind!r} (choose from titles, passages)")
    if args.repeats < 1:
        raise InvalidInput("--repeats must be at least 1")
    if args.cell_budget <= 0:
        raise InvalidInput("--cell-budget must be a number of seconds > 0")
    if args.threads is not None and args.threads < 1:
        raise InvalidInput("--threads must be at least 1 (omit it to use every core available)")
    if args.device == "cuda":
        from crossrank.runtime.torch import cuda_available

        if not cuda_available():
            raise InvalidInput(
                "--device cuda: torch sees no CUDA GPU on this machine (a GPU comparison needs an NVIDIA GPU "
                "and a CUDA build of torch); drop --device to benchmark the CPU"
            )
    threads = args.threads or len(os.sched_getaffinity(0))
    load_at_start = os.getloadavg()[0]  # before this run adds its own
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)  # a bad --out fails now, not after the whole run

    def progress(message: str) -> None:
        if not args.quiet:
            print(f"\r\033[K{message}", end="", file=sys.stderr, flush=True)

    if args.peer_python is not None and not args.peer_python.is_file():
        raise InvalidInput(f"--peer-python {args.peer_python} does not exist (build it with `make peers`)")
    peer_python = args.peer_python or default_peer_python()
    model = args.model or bench_model(args.shape or "minilm-l6")
    with tempfile.TemporaryDirectory(prefix="crossrank-bench-") as work:  # the peers' model copies
        backends = prepare_backends(
            model, modes=args.modes, peers=args.peers if args.compare else [], threads=threads,
            work_dir=Path(work), progress=progress, device=args.device, peer_python=peer_python,
            calibration=args.calibration,
        )
        try:
            result = run_bench(
                backends,
                sizes=args.sizes,
                kinds=args.kinds,
                repeats=args.repeats,
                min_repeats=min(5, args.repeats),
                cell_budget_s=args.cell_budget,
                progress=progress,
            )
        finally:
            close_backends(backends)
    if not args.quiet:
        print("\r\033[K", end="", file=sys.stderr, flush=True)
    info = machine()
    print(f"model: {model}  threads: {threads}  cpu: {info['cpu']} ({info['cores']} cores; {', '.join(info['isa'])})")
    if args.device == "cuda":
        print(f"gpu: {info['gpu'] or 'none seen by torch'}")
    print(f"median latency of one query against N documents ({args.repeats} rounds max, interleaved):\n")
    print(latency_table(result))
    names = [b.name for b in backends]
    if "sentence-transformers" in names:
        print()
        print(ratio_table(result, "sentence-transformers"))
    print()
    print(detail_table(result))
    print(f"\nscores compared with {backends[0].label} (max abs diff of sigmoid scores; top-10 overlap; Spearman)")
    notes = caveats(load_at_start, info["cores"], is_random(model))
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    settings = {
        "model": str(model), "threads": threads, "modes": args.modes, "sizes": args.sizes,
        "kinds": args.kinds, "repeats": args.repeats, "cell_budget_s": args.cell_budget, "device": args.device,
        "warnings": notes, "peer_python": str(peer_python) if peer_python else None,
    }
    write_json(result, settings, out / "bench.json")
    print(f"wrote {out / 'bench.json'}", end="")
    if not args.no_chart:
        write_chart(result, out / "bench.png", f"{Path(str(model)).name}, {threads} threads, {info['cpu']}")
        print(f" and {out / 'bench.png'}", end="")
    print()
    return 0
