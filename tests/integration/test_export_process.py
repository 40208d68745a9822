"""The ONNX export runs in a child process: torch never loads into the loading process, the
child's errors come back as crossrank's own, and no staging directory outlives its export."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crossrank import MissingExtra, ModelError, Reranker
from crossrank.models.export import export_key
from crossrank.models.resolve import resolve_model

TASK = "sequence-classification"


def _env() -> dict[str, str]:
    """The environment for a child Python that imports this checkout of crossrank."""
    src = str(Path(__file__).resolve().parents[2] / "src")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _host() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _leftovers(cache: Path) -> list[str]:
    """Directories in the cache that are not a finished export or derived copy."""
    return sorted(p.name for p in cache.glob("*/*") if p.is_dir() and "." in p.name)


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _torch_loaded(pids: list[int]) -> bool:
    for pid in pids:
        try:
            if "libtorch" in Path(f"/proc/{pid}/maps").read_text(errors="replace"):
                return True
        except OSError:
            continue
    return False


def test_loading_with_an_export_never_imports_torch_in_the_loading_process(bert_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "empty-cache"
    code = (
        "import sys\nfrom crossrank import Reranker\n"
        "reranker = Reranker(sys.argv[1], cache_dir=sys.argv[2])\nreranker.score('q', ['d'])\n"
        "print('HEAVY', sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(bert_dir), str(cache)], env=_env(),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout, out.stdout
    assert len(list(cache.glob("onnx/*/model.onnx"))) == 1  # it did export


def test_a_missing_extra_in_the_child_is_the_same_missing_extra(
    bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "no-torch" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(fake.parent), os.environ.get("PYTHONPATH")) if p))
    with pytest.raises(MissingExtra, match=r"pip install 'crossrank\[export\]'") as caught:
        Reranker(bert_dir, cache_dir=tmp_path / "cache")
    assert caught.value.module == "torch" and "Exporting a model" in str(caught.value)
    assert _leftovers(tmp_path / "cache") == []


def test_a_crash_in_the_child_shows_its_output(bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "broken-torch" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise RuntimeError('the torch build is broken: libtorch_cpu.so')\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(fake.parent), os.environ.get("PYTHONPATH")) if p))
    with pytest.raises(ModelError, match=r"exit code 1[\s\S]*the torch build is broken"):
        Reranker(bert_dir, cache_dir=tmp_path / "cache")
    assert _leftovers(tmp_path / "cache") == []


def test_sigterm_during_a_first_start_export_cleans_up(bert_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    command = [sys.executable, "-m", "crossrank.cli", "serve", "--model", str(bert_dir), "--cache-dir", str(cache),
               "--port", "0"]
    server = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not _leftovers(cache) and server.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _leftovers(cache), "the export never started"
        time.sleep(0.5)  # the exporter is starting (importing torch takes seconds)
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
    assert server.returncode == 0, err
    assert "stopped during start-up" in err
    assert _leftovers(cache) == []
    assert _processes_mentioning(str(cache)) == []  # the exporter went with it


def test_a_staging_dir_left_by_a_killed_process_is_removed_by_the_next_export(bert_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    root = cache / "onnx"
    key = export_key(resolve_model(bert_dir), TASK)
    dead, host = _dead_pid(), _host()
    stale = [root / f"{key}.staging-{dead}-{host}-0badc0de", root / f"{'0' * 24}.staging-{dead}-{host}-00c0ffee"]
    elsewhere = root / f"{'0' * 24}.staging-{dead}-{'f' * 8 if host != 'f' * 8 else 'e' * 8}-0000beef"
    alive = root / f"{'0' * 24}.staging-{os.getppid()}-{host}-0000cafe"
    for directory in (*stale, elsewhere, alive):
        (directory / "export").mkdir(parents=True)
        (directory / "export" / "model.onnx").write_bytes(b"half a graph")
    Reranker(bert_dir, cache_dir=cache).score("q", ["d"])
    assert not any(d.exists() for d in stale)
    assert elsewhere.exists(), "another machine's process id says nothing here"
    assert alive.exists(), "a live process's staging directory is kept"


def test_sigkill_during_an_export_takes_the_exporter_along_and_the_next_start_cleans_up(
    bert_dir: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    code = "import sys\nfrom crossrank import Reranker\nReranker(sys.argv[1], cache_dir=sys.argv[2])\n"
    loader = subprocess.Popen([sys.executable, "-c", code, str(bert_dir), str(cache)], env=_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not _torch_loaded(_processes_mentioning(str(cache / "onnx"))) and time.monotonic() < deadline:
            assert loader.poll() is None, "the loader ended before its exporter ran"
            time.sleep(0.05)  # until the exporter has loaded torch: it is under way
        assert _processes_mentioning(str(cache / "onnx")), "the exporter never started"
    finally:
        loader.kill()
        loader.wait()
    deadline = time.monotonic() + 60
    while _processes_mentioning(str(cache / "onnx")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_mentioning(str(cache / "onnx")) == []
    assert _leftovers(cache), "a killed process leaves its staging directory"
    assert list(cache.glob("onnx/*/export/model.onnx")) == []  # the exporter died with its parent, unfinished
    Reranker(bert_dir, cache_dir=cache)
    assert _leftovers(cache) == []
