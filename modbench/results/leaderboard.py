"""Leaderboards: a pure pivot over run records, with the published rows beside ours.

A row of ours is a *cell*: one whole config (method config, model, training budget, discoverer, discovery
settings, data source) with every training seed run for it; ``variant`` names what differs from the
registered defaults ("default" is the canonical row). With several seeds, a metric is the mean of the
per-seed means and its interval is the 95 % t-interval over seeds (``{metric}_boot_ci`` keeps the mean
pair-bootstrap half-width); with one seed it is the bootstrap interval. Cells whose models failed (below
the task's quality floor, or diverged) are listed apart and never ranked. Stars mark the best canonical
value per metric; discovery time is not starred when the discoverer's cost does not depend on the weights.
"""

from __future__ import annotations

import html
import math
from typing import Any

import pandas as pd

from modbench.metrics import METRICS
from modbench.results.published import NAINANI_CITATION, nainani_table3
from modbench.results.record import ResultRecord

CAVEAT = ("Published rows: K, image pairing and the sparsity formula are not given in the paper, so absolute "
          "values are not comparable; compare orderings.")
T_975 = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 7: 2.447, 8: 2.365, 9: 2.306, 10: 2.262}
FIRST = ("source", "method", "discoverer", "variant", "dataset", "seeds", "status")


def _t_halfwidth(values: pd.Series) -> float:
    n = len(values)
    if n < 2:
        return float("nan")
    return T_975.get(n, 1.96) * float(values.std(ddof=1)) / math.sqrt(n)


def default_discoverer(task: str) -> str | None:
    """The task's registered discoverer (None for a task no longer registered: then every discoverer counts)."""
    from modbench.registries import TASKS

    return TASKS.get(task).config.discoverer if task in TASKS else None


def is_canonical(task: str, variant: str, discoverer: str) -> bool:
    """The row that stands for its method: registered defaults (variant) scored by the task's own discoverer.
    Other discoverers' rows are shown beside it, ranked after the canonical rows and never starred."""
    return variant == "default" and default_discoverer(task) in (None, discoverer)


def cells(records: list[ResultRecord], dataset: str | None = None) -> pd.DataFrame:
    """One row per cell, aggregated over training seeds (latest record per cell and seed)."""
    rows = [r.flat() for r in records if dataset is None or r.dataset == dataset]
    if not rows:
        return pd.DataFrame(columns=list(FIRST))
    table = pd.DataFrame.from_records(rows).sort_values("id").drop_duplicates(["cell", "train_seed"], keep="last")
    out = []
    for _, group in table.groupby("cell", sort=False):
        ok = group[group["status"] == "ok"]
        use = ok if len(ok) else group
        row: dict[str, Any] = use.iloc[-1].to_dict()
        row["seeds"] = len(use)
        row["canonical"] = is_canonical(row["task"], row["variant"], row["discoverer"])
        row["status"] = "ok" if len(ok) else "failed"
        if len(ok) < len(group):
            row["failure"] = f"{len(group) - len(ok)} of {len(group)} seeds failed: " + group.iloc[-1]["failure"]
        for column in [c for c in use.columns if c.endswith("_mean")]:
            metric = column[: -len("_mean")]
            row[column] = float(use[column].mean())
            row[f"{metric}_boot_ci"] = float(use[f"{metric}_ci"].mean())
            if len(use) > 1:
                row[f"{metric}_ci"] = _t_halfwidth(use[column])
        if "cost_discovery_packed_with" in use:  # any seed scored in a pack: its time is a share of one pass
            row["cost_discovery_packed_with"] = int(use["cost_discovery_packed_with"].fillna(1).max())
        row["test_accuracy"] = float(use["test_accuracy"].mean())
        row["best_test_accuracy"] = float(use["best_test_accuracy"].mean())
        out.append(row)
    result = pd.DataFrame(out)
    result.insert(0, "source", "ours")
    return result


def published(task: str) -> pd.DataFrame:
    table = nainani_table3(task).copy()
    renamed = {m: f"{m}_mean" for m in ("logit_difference", "discovery_time_s", "sparsity")}
    table = table.rename(columns=renamed)
    table.insert(0, "source", f"published ({NAINANI_CITATION})")
    table["variant"] = "as published"
    table["discoverer"] = "activation_patching"  # recursive activation patching (Nainani 2024)
    table["status"] = "ok"
    return table


def leaderboard(records: list[ResultRecord], task: str, dataset: str | None = None) -> pd.DataFrame:
    """Ranked ok cells (best faithfulness first), then failed cells, then the published rows."""
    mine = cells([r for r in records if r.task == task], dataset)
    primary = str(mine["faithfulness_metric"].iloc[0]) if len(mine) else "logit_difference"
    if len(mine) and f"{primary}_mean" not in mine:  # per-class discoverers rank by their own first metric
        primary = next(m for m in (*CLASS_METRICS, "discovery_time_s") if f"{m}_mean" in mine)
    ascending = not METRICS.get(primary).higher_is_better
    parts = []
    if len(mine):
        mine = mine.assign(_canonical=~mine["canonical"].astype(bool))
        parts.append(mine[mine["status"] == "ok"].sort_values(["_canonical", f"{primary}_mean"],
                                                              ascending=[True, ascending], na_position="last"))
        parts.append(mine[mine["status"] != "ok"])
    theirs = published(task)
    if len(theirs) and f"{primary}_mean" in theirs:
        parts.append(theirs.sort_values(f"{primary}_mean", ascending=ascending))
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(FIRST))
    table.attrs["primary"] = primary
    return table.drop(columns=["_canonical"], errors="ignore")


