"""``mode="int8"``: int8 matrix products calibrated on the user's pairs, the ranking kept, the faster engine measured.

Two engines quantize the first-token ONNX graph, each on the user's own (query, document) pairs
tokenized as they are served, each with a measured search that keeps ops in higher precision until
the ranking holds:

* ONNX Runtime (:mod:`crossrank.runtime.int8_onnx`, always installed): dynamic int8 on
  SmoothQuant-scaled weights; pays off on every x86 CPU, AVX2 included;
* OpenVINO (:mod:`crossrank.runtime.int8_openvino`, with ``crossrank[int8]``): NNCF static int8;
  pays off where the CPU has VNNI or AMX.

A candidate is judged on held-out calibration queries (each ranking every held-out document: lists
as long as served ones), as it will be served, against exact fp32; it passes when its worst held-out
query keeps Spearman >= 1 - ``max_drop`` and 9 of its top 10
(:meth:`~crossrank.runtime.calibration.Calibration.accepts`). Of the engines' results, the fastest
that passes on the held-out lists here is kept (``runtime="onnxruntime"`` or ``"openvino"`` forces one).

The quantized model and a report (the engine, ops kept in higher precision, fidelity, each candidate's
speed against exact here: a warning says when int8 does not pay off) are cached per graph, calibration
set, settings, engines and library versions, so a second load reads them back.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from crossrank.extras import require
from crossrank.models.derived import derived_dir, publish
from crossrank.runtime.base import Runtime
from crossrank.runtime.calibration import Calibration, Pair, held_out_warning
from crossrank.runtime.int8_openvino import serving_hint

log = logging.getLogger(__name__)

Feed = dict[str, np.ndarray]
#: turns pairs into the padded batches the model is fed in serving
Encoder = Callable[[list[Pair]], list[Feed]]
PURPOSE = "The int8 mode's OpenVINO engine (NNCF quantization)"
TOP_K = 10
#: the engines that quantize, in the order they are tried
ENGINES = ("onnxruntime", "openvino")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (1.0 for fewer than two items or constant scores that agree)."""
    if len(a) < 2:
        return 1.0
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    if ra.std() == 0 or rb.std() == 0:
        return 1.0 if np.array_equal(ra, rb) else 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def overlap(a: np.ndarray, b: np.ndarray, k: int = TOP_K) -> float:
    """Share of ``b``'s top k (at most half the list) that is also in ``a``'s."""
    k = max(1, min(k, len(a) // 2))
    return len(set(np.argsort(-a)[:k].tolist()) & set(np.argsort(-b)[:k].tolist())) / k


def fidelity(scores: np.ndarray, reference: np.ndarray) -> float:
    """One query's ranking fidelity: the mean of Spearman and the top-10 overlap (1.0: same ranking)."""
    return (spearman(scores, reference) + overlap(scores, reference)) / 2


def logits(run: Callable[[Feed], Any], feeds: list[Feed]) -> np.ndarray:
    return np.concatenate([np.asarray(run(feed), dtype=np.float64).reshape(len(feed["input_ids"]), -1)[:, 0]
                           for feed in feeds])


def overflow_fix() -> str:
    """NNCF's overflow fix for this CPU: ``"enable"`` (weights in 7 bits in every layer) where the CPU has no
    VNNI or AMX, whose int8 products then go through 16-bit sums that saturate (on a tiny BERT with AVX2
    only, scores of the fully quantized model correlated 0.68 with fp32 without it); else NNCF's default,
    ``"first_layer_only"``."""
    return "first_layer_only" if _int8_units() else "enable"


def _int8_units() -> list[str]:
    """The CPU's int8 dot-product instructions, strongest first (empty: only AVX2's multiply-adds)."""
    from crossrank.runtime.select import cpu_flags

    return [name for flag, name in (("amx_int8", "AMX"), ("avx512_vnni", "AVX-512 VNNI"), ("avx_vnni", "AVX-VNNI"))
            if flag in cpu_flags()]


def int8_instructions() -> str:
    """The CPU's int8 matrix instructions, for messages ("none (no VNNI or AMX)" where it has neither)."""
    return ", ".join(_int8_units()) or "none (no VNNI or AMX)"


def engines_to_try(forced: str | None) -> tuple[str, ...]:
    """The int8 engines quantized and timed here: ``forced`` alone, else ONNX Runtime (always installed) and
    OpenVINO where ``crossrank[int8]`` is."""
    if forced is not None:
        if forced not in ENGINES:
            raise ValueError(f"int8 engine must be one of {ENGINES}, not {forced!r}")
        if forced == "openvino":
            require("openvino", "int8", PURPOSE)
            require("nncf", "int8", PURPOSE)
        return (forced,)
    if all(_installed(m) for m in ("openvino", "nncf")):
        return ENGINES
    log.info("int8: OpenVINO's engine not measured (pip install 'crossrank[int8]' adds it; it pays off on "
             "CPUs with VNNI or AMX)")
    return ("onnxruntime",)


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _median_ms(runs: dict[str, Callable[[Feed], Any]], feeds: list[Feed], rounds: int = 3) -> dict[str, float]:
    """Median milliseconds each of ``runs`` takes to score ``feeds``, rounds interleaved."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():
        run(feeds[0])  # warm-up
    for _ in range(rounds):
        for name, run in runs.items():
            started = time.perf_counter()
            for feed in feeds:
                run(feed)
            times[name].append(time.perf_counter() - started)
    return {name: round(float(np.median(t)) * 1000, 1) for name, t in times.items()}


def _fill(onnx: Path, calibration: Calibration, encode: Encoder, bf16: bool, engines: tuple[str, ...],
          threads: int | None, staging: Path) -> None:
    from crossrank.runtime.onnx import OnnxRuntime

    started = time.perf_counter()
    calibrate, held = calibration.split()
    warning = held_out_warning(len(held), calibration.source)
    if warning:
        log.warning(warning)
    exact = OnnxRuntime(onnx, threads=threads)
    held_feeds = [encode(group) for group in held]
    validation = [(feeds, logits(exact.run, feeds)) for feeds in held_feeds]
    log.warning("int8: calibrating on %d pairs, measuring ranking fidelity on %d held-out queries (%d pairs), "
                "max_drop %s, engines %s; this takes a while (once; cached)", len(calibrate), len(held),
                sum(len(g) for g in held), calibration.max_drop, ", ".join(engines))

    def measure(run: Callable[[Feed], Any]) -> tuple[bool, dict[str, Any]]:
        """Ranking fidelity of ``run`` (a quantized model as served) on the held-out queries."""
        got = [logits(run, feeds) for feeds, _ in validation]
        refs = [ref for _, ref in validation]
        found = {
            "fidelity": round(float(np.mean([fidelity(g, r) for g, r in zip(got, refs)])), 5),
            "spearman_min": round(min(spearman(g, r) for g, r in zip(got, refs)), 5),
            "spearman_mean": round(float(np.mean([spearman(g, r) for g, r in zip(got, refs)])), 5),
            f"top{TOP_K}_overlap_min": round(min(overlap(g, r) for g, r in zip(got, refs)), 3),
        }
        return calibration.accepts(found["spearman_min"], found[f"top{TOP_K}_overlap_min"]), found

    calibration_feeds = encode(calibrate)
    found: dict[str, dict[str, Any]] = {}
    runs: dict[str, Callable[[Feed], Any]] = {"exact": exact.run}
    saves: dict[str, Callable[[], None]] = {}
    if "onnxruntime" in engines:
        from crossrank.runtime import int8_onnx

        work = staging / "onnxruntime-search"
        work.mkdir()
        path, found["onnxruntime"], runs["onnxruntime"] = int8_onnx.search(
            onnx, calibration_feeds, measure, work, reduce_range=overflow_fix() == "enable", threads=threads)
        saves["onnxruntime"] = lambda: int8_onnx.save(path, staging / "model.onnx")
    if "openvino" in engines:
        from crossrank.runtime import int8_openvino

        ov = require("openvino", "int8", PURPOSE)
        model, found["openvino"], runs["openvino"] = int8_openvino.search(
            onnx, calibration_feeds, measure, bf16=bf16, overflow_fix=overflow_fix(), threads=threads)
        saves["openvino"] = lambda: ov.save_model(model, str(staging / "model.xml"))
    ms = _median_ms(runs, [feed for feeds, _ in validation for feed in feeds])
    accepted = {e: calibration.accepts(f["fidelity"]["spearman_min"], f["fidelity"][f"top{TOP_K}_overlap_min"])
                for e, f in found.items()}
    engine = max(found, key=lambda e: (accepted[e], -ms[e]))  # the fastest that keeps the ranking
    saves[engine]()
    shutil.rmtree(staging / "onnxruntime-search", ignore_errors=True)
    chosen = found[engine]
    report = {
        "engine": engine, "calibration_pairs": len(calibrate), "validation_queries": len(held),
        "validation_pairs": sum(len(g) for g in held), "max_drop": calibration.max_drop,
        "matrix_ops": chosen["matrix_ops"], "matrix_ops_int8": chosen["matrix_ops_int8"],
        "matrix_ops_kept_in_higher_precision": chosen["matrix_ops"] - chosen["matrix_ops_int8"],
        "kept_in_higher_precision": chosen["kept"],
        "higher_precision": serving_hint(bf16) if engine == "openvino" else "f32", "fidelity": chosen["fidelity"],
        "speed": {"exact_ms": ms["exact"], "int8_ms": ms[engine], "speedup": round(ms["exact"] / ms[engine], 2),
                  "int8_instructions": int8_instructions()},
        "candidates": {e: {"matrix_ops_int8": f["matrix_ops_int8"], "matrix_ops": f["matrix_ops"],
                           "kept_in_higher_precision": f["kept"], "fidelity": f["fidelity"],
                           "accepted": accepted[e], "ms": ms[e],
                           **({"smoothquant_alpha": f["alpha"], "outlier_share": f["outlier_share"],
                               "outlier_min_gain": f["outlier_min_gain"], "outlier_split_ops": f["outlier_split_ops"],
                               "search": f["steps"]} if "alpha" in f else {})}
                       for e, f in found.items()},
        "seconds": round(time.perf_counter() - started, 1),
    }
    log.warning("int8: %s engine chosen (%s); %d of %d matrix ops quantized, %d kept in %s; held-out fidelity: "
                "Spearman >= %.4f, top-%d overlap >= %.2f (%.0f s)", engine,
                ", ".join(f"{e} {ms[e]} ms{'' if accepted[e] else ' below the bound'}" for e in found),
                report["matrix_ops_int8"], report["matrix_ops"], report["matrix_ops_kept_in_higher_precision"],
                report["higher_precision"], chosen["fidelity"]["spearman_min"], TOP_K,
                chosen["fidelity"][f"top{TOP_K}_overlap_min"], report["seconds"])
    if report["speed"]["speedup"] < 1.0:
        log.warning("int8: the quantized model measured slower than exact fp32 here (%s ms against %s ms on the "
                    "held-out lists): on this CPU (int8 dot products: %s) mode='exact' or 'fast' serves faster",
                    ms[engine], ms["exact"], int8_instructions())
    (staging / "report.json").write_text(json.dumps(report, indent=2) + "\n")


def quantized_model(onnx: Path, cache_dir: Path, calibration: Calibration, encode: Encoder, *, bf16: bool,
                    engines: tuple[str, ...], threads: int | None, settings: str = "") -> tuple[Path, dict[str, Any]]:
    """The int8 model of ``onnx`` for ``calibration`` (``model.onnx`` or OpenVINO's ``model.xml``) and its
    report, made once and cached under ``cache_dir``.

    ``settings`` names what else the batches depend on (the tokenizer's limits).
    """
    from importlib.metadata import version

    import onnxruntime

    # OpenVINO's and NNCF's versions from the installed metadata: importing them (with the up-front check
    # that they were installed) cost a served int8 model about 230 MiB of RSS on a cache hit
    versions = [f"onnxruntime {onnxruntime.__version__}",
                *(f"{name} {version(name)}" for name in (("openvino", "nncf") if "openvino" in engines else ()))]
    from crossrank.runtime.int8_onnx import OUTLIER_MIN_GAIN, OUTLIER_SHARE

    recipe = (f"int8|{calibration.digest()}|{settings}|{serving_hint(bf16)}|overflow fix {overflow_fix()}|"
              f"engines {','.join(engines)}|{'|'.join(versions)}|outlier share {OUTLIER_SHARE}"
              f"|outlier min gain {OUTLIER_MIN_GAIN}")
    target = derived_dir(onnx, cache_dir / "int8", recipe)
    if not (target / "report.json").is_file():
        publish(target, lambda staging: _fill(onnx, calibration, encode, bf16, engines, threads, staging))
    report: dict[str, Any] = json.loads((target / "report.json").read_text())
    return target / ("model.xml" if report["engine"] == "openvino" else "model.onnx"), report


def int8_runtime(onnx: Path, cache_dir: Path, calibration: Calibration, encode: Encoder, *, threads: int | None,
                 pad_id: int, max_width: int, settings: str, engine: str | None = None,
                 max_batch_tokens: int | None = None) -> tuple[Runtime, dict[str, Any]]:
    """A runtime on the int8 model of ``onnx`` (quantized on first use by the engine measured fastest among those
    that keep the ranking, or ``engine``), and its report."""
    from crossrank.runtime.select import has_native_bf16

    bf16 = has_native_bf16()
    path, report = quantized_model(onnx, cache_dir, calibration, encode, bf16=bf16, engines=engines_to_try(engine),
                                   threads=threads, settings=settings)
    runtime: Runtime
    if report["engine"] == "openvino":
        from crossrank.runtime.openvino import OpenVinoRuntime

        runtime = OpenVinoRuntime(path, precision="bf16" if bf16 else "f32", threads=threads, pad_id=pad_id,
                                  max_width=max_width, cache_dir=cache_dir / "openvino",
                                  max_batch_tokens=max_batch_tokens)
        runtime.providers = [f"OpenVINO CPU (int8, the rest {serving_hint(bf16)})"]
    else:
        from crossrank.runtime.onnx import OnnxRuntime

        runtime = OnnxRuntime(path, threads=threads, max_batch_tokens=max_batch_tokens)
        runtime.providers = ["ONNX Runtime CPU (int8 dynamic quantization, the rest f32)"]
    return runtime, report


def summary(report: dict[str, Any]) -> str:
    """One line on what was quantized and the fidelity measured at calibration."""
    fid = report["fidelity"]
    return (f"int8 mode: {report['matrix_ops_int8']} of {report['matrix_ops']} matrix ops int8, "
            f"{report['matrix_ops_kept_in_higher_precision']} kept in {report['higher_precision']}; on "
            f"{report['validation_queries']} held-out calibration queries Spearman >= {fid['spearman_min']}, "
            f"top-{TOP_K} overlap >= {fid[f'top{TOP_K}_overlap_min']}"
            + f"; {report['engine']} engine, {report['speed']['speedup']}x the exact mode's speed here")
