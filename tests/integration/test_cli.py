"""The command line, run as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crossrank import Reranker
from crossrank.cli import build_parser

CLI = [sys.executable, "-m", "crossrank.cli"]


def run(args: list[str], *, stdin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(CLI + args, input=stdin, capture_output=True, text=True, timeout=300, env=env)


def test_every_command_has_help() -> None:
    parser = build_parser()
    choices = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert isinstance(choices, dict)
    commands: dict[str, object] = choices
    assert {"rerank", "models", "demo"} <= set(commands)
    for name in commands:
        out = run([name, "--help"])
        assert out.returncode == 0 and "usage: crossrank " + name in out.stdout
    assert run(["--help"]).returncode == 0


def test_models_table_and_json() -> None:
    table = run(["models"])
    assert table.returncode == 0 and "cross-encoder/ms-marco-MiniLM-L6-v2" in table.stdout
    data = json.loads(run(["models", "--json"]).stdout)
    assert any(m["name"] == "BAAI/bge-reranker-base" for m in data)


def test_rerank_from_file_prints_the_ranking(bert_dir: Path, model_cache: Path, tmp_path: Path, isolated_hf_home: Path) -> None:
    docs = ["Crocs Jibbitz 5-Pack Alien Shoe Charms", "Crocs Specialist Vent Work", "Crocs Kids' Baya Clog"]
    path = tmp_path / "docs.txt"
    path.write_text("\n".join(docs) + "\n")
    out = run(["rerank", "--model", str(bert_dir), "--query", "crocs", "--docs", str(path), "--json"])
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    expected = Reranker(bert_dir, cache_dir=model_cache).rank("crocs", docs)
    assert [r["index"] for r in rows] == [r.index for r in expected]
    assert [r["text"] for r in rows] == [r.document for r in expected]
    assert abs(rows[0]["score"] - expected[0].score) < 1e-6


def test_rerank_reads_jsonl_from_stdin_with_top_k(bert_dir: Path, isolated_hf_home: Path) -> None:
    stdin = "\n".join(json.dumps({"text": t}) for t in ["a", "b", "c", "d"]) + "\n"
    out = run(["rerank", "--model", str(bert_dir), "-q", "x", "--docs", "-", "--top-k", "2"], stdin=stdin)
    assert out.returncode == 0, out.stderr
    assert "rank" in out.stdout and len([line for line in out.stdout.splitlines() if line.strip()]) == 4


def test_rerank_on_a_missing_gpu_falls_back_to_the_cpu(bert_dir: Path, model_cache: Path, isolated_hf_home: Path) -> None:
    from crossrank.runtime.torch import cuda_available

    if cuda_available():
        pytest.skip("a CUDA GPU is usable here: no fallback to test")
    docs = ["Crocs Kids' Baya Clog", "Leather boots", "Crocs Jibbitz charms"]
    args = ["rerank", "--model", str(bert_dir), "-q", "crocs", "--json", *sum((["--doc", d] for d in docs), [])]
    out = run([*args, "--device", "cuda", "--mode", "fast"])
    assert out.returncode == 0, out.stderr
    assert "running on the CPU" in out.stderr  # says so instead of failing or hiding it
    scores = {json.loads(line)["index"]: json.loads(line)["score"] for line in out.stdout.splitlines()}
    expected = Reranker(bert_dir, cache_dir=model_cache).score("crocs", docs)
    assert max(abs(scores[i] - expected[i]) for i in range(3)) < 1e-6


@pytest.mark.parametrize(
    "args, stdin, message",
    [
        (["--docs", "/no/such/file"], None, "cannot read --docs"),
        (["--docs", "-"], '{"title": "no text field"}\n', "line 1"),
        (["--docs", "-"], "", "no documents"),
    ],
)
def test_rerank_bad_input_says_what_to_fix(
    bert_dir: Path, isolated_hf_home: Path, args: list[str], stdin: str | None, message: str
) -> None:
    out = run(["rerank", "--model", str(bert_dir), "-q", "x", *args], stdin=stdin)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr


def test_unknown_model_directory_is_a_clear_cli_error(isolated_hf_home: Path) -> None:
    out = run(["rerank", "--model", "/no/such/model", "-q", "x", "--doc", "d"])
    assert out.returncode == 2 and "does not exist" in out.stderr and "Traceback" not in out.stderr


def test_demo_offline_falls_back_to_a_labelled_random_model(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT="http://127.0.0.1:9")
    out = run(["demo"], env=env)
    assert out.returncode == 0, out.stderr
    assert "RANDOM WEIGHTS" in out.stdout and "meaningless" in out.stdout
    assert "Crocs Kids' Baya Clog" in out.stdout and "Jeanne d'Arc" in out.stdout
    assert "indexed 96 products (BM25 + all-MiniLM-L6-v2 vectors)" in out.stdout
    assert "hybrid rank" in out.stdout and "rerank score" in out.stdout


def test_demo_with_a_local_model(bert_dir: Path, isolated_hf_home: Path) -> None:
    out = run(["demo", "--model", str(bert_dir)])
    assert out.returncode == 0, out.stderr
    assert "RANDOM WEIGHTS" not in out.stdout and "query: 'crocs'" in out.stdout
