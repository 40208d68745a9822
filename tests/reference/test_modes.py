"""Reranker modes: exact parity with transformers, fast-mode ranking agreement, runtime choice."""

from __future__ import annotations

import logging
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from crossrank import Reranker
from crossrank.bench.inputs import Kind, make_workload
from crossrank.errors import InvalidInput, MissingExtra
from crossrank.models.synthetic import build_random_model, trained_minilm_dir
from crossrank.runtime.openvino import TOKENS_PER_THREAD, padded_width, plan_power_of_two
from crossrank.runtime.select import choose_runtime, has_native_bf16, openvino_installed
from tolerances import assert_fp32_parity, assert_probability_parity

needs_fast = pytest.mark.skipif(
    not (openvino_installed() and has_native_bf16()),
    reason="fast mode needs openvino and a CPU with native bf16 (AMX or AVX-512 BF16)",
)
needs_openvino = pytest.mark.skipif(not openvino_installed(), reason="openvino is not installed")


@pytest.fixture(scope="module")
def trained_body_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ms-marco-MiniLM-L6-v2 shape with the trained all-MiniLM-L6-v2 body and a random head."""
    return build_random_model(tmp_path_factory.mktemp("trained-body-ce"), body_from=trained_minilm_dir(), layers=6)


@pytest.fixture(scope="module")
def exact_trained(trained_body_dir: Path, model_cache: Path) -> Reranker:
    return Reranker(trained_body_dir, cache_dir=model_cache, mode="exact")


def _transformers_logits(directory: Path, pairs: list[tuple[str, str]], max_length: int) -> np.ndarray:
    import torch
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(str(directory))
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(directory)).eval()
    batch = tok(
        [q for q, _ in pairs], [d for _, d in pairs], padding=True, truncation="only_second",
        max_length=max_length, return_tensors="pt",
    )
    with torch.no_grad():
        return np.asarray(model(**batch).logits[:, 0].double().numpy())


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a)).astype(np.float64)
    rb = np.argsort(np.argsort(b)).astype(np.float64)
    return float(np.corrcoef(ra, rb)[0, 1])


def _top10_overlap(a: np.ndarray, b: np.ndarray) -> int:
    return len(set(np.argsort(-a)[:10].tolist()) & set(np.argsort(-b)[:10].tolist()))


@pytest.mark.parametrize("kind", ["titles", "passages"])
def test_exact_mode_matches_transformers(kind: Kind, trained_body_dir: Path, exact_trained: Reranker) -> None:
    work = make_workload(kind, 24, seed=3)
    expected = _transformers_logits(trained_body_dir, work.pairs, exact_trained.max_length)
    got = exact_trained.score(work.query, work.documents, activation="none")
    assert exact_trained.mode == "exact" and exact_trained.runtime.name == "onnxruntime"
    assert_fp32_parity(got, expected)


@needs_fast
@pytest.mark.parametrize("kind", ["titles", "passages"])
def test_fast_mode_keeps_the_ranking(kind: Kind, trained_body_dir: Path, exact_trained: Reranker, model_cache: Path) -> None:
    fast = Reranker(trained_body_dir, cache_dir=model_cache, mode="fast")
    assert fast.mode == "fast" and fast.runtime.name == "openvino"
    work = make_workload(kind, 100, seed=11)
    reference = exact_trained.score(work.query, work.documents, activation="none")
    got = fast.score(work.query, work.documents, activation="none")
    assert reference.std() > 1e-3  # the trained body makes scores differ: the ranking is meaningful
    assert _top10_overlap(got, reference) >= 9
    assert _spearman(got, reference) >= 0.99
    assert not np.array_equal(got, reference)  # it really ran a different (reduced-precision) path


@needs_fast
def test_fast_mode_converts_to_fp16_weights_once(bert_dir: Path, tmp_path: Path) -> None:
    first = Reranker(bert_dir, cache_dir=tmp_path, mode="fast", batch_size=4)
    converted = list((tmp_path / "openvino" / "ir").glob("*/model.xml"))
    assert len(converted) == 1 and converted[0].with_suffix(".bin").stat().st_size > 0
    stamp = converted[0].stat().st_mtime_ns
    second = Reranker(bert_dir, cache_dir=tmp_path, mode="fast", batch_size=4)
    assert list((tmp_path / "openvino" / "ir").glob("*/model.xml")) == converted
    assert converted[0].stat().st_mtime_ns == stamp  # reused, not converted again
    assert not list((tmp_path / "openvino" / "ir").glob("*.tmp-*"))  # no staging left behind
    work = make_workload("titles", 6, seed=9)
    np.testing.assert_array_equal(second.score(work.query, work.documents), first.score(work.query, work.documents))


@needs_openvino
@pytest.mark.parametrize("fixture", ["bert_dir", "xlmr_dir"])
def test_openvino_shape_padding_keeps_fp32_scores(fixture: str, request: pytest.FixtureRequest, model_cache: Path) -> None:
    """Rows padded by ``padded_width`` and power-of-two batches give the unpadded scores."""
    directory = request.getfixturevalue(fixture)
    exact = Reranker(directory, cache_dir=model_cache, batch_size=4)
    ov32 = Reranker(directory, cache_dir=model_cache, batch_size=4, mode="exact", runtime="openvino")
    assert ov32.runtime.name == "openvino" and ov32.choice.precision == "f32"
    work = make_workload("titles", 13, seed=5)
    assert_fp32_parity(ov32.score(work.query, work.documents, activation="none"),
                       exact.score(work.query, work.documents, activation="none"))


@needs_openvino
def test_fast_runtime_serves_the_scheduler_seams(bert_dir: Path, model_cache: Path) -> None:
    reranker = Reranker(bert_dir, cache_dir=model_cache, mode="exact", runtime="openvino", batch_size=4)
    pairs = make_workload("titles", 9, seed=2).pairs
    rows = reranker.tokenize(pairs)
    everything = reranker.infer(rows)
    part = reranker.infer(rows, [7, 1, 4])
    assert everything.dtype == np.float64 and everything.shape == (9,)
    np.testing.assert_allclose(part, everything[[7, 1, 4]], atol=1e-5)


@needs_openvino
def test_openvino_batches_keep_to_the_token_budget_per_thread(
    bert_dir: Path, model_cache: Path, bert_reranker: Reranker
) -> None:
    """The runtime's batches (what the scheduler runs one at a time) hold at most
    ``TOKENS_PER_THREAD`` tokens per thread, and the scores do not depend on the cut."""
    reranker = Reranker(bert_dir, cache_dir=model_cache, mode="exact", runtime="openvino", threads=1)
    work = make_workload("passages", 20, seed=4)
    rows = reranker.tokenize(work.pairs)
    batches = reranker.plan(rows.lengths)
    assert reranker.max_batch_tokens == TOKENS_PER_THREAD and len(batches) > 1
    for batch in batches:
        assert len(batch) * padded_width(int(rows.lengths[batch].max())) <= TOKENS_PER_THREAD
    cut = reranker.score(work.query, work.documents, activation="none")
    onnx = bert_reranker.score(work.query, work.documents, activation="none")
    np.testing.assert_allclose(cut, onnx, atol=1e-4, rtol=1e-4)
    whole = Reranker(bert_dir, cache_dir=model_cache, mode="exact", runtime="openvino", threads=1,
                     max_batch_tokens=1 << 30)
    assert len(whole.plan(rows.lengths)) < len(batches)
    np.testing.assert_allclose(cut, whole.score(work.query, work.documents, activation="none"), atol=1e-5, rtol=0)


@needs_openvino
def test_openvino_runtime_scores_from_several_threads_at_once(bert_dir: Path, model_cache: Path) -> None:
    """Each thread gets its own request: concurrent calls return their own workload's scores."""
    reranker = Reranker(bert_dir, cache_dir=model_cache, mode="exact", runtime="openvino", batch_size=4)
    sizes: list[tuple[Kind, int]] = [("titles", 1), ("passages", 3), ("titles", 9), ("passages", 6)]
    works = [make_workload(kind, n, seed=seed) for seed, (kind, n) in enumerate(sizes)]
    alone = [reranker.score(w.query, w.documents, activation="none") for w in works]
    barrier = threading.Barrier(len(works))

    def score_repeatedly(w: Any) -> list[np.ndarray]:
        barrier.wait()
        return [reranker.score(w.query, w.documents, activation="none") for _ in range(5)]

    with ThreadPoolExecutor(len(works)) as pool:
        together = list(pool.map(score_repeatedly, works))
    for expected, got in zip(alone, together):
        for scores in got:
            np.testing.assert_allclose(scores, expected, atol=1e-6)


