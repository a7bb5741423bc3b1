"""Leaderboards: a pure pivot over run records, with the published rows beside ours.

A row of ours is a *cell*: one whole config (method config, model, training budget, discoverer, discovery
settings, data source) with every training seed run for it; ``variant`` names what differs from the
registered defaults ("default" is the canonical row). With several seeds, a metric is the mean of the
per-seed means and its interval is the 95 % t-interval over seeds (``{metric}_boot_ci`` keeps the mean
pair-bootstrap half-width); with one seed it is the bootstrap interval. Cells whose models failed (below
the task's quality floor, or diverged) are listed apart and never ranked. Stars mark the best value per
metric among the default-variant rows of each discoverer (every discoverer gets its own stars); cost metrics
(discovery time, forward and backward passes, edge tests) are starred only for discoverers whose cost depends
on the weights, and never for a row scored in a pack (its time is a share of one pass).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from modbench.metrics import METRICS
from modbench.results.published import published_citation, published_rows
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
    Other discoverers' default rows are ranked after the canonical rows, with stars of their own."""
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
    """The published rows the task's file names (none when it names no table)."""
    table = published_rows(task).copy()
    renamed = {m: f"{m}_mean" for m in ("logit_difference", "discovery_time_s", "sparsity")}
    table = table.rename(columns=renamed)
    table.insert(0, "source", f"published ({published_citation(task)})")
    table["variant"] = "published"  # also how a published row shows in the compact terminal table
    if "discoverer" not in table:  # Nainani's Table 3: recursive activation patching
        table["discoverer"] = "activation_patching"
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
        # canonical rows, then other discoverers' default rows (grouped by discoverer), then other variants
        tier = [0 if canonical else 1 if variant == "default" else 2
                for canonical, variant in zip(mine["canonical"].astype(bool), mine["variant"], strict=True)]
        mine = mine.assign(_tier=tier, _group=[d if t == 1 else "" for d, t in zip(mine["discoverer"], tier,
                                                                                    strict=True)])
        parts.append(mine[mine["status"] == "ok"].sort_values(["_tier", "_group", f"{primary}_mean"],
                                                              ascending=[True, True, ascending], na_position="last"))
        parts.append(mine[mine["status"] != "ok"])
    theirs = published(task)
    if len(theirs) and f"{primary}_mean" in theirs:
        parts.append(theirs.sort_values(f"{primary}_mean", ascending=ascending))
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(FIRST))
    table.attrs["primary"] = primary
    return table.drop(columns=["_tier", "_group"], errors="ignore")


# Edge discoverers' counts follow sparsity: circuit size first, then what finding it cost.
PAIR_METRICS = ("sparsity", "circuit_edges", "forward_passes", "backward_passes", "edge_tests", "discovery_time_s",
                "circuit_accuracy", "clusterability")
CLASS_METRICS = ("ecs", "on_accuracy", "off_accuracy", "needs_1_cluster", "needs_all_clusters", "clusterability",
                 "discovery_time_s")
COST_METRICS = ("discovery_time_s", "forward_passes", "backward_passes", "edge_tests")
COUNT_METRICS = ("circuit_edges", "forward_passes", "backward_passes", "edge_tests")  # shown with one decimal
IDENTITY_COLUMNS = ("source", "method", "discoverer", "variant", "dataset", "seeds")
TRAILING_COLUMNS = ("test_accuracy", "best_test_accuracy", "status")
TEXT_COLUMNS = ("source", "method", "discoverer", "variant", "dataset", "status")
HEADERS = {"test_accuracy": "test acc (final)", "best_test_accuracy": "best acc (during training)"}


def shown_metrics(table: pd.DataFrame) -> tuple[str, ...]:
    """The faithfulness metric, then the metrics our rows carry (pair discoverers' or per-class ones')."""
    primary = table.attrs.get("primary", "logit_difference")
    present = {c[: -len("_mean")] for c in table.columns if c.endswith("_mean") and table[c].notna().any()}
    extra = [m for m in (*PAIR_METRICS, *CLASS_METRICS) if m in present and m != primary]
    ordered = [primary] if primary in present or not extra else []
    return tuple(dict.fromkeys(ordered + extra))


def headline_metrics(table: pd.DataFrame) -> tuple[str, ...]:
    """The two metrics a reader looks at first: the task's faithfulness metric and the next one shown
    (sparsity for pair discoverers)."""
    return shown_metrics(table)[:2]


def known_columns() -> tuple[str, ...]:
    """Every column a table can show (metrics from the registry), for choosing columns before any work."""
    metrics = [key for key in METRICS.keys() if key not in TRAILING_COLUMNS]
    return (*IDENTITY_COLUMNS, *metrics, *TRAILING_COLUMNS)


def wide_columns(table: pd.DataFrame) -> tuple[str, ...]:
    """All the columns of the markdown table."""
    return (*IDENTITY_COLUMNS, *shown_metrics(table), *TRAILING_COLUMNS)


