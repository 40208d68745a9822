"""mode="int8": static int8 quantization calibrated on the user's pairs, cached; its inputs and refusals.

The tiny random models here check the mechanics (it loads, scores track exact, the quantized
model is reused, errors are clear); the ranking fidelity on a trained model is measured by
benchmarks/int8.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from crossrank import Reranker
from crossrank.errors import InvalidInput, MissingExtra
from crossrank.runtime import int8, int8_onnx, int8_openvino
from crossrank.runtime.calibration import Calibration, read_calibration
from crossrank.runtime.select import choose_runtime
from crossrank.server.config import model_entry
from tolerances import assert_fp32_parity

WORDS = "crocs clog sandal leather boots kids women running shoes comfort summer garden".split()


def pairs(queries: int = 6, documents: int = 8, seed: int = 0) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    return [(" ".join(rng.choice(WORDS, 3)), " ".join(rng.choice(WORDS, 12))) for _ in range(queries)
            for _ in range(documents)]


def grouped(queries: int = 6, documents: int = 8) -> list[tuple[str, str]]:
    rng = np.random.default_rng(1)
    out = []
    for q in range(queries):
        query = f"query {q} " + " ".join(rng.choice(WORDS, 2))
        out += [(query, " ".join(rng.choice(WORDS, 12))) for _ in range(documents)]
    return out


class Counted:
    """Each int8 engine's search, counting its calls."""

    def __init__(self, patch: pytest.MonkeyPatch) -> None:
        self.calls: dict[str, int] = {"onnxruntime": 0, "openvino": 0}
        for name, module in (("onnxruntime", int8_onnx), ("openvino", int8_openvino)):
            patch.setattr(module, "search", self.counting(name, module.search))

    def counting(self, name: str, original: Any) -> Any:
        def search(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return original(*args, **kwargs)
        return search


def loose() -> Calibration:
    """max_drop 2, no overlap asked: the first candidate (every op int8) passes, no search."""
    return Calibration(tuple(grouped()), max_drop=2.0, min_overlap=0.0)


@pytest.fixture(scope="module")
def quantized(bert_dir: Path, model_cache: Path) -> Iterator[tuple[Reranker, Counted, Path]]:
    """One int8 load with every engine installed here measured, the counter on (this calibration set is quantized
    nowhere else)."""
    with pytest.MonkeyPatch.context() as patch:
        counter = Counted(patch)
        reranker = Reranker(bert_dir, mode="int8", cache_dir=model_cache, batch_size=8, calibration=loose())
        yield reranker, counter, model_cache


def test_int8_mode_quantizes_with_each_engine_and_keeps_the_faster(quantized: tuple[Reranker, Counted, Path],
                                                                   bert_reranker: Reranker) -> None:
    reranker, counter, _ = quantized
    engines = int8.engines_to_try(None)
    assert counter.calls == {e: int(e in engines) for e in ("onnxruntime", "openvino")}
    assert reranker.mode == "int8" and reranker.choice.precision == "int8"
    report = reranker.int8_report
    assert report is not None and set(report["candidates"]) == set(engines)
    fastest = min(report["candidates"], key=lambda e: report["candidates"][e]["ms"])  # both pass the loose bound
    assert report["engine"] == fastest == reranker.choice.runtime == reranker.runtime.name
    assert report["matrix_ops_int8"] > 0 and report["matrix_ops_int8"] == report["candidates"][fastest]["matrix_ops_int8"]
    assert report["matrix_ops"] == report["matrix_ops_int8"] + report["matrix_ops_kept_in_higher_precision"]
    assert reranker.describe()["int8"] == report and "matrix ops int8" in reranker.choice.reason
    speed = report["speed"]  # measured at quantization, on the held-out lists, against exact fp32
    assert speed["exact_ms"] > 0 and speed["int8_ms"] == report["candidates"][fastest]["ms"]
    assert speed["speedup"] == pytest.approx(speed["exact_ms"] / speed["int8_ms"], rel=0.05)
    assert f"{fastest} engine" in reranker.choice.reason and "the exact mode's speed here" in reranker.choice.reason
    assert "int8" in reranker.runtime.providers[0]
    docs = [d for _, d in pairs(1, 24, seed=7)]
    got = reranker.score("crocs for kids", docs, activation="none")
    ref = bert_reranker.score("crocs for kids", docs, activation="none")
    # a random tiny model is far more fragile than a trained one: a loose bound, for the mechanics (a wrong
    # graph or output scores near 0). Measured: 0.78 on an AVX2-only CPU (0.68 there without the overflow fix)
    assert np.corrcoef(got, ref)[0, 1] > 0.6
    assert np.abs(got - ref).max() < 0.5 * np.abs(ref).max() + 1


def test_a_second_load_reuses_the_quantized_model(quantized: tuple[Reranker, Counted, Path], bert_dir: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    first, _, cache = quantized
    counter = Counted(monkeypatch)
    again = Reranker(bert_dir, mode="int8", cache_dir=cache, batch_size=8, calibration=loose())
    assert counter.calls == {"onnxruntime": 0, "openvino": 0}  # no second quantization
    assert again.int8_report == first.int8_report
    docs = [d for _, d in pairs(1, 10, seed=3)]
    assert np.allclose(again.score("kids clog", docs), first.score("kids clog", docs), atol=1e-6)


@pytest.mark.parametrize("per_tensor", [False, True], ids=["one alpha", "an alpha per input tensor"])
def test_smoothquant_scales_leave_the_fp32_function_unchanged(bert_dir: Path, bert_reranker: Reranker,
                                                              tmp_path: Path, per_tensor: bool) -> None:
    """The Mul by 1/s on each MatMul input and the weight rows times s cancel: scores match before quantizing."""
    import onnx

    from crossrank.runtime.onnx import OnnxRuntime

    cut = Path(bert_reranker.runtime.path)
    model = onnx.load(str(cut))
    feeds = bert_reranker._calibration_batches(grouped(4, 6))
    activations = int8_onnx.Activations(model, feeds)
    assert set(activations.amax) == {n.input[0] for n in int8_onnx.weight_matmuls(model)}
    alpha = {name: 0.3 + 0.6 * i / len(activations.amax) for i, name in enumerate(sorted(activations.amax))}
    smoothed = int8_onnx.smooth(model, activations, alpha=alpha if per_tensor else 0.8)
    assert sum(n.op_type == "Mul" and n.name.endswith("/smoothquant") for n in smoothed.graph.node) == len(activations.amax)
    onnx.save(smoothed, str(tmp_path / "smoothed.onnx"))
    ref, got = OnnxRuntime(cut), OnnxRuntime(tmp_path / "smoothed.onnx")
    for feed in feeds:
        assert_fp32_parity(got.run(feed), ref.run(feed))
    scales = [onnx.numpy_helper.to_array(i) for i in smoothed.graph.initializer if i.name.endswith("inverse_scale")]
    assert any(np.ptp(s) > 0 for s in scales)  # real per-channel scales, not all ones


def test_the_outlier_split_keeps_the_fp32_function_and_takes_the_largest_channels_out_of_the_int8_products(
        bert_reranker: Reranker, tmp_path: Path) -> None:
    """split_outliers: in fp32 the split graph scores as the original; each scaled input's largest channels (after
    smoothing) are zero in the scaled path and carried by a small product the quantizer leaves in fp32."""
    from crossrank.runtime.onnx import OnnxRuntime

    cut = Path(bert_reranker.runtime.path)
    model = onnx.load(str(cut))
    feeds = bert_reranker._calibration_batches(grouped(4, 6))
    activations = int8_onnx.Activations(model, feeds)
    smoothed = int8_onnx.smooth(model, activations, 0.5)
    split = int8_onnx.split_outliers(smoothed, activations, 0.05, min_gain=1.0)  # every input tensor split
    onnx.save(split, str(tmp_path / "split.onnx"))
    ref, got = OnnxRuntime(cut), OnnxRuntime(tmp_path / "split.onnx")
    for feed in feeds:
        assert_fp32_parity(got.run(feed), ref.run(feed))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in split.graph.initializer}
    before = {i.name: onnx.numpy_helper.to_array(i) for i in smoothed.graph.initializer}
    for source, peak in activations.amax.items():
        chosen = inits[f"{source}/outlier_channels"]
        inverse = before[f"{source}/smoothquant_inverse_scale"]
        assert len(chosen) == int(np.ceil(0.05 * len(peak)))
        largest = np.sort(peak * inverse)[::-1][len(chosen) - 1]
        assert (peak * inverse)[chosen].min() >= largest  # the largest after smoothing
        assert not inits[f"{source}/smoothquant_inverse_scale"][chosen].any()
    originals = [n.name for n in int8_onnx.weight_matmuls(model)]
    for node in int8_onnx.weight_matmuls(split):
        if node.name in originals:  # the scaled product: the chosen rows zeroed
            source = node.input[0].removesuffix("/smoothquant")
            assert not inits[node.input[1]][inits[f"{source}/outlier_channels"]].any()
    int8_onnx.quantized(tmp_path / "split.onnx", tmp_path / "int8.onnx", originals, reduce_range=True)
    served = onnx.load(str(tmp_path / "int8.onnx"))
    assert sum(n.op_type == "MatMulInteger" for n in served.graph.node) == len(originals)
    assert {n.name for n in served.graph.node if n.op_type == "MatMul" and n.name.endswith("/outliers")} == \
        {f"{name}/outliers" for name in originals}


def test_outlier_channels_are_split_only_where_they_set_the_int8_range() -> None:
    peak = np.array([1.0, 0.9, 12.0, 0.8, 1.1, 0.7, 9.0, 1.0])
    two = int8_onnx.outlier_channels(peak, 0.25, min_gain=2.0)
    assert two is not None and two.tolist() == [2, 6]  # 12 / 1.1: the range 11x finer
    assert int8_onnx.outlier_channels(peak, 0.1, min_gain=2.0) is None  # 12 / 9: one of two outliers stays in
    one = int8_onnx.outlier_channels(peak, 0.1, min_gain=1.3)
    assert one is not None and one.tolist() == [2]
    flat = np.ones(8) + np.arange(8) / 100  # no outliers: no split at the default gain
    assert int8_onnx.outlier_channels(flat, 0.25) is None and int8_onnx.OUTLIER_MIN_GAIN > 1.05
    assert int8_onnx.outlier_channels(peak, 1.0, min_gain=1.0) is None  # nothing would be left to quantize


def test_the_split_leaves_alone_the_tensors_without_outliers(bert_reranker: Reranker) -> None:
    """With the default gain, exactly the input tensors whose chosen channels set the range are split: in this
    random model none, until one channel of one input reads 50x larger (as BERT's outliers)."""
    model = onnx.load(str(Path(bert_reranker.runtime.path)))
    activations = int8_onnx.Activations(model, bert_reranker._calibration_batches(grouped(4, 6)))
    smoothed = int8_onnx.smooth(model, activations, 0.5)
    inverse = {i.name.removesuffix("/smoothquant_inverse_scale"): onnx.numpy_helper.to_array(i)
               for i in smoothed.graph.initializer if i.name.endswith("/smoothquant_inverse_scale")}
    target = int8_onnx.weight_matmuls(model)[-1].input[0]
    activations.amax[target] = activations.amax[target] * np.where(np.arange(len(activations.amax[target])) == 3, 50, 1)

    def split_sources(gain: float) -> set[str]:
        split = int8_onnx.split_outliers(smoothed, activations, 0.05, min_gain=gain)
        return {n.input[0] for n in split.graph.node if n.op_type == "Gather" and n.name.endswith("/outliers")}

    for gain in (1.0, int8_onnx.OUTLIER_MIN_GAIN, np.inf):
        assert split_sources(gain) == {source for source, peak in activations.amax.items()
                                       if int8_onnx.outlier_channels(peak * inverse[source], 0.05, gain) is not None}
    assert split_sources(1.0) == set(activations.amax) and split_sources(np.inf) == set()
    assert split_sources(int8_onnx.OUTLIER_MIN_GAIN) == {target}


def test_the_error_estimate_ranks_an_outlier_fed_op_first(bert_reranker: Reranker) -> None:
    """Sensitivity reads the calibration samples: an input channel blown up 50x (as BERT's LayerNorm outliers)
    makes its op's tensor-wide uint8 range coarse, and that op the most error-prone."""
    import onnx

    model = onnx.load(str(bert_reranker.runtime.path))
    activations = int8_onnx.Activations(model, bert_reranker._calibration_batches(grouped(4, 6)))
    before = dict(int8_onnx.sensitivity(model, activations, reduce_range=True))
    target = int8_onnx.weight_matmuls(model)[-1]
    samples = activations.samples[target.input[0]]
    activations.samples[target.input[0]] = [(rows * np.where(np.arange(rows.shape[1]) == 3, 50, 1), lo * 50, hi * 50)
                                            for rows, lo, hi in samples]
    after = int8_onnx.sensitivity(model, activations, reduce_range=True)
    assert after[0][0] == target.name and after[0][1] > 3 * before[target.name]
    assert dict(int8_onnx.sensitivity(model, activations, reduce_range=False))[target.name] < after[0][1]


def test_below_the_bound_the_onnx_runtime_search_keeps_the_most_error_prone_ops(
        quantized: tuple[Reranker, Counted, Path], bert_dir: Path, model_cache: Path) -> None:
    """max_drop 0 on a random tiny model (which int8 reorders): past the SmoothQuant strengths, the search keeps
    the ops sensitivity ranks first, the fewest that pass. Two held-out lists of 12 documents: with the outlier
    split, the one 4-document list of a smaller set kept its exact order fully quantized."""
    strict = Reranker(bert_dir, mode="int8", runtime="onnxruntime", cache_dir=model_cache, batch_size=8,
                      calibration=Calibration(tuple(grouped(8, 6)), max_drop=0.0))
    report = strict.int8_report
    assert report is not None and report["engine"] == "onnxruntime" == strict.runtime.name
    assert set(report["candidates"]) == {"onnxruntime"}
    steps = report["candidates"]["onnxruntime"]["search"]
    assert [s["kept"] for s in steps[:len(int8_onnx.ALPHAS)]] == [0] * len(int8_onnx.ALPHAS)
    assert not any(s["accepted"] for s in steps[:len(int8_onnx.ALPHAS)]) and len(steps) > len(int8_onnx.ALPHAS)
    kept = report["matrix_ops_kept_in_higher_precision"]
    assert kept > 0 and any(s["accepted"] and s["kept"] == kept for s in steps)
    assert not any(s["accepted"] and s["kept"] < kept for s in steps)  # the fewest that passed
    assert "ONNX Runtime" in strict.runtime.providers[0]
    # the report names the ops kept, and they are the served graph's fp32 weight products
    names = report["kept_in_higher_precision"]
    assert len(names) == kept == len(set(names))
    assert report["candidates"]["onnxruntime"]["kept_in_higher_precision"] == names
    served = onnx.load(str(strict.runtime.path), load_external_data=False)
    assert set(names) <= {n.name for n in int8_onnx.weight_matmuls(served)}
    int8_ops = {n.name.removesuffix("_quant") for n in served.graph.node if n.op_type == "MatMulInteger"}
    assert len(int8_ops) == report["matrix_ops_int8"] and not int8_ops & set(names)
    assert len(int8_ops) + kept == report["matrix_ops"]


def test_below_the_bound_the_openvino_search_keeps_matrix_ops_in_higher_precision(
        quantized: tuple[Reranker, Counted, Path], bert_dir: Path, model_cache: Path) -> None:
    """max_drop 0 on a random tiny model (which int8 reorders): the search goes on past 'none kept'."""
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    steps: list[str] = []
    members: list[list[str]] = []
    original = int8_openvino._matmul_groups

    def groups(model: object) -> list[tuple[str, list[str]]]:
        found = original(model)
        steps.extend(name for name, _ in found)
        members.extend(names for _, names in found)
        return found

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(int8_openvino, "_matmul_groups", groups)
        strict = Reranker(bert_dir, mode="int8", runtime="openvino", cache_dir=model_cache, batch_size=8,
                          calibration=Calibration(tuple(grouped(4, 4)), max_drop=0.0))
    assert steps[0] == "none" and "feed-forward down projections" in steps and steps[-1] == "every matrix op"
    report = strict.int8_report
    assert report is not None and report["engine"] == "openvino" == strict.runtime.name
    assert report["matrix_ops_kept_in_higher_precision"] > 0 and "OpenVINO" in strict.runtime.providers[0]
    assert report["kept_in_higher_precision"] in members[1:]  # the names of the group the search stopped at


def test_the_fidelity_metric_is_one_for_the_same_ranking_and_falls_when_it_moves() -> None:
    ref = np.arange(40, dtype=np.float64)
    assert int8.fidelity(ref * 2 + 1, ref) == 1.0
    swapped = ref.copy()
    swapped[[29, 39]] = swapped[[39, 29]]  # one document leaves the top 10
    assert int8.overlap(swapped, ref) == 0.9 and 0.9 < int8.fidelity(swapped, ref) < 1.0
    assert int8.fidelity(-ref, ref) < 0


def test_the_search_accepts_by_the_worst_query_not_the_mean() -> None:
    """A mean over queries let one query with 8 of its top 10 and Spearman 0.97 through (what a
    100-document list then showed); the bound now holds for the worst held-out query."""
    calibration = Calibration(tuple(grouped()))
    assert calibration.accepts(spearman_min=0.995, overlap_min=0.9)
    assert not calibration.accepts(spearman_min=0.97, overlap_min=1.0)
    assert not calibration.accepts(spearman_min=0.999, overlap_min=0.8)
    with pytest.raises(InvalidInput, match="min_overlap"):
        Calibration(tuple(grouped()), min_overlap=1.5)


def test_held_out_queries_are_never_calibrated_on() -> None:
    calibration = Calibration(tuple((f"query {q}", f"document {q}-{d}") for q in range(8) for d in range(5)))
    calibrate, held = calibration.split()
    assert len(held) == 2 and all(len({q for q, _ in group}) == 1 for group in held)
    assert not {q for g in held for q, _ in g} & {q for q, _ in calibrate}
    assert not {d for g in held for _, d in g} & {d for _, d in calibrate}
    assert len(calibrate) == 30
    # each held-out query ranks every held-out document, its own first: lists as long as served ones
    assert [len(group) for group in held] == [10, 10]
    assert [d for _, d in held[0][:5]] == [f"document 3-{d}" for d in range(5)]
    assert {d for _, d in held[0]} == {d for _, d in held[1]}
    single = Calibration(tuple((f"q{i}", f"d{i}") for i in range(12)))  # one document per query: pooled
    rest, pooled = single.split()
    assert len(pooled) == 1 and len(pooled[0]) == 3 and not set(pooled[0]) & set(rest)


def test_int8_without_a_calibration_set_is_refused_naming_the_option(bert_dir: Path) -> None:
    with pytest.raises(InvalidInput, match="calibration=.*--calibration FILE.*'calibration: FILE'"):
        Reranker(bert_dir, mode="int8")
    with pytest.raises(InvalidInput, match="mode='int8' only"):
        Reranker(bert_dir, mode="fast", calibration=pairs())


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    ("", "holds no"),
    ("\n  \n", "holds no"),
    ('{"query": "crocs", "documents": ["a clog"]\n', "line 1: not valid JSON"),
    ('{"query": "crocs", "documents": []}\n', 'line 1: "documents" must be a non-empty list'),
    ('{"documents": ["a"]}\n', 'line 1: "query" must be a non-empty string'),
    ("crocs\ta clog\njust one field\n", "line 2: a TSV line needs exactly two"),
    ("crocs\ta clog\n", "needs at least 8"),
])
def test_bad_calibration_files_say_what_is_wrong_and_the_format(bert_dir: Path, tmp_path: Path, content: str | None,
                                                               message: str) -> None:
    path = tmp_path / "calibration.jsonl"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InvalidInput, match=message) as caught:
        Reranker(bert_dir, mode="int8", calibration=path)
    if "at least" not in message:
        assert "query<TAB>document" in str(caught.value)


