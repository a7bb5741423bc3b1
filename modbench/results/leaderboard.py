"""Leaderboards: a pure pivot over run records, with the published rows beside ours."""

from __future__ import annotations

import html
from typing import Any

import pandas as pd

from modbench.metrics import METRICS
from modbench.results.published import NAINANI_CITATION, nainani_table3

SHOWN_METRICS = ("logit_difference", "sparsity", "discovery_time_s", "circuit_accuracy")
IDENTITY = ("method", "discoverer", "dataset", "top_k", "ablation")
CAVEAT = ("Published rows: K, image pairing and the sparsity formula are not given in the paper, so absolute "
          "values are not comparable; compare orderings.")


def ours(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The latest record per (method, discoverer, dataset, K, ablation)."""
    if not records:
        return pd.DataFrame(columns=["source", *IDENTITY])
    table = pd.DataFrame.from_records(records)
    table = table.sort_values("id").drop_duplicates(list(IDENTITY), keep="last")
    table.insert(0, "source", "ours")
    return table


def published(task: str) -> pd.DataFrame:
    table = nainani_table3(task).copy()
    table = table.rename(columns={f"{m}": f"{m}_mean" for m in ("logit_difference", "discovery_time_s", "sparsity")})
    table.insert(0, "source", f"published ({NAINANI_CITATION})")
    return table


def leaderboard(records: list[dict[str, Any]], task: str, dataset: str | None = None) -> pd.DataFrame:
    mine = ours(records)
    if dataset is not None and len(mine):
        mine = mine[mine["dataset"] == dataset]
    primary = "logit_difference"
    ascending = not METRICS.get(primary).higher_is_better
    mine = mine.sort_values(f"{primary}_mean", ascending=ascending) if len(mine) else mine
    theirs = published(task).sort_values(f"{primary}_mean", ascending=ascending)
    return pd.concat([mine, theirs], ignore_index=True)


def best_per_metric(table: pd.DataFrame) -> dict[str, Any]:
    """The best of our values for each shown metric (marked in rendered tables)."""
    mine = table[table["source"] == "ours"]
    best = {}
    for metric in SHOWN_METRICS:
        column = f"{metric}_mean"
        if column in mine and mine[column].notna().any():
            higher = METRICS.get(metric).higher_is_better
            best[metric] = mine[column].max() if higher else mine[column].min()
    return best


def display_rows(table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Headers and formatted cells: 'mean ± ci' per metric, '*' on our best value per metric."""
    best = best_per_metric(table)
    headers = ["source", "method", "dataset", "K", *[METRICS.get(m).label for m in SHOWN_METRICS], "test acc"]
    rows = []
    for _, row in table.iterrows():
        cells = [str(row["source"]).split(" (")[0], str(row.get("method", "")),
                 _text(row.get("dataset")), _text(row.get("top_k"), "{:.0f}")]
        for metric in SHOWN_METRICS:
            mean, ci = row.get(f"{metric}_mean"), row.get(f"{metric}_ci")
            if mean is None or pd.isna(mean):
                cells.append("")
                continue
            star = "*" if row["source"] == "ours" and best.get(metric) == mean else ""
            cells.append(f"{mean:.4f} ± {ci:.4f}{star}" if ci is not None and not pd.isna(ci) else f"{mean:.4f}{star}")
        cells.append(_text(row.get("test_accuracy"), "{:.4f}"))
        rows.append(cells)
    return headers, rows


def _text(value: Any, fmt: str = "{}") -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    return fmt.format(value)


def to_markdown(table: pd.DataFrame, title: str) -> str:
    headers, rows = display_rows(table)
    lines = [f"## {title}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines + ["", f"`*` best of our rows per metric. {CAVEAT}", ""])


def to_html(table: pd.DataFrame, title: str) -> str:
    headers, rows = display_rows(table)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        f"<tr class='{'published' if cells[0] != 'ours' else 'ours'}'>"
        + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"
        for cells in rows
    )
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
             "tr.published{color:#666;font-style:italic}th{background:#eee}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1><table><tr>{head}</tr>{body}"
            f"</table><p>* best of our rows per metric. {html.escape(CAVEAT)}</p></body></html>\n")