def compact_columns(table: pd.DataFrame) -> tuple[str, ...]:
    """The few columns that fit a terminal: which row (a published one's variant is "published"), the
    headline metrics, accuracy and status."""
    return ("method", "discoverer", "variant", *headline_metrics(table), "test_accuracy", "status")


def header(column: str) -> str:
    return HEADERS.get(column) or (METRICS.get(column).label if column in METRICS else column)


def _starrable(row: pd.Series, metric: str) -> bool:
    """Whether ``row``'s value of ``metric`` competes for a star: an ok default-variant row of ours; for a cost
    metric, only where the discoverer's cost depends on the weights and the row was not scored in a pack."""
    if row.get("source") != "ours" or row.get("status") != "ok" or row.get("variant") != "default":
        return False
    if metric in COST_METRICS:
        depends = row.get("discovery_cost_depends_on_weights")
        return depends is not None and not pd.isna(depends) and bool(depends) and not _packed(row)
    return True


def best_per_metric(table: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per discoverer, the best value of each shown metric among its starrable rows (starred when rendered)."""
    best: dict[str, dict[str, float]] = {}
    for metric in shown_metrics(table):
        column = f"{metric}_mean"
        if column not in table:
            continue
        pick = max if METRICS.get(metric).higher_is_better else min
        for _, row in table.iterrows():
            value = row[column]
            if pd.isna(value) or not _starrable(row, metric):
                continue
            group = best.setdefault(str(row["discoverer"]), {})
            group[metric] = pick(group[metric], value) if metric in group else value
    return best


@dataclass(frozen=True)
class Cell:
    """One formatted table cell: its text and the value it sorts by (a number, text, or None when empty)."""

    text: str
    sort: float | str | None


def display_table(table: pd.DataFrame, columns: tuple[str, ...] | None = None,
                  ) -> tuple[tuple[str, ...], list[dict[str, Cell]]]:
    """Per row, a :class:`Cell` for each of ``columns`` (default: all of the markdown table): 'mean ± ci' per
    metric, '*' on the best default-variant value of each discoverer, '†' on a pack's share of discovery time."""
    columns = wide_columns(table) if columns is None else columns
    best = best_per_metric(table)
    rows = []
    for _, row in table.iterrows():
        rows.append({column: _cell(row, column, best) for column in columns})
    return columns, rows


def _cell(row: pd.Series, column: str, best: dict[str, dict[str, float]]) -> Cell:
    if column in METRICS and column not in TRAILING_COLUMNS:
        mean, ci = row.get(f"{column}_mean"), row.get(f"{column}_ci")
        if mean is None or pd.isna(mean):
            return Cell("", None)
        digits = 1 if column in COUNT_METRICS else 4
        mark = "*" if _starrable(row, column) and best.get(str(row["discoverer"]), {}).get(column) == mean else ""
        if column == "discovery_time_s" and row.get("source") == "ours" and _packed(row):
            mark += AMORTISED
        has_ci = ci is not None and not pd.isna(ci)
        return Cell(f"{mean:.{digits}f} ± {ci:.{digits}f}{mark}" if has_ci else f"{mean:.{digits}f}{mark}", float(mean))
    if column == "source":
        return Cell(str(row["source"]).split(" (")[0], str(row["source"]))
    if column == "status":
        text = "ok" if row.get("status") == "ok" else f"failed: {row.get('failure', '')}"
        return Cell(text, text)
    if column in ("test_accuracy", "best_test_accuracy", "seeds"):
        value = row.get(column)
        missing = value is None or pd.isna(value)
        return Cell("" if missing else f"{value:.0f}" if column == "seeds" else f"{value:.4f}",
                    None if missing else float(value))
    text = _text(row.get(column))
    return Cell(text, text or None)


def display_rows(table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Headers and formatted cells of the markdown/HTML table."""
    columns, rows = display_table(table)
    return [header(c) for c in columns], [[row[c].text for c in columns] for row in rows]


def _packed(row: pd.Series) -> bool:
    packed = row.get("cost_discovery_packed_with")
    return packed is not None and not pd.isna(packed) and packed > 1


def _text(value: Any, fmt: str = "{}") -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    return fmt.format(value)


AMORTISED = "†"
FOOTNOTE = ("`*` best value of ours per metric among each discoverer's default-variant rows (every discoverer has "
            "its own stars); rows are ranked with the canonical ones first (default variant, the task's own "
            "discoverer), then other discoverers, then other variants; failed rows are never ranked; cost metrics "
            "(discovery time, forward and backward passes, edge tests) are starred only for discoverers whose cost "
            "depends on the weights. ")
AMORTISED_NOTE = (f"`{AMORTISED}` discovery time amortised: these models were scored together in one batched pass "
                  "(`--pack`), its time divided by their number. ")


def footnote(table: pd.DataFrame) -> str:
    """What the marks of this table mean, and the caveat on published rows."""
    packed = "cost_discovery_packed_with" in table and any(_packed(row) for _, row in table.iterrows())
    published = "source" in table and bool(table["source"].astype(str).str.startswith("published").any())
    return FOOTNOTE + (AMORTISED_NOTE if packed else "") + (CAVEAT if published else "")


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
