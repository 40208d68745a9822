"""Prune a cross-encoder graph so that its last layer computes only the first token.

A cross-encoder's score reads one position of the final hidden states: the classifier
(BERT's pooler, the RoBERTa/XLM-R head) gathers token 0. Everything after the last
attention (its output projection, residual, LayerNorm and the feed-forward block, about
three quarters of the last layer's work) is position-wise, so only token 0's row of it is
ever used. This module cuts those nodes down to that row: it inserts ``Slice(0:1)`` on the
sequence axis where the position-wise region begins, and the final ``Gather`` then picks
row 0 of a length-1 sequence. The arithmetic of the kept row is unchanged, so scores stay
those of the full graph (checked on sample inputs before the pruned file is used); a
6-layer model does about an eighth less work.

The pruned copy is written once next to the other converted models and reused; a graph
the rule does not fit (no token-0 gather, a region whose tensors are used elsewhere, a
check that fails) is used as it is, and that verdict is cached too. A failure of the
machine rather than of the graph (a full disk, an unwritable cache, out of memory) is not a
verdict: that load runs the graph unpruned and the next one tries again.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from crossrank.models.derived import derived_dir, publish

log = logging.getLogger(__name__)

#: bump when the pruning rule changes so that earlier pruned files are not reused
RECIPE_VERSION = "1"
#: ops that act on each position independently (given constant or position-wise operands)
_ELEMENTWISE = {
    "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Erf", "Tanh", "Relu", "Sigmoid", "Gelu", "FastGelu",
    "BiasGelu", "Cast", "Identity", "Neg", "Exp", "Log", "Abs", "Reciprocal", "Softplus", "HardSigmoid",
}
_LAST_AXIS_OPS = {"LayerNormalization", "SimplifiedLayerNormalization", "SkipLayerNormalization", "ReduceMean"}
_SAMPLE_TOLERANCE = 1e-4
#: the rows kept on the sequence axis: token 0, the one the classifier reads
_KEEP = (0, 1)


class _NotApplicable(Exception):
    """The graph does not have the shape this rule prunes."""


def first_token_graph(onnx: Path, cache_dir: Path, *, isolate: bool = True) -> Path:
    """``onnx`` pruned to the first token after its last attention, or ``onnx`` itself.

    The result is cached under ``cache_dir`` keyed by the source file. The cut is made once,
    in a child process (``isolate=False``: in this one), so that the ``onnx`` package and the
    check sessions never stay in this process's memory. Any failure (a graph the rule does
    not fit, an unreadable file, a read-only cache) leaves the original graph in use; only a
    verdict on the graph is cached, an error of the machine (a full disk) is retried next time.
    """
    target = derived_dir(onnx, cache_dir, f"first-token-{RECIPE_VERSION}")
    if not (target / "model.onnx").is_file() and not (target / "unchanged").is_file():
        try:
            publish(target, lambda staging: (_prune_in_child if isolate else prune_into)(onnx, staging))
        except (OSError, MemoryError) as exc:
            log.warning(
                "could not write a pruned copy of %s under %s (%s); using it unpruned this time, and trying "
                "again on the next load", onnx, cache_dir, exc,
            )
        if (target / "unchanged").is_file():
            log.info("%s runs unpruned: %s", onnx, (target / "unchanged").read_text(encoding="utf-8").strip())
    return target / "model.onnx" if (target / "model.onnx").is_file() else onnx


def _prune_in_child(onnx: Path, staging: Path) -> None:
    """:func:`prune_into` in a child process; a failure of the child is an ``OSError`` (not cached)."""
    from crossrank.models.child import describe_exit, run_child

    code, output = run_child("first-token", [str(onnx), str(staging)], tail_chars=500)
    if code != 0:
        raise OSError(f"the process cutting it {describe_exit(code)}: {output.splitlines()[-1] if output else ''}")


def prune_into(onnx: Path, staging: Path) -> None:
    """Write ``staging/model.onnx``, or ``staging/unchanged`` with the reason it was not cut.

    ``OSError`` and ``MemoryError`` (a full disk, an unreadable file, no memory) propagate:
    they say nothing about the graph, so no verdict is written.
    """
    try:
        _prune_file(onnx, staging / "model.onnx")
    except (OSError, MemoryError):
        raise
    except Exception as why:  # noqa: BLE001 - the original graph is always a correct fallback
        if isinstance(why, _NotApplicable):
            log.info("%s runs unpruned: %s", onnx, why)
        else:
            log.warning("could not prune %s (%s); it runs unpruned", onnx, str(why).strip()[:200])
        for item in staging.iterdir():
            item.unlink()
        (staging / "unchanged").write_text(f"{why}\n", encoding="utf-8")


def _prune_file(source: Path, out: Path) -> None:
    import onnx

    from crossrank.models.external_data import reference_data, uses_external_data

    model = onnx.load(str(source), load_external_data=False)
    external = uses_external_data(model)
    if external:  # over protobuf's 2 GiB limit: the cut graph links the original's data file, no copy
        reference_data(model, source.parent, out.parent)
    prune_first_token(model)
    vocabulary = _vocabulary(model)
    if external:
        onnx.save(model, str(out))
        _check_same_outputs(source, str(out), vocabulary)
    else:
        data = model.SerializeToString()
        _check_same_outputs(source, data, vocabulary)
        _write(out, data)


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def prune_first_token(model: Any) -> int:
    """Prune ``model`` (an ``onnx.ModelProto``) in place; returns the number of nodes cut to one row.

    Raises :class:`_NotApplicable` when the graph has no single token-0 gather fed by a
    position-wise region that nothing else reads.
    """
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    nodes = []
    for original in graph.node:  # copies: the graph's node list is rebuilt below
        node = onnx.NodeProto()
        node.CopyFrom(original)
        nodes.append(node)
    constants: dict[str, Any] = {t.name: t for t in graph.initializer}  # TensorProto, read on demand
    for node in nodes:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = node.attribute[0].t
    consumers: dict[str, set[int]] = defaultdict(set)
    for i, node in enumerate(nodes):
        for name in node.input:
            consumers[name].add(i)
    outputs = {o.name for o in graph.output}

    gathers = [i for i, n in enumerate(nodes) if _is_first_token_gather(n, constants)]
    if len(gathers) != 1:
        raise _NotApplicable(f"expected one gather of token 0, found {len(gathers)}")
    # walk back from the gather (the graph is topologically sorted): a position-wise node
    # joins when everything that reads its outputs is already in, or is the gather
    region: set[int] = set()
    allowed = set(gathers)
    for i in range(gathers[0] - 1, -1, -1):
        node = nodes[i]
        readers = [consumers.get(name, set()) for name in node.output]
        if (
            _is_positionwise(node, constants)
            and any(readers)
            and all(r <= allowed for r in readers)
            and not outputs.intersection(node.output)
        ):
            region.add(i)
            allowed.add(i)
    if not any(nodes[i].op_type == "MatMul" for i in region):
        raise _NotApplicable("no matrix multiplication between the last attention and the gather")
    made = {name for i in region for name in nodes[i].output}
    frontier = {x for i in region for x in nodes[i].input if x and x not in constants and x not in made}
    if nodes[gathers[0]].input[0] not in made:
        raise _NotApplicable("the gathered hidden states do not come from a position-wise block")

    slices: dict[int, list[Any]] = defaultdict(list)  # inserted before the first region node reading them
    for k, name in enumerate(sorted(frontier)):
        renamed = f"{name}/crossrank_first_token"
        users = sorted(consumers[name] & region)
        for i in users:
            nodes[i].input[:] = [renamed if x == name else x for x in nodes[i].input]
        slices[users[0]].append(_slice_node(name, renamed, f"crossrank_first_token_{k}"))
    graph.initializer.extend(
        numpy_helper.from_array(np.asarray([value], dtype=np.int64), f"crossrank_first_token_{what}")
        for what, value in (("starts", _KEEP[0]), ("ends", _KEEP[1]), ("axes", 1))
    )
    del graph.node[:]
    graph.node.extend(new for i, node in enumerate(nodes) for new in (*slices.get(i, ()), node))
    return len(region)


def _slice_node(source: str, target: str, name: str) -> Any:
    from onnx import helper

    return helper.make_node(
        "Slice", [source, "crossrank_first_token_starts", "crossrank_first_token_ends", "crossrank_first_token_axes"],
        [target], name=name,
    )


def _attribute(node: Any, name: str, default: Any = None) -> Any:
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _is_first_token_gather(node: Any, constants: dict[str, Any]) -> bool:
    if node.op_type != "Gather" or _attribute(node, "axis", 0) != 1 or len(node.input) < 2:
        return False
    index = constants.get(node.input[1])
    if index is None or int(np.prod(index.dims)) != 1:
        return False
    from onnx import numpy_helper

    return int(numpy_helper.to_array(index).reshape(-1)[0]) == 0


def _is_positionwise(node: Any, constants: dict[str, Any]) -> bool:
    """True when each position of the output depends only on the same position of the inputs."""
    op = node.op_type
    if op == "MatMul":
        weight = constants.get(node.input[1]) if len(node.input) == 2 else None
        return weight is not None and len(weight.dims) == 2 and node.input[0] not in constants
    if op in _LAST_AXIS_OPS:
        axes = _attribute(node, "axes", [-1]) if op == "ReduceMean" else [_attribute(node, "axis", -1)]
        if op == "ReduceMean" and len(node.input) > 1:
            return False  # axes given as an input (opset 18): not checked, so not pruned
        return list(axes) in ([-1], [2]) and _small_constants(node, constants, skip_first=True)
    if op in _ELEMENTWISE:
        return _small_constants(node, constants, skip_first=False)
    return False


def _small_constants(node: Any, constants: dict[str, Any], *, skip_first: bool) -> bool:
    """Constant operands broadcast along the hidden axis only (scalars, vectors, [1, 1, H])."""
    for k, name in enumerate(node.input):
        if not name or (skip_first and k == 0):
            continue
        value = constants.get(name)
        if value is not None and len(value.dims) >= 2 and any(d != 1 for d in value.dims[:-1]):
            return False
    return True


def _check_same_outputs(source: Path, pruned: str | bytes, vocabulary: int) -> None:
    """Run both graphs on sample inputs (one row padded); the outputs must agree.

    One graph is loaded at a time, so a large model's weights are never held twice.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    full = ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    feeds = _sample_feeds(full, vocabulary)
    expected = [full.run(None, feed) for feed in feeds]
    del full
    try:
        cut = ort.InferenceSession(pruned, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # an invalid pruned graph is a reason to keep the original
        raise _NotApplicable(f"the pruned graph does not load ({str(exc).strip()[:200]})") from exc
    for feed, want in zip(feeds, expected):
        try:
            got = cut.run(None, feed)
        except Exception as exc:
            raise _NotApplicable(f"the pruned graph fails on sample inputs ({str(exc).strip()[:200]})") from exc
        for a, b in zip(want, got):
            a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
            scale = max(1.0, float(np.abs(a).max(initial=0.0)))
            if a.shape != b.shape or float(np.abs(a - b).max(initial=0.0)) > _SAMPLE_TOLERANCE * scale:
                raise _NotApplicable("the pruned graph's outputs differ from the original's on sample inputs")


def _sample_feeds(full: Any, vocabulary: int) -> list[dict[str, np.ndarray]]:
    """Two sample batches (one row half padded) for the inputs ``full`` declares."""
    rng = np.random.default_rng(0)
    feeds = []
    for batch, length in ((2, 13), (3, 24)):
        feed = {}
        for item in full.get_inputs():
            dtype = np.int32 if item.type == "tensor(int32)" else np.int64
            if item.name == "attention_mask":
                value = np.ones((batch, length), dtype=dtype)
                value[0, length // 2 :] = 0
            elif item.name == "input_ids":
                value = rng.integers(min(5, vocabulary - 1), min(100, vocabulary), size=(batch, length)).astype(dtype)
            else:
                value = np.zeros((batch, length), dtype=dtype)
            feed[item.name] = value
        feeds.append(feed)
    return feeds


def _vocabulary(model: Any) -> int:
    """Rows of the smallest table that ``input_ids`` index, so that sample ids stay in range."""
    tables = {n.input[0] for n in model.graph.node if n.op_type == "Gather" and n.input[1:2] == ["input_ids"]}
    return min((int(t.dims[0]) for t in model.graph.initializer if t.name in tables), default=100)
