"""Batch reranking on Ray Data, on a real local cluster: a head and a second node process on
this machine, one CPU each. Equal to the single-process ``rerank-run``; an actor killed mid-job
is restarted and its batches retried; a bad row is reported with its ids and loses nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from batch_inputs import CrashOnce, assert_same_run, crash_marker, restore, spec_of
from crossrank import Reranker
from crossrank.batch.run import Job
from crossrank.batch.scorer import PairScorer

# Ray binds a cluster to this machine's network address unless told that it runs alone: the test
# cluster listens on the loopback only (read when Ray is imported, and by the node processes)
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
if TYPE_CHECKING:
    from pandas import DataFrame

ray = pytest.importorskip("ray", reason="crossrank[ray] is not installed")
pd = pytest.importorskip("pandas")
cluster_utils = pytest.importorskip("ray.cluster_utils")

pytestmark = pytest.mark.timeout(150)

OBJECT_STORE = 100 * 2**20


class Loads(PairScorer):
    """Reports its process and how many models it loaded, per row."""

    def __call__(self, batch: DataFrame) -> DataFrame:
        answer = super().__call__(batch)
        answer["pid"], answer["loads"] = os.getpid(), self.loads
        return answer


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Head and a second node process, one CPU and 100 MB of object store each; the address."""
    # the nodes' workers take the environment of this process: the same model cache as the driver,
    # and this directory on the path for the test's own scorers
    saved = {k: os.environ.get(k) for k in ("HF_HOME", "PYTHONPATH")}
    os.environ["HF_HOME"] = str(tmp_path_factory.mktemp("hf-home"))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), *sys.path])
    nodes = cluster_utils.Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "object_store_memory": OBJECT_STORE, "include_dashboard": False})
    nodes.add_node(num_cpus=1, object_store_memory=OBJECT_STORE)
    nodes.wait_for_nodes()
    address = nodes.address  # 127.0.0.1:PORT
    assert address.startswith("127.0.0.1:"), address
    ray.init(address=address, log_to_driver=False)
    try:
        yield address
    finally:
        ray.shutdown()
        nodes.shutdown()
        restore(saved)


def test_cluster_has_two_nodes(cluster: str) -> None:
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2


def test_equals_single_process_and_loads_once_per_actor(
    cluster: str, inputs: tuple[Path, Path, Path], reference: Path, bert_dir: Path, model_cache: Path,
    tmp_path: Path,
) -> None:
    from crossrank.batch import ray_data

    out = tmp_path / "ray.trec"
    report = ray_data.rerank_run_ray(Job(*inputs, out, top_n=8, keep_rest=True, tag="ce"),
                                     spec_of(bert_dir, model_cache), workers=2, batch_rows=16)
    assert report.reranked == 12 and report.pairs == 12 * 7 and report.missing_documents == 1 and not report.failures
    assert_same_run(out, reference)

    rows = pd.DataFrame({"qid": ["q"] * 64, "docid": [f"d{i}" for i in range(64)], "query": ["a b"] * 64,
                         "text": [f"text {i}" for i in range(64)]})
    scored = ray_data.score_dataset(ray.data.from_pandas([rows.iloc[i:i + 8] for i in range(0, 64, 8)]),
                                    spec_of(bert_dir, model_cache), workers=2, batch_rows=8, scorer=Loads).to_pandas()
    assert len(scored) == 64 and set(scored["loads"]) == {1}  # 8 batches, one model per actor
    assert 1 <= scored["pid"].nunique() <= 2


def test_actor_killed_mid_job_still_gives_the_whole_equal_run(
    cluster: str, inputs: tuple[Path, Path, Path], reference: Path, bert_dir: Path, model_cache: Path,
    tmp_path: Path,
) -> None:
    from crossrank.batch import ray_data

    spec = spec_of(bert_dir, model_cache)
    crash_marker(spec).unlink(missing_ok=True)
    out = tmp_path / "ray.trec"
    report = ray_data.rerank_run_ray(Job(*inputs, out, top_n=8, keep_rest=True, tag="ce"), spec, workers=2,
                                     batch_rows=16, scorer=CrashOnce)
    assert crash_marker(spec).exists(), "no actor was killed"
    assert report.reranked == 12 and not report.failures
    assert_same_run(out, reference)


def test_bad_rows_are_named_and_the_rest_scored(cluster: str, bert_dir: Path, model_cache: Path,
                                                bert_reranker: Reranker) -> None:
    from crossrank.batch import ray_data

    rows = pd.DataFrame({"qid": ["q1", "q1", "q2", "q2"], "docid": ["a", "b", "c", "d"],
                         "query": ["one query", "one query", "two", "two"],
                         "text": ["fine text", None, 5, "more fine text"]})
    scored = ray_data.score_dataset(ray.data.from_pandas(rows), spec_of(bert_dir, model_cache), workers=1
                                    ).to_pandas().set_index("docid")
    assert "q1" in scored.loc["b", "error"] and "docid b" in scored.loc["b", "error"]
    assert "missing" in scored.loc["b", "error"]
    assert "docid c" in scored.loc["c", "error"] and "must be a string" in scored.loc["c", "error"]
    assert pd.isna(scored.loc["b", "score"]) and pd.isna(scored.loc["c", "score"])
    expected = bert_reranker.score_pairs([("one query", "fine text"), ("two", "more fine text")])
    assert scored.loc[["a", "d"], "score"].to_numpy() == pytest.approx(expected, abs=1e-6)
    assert pd.isna(scored.loc["a", "error"]) and pd.isna(scored.loc["d", "error"])


def test_cli_engine_ray_writes_the_same_file(
    cluster: str, inputs: tuple[Path, Path, Path], bert_dir: Path, tmp_path: Path
) -> None:
    run, corpus, queries = inputs
    common = ["--run", str(run), "--corpus", str(corpus), "--queries", str(queries), "--top-n", "8",
              "--model", str(bert_dir), "--tag", "ce", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}  # HF_HOME: the cluster's cache
    single, on_ray = tmp_path / "single.trec", tmp_path / "ray.trec"
    subprocess.run([sys.executable, "-m", "crossrank.cli", "rerank-run", *common, "--out", str(single)],
                   check=True, env=env, timeout=120)
    done = subprocess.run([sys.executable, "-m", "crossrank.cli", "rerank-run", *common, "--out", str(on_ray),
                           "--engine", "ray", "--address", cluster, "--workers", "2"],
                          env=env, timeout=180, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "reranked 12 queries (84 pairs)" in done.stderr
    assert_same_run(on_ray, single)


def test_a_cluster_started_by_crossrank_listens_on_the_loopback_only() -> None:
    """``--engine ray`` without ``--address`` starts a cluster of this process alone: it must not
    listen on the machine's network address (Ray's default), where anyone on the network could
    submit work to it."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    code = ("from crossrank.batch.ray_data import connect\nconnect(None, 1)\nimport ray\n"
            "print(sorted({n['NodeManagerAddress'] for n in ray.nodes()}))\nray.shutdown()\n")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "['127.0.0.1']"
