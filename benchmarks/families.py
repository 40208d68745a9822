"""Pairs/s per reranker family: crossrank exact and fast beside sentence-transformers, same run.

For each shape of ``crossrank bench --shape`` (random weights, the architecture of the
catalogued model: same compute), runs ``crossrank bench --compare --peers sentence-transformers``
on titles and passages and prints one table. The LLM shapes take seconds per pair on a CPU, so
they score a handful of documents.

    python benchmarks/families.py                              # every shape, this CPU
    python benchmarks/families.py --shapes minilm-l6 ettin-17m --docs 16
    python benchmarks/families.py --device cuda                # on a GPU machine (fp32 exact, fp16 fast)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from crossrank.bench.shapes import SHAPES


def run_shape(shape: str, out: Path, docs: int, repeats: int, device: str) -> dict:
    llm = SHAPES[shape].llm
    command = [sys.executable, "-c", "import sys; from crossrank.cli import main; sys.exit(main())",
               "bench", "--shape", shape, "--compare", "--peers", "sentence-transformers", "--kinds", "titles,passages",
               "--sizes", str(4 if llm else docs),
               "--repeats", str(3 if llm else repeats), "--cell-budget", "120", "--out", str(out),
               "--no-chart", "--quiet", "--device", device]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "bench.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--docs", type=int, default=32, help="documents per query for the encoder shapes (default 32)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", type=Path, default=Path("bench-families"))
    args = parser.parse_args()

    rows = []
    for shape in args.shapes:
        started = time.perf_counter()
        result = run_shape(shape, args.out / shape, args.docs, args.repeats, args.device)
        cells = {(c["backend"], c["kind"]): c for c in result["cells"]}
        rows.append((shape, result, cells))
        print(f"{shape}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    machine = rows[0][1]["machine"] if rows else {}
    print(f"\n{machine.get('gpu') or machine.get('cpu')} ({machine.get('cores')} cores); load average at end "
          f"{os.getloadavg()[0]:.1f}; pairs/s (median round); documents per query: {args.docs} "
          "(LLM shapes: 4)\n")
    print("| shape | kind | sentence-transformers | crossrank exact | crossrank fast | exact / ST | fast / ST "
          "| exact max abs diff | fast top-10 overlap |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for shape, _, cells in rows:
        for kind in ("titles", "passages"):
            st, exact, fast = (cells.get((b, kind)) for b in ("sentence-transformers", "crossrank-exact",
                                                              "crossrank-fast"))
            if not (exact and fast):
                continue
            if st is None:  # an LLM shape: sentence-transformers does not run it (see bench's warning)
                print(f"| {shape} | {kind} | — | {exact['pairs_per_s']:.2f} | {fast['pairs_per_s']:.2f} | — | — | — | — |")
                continue
            overlap = fast.get("top10_overlap")
            print(f"| {shape} | {kind} | {st['pairs_per_s']:.1f} | {exact['pairs_per_s']:.1f} | {fast['pairs_per_s']:.1f} "
                  f"| {exact['pairs_per_s'] / st['pairs_per_s']:.2f}× | {fast['pairs_per_s'] / st['pairs_per_s']:.2f}× "
                  f"| {exact['max_abs_diff']:.1e} | {overlap if overlap is not None else '—'} |")


if __name__ == "__main__":
    main()
