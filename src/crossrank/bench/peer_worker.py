"""The sentence-transformers peers that need their own environment, served over stdin/stdout.

sentence-transformers' ONNX and OpenVINO backends need ``optimum-onnx`` and
``optimum-intel``, which pin an older ``transformers`` than crossrank runs; they live in a
separate virtual environment (``make peers`` creates ``.venv-peers``). ``crossrank bench
--compare`` starts this script with that environment's Python and drives it one JSON line
at a time, so each call is timed inside the peer's process (no transfer in the figure) and
interleaved with crossrank's own calls. The script imports nothing from crossrank.

Requests (one JSON object a line on stdin) and answers (one a line on stdout):

* on start, the script says ``{"ok": true, "versions": {...}}``;
* ``{"op": "load", "peer": NAME, "model": DIR, "work": DIR, "threads": N, "calibration": [TEXT...]}``
  loads a peer (``st-torch``, ``st-onnx``, ``st-onnx-o3``, ``st-openvino``, ``st-openvino-int8``)
  and answers ``{"ok": true, "label": ..., "seconds": ...}``;
* ``{"op": "score", "peer": NAME, "query": Q, "documents": [D...]}`` answers
  ``{"scores": [...], "seconds": S}``, S being the time of the ``predict`` call alone;
* ``{"op": "quit"}`` or the end of stdin ends the script.

Any failure answers ``{"error": MESSAGE}`` and the script goes on serving.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

PEERS = ("st-torch", "st-onnx", "st-onnx-o3", "st-openvino", "st-openvino-int8")
_PACKAGES = ("sentence-transformers", "transformers", "torch", "optimum", "optimum-onnx", "optimum-intel",
             "onnxruntime", "openvino", "nncf", "datasets")
_BATCH = 32  # what the in-process sentence-transformers peer uses


def versions() -> dict[str, str]:
    found = {}
    for package in _PACKAGES:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


def _copy_model(model: Path, target: Path) -> Path:
    """Each peer exports into its own copy: sentence-transformers writes next to the weights."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(model, target)
    return target


def _write_calibration(texts: list[str], folder: Path) -> Path:
    """A local folder dataset (one JSON line a text) that ``datasets.load_dataset`` reads offline."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "train.jsonl", "w", encoding="utf-8") as out:
        for text in texts:
            out.write(json.dumps({"text": text}) + "\n")
    return folder


def load(peer: str, model: Path, work: Path, threads: int, calibration: list[str]) -> tuple[Any, str]:
    """A CrossEncoder for ``peer`` and the label of what it runs."""
    if peer not in PEERS:
        raise ValueError(f"unknown peer {peer!r}; this script serves {', '.join(PEERS)}")
    st = importlib.import_module("sentence_transformers")
    torch = importlib.import_module("torch")
    torch.set_num_threads(threads)
    if peer == "st-torch":
        return st.CrossEncoder(str(model), device="cpu"), "torch fp32"
    directory = _copy_model(model, work / peer)
    if peer.startswith("st-onnx"):
        ort = importlib.import_module("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        kwargs: dict[str, Any] = {"session_options": options, "provider": "CPUExecutionProvider"}
        encoder = st.CrossEncoder(str(directory), backend="onnx", model_kwargs=kwargs)
        if peer == "st-onnx":
            return encoder, "ONNX Runtime fp32"
        st.export_optimized_onnx_model(encoder, "O3", str(directory))
        kwargs["file_name"] = "onnx/model_O3.onnx"
        return st.CrossEncoder(str(directory), backend="onnx", model_kwargs=kwargs), "ONNX Runtime, O3-optimized export"
    ov_config = {"INFERENCE_NUM_THREADS": str(threads)}
    encoder = st.CrossEncoder(str(directory), backend="openvino", model_kwargs={"ov_config": dict(ov_config)})
    if peer == "st-openvino":
        return encoder, f"OpenVINO {_ov_precision(encoder)}"
    if not calibration:
        raise ValueError("st-openvino-int8 needs calibration texts")
    intel = importlib.import_module("optimum.intel")
    folder = _write_calibration(calibration, work / "calibration")
    st.export_static_quantized_openvino_model(
        encoder, intel.OVQuantizationConfig(num_samples=len(calibration)), str(directory),
        dataset_name=str(folder), dataset_config_name="default", dataset_split="train", column_name="text",
    )
    quantized = st.CrossEncoder(
        str(directory), backend="openvino",
        model_kwargs={"ov_config": dict(ov_config), "file_name": "openvino/openvino_model_qint8_quantized.xml"},
    )
    return quantized, f"OpenVINO static int8, {len(calibration)} local calibration texts"


def _ov_precision(encoder: Any) -> str:
    """The precision OpenVINO picked (bf16 by default on CPUs with AVX-512 BF16 or AMX)."""
    try:
        hint = encoder.model.request.get_property("INFERENCE_PRECISION_HINT")
    except Exception:
        return "(precision unknown)"
    return str(hint.to_string() if hasattr(hint, "to_string") else hint)


def serve(requests: Any, answers: Any) -> None:
    models: dict[str, Any] = {}

    def say(message: dict[str, Any]) -> None:
        answers.write(json.dumps(message) + "\n")
        answers.flush()

    say({"ok": True, "versions": versions(), "peers": list(PEERS)})
    for line in requests:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            op = request.get("op")
            if op == "quit":
                break
            if op == "load":
                started = time.perf_counter()
                models[request["peer"]], label = load(
                    request["peer"], Path(request["model"]), Path(request["work"]), int(request.get("threads") or 1),
                    list(request.get("calibration") or []),
                )
                say({"ok": True, "label": label, "seconds": time.perf_counter() - started})
            elif op == "score":
                model = models[request["peer"]]
                pairs = [(request["query"], doc) for doc in request["documents"]]
                started = time.perf_counter()
                scores = model.predict(pairs, batch_size=_BATCH, show_progress_bar=False)
                seconds = time.perf_counter() - started
                say({"scores": [float(s) for s in scores], "seconds": seconds})
            else:
                say({"error": f"unknown op {op!r} (load, score or quit)"})
        except KeyError as exc:
            say({"error": f"missing {exc} in the request, or that peer was not loaded"})
        except Exception as exc:  # answered, so that the caller can skip this peer and go on
            say({"error": f"{type(exc).__name__}: {exc}"})


def main() -> None:
    # Libraries print to stdout now and then; the answers get their own copy of it.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin, answers)


if __name__ == "__main__":
    main()