def test_power_of_two_plan_covers_every_row_once() -> None:
    lengths = np.asarray([30, 5, 17, 17, 2, 40, 8, 9, 11, 12, 3])
    batches = plan_power_of_two(lengths, 4)
    sizes = [len(b) for b in batches]
    assert sizes == [4, 4, 2, 1]
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    flat = lengths[np.concatenate(batches)]
    assert list(flat) == sorted(flat)  # length-sorted, so each batch pads little
    assert [len(b) for b in plan_power_of_two(lengths, 5)] == [4, 4, 2, 1]  # cap rounds down to 4


def test_power_of_two_plan_keeps_to_its_token_budget() -> None:
    lengths = np.asarray([512] * 32 + [100] * 32 + [20] * 40)
    batches = plan_power_of_two(lengths, 32, 2048)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    for batch in batches:
        size = len(batch)
        assert size & (size - 1) == 0  # still powers of two
        assert size * padded_width(int(lengths[batch].max())) <= 2048
    assert [len(b) for b in batches] == [32, 16, 16, 8] + [4] * 8  # halved only as far as the batch needs
    assert [len(b) for b in plan_power_of_two(np.asarray([512, 512]), 32, 100)] == [1, 1]  # one row always fits


def test_padded_width_wastes_at_most_an_eighth_and_bounds_the_shapes() -> None:
    widths = range(1, 513)
    padded = [padded_width(w) for w in widths]
    assert all(w <= p and (p - w) / w <= 0.125 for w, p in zip(widths, padded))
    assert [padded_width(w) for w in (7, 15, 17, 21, 33, 65, 129, 500)] == [7, 15, 18, 22, 36, 72, 144, 512]
    assert len(set(padded)) == 64  # a bounded set of shapes for a long-running process
    assert all(padded_width(p) == p for p in padded)  # a padded width is not padded again


