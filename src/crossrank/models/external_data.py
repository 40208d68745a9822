"""ONNX files over protobuf's 2 GiB limit keep their weights in one side file, ``model.onnx_data``.

A protobuf message cannot exceed 2 GiB, so a larger model (bge-reranker-v2-m3 in fp32 is
2.27 GB, Qwen3-Reranker-0.6B 2.4 GB) stores its tensors outside the graph: each initializer
names a file, an offset and a length. ONNX Runtime and OpenVINO read them from the path of the
graph, so a loader passes the path (never the bytes) and both files stay side by side.

* :func:`consolidate` rewrites an export so its weights sit in one aligned ``<name>_data``
  file: torch's exporter writes one file per tensor when the model is over 2 GiB, and a graph
  just under the limit is moved out too when it is above ``threshold``. Tensors are copied one
  at a time, so the rewrite holds at most one tensor in memory (plus the graph itself when it
  was a single file).
* :func:`reference_data` lets a rewritten copy of a graph (the first-token cut) reuse the
  original's data file by a link instead of a second copy on disk and in memory.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: protobuf's limit on one message
PROTOBUF_LIMIT = 2**31
#: a graph file above this is written with external data (headroom under the limit for the graph itself)
THRESHOLD = PROTOBUF_LIMIT - (64 << 20)
#: tensors smaller than this stay inside the graph (shapes, indices, scalars)
MIN_EXTERNAL_BYTES = 1024
#: node attributes (``Constant``, ``ConstantOfShape`` values) below this stay inside the graph: ONNX Runtime's
#: shape inference cannot read some of them from external data
ATTRIBUTE_INLINE_BYTES = 64 << 20
#: data offsets are aligned to pages, so that a runtime can map the tensors instead of copying them
ALIGNMENT = 4096


def data_path(graph: Path) -> Path:
    """Where :func:`consolidate` puts ``graph``'s tensors: ``model.onnx`` -> ``model.onnx_data``."""
    return graph.with_name(graph.name + "_data")


def all_tensors(graph: Any) -> Iterator[Any]:
    """Every tensor of ``graph``: initializers and node attributes (``Constant`` values), subgraphs included.

    torch's exporter moves large ``Constant`` values out of the graph too, not only initializers.
    """
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from all_tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from all_tensors(subgraph)


def uses_external_data(model: Any) -> bool:
    from onnx.external_data_helper import uses_external_data as external

    return any(external(t) for t in all_tensors(model.graph))


def consolidate(graph: Path, *, threshold: int = THRESHOLD) -> bool:
    """Rewrite ``graph`` so that its tensors live in one :func:`data_path` file when it needs external data.

    It does when the export already wrote tensors outside the graph (torch, for a model over
    2 GiB: one file per tensor, removed here) or when the file is larger than ``threshold``.
    Returns whether the graph now uses external data.
    """
    import onnx
    from onnx.external_data_helper import ExternalDataInfo
    from onnx.external_data_helper import uses_external_data as external

    model = onnx.load(str(graph), load_external_data=False)
    if not uses_external_data(model) and graph.stat().st_size <= threshold:
        return False
    target = data_path(graph)
    staging = target.with_name(target.name + ".partial")
    sources: set[Path] = set()
    with staging.open("wb") as out:
        initializers = len(model.graph.initializer)  # all_tensors yields them first
        for index, tensor in enumerate(all_tensors(model.graph)):
            if external(tensor):
                info = ExternalDataInfo(tensor)
                source = graph.parent / info.location
                sources.add(source)
                with source.open("rb") as handle:
                    handle.seek(info.offset or 0)
                    blob = handle.read(info.length) if info.length else handle.read()
                if index >= initializers and len(blob) < ATTRIBUTE_INLINE_BYTES:  # a node attribute: back inline
                    tensor.raw_data = blob
                    del tensor.external_data[:]
                    tensor.data_location = onnx.TensorProto.DEFAULT
                    continue
            elif index < initializers and tensor.HasField("raw_data") and len(tensor.raw_data) >= MIN_EXTERNAL_BYTES:
                blob = tensor.raw_data
                tensor.ClearField("raw_data")
            else:
                continue
            offset = out.tell()
            if offset % ALIGNMENT:
                out.write(b"\0" * (ALIGNMENT - offset % ALIGNMENT))
                offset = out.tell()
            out.write(blob)
            del tensor.external_data[:]
            for key, value in (("location", target.name), ("offset", str(offset)), ("length", str(len(blob)))):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value
            tensor.data_location = onnx.TensorProto.EXTERNAL
            del blob
    os.replace(staging, target)
    onnx.save(model, str(graph))
    for source in sources - {target}:
        source.unlink(missing_ok=True)
    log.info("%s keeps its weights in %s (%.2f GB)", graph.name, target.name, target.stat().st_size / 1e9)
    return True


def reference_data(model: Any, source_dir: Path, target_dir: Path, *, inline_below: int = 1 << 20) -> None:
    """Make ``model`` (loaded from ``source_dir`` without its external data) loadable from ``target_dir``.

    Small external tensors (under ``inline_below`` bytes: indices, shapes) are read into the
    graph, so code that inspects them works; the large ones keep their references, and each data
    file they name is linked into ``target_dir`` (a hard link, else a symbolic one): no second copy.
    """
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, load_external_data_for_tensor
    from onnx.external_data_helper import uses_external_data as external

    locations: set[str] = set()
    for tensor in all_tensors(model.graph):
        if not external(tensor):
            continue
        info = ExternalDataInfo(tensor)
        if info.length is not None and info.length < inline_below:
            load_external_data_for_tensor(tensor, str(source_dir))
            tensor.data_location = onnx.TensorProto.DEFAULT
            del tensor.external_data[:]
        else:
            locations.add(info.location)
    for location in locations:
        link = target_dir / location
        link.parent.mkdir(parents=True, exist_ok=True)
        source = (source_dir / location).resolve()
        try:
            os.link(source, link)
        except OSError:  # another file system, or links not allowed
            link.symlink_to(source)
