from __future__ import annotations

import multiprocessing

from modbench.results.compare import compare, kendall_tau
from modbench.results.leaderboard import leaderboard, to_html, to_markdown
from modbench.results.store import ResultStore


def fake_record(method: str, logit: float, sparsity: float, task: str = "circle_detection", **extra) -> dict:
    record = {"task": task, "method": method, "discoverer": "activation_patching", "dataset": "mnist",
              "top_k": 15, "ablation": "mean", "test_accuracy": 0.98}
    for metric, value in (("logit_difference", logit), ("sparsity", sparsity), ("discovery_time_s", 0.1),
                          ("circuit_accuracy", 0.9)):
        record |= {f"{metric}_mean": value, f"{metric}_ci": 0.01}
    return record | extra


def _writer(path: str, worker: int) -> None:
    store = ResultStore(__import__("pathlib").Path(path))
    for i in range(10):
        store.append(fake_record(f"m{worker}", float(i), 0.5, worker=worker, i=i))


def test_eight_concurrent_writer_processes_lose_no_row(tmp_path):
    path = str(tmp_path / "results.sqlite")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(path, w)) for w in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    rows = ResultStore(tmp_path / "results.sqlite").records()
    assert len(rows) == 80
    assert {(r["worker"], r["i"]) for r in rows} == {(w, i) for w in range(8) for i in range(10)}


def test_leaderboard_keeps_latest_row_per_method_best_first_with_published_rows(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    store.append(fake_record("vanilla", 5.0, 0.86))
    store.append(fake_record("bimt", 9.0, 0.97))
    store.append(fake_record("bimt", 1.0, 0.98))  # newer bimt row replaces the older one
    table = leaderboard(store.records("circle_detection"), "circle_detection")
    mine = table[table["source"] == "ours"]
    assert list(mine["method"]) == ["bimt", "vanilla"]
    assert float(mine.iloc[0]["logit_difference_mean"]) == 1.0
    assert (table["source"].str.startswith("published")).sum() == 5
    assert "1.0000 ± 0.0100*" in to_markdown(table, "t") and "<table>" in to_html(table, "t")


def test_compare_reports_orderings_against_the_paper(tmp_path):
    records = [fake_record(m, v, s) | {"id": i} for i, (m, v, s) in enumerate(
        [("bimt", 1.0, 0.99), ("l1_local", 2.0, 0.98), ("l1", 3.0, 0.95), ("l1_swap", 2.5, 0.96),
         ("vanilla", 9.0, 0.86)])]
    verdict = compare(records, "circle_detection")["verdict"]
    assert verdict["logit_difference_order_ours"] == verdict["logit_difference_order_published"]
    assert verdict["logit_difference_kendall_tau"] == 1.0
    assert verdict["bimt_lowest_logit_difference"] and verdict["vanilla_worst_logit_difference"]


def test_kendall_tau_extremes():
    assert kendall_tau(["a", "b", "c"], ["a", "b", "c"]) == 1.0
    assert kendall_tau(["a", "b", "c"], ["c", "b", "a"]) == -1.0