BF16 = frozenset({"avx512f", "amx_bf16"})
NO_BF16 = frozenset({"avx2"})


def test_runtime_choice_rules(caplog: pytest.LogCaptureFixture) -> None:
    auto = choose_runtime("auto", flags=BF16, openvino_available=True)
    assert (auto.mode, auto.runtime, auto.precision) == ("fast", "openvino", "bf16")
    # no native bf16: auto stays fp32 and times OpenVINO against ONNX Runtime at load (measure_auto)
    no_bf16 = choose_runtime("auto", flags=NO_BF16, openvino_available=True)
    assert (no_bf16.mode, no_bf16.runtime, no_bf16.precision) == ("exact", "openvino", "f32")
    assert choose_runtime("auto", flags=NO_BF16, openvino_available=False).runtime == "onnxruntime"
    assert choose_runtime("fast", flags=NO_BF16, openvino_available=True).runtime == "onnxruntime"
    assert choose_runtime("exact", flags=BF16, openvino_available=True).precision == "f32"
    no_gpu = dict(flags=BF16, openvino_available=True, cuda_available=False, ort_cuda=False)
    with caplog.at_level(logging.WARNING):
        gpu = choose_runtime("fast", providers=["cuda"], **no_gpu)  # type: ignore[arg-type]
    assert (gpu.mode, gpu.runtime) == ("exact", "onnxruntime") and "CPU" in caplog.text
    forced = choose_runtime("exact", runtime="openvino", flags=BF16, openvino_available=True)
    assert (forced.runtime, forced.precision) == ("openvino", "f32")
    with caplog.at_level(logging.WARNING):
        fallback = choose_runtime("fast", flags=BF16, openvino_available=False)
    assert fallback.runtime == "onnxruntime" and "crossrank[fast]" in caplog.text
    with pytest.raises(InvalidInput):
        choose_runtime("turbo")
    with pytest.raises(InvalidInput):
        choose_runtime("fast", runtime="tensorflow")


def test_gpu_runtime_choice_rules() -> None:
    def pick(mode: str, **kw: object) -> tuple[str, str, str, str]:
        c = choose_runtime(mode, flags=BF16, openvino_available=True, **kw)  # type: ignore[arg-type]
        return (c.mode, c.runtime, c.precision, c.device)

    torch_gpu = dict(providers=["cuda"], cuda_available=True, ort_cuda=False)
    assert pick("fast", **torch_gpu) == ("fast", "torch", "f16", "cuda")
    assert pick("auto", **torch_gpu) == ("fast", "torch", "f16", "cuda")
    assert pick("exact", **torch_gpu) == ("exact", "torch", "f32", "cuda")
    # exact on a GPU prefers ONNX Runtime's CUDA provider where that build is installed
    assert pick("exact", providers=["cuda"], cuda_available=True, ort_cuda=True)[1] == "onnxruntime"
    assert pick("fast", providers=["cuda"], cuda_available=False, ort_cuda=True)[:2] == ("exact", "onnxruntime")
    # a forced torch runtime: the GPU when torch sees one, else the CPU (bf16 in fast mode)
    assert pick("fast", runtime="torch", cuda_available=True) == ("fast", "torch", "f16", "cuda")
    assert pick("fast", runtime="torch", cuda_available=False) == ("fast", "torch", "bf16", "cpu")
    assert pick("fast", runtime="torch", providers=["cpu"], cuda_available=True)[3] == "cpu"
    assert pick("exact", runtime="torch", cuda_available=False) == ("exact", "torch", "f32", "cpu")
    no_bf16 = choose_runtime("fast", runtime="torch", flags=NO_BF16, cuda_available=False)
    assert (no_bf16.mode, no_bf16.precision) == ("exact", "f32")


