"""Our rows next to their published counterparts, and whether the published ordering is reproduced."""

from __future__ import annotations

from typing import Any

import pandas as pd

from modbench.results.leaderboard import cells, published
from modbench.results.record import ResultRecord

COMPARED = ("logit_difference", "sparsity", "discovery_time_s")


def kendall_tau(a: list[str], b: list[str]) -> float:
    """Rank agreement of two orderings of the same items (1 = identical, -1 = reversed)."""
    rank = {item: i for i, item in enumerate(b)}
    concordant = discordant = 0
    for i in range(len(a)):
        for j in range(i + 1, len(a)):
            sign = rank[a[i]] - rank[a[j]]
            concordant += sign < 0
            discordant += sign > 0
    pairs = concordant + discordant
    return (concordant - discordant) / pairs if pairs else float("nan")


def compare(records: list[ResultRecord], task: str, dataset: str | None = None) -> dict[str, Any]:
    """Our canonical (default config, the task's own discoverer, ok) cells next to the published rows of the same methods."""
    mine = cells([r for r in records if r.task == task], dataset)
    if len(mine):
        mine = mine[mine["canonical"].astype(bool) & (mine["status"] == "ok")]
        mine = mine.drop_duplicates("method", keep="last")
    theirs = published(task)
    joined = theirs.merge(mine, on="method", how="left", suffixes=("_published", "_ours"))
    rows = []
    for _, row in joined.iterrows():
        entry = {"method": row["method"], "label": row["label"]}
        for metric in COMPARED:
            entry[f"{metric}_ours"] = row.get(f"{metric}_mean_ours")
            entry[f"{metric}_ours_ci"] = row.get(f"{metric}_ci_ours")
            entry[f"{metric}_published"] = row.get(f"{metric}_mean_published")
            entry[f"{metric}_published_ci"] = row.get(f"{metric}_ci_published")
        rows.append(entry)
    table = pd.DataFrame(rows)
    present = table.dropna(subset=["logit_difference_ours"])
    verdict: dict[str, Any] = {"methods_compared": list(present["method"])}
    for metric, ascending in (("logit_difference", True), ("sparsity", False)):
        order_ours = list(present.sort_values(f"{metric}_ours", ascending=ascending)["method"])
        order_published = list(present.sort_values(f"{metric}_published", ascending=ascending)["method"])
        verdict[f"{metric}_order_ours"] = order_ours
        verdict[f"{metric}_order_published"] = order_published
        verdict[f"{metric}_kendall_tau"] = kendall_tau(order_ours, order_published)
    if {"bimt", "vanilla"} <= set(present["method"]):
        verdict["bimt_lowest_logit_difference"] = verdict["logit_difference_order_ours"][0] == "bimt"
        verdict["bimt_highest_sparsity"] = verdict["sparsity_order_ours"][0] == "bimt"
        verdict["vanilla_worst_logit_difference"] = verdict["logit_difference_order_ours"][-1] == "vanilla"
    return {"table": table, "verdict": verdict}