PAIR_METRICS = ("sparsity", "discovery_time_s", "circuit_accuracy", "clusterability")
CLASS_METRICS = ("ecs", "on_accuracy", "off_accuracy", "needs_1_cluster", "needs_all_clusters", "clusterability",
                 "discovery_time_s")


def shown_metrics(table: pd.DataFrame) -> tuple[str, ...]:
    """The faithfulness metric, then the metrics our rows carry (pair discoverers' or per-class ones')."""
    primary = table.attrs.get("primary", "logit_difference")
    present = {c[: -len("_mean")] for c in table.columns if c.endswith("_mean") and table[c].notna().any()}
    extra = [m for m in (*PAIR_METRICS, *CLASS_METRICS) if m in present and m != primary]
    ordered = [primary] if primary in present or not extra else []
    return tuple(dict.fromkeys(ordered + extra))


def best_per_metric(table: pd.DataFrame) -> dict[str, float]:
    """The best canonical, ranked value of ours for each shown metric (starred in rendered tables)."""
    if "canonical" not in table:
        return {}
    mine = table[(table["source"] == "ours") & (table["status"] == "ok") & (table["canonical"] == True)]  # noqa: E712
    best = {}
    for metric in shown_metrics(table):
        column = f"{metric}_mean"
        if column not in mine or not mine[column].notna().any():
            continue
        ranked = mine
        if metric == "discovery_time_s":
            if not mine["discovery_cost_depends_on_weights"].astype(bool).any():
                continue  # the same cost for every model: not a property of the regime
            ranked = mine[[not _packed(row) for _, row in mine.iterrows()]]  # a pack's share is no single time
            if not len(ranked):
                continue
        best[metric] = ranked[column].max() if METRICS.get(metric).higher_is_better else ranked[column].min()
    return best


def display_rows(table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Headers and formatted cells: 'mean ± ci' per metric, '*' on the best canonical value per metric."""
    best = best_per_metric(table)
    metrics = shown_metrics(table)
    headers = ["source", "method", "discoverer", "variant", "dataset", "seeds", *[METRICS.get(m).label for m in metrics],
               "test acc (final)", "best acc (during training)", "status"]
    rows = []
    for _, row in table.iterrows():
        ours = row["source"] == "ours"
        cells_ = [str(row["source"]).split(" (")[0], str(row.get("method", "")), _text(row.get("discoverer")),
                  _text(row.get("variant")),
                  _text(row.get("dataset")), _text(row.get("seeds"), "{:.0f}")]
        for metric in metrics:
            mean, ci = row.get(f"{metric}_mean"), row.get(f"{metric}_ci")
            if mean is None or pd.isna(mean):
                cells_.append("")
                continue
            star = "*" if ours and row["status"] == "ok" and row.get("canonical") and best.get(metric) == mean else ""
            if metric == "discovery_time_s" and ours and _packed(row):
                star += AMORTISED
            cells_.append(f"{mean:.4f} ± {ci:.4f}{star}" if ci is not None and not pd.isna(ci) else f"{mean:.4f}{star}")
        cells_ += [_text(row.get("test_accuracy"), "{:.4f}"), _text(row.get("best_test_accuracy"), "{:.4f}"),
                   "ok" if row.get("status") == "ok" else f"failed: {row.get('failure', '')}"]
        rows.append(cells_)
    return headers, rows


def _packed(row: pd.Series) -> bool:
    packed = row.get("cost_discovery_packed_with")
    return packed is not None and not pd.isna(packed) and packed > 1


def _text(value: Any, fmt: str = "{}") -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    return fmt.format(value)


AMORTISED = "†"
FOOTNOTE = ("`*` best canonical value of ours per metric (variant default, the task's own discoverer); other "
            "discoverers and variants are ranked after the canonical rows; failed rows are never ranked; "
            "discovery time is starred only for discoverers whose cost depends on the weights. ")
AMORTISED_NOTE = (f"`{AMORTISED}` discovery time amortised: these models were scored together in one batched pass "
                  "(`--pack`), its time divided by their number. ")


def footnote(table: pd.DataFrame) -> str:
    """What the marks of this table mean, and the caveat on published rows."""
    packed = "cost_discovery_packed_with" in table and any(_packed(row) for _, row in table.iterrows())
    return FOOTNOTE + (AMORTISED_NOTE if packed else "") + CAVEAT


def to_markdown(table: pd.DataFrame, title: str) -> str:
    headers, rows = display_rows(table)
    lines = [f"## {title}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cells_) + " |" for cells_ in rows]
    return "\n".join(lines + ["", footnote(table), ""])


def to_html(table: pd.DataFrame, title: str) -> str:
    headers, rows = display_rows(table)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        f"<tr class='{'ours' if cells_[0] == 'ours' else 'published'}'>"
        + "".join(f"<td>{html.escape(c)}</td>" for c in cells_) + "</tr>"
        for cells_ in rows
    )
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
             "tr.published{color:#666;font-style:italic}th{background:#eee}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1><table><tr>{head}</tr>{body}"
            f"</table><p>{html.escape(footnote(table))}</p></body></html>\n")