@pytest.mark.parametrize("fixture", ["bert_dir", "xlmr_dir"])
def test_torch_runtime_exact_matches_onnxruntime(fixture: str, request: pytest.FixtureRequest, model_cache: Path) -> None:
    directory = request.getfixturevalue(fixture)
    reference = Reranker(directory, cache_dir=model_cache, batch_size=4)
    on_torch = Reranker(directory, cache_dir=model_cache, batch_size=4, runtime="torch", providers=["cpu"])
    assert on_torch.runtime.name == "torch" and on_torch.choice.device == "cpu" and on_torch.mode == "exact"
    work = make_workload("passages", 9, seed=4)
    assert_fp32_parity(on_torch.score(work.query, work.documents, activation="none"),
                       reference.score(work.query, work.documents, activation="none"))


def _torch_devices() -> list[object]:
    from crossrank.runtime.torch import cuda_available

    return [
        pytest.param("cpu", marks=pytest.mark.skipif(not has_native_bf16(), reason="no native bf16 on this CPU")),
        pytest.param("cuda", marks=pytest.mark.skipif(not cuda_available(), reason="no CUDA GPU here")),
    ]


@pytest.mark.parametrize("device", _torch_devices())
@pytest.mark.parametrize("kind", ["titles", "passages"])
def test_torch_fast_mode_keeps_the_ranking(
    kind: Kind, device: str, trained_body_dir: Path, exact_trained: Reranker, model_cache: Path
) -> None:
    """bf16 on the CPU, fp16 on a CUDA GPU: the trained-body ranking survives."""
    fast = Reranker(trained_body_dir, cache_dir=model_cache, mode="fast", runtime="torch", providers=[device])
    assert fast.mode == "fast" and fast.choice.device == device
    assert fast.choice.precision == ("f16" if device == "cuda" else "bf16")
    work = make_workload(kind, 100, seed=11)
    reference = exact_trained.score(work.query, work.documents, activation="none")
    got = fast.score(work.query, work.documents, activation="none")
    assert _top10_overlap(got, reference) >= 9
    assert _spearman(got, reference) >= 0.99
    assert not np.array_equal(got, reference)


def test_torch_runtime_needs_weights(bert_dir: Path, model_cache: Path, tmp_path: Path) -> None:
    from crossrank.errors import ModelError

    onnx_only = tmp_path / "onnx-only"
    onnx_only.mkdir()
    for item in bert_dir.iterdir():
        if item.is_file() and item.suffix != ".safetensors" and item.name != "pytorch_model.bin":
            (onnx_only / item.name).write_bytes(item.read_bytes())
    (onnx_only / "model.onnx").write_bytes(Reranker(bert_dir, cache_dir=model_cache).runtime.path.read_bytes())
    with pytest.raises(ModelError, match="runtime='onnxruntime'"):
        Reranker(onnx_only, cache_dir=model_cache, runtime="torch", providers=["cpu"])
    assert Reranker(onnx_only, cache_dir=model_cache).runtime.name == "onnxruntime"