def test_jsonl_and_tsv_lines_mix_in_one_file(tmp_path: Path) -> None:
    path = tmp_path / "calibration.txt"
    path.write_text(json.dumps({"query": "crocs", "documents": ["a clog", "boots"]}) + "\n\n"
                    + "".join(f"kids shoes\tdocument {i}\n" for i in range(6)))
    calibration = read_calibration(path)
    assert calibration.pairs[:2] == (("crocs", "a clog"), ("crocs", "boots")) and len(calibration.pairs) == 8
    assert read_calibration(str(path)).digest() == calibration.digest() != read_calibration(pairs()).digest()
    with pytest.raises(InvalidInput, match="list of \\(query, document\\) pairs"):
        read_calibration([("only a query",)] * 8)  # type: ignore[list-item]


def test_int8_refuses_llm_rerankers_and_the_gpu(tmp_path: Path) -> None:
    from crossrank.models.synthetic import build_qwen3_reranker

    with pytest.raises(InvalidInput, match="runs on the CPU with ONNX Runtime or OpenVINO"):
        choose_runtime("int8", providers=["cuda"])
    with pytest.raises(InvalidInput, match="runs on the CPU with ONNX Runtime or OpenVINO"):
        choose_runtime("int8", runtime="torch")
    qwen = build_qwen3_reranker(tmp_path / "qwen3", layers=1)
    with pytest.raises(InvalidInput, match="LLM reranker"):
        Reranker(qwen, mode="int8", calibration=pairs(), cache_dir=tmp_path / "cache")


