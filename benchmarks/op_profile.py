"""Where an ONNX model's time goes, per operator type: ONNX Runtime's own profiler on a fixed batch.

Ops the int8 engine adds are counted apart: the outlier split's Gather, MatMul and Add (named
``.../outliers...``) and SmoothQuant's Mul (``.../smoothquant``). Point it at a cached model, e.g. the int8 mode's
``<cache>/int8/<key>/model.onnx`` or the exact mode's ``<cache>/first-token/<key>/model.onnx``.

Usage: python benchmarks/op_profile.py MODEL.onnx [--rows 100] [--tokens 24] [--threads 2] [--calls 10]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="an ONNX cross-encoder graph (input_ids, attention_mask, ...)")
    parser.add_argument("--rows", type=int, default=100, help="pairs per call (default 100)")
    parser.add_argument("--tokens", type=int, default=24, help="tokens per pair (default 24: a title)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=10, help="profiled calls after 3 warm-up calls (default 10)")
    args = parser.parse_args(argv)
    if not args.model.is_file():
        parser.error(f"{args.model} is not a file")

    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.gettempdir()) / f"crossrank-op-profile-{os.getpid()}")
    session = ort.InferenceSession(str(args.model), options, providers=["CPUExecutionProvider"])
    ids = np.random.default_rng(0).integers(1000, 20000, (args.rows, args.tokens)).astype(np.int64)
    feeds = {i.name: ids if "input_ids" in i.name else
             np.ones_like(ids) if "mask" in i.name else np.zeros_like(ids) for i in session.get_inputs()}
    warm_up = 3
    for _ in range(warm_up):
        session.run(None, feeds)
    started = time.perf_counter()
    for _ in range(args.calls):
        session.run(None, feeds)
    wall_ms = 1e3 * (time.perf_counter() - started) / args.calls
    trace = Path(session.end_profiling())
    try:
        events = json.loads(trace.read_text())
    finally:
        trace.unlink()
    total: collections.Counter[str] = collections.Counter()
    count: collections.Counter[str] = collections.Counter()
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        node = event["name"].removesuffix("_kernel_time")
        op = event["args"]["op_name"]
        tag = "outlier split" if "/outliers" in node else "smoothquant" if op == "Mul" and "/smoothquant" in node else ""
        key = op + (f" ({tag})" if tag else "")
        total[key] += event["dur"]
        count[key] += 1
    calls = warm_up + args.calls
    kernels_ms = sum(total.values()) / 1e3 / calls
    print(f"{args.model}: {args.rows} rows x {args.tokens} tokens, {args.threads} threads: {wall_ms:.1f} ms per call "
          f"(kernels {kernels_ms:.1f} ms)\n")
    print("| operator | ms per call | share | nodes |\n|---|---:|---:|---:|")
    for key, micros in total.most_common():
        print(f"| {key} | {micros / 1e3 / calls:.2f} | {100 * micros / sum(total.values()):.1f} % | {count[key] // calls} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