def test_fast_mode_without_openvino_falls_back_to_exact(
    bert_dir: Path, model_cache: Path, bert_reranker: Reranker, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if the package were not installed
    monkeypatch.setattr("crossrank.runtime.select.openvino_installed", lambda: False)
    with caplog.at_level(logging.WARNING):
        reranker = Reranker(bert_dir, cache_dir=model_cache, mode="fast", batch_size=4)
    assert reranker.runtime.name == "onnxruntime" and reranker.mode == "exact"
    work = make_workload("titles", 5)
    np.testing.assert_allclose(reranker.score(work.query, work.documents), bert_reranker.score(work.query, work.documents))
    with pytest.raises(MissingExtra, match=r"crossrank\[fast\]"):
        Reranker(bert_dir, cache_dir=model_cache, runtime="openvino")


def test_cuda_provider_falls_back_to_cpu(bert_dir: Path, model_cache: Path, bert_reranker: Reranker) -> None:
    import onnxruntime as ort

    from crossrank.runtime.torch import cuda_available

    if "CUDAExecutionProvider" in ort.get_available_providers() or cuda_available():
        pytest.skip("a CUDA GPU is usable here: no fallback to test")
    reranker = Reranker(bert_dir, cache_dir=model_cache, providers=["cuda"], mode="auto", batch_size=4)
    assert reranker.runtime.providers == ["CPUExecutionProvider"]
    assert reranker.mode == "exact"  # a GPU request keeps ONNX Runtime, even in auto mode
    work = make_workload("passages", 3)
    np.testing.assert_allclose(reranker.score(work.query, work.documents), bert_reranker.score(work.query, work.documents))


@needs_openvino
def test_auto_mode_keeps_the_runtime_that_measured_faster_here_and_remembers_it(
    bert_dir: Path, tmp_path: Path, bert_reranker: Reranker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CPU flags say bf16 is native, not that fast is faster for this model on this machine:
    ``auto`` times both once, keeps the faster, and caches the verdict per model and machine."""
    from crossrank.runtime import auto

    monkeypatch.setattr("crossrank.runtime.select.has_native_bf16", lambda flags=None: True)
    timed: list[str] = []
    fake = {"openvino": 0.050, "onnxruntime": 0.020}  # here fast (OpenVINO) is the slower one

    def median(run: Any, feed: dict[str, np.ndarray], rounds: int = 3) -> float:
        runtime = run.__self__.name
        timed.append(runtime)
        run(feed)  # the probe must run on both graphs
        return fake[runtime]

    monkeypatch.setattr(auto, "median_seconds", median)
    reranker = Reranker(bert_dir, cache_dir=tmp_path, mode="auto", batch_size=4)
    assert sorted(timed) == ["onnxruntime", "openvino"]
    assert (reranker.mode, reranker.runtime.name) == ("exact", "onnxruntime")
    assert "measured here: fast 50.0 ms, exact 20.0 ms" in reranker.choice.reason
    work = make_workload("titles", 5)
    np.testing.assert_allclose(reranker.score(work.query, work.documents), bert_reranker.score(work.query, work.documents))
    verdicts = list(auto.ChoiceCache(tmp_path / "auto-choice.json")._read().values())
    assert [v["mode"] for v in verdicts] == ["exact"]
    again = Reranker(bert_dir, cache_dir=tmp_path, mode="auto", batch_size=4)
    assert len(timed) == 2 and again.mode == "exact"  # remembered: not measured again
    fake.update(openvino=0.010)
    assert Reranker(bert_dir, cache_dir=tmp_path, mode="auto", threads=1).mode == "fast"  # another key: measured
    assert len(timed) == 4


def test_the_auto_probe_is_a_fixed_batch_inside_the_vocabulary() -> None:
    from crossrank.runtime.auto import probe_feed

    feed = probe_feed(600, pad_id=0)
    assert feed["input_ids"].shape == (16, 128) and feed["attention_mask"].all()
    assert 0 < feed["input_ids"].min() and feed["input_ids"].max() < 600
    np.testing.assert_array_equal(feed["input_ids"], probe_feed(600, pad_id=0)["input_ids"])


@needs_openvino
@pytest.mark.parametrize("openvino_ms", [10.0, 90.0])
def test_auto_mode_without_bf16_times_openvino_f32_against_onnx_runtime(
    openvino_ms: float, bert_dir: Path, tmp_path: Path, bert_reranker: Reranker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without native bf16 both runtimes compute fp32, yet one is faster on a given CPU: auto keeps the
    one that measured faster here, in the exact mode either way (same scores)."""
    from crossrank.runtime import auto

    monkeypatch.setattr("crossrank.runtime.select.has_native_bf16", lambda flags=None: False)
    fake = {"openvino": openvino_ms / 1000, "onnxruntime": 0.050}
    monkeypatch.setattr(auto, "median_seconds", lambda run, feed, rounds=3: (run(feed), fake[run.__self__.name])[1])
    reranker = Reranker(bert_dir, cache_dir=tmp_path, mode="auto", batch_size=4)
    faster = min(fake, key=fake.__getitem__)
    assert (reranker.mode, reranker.runtime.name, reranker.choice.precision) == ("exact", faster, "f32")
    assert f"OpenVINO f32 {openvino_ms} ms, exact 50.0 ms" in reranker.choice.reason
    work = make_workload("passages", 6)
    assert_probability_parity(reranker.score(work.query, work.documents), bert_reranker.score(work.query, work.documents))