def test_without_nncf_int8_runs_on_onnx_runtime_and_a_forced_openvino_names_the_extra(
        bert_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for module in ("nncf", "openvino"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.setitem(sys.modules, "nncf", None)  # import nncf now fails as if it were not installed
    monkeypatch.setattr(int8, "_installed", lambda module: module != "nncf")
    assert int8.engines_to_try(None) == ("onnxruntime",)
    reranker = Reranker(bert_dir, mode="int8", cache_dir=tmp_path, calibration=loose())
    assert reranker.int8_report is not None and set(reranker.int8_report["candidates"]) == {"onnxruntime"}
    assert "openvino" not in sys.modules  # a core install serves int8 without OpenVINO
    with pytest.raises(MissingExtra, match=r"pip install 'crossrank\[int8\]'"):
        Reranker(bert_dir, mode="int8", runtime="openvino", calibration=pairs())


def test_server_config_and_cli_take_int8_with_a_calibration_file(bert_dir: Path, tmp_path: Path,
                                                                 isolated_hf_home: Path) -> None:
    entry = model_entry("m", {"model": "x", "mode": "int8", "calibration": "pairs.tsv"})
    assert entry.mode == "int8" and entry.calibration == "pairs.tsv"
    with pytest.raises(InvalidInput, match="used with 'mode: int8'"):
        model_entry("m", {"model": "x", "calibration": "pairs.tsv"})
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    for extra, message in (([], "--calibration FILE"), (["--calibration", str(empty)], "holds no")):
        out = subprocess.run([sys.executable, "-m", "crossrank.cli", "rerank", "--model", str(bert_dir), "-q", "x",
                              "--doc", "d", "--mode", "int8", *extra], capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize(("flags", "expected"), [
    ({"avx2", "amx_int8", "avx512_vnni"}, "AMX, AVX-512 VNNI"),
    ({"avx2", "avx_vnni"}, "AVX-VNNI"),
    ({"avx2"}, "none (no VNNI or AMX)"),
])
def test_int8_instructions_name_what_the_cpu_has(flags: set[str], expected: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import crossrank.runtime.select as select

    monkeypatch.setattr(select, "cpu_flags", lambda: frozenset(flags))
    assert int8.int8_instructions() == expected
    # without VNNI or AMX int8 products saturate 16-bit sums: every layer's weights get 7 bits
    assert int8.overflow_fix() == ("enable" if expected.startswith("none") else "first_layer_only")


@pytest.mark.parametrize(("queries", "warned"), [(8, True), (24, False)])
def test_too_few_held_out_queries_are_named(queries: int, warned: bool) -> None:
    """A quarter of the queries is held out; fewer than MIN_HELD_OUT bound unseen queries loosely."""
    from crossrank.runtime.calibration import MIN_HELD_OUT, held_out_warning

    calibration = Calibration(tuple(grouped(queries=queries, documents=4)), source="pairs.jsonl")
    _, held = calibration.split()
    assert len(held) == queries // 4
    message = held_out_warning(len(held), calibration.source)
    assert (message is not None) == warned
    if message:
        assert "pairs.jsonl" in message and f"at least {4 * MIN_HELD_OUT} queries" in message
