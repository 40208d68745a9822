"""Evaluation outputs: the console table, ``results.json`` and a self-contained HTML report.

The HTML report embeds its charts as base64 PNGs (matplotlib, Agg backend), so it is one
file that opens anywhere: a per-stage metric bar chart, the per-query latency distribution,
and, for each reranked stage, the sorted per-query change in nDCG@10 against its first stage.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from crossrank.evaluate.metrics import MEASURES, Evaluation
from crossrank.evaluate.stages import StageRun, first_stage_of, is_reranked
from crossrank.extras import require
from crossrank.table import format_table

DELTA_MEASURE = "nDCG@10"
_COLORS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860"]


def _spread(values: Sequence[int]) -> dict[str, float]:
    return ({"mean": round(float(np.mean(values)), 2), "min": int(min(values)), "max": int(max(values))}
            if values else {"mean": 0.0, "min": 0, "max": 0})


def stage_summaries(runs: Mapping[str, StageRun], evaluations: Mapping[str, Evaluation]) -> list[dict[str, Any]]:
    """One JSON-ready row per stage: metrics, candidates actually ranked per query, latency
    percentiles and total time."""
    rows = []
    for name, run in runs.items():
        evaluation = evaluations[name]
        rows.append(
            {
                "stage": name,
                "retriever": run.retriever,
                "reranker": run.reranker,
                "candidates_per_query": _spread(list(run.candidates.values())),
                "metrics": {k: round(v, 6) for k, v in evaluation.mean.items()},
                "latency_ms": {
                    "p50": round(run.percentile_ms(50), 3),
                    "p95": round(run.percentile_ms(95), 3),
                    "mean": round(run.total_seconds * 1000.0 / max(len(run.latencies_ms), 1), 3),
                },
                "total_seconds": round(run.total_seconds, 3),
                "failed_queries": len(run.failures),
                **evaluation.to_dict(),
            }
        )
    return rows


def _candidates(row: Mapping[str, Any]) -> str:
    """``6.2 (1-100)``: the mean, min and max candidates a stage ranked per query."""
    spread = row["candidates_per_query"]
    return f"{spread['mean']:g} ({spread['min']}-{spread['max']})"


def format_results(rows: Sequence[Mapping[str, Any]]) -> str:
    headers = ["stage", *MEASURES, "candidates/query", "p50 ms", "p95 ms", "total s"]
    table = [
        [
            row["stage"],
            *(f"{row['metrics'][m]:.4f}" for m in MEASURES),
            _candidates(row),
            f"{row['latency_ms']['p50']:.2f}",
            f"{row['latency_ms']['p95']:.2f}",
            f"{row['total_seconds']:.2f}",
        ]
        for row in rows
    ]
    return format_table(headers, table, "<" + ">" * (len(headers) - 1))


def per_query_deltas(evaluations: Mapping[str, Evaluation], measure: str = DELTA_MEASURE) -> dict[str, list[float]]:
    """For each reranked stage present with its first stage: per-query change of ``measure``."""
    deltas = {}
    for name, evaluation in evaluations.items():
        base = evaluations.get(first_stage_of(name))
        if is_reranked(name) and base is not None:
            deltas[name] = [
                values[measure] - base.per_query[qid][measure] for qid, values in evaluation.per_query.items()
            ]
    return deltas


def _pairs(names: Sequence[str]) -> list[tuple[str, str]]:
    """The stage pairs worth a test: each reranked stage against its first stage, and reranked
    stages over the same first stage against each other (several models compared)."""
    pairs = [(name, first_stage_of(name)) for name in names if is_reranked(name) and first_stage_of(name) in names]
    reranked = [name for name in names if is_reranked(name)]
    pairs += [(a, b) for i, a in enumerate(reranked) for b in reranked[i + 1:] if first_stage_of(a) == first_stage_of(b)]
    return pairs


def comparisons(evaluations: Mapping[str, Evaluation], measure: str = DELTA_MEASURE) -> list[dict[str, Any]]:
    """Paired comparisons of ``measure`` over the same queries: the mean change, how many queries
    got better, worse or stayed, and a two-sided paired t-test's p-value (scipy), the test
    Sakai (2014) and Urbano et al. (2019) recommend for IR evaluation."""
    stats = require("scipy.stats", "eval", "The paired significance test")
    out = []
    for stage, against in _pairs(list(evaluations)):
        a, b = evaluations[stage].per_query, evaluations[against].per_query
        qids = sorted(set(a) & set(b))
        deltas = np.array([a[q][measure] - b[q][measure] for q in qids], dtype=np.float64)
        if len(deltas) < 2:
            p_value = None
        elif not deltas.any():
            p_value = 1.0  # identical rankings: no difference to test
        else:
            p_value = float(stats.ttest_rel([a[q][measure] for q in qids], [b[q][measure] for q in qids]).pvalue)
        out.append({
            "stage": stage, "against": against, "measure": measure, "queries": len(qids),
            "mean_delta": round(float(deltas.mean()), 6) if len(deltas) else 0.0,
            "better": int((deltas > 0).sum()), "worse": int((deltas < 0).sum()), "tied": int((deltas == 0).sum()),
            "p_value": None if p_value is None or np.isnan(p_value) else round(p_value, 6),
        })
    return out


def format_comparisons(rows: Sequence[Mapping[str, Any]], alpha: float = 0.05) -> str:
    """One line per compared pair: ``bm25+ce vs bm25: nDCG@10 +0.1234 (p = 0.0012, significant ...)``."""
    lines = []
    for row in rows:
        p = row["p_value"]
        verdict = ("too few queries to test" if p is None else
                   f"p = {p:.4f}, {'significant' if p < alpha else 'not significant'} at {alpha}")
        lines.append(f"{row['stage']} vs {row['against']}: {row['measure']} {row['mean_delta']:+.4f} "
                     f"({verdict}; paired t-test over {row['queries']} queries: {row['better']} better, "
                     f"{row['worse']} worse, {row['tied']} tied)")
    return "\n".join(lines)


def write_results_json(path: Path, payload: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# -- charts ---------------------------------------------------------------------------------------
def _pyplot() -> Any:
    matplotlib = require("matplotlib", "eval", "drawing the evaluation report")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def metrics_chart(rows: Sequence[Mapping[str, Any]]) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4.2))
    width = 0.8 / max(len(rows), 1)
    for i, row in enumerate(rows):
        xs = [m + (i - (len(rows) - 1) / 2) * width for m in range(len(MEASURES))]
        values = [row["metrics"][m] for m in MEASURES]
        bars = ax.bar(xs, values, width, label=row["stage"], color=_COLORS[i % len(_COLORS)])
        ax.bar_label(bars, fmt="%.3f", fontsize=7, rotation=90, padding=2)
    ax.set_xticks(range(len(MEASURES)), list(MEASURES))
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("mean over judged queries")
    ax.set_title("Quality per stage")
    ax.legend(ncol=min(len(rows), 6), fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def latency_chart(runs: Mapping[str, StageRun]) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 3.8))
    names = list(runs)
    data = [list(runs[n].latencies_ms.values()) or [0.0] for n in names]
    parts = ax.boxplot(data, vert=False, patch_artist=True, showfliers=True, widths=0.6)
    ax.set_yticks(range(1, len(names) + 1), names)
    for i, box in enumerate(parts["boxes"]):
        box.set_facecolor(_COLORS[i % len(_COLORS)])
        box.set_alpha(0.6)
    positive = [v for values in data for v in values if v > 0]
    if positive and max(positive) / min(positive) > 50:
        ax.set_xscale("log")
    for i, name in enumerate(names, start=1):
        run = runs[name]
        ax.annotate(
            f"p50 {run.percentile_ms(50):.1f}  p95 {run.percentile_ms(95):.1f} ms",
            xy=(1.0, i), xycoords=("axes fraction", "data"), xytext=(6, 0), textcoords="offset points",
            va="center", fontsize=8,
        )
    ax.set_xlabel("latency per query (ms)")
    ax.set_title("Latency distribution per stage (retrieval + reranking)")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def delta_chart(deltas: Mapping[str, Sequence[float]], measure: str = DELTA_MEASURE) -> str:
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(len(deltas), 1, figsize=(10, 2.8 * len(deltas)), squeeze=False)
    for ax, (name, values) in zip(axes[:, 0], deltas.items()):
        ordered = sorted(values, reverse=True)
        colors = ["#2E8B57" if v > 0 else "#C0392B" if v < 0 else "#999999" for v in ordered]
        ax.bar(range(len(ordered)), ordered, width=1.0, color=colors)
        ax.axhline(0, color="black", linewidth=0.8)
        wins = sum(v > 0 for v in values)
        losses = sum(v < 0 for v in values)
        ax.set_title(
            f"{name} vs {first_stage_of(name)}: {wins} queries better, {losses} worse, "
            f"{len(values) - wins - losses} unchanged", fontsize=10,
        )
        ax.set_ylabel(f"Δ {measure}")
        ax.set_xlabel("queries, sorted by change")
        ax.set_xlim(-0.5, max(len(ordered), 1) - 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


# -- HTML ---------------------------------------------------------------------------------------
def _per_query_html(payload: Mapping[str, Any], runs: Mapping[str, StageRun], measure: str = DELTA_MEASURE) -> str:
    """Every query: ``measure`` and the candidates ranked, per stage (folded; thousands of rows)."""
    per_query: Mapping[str, Mapping[str, Mapping[str, float]]] = payload.get("per_query", {})
    stages = list(per_query)
    if not stages:
        return ""
    esc = html.escape
    head = "".join(f"<th>{esc(s)} {esc(measure)}</th><th>{esc(s)} candidates</th>" for s in stages)
    qids = sorted({q for values in per_query.values() for q in values})
    rows = "".join(
        f"<tr><td>{esc(q)}</td>" + "".join(
            f"<td>{per_query[s][q][measure]:.4f}</td><td>{runs[s].candidates.get(q, 0) if s in runs else ''}</td>"
            if q in per_query[s] else "<td></td><td></td>" for s in stages) + "</tr>"
        for q in qids
    )
    return (f"<details><summary>Per query ({len(qids)} queries)</summary>"
            f"<table><tr><th>query</th>{head}</tr>{rows}</table></details>")


def render_html(payload: Mapping[str, Any], runs: Mapping[str, StageRun], evaluations: Mapping[str, Evaluation]) -> str:
    rows = payload["stages"]
    deltas = per_query_deltas(evaluations)
    images = [("Quality per stage", metrics_chart(rows)), ("Latency per query", latency_chart(runs))]
    if deltas:
        images.append((f"Per-query {DELTA_MEASURE} change from reranking", delta_chart(deltas)))
    esc = html.escape
    head = ["stage", *MEASURES, "candidates/query", "p50 ms", "p95 ms", "total s"]
    body_rows = "".join(
        "<tr>" + f"<td>{esc(r['stage'])}</td>"
        + "".join(f"<td>{r['metrics'][m]:.4f}</td>" for m in MEASURES)
        + f"<td>{esc(_candidates(r))}</td>"
        + f"<td>{r['latency_ms']['p50']:.2f}</td><td>{r['latency_ms']['p95']:.2f}</td>"
        + f"<td>{r['total_seconds']:.2f}</td></tr>"
        for r in rows
    )
    dataset, config = payload["dataset"], payload["config"]
    facts = {
        "dataset": f"{dataset['name']} ({dataset['split']} split, {dataset['queries']} judged queries, "
        f"{dataset['documents']} documents)",
        "stages": ", ".join(r["stage"] for r in rows),
        "first stage depth / rerank top N asked for": f"{config['depth']} / {config['top_n']} (candidates actually "
        "ranked per query: the table's candidates/query column)",
        "cross-encoder": config.get("reranker") or ", ".join(
            f"{label}: {name}" for label, name in (config.get("rerankers") or {}).items()) or "-",
        "bi-encoder": config.get("encoder") or "-",
        "created": payload.get("created", ""),
    }
    tests = format_comparisons(payload.get("comparisons", []))
    tests_html = f"<h2>Paired tests</h2><pre>{esc(tests)}</pre>" if tests else ""
    per_query = _per_query_html(payload, runs)
    facts_html = "".join(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in facts.items())
    notes = "".join(f'<p class="note">{esc(note)}</p>' for note in payload.get("notes", []))
    figures = "".join(
        f'<figure><img alt="{esc(title)}" src="data:image/png;base64,{data}"><figcaption>{esc(title)}</figcaption></figure>'
        for title, data in images
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>crossrank evaluation: {esc(dataset['name'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
th {{ background: #f3f3f3; }} td:first-child, .facts th, .facts td {{ text-align: left; }}
.note {{ background: #fff3cd; border: 1px solid #e0b400; padding: 8px 12px; font-weight: 600; }}
figure {{ margin: 1.5em 0; }} img {{ max-width: 100%; }} figcaption {{ color: #555; font-size: 0.9em; }}
</style></head><body>
<h1>crossrank evaluation: {esc(dataset['name'])}</h1>
{notes}<table class="facts">{facts_html}</table>
<h2>Results</h2>
<table><tr>{''.join(f'<th>{esc(h)}</th>' for h in head)}</tr>{body_rows}</table>
{tests_html}
<p>Metrics from ir-measures (trec_eval); every judged query counts, a query without a relevant
document scores 0. Latency is per query, retrieval plus reranking, on this machine.</p>
{figures}
{per_query}
</body></html>
"""
