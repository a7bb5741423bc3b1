"""Records, the store, and leaderboards keyed by whole configs."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_writers

from modbench.errors import UserError
from modbench.results.compare import compare, kendall_tau
from modbench.results.leaderboard import best_per_metric, cells, leaderboard, to_html, to_markdown
from modbench.results.record import ResultRecord
from modbench.results.store import ResultStore


def fake_record(method: str, logit: float, sparsity: float, *, task: str = "circle_detection", variant: str = "default",
                cell: str | None = None, seed: int = 1, accuracy: float = 0.98, status: str = "ok",
                cost_depends: bool = False, discoverer: str = "activation_patching", **provenance) -> ResultRecord:
    metrics = {name: {"mean": value, "ci_low": value - 0.01, "ci_high": value + 0.01, "ci": 0.01}
               for name, value in (("logit_difference", logit), ("sparsity", sparsity), ("discovery_time_s", 0.1),
                                   ("circuit_accuracy", 0.9))}
    cell = cell or f"{method}-{variant}-{discoverer}"
    return ResultRecord(
        task=task, method=method, model="mnist_mlp", discoverer=discoverer, dataset="mnist",
        variant=variant, cell=cell, config_hash=f"{cell}-{seed}", train_seed=seed, pair_seed=0, boot_seed=0,
        status=status, failure="below the floor" if status == "failed" else "", faithfulness_metric="logit_difference",
        metrics=metrics, sparsity_per_wire={"unembed": sparsity}, circuit_size={"blocks.0.mlp.hook_post": 15.0},
        test_accuracy=accuracy, best_test_accuracy=accuracy, best_step=100, costs={"train_time_s": 1.0},
        discovery_cost_depends_on_weights=cost_depends, config={}, definitions={}, provenance=provenance)


def _writer(path: str, worker: int) -> None:
    store = ResultStore(Path(path))
    for i in range(10):
        store.append(fake_record(f"m{worker}", float(i), 0.5, seed=i, worker=worker, i=i))


def test_eight_concurrent_writer_processes_lose_no_row(tmp_path):
    run_writers(_writer, str(tmp_path / "results.sqlite"))
    rows = ResultStore(tmp_path / "results.sqlite").records()
    assert len(rows) == 80
    assert {(r.provenance["worker"], r.provenance["i"]) for r in rows} == {(w, i) for w in range(8) for i in range(10)}


def test_records_round_trip_through_the_store(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    record = fake_record("bimt", 1.0, 0.9)
    assert store.append(record).id == 1
    again = store.records()[0]
    assert again.id == 1
    assert again.to_dict() | {"id": None, "created": None} == record.to_dict()


def test_a_debug_variant_never_replaces_the_canonical_row_nor_is_starred(tmp_path):
    records = [fake_record("vanilla", 5.0, 0.86), fake_record("bimt", 9.0, 0.97),
               fake_record("bimt", 0.5, 0.99, variant="steps=200")]
    table = leaderboard(records, "circle_detection")
    mine = table[table["source"] == "ours"]
    assert list(zip(mine["method"], mine["variant"], strict=True)) == [
        ("vanilla", "default"), ("bimt", "default"), ("bimt", "steps=200")]
    assert best_per_metric(table)["activation_patching"]["logit_difference"] == 5.0
    assert (table["source"].str.startswith("published")).sum() == 5
    markdown = to_markdown(table, "t")
    assert "5.0000 ± 0.0100*" in markdown and "0.5000 ± 0.0100 " in markdown and "<table>" in to_html(table, "t")


def test_another_discoverers_rows_are_ranked_after_the_canonical_ones_with_stars_of_their_own_never_compared():
    records = [fake_record("vanilla", 5.0, 0.86), fake_record("bimt", 2.0, 0.97),
               fake_record("bimt", 0.1, 0.99, discoverer="attribution_patching"),
               fake_record("vanilla", 9.0, 0.80, discoverer="attribution_patching")]
    table = leaderboard(records, "circle_detection")
    mine = table[table["source"] == "ours"]
    assert list(zip(mine["method"], mine["discoverer"], strict=True)) == [
        ("bimt", "activation_patching"), ("vanilla", "activation_patching"), ("bimt", "attribution_patching"),
        ("vanilla", "attribution_patching")]
    best = best_per_metric(table)
    assert best["activation_patching"]["logit_difference"] == 2.0
    assert best["attribution_patching"]["logit_difference"] == 0.1
    rows = {tuple(line.split(" | ")[1:3]): line for line in to_markdown(table, "t").splitlines()
            if line.startswith("| ours")}
    assert "| 2.0000 ± 0.0100* |" in rows["bimt", "activation_patching"]
    assert "| 0.1000 ± 0.0100* |" in rows["bimt", "attribution_patching"]
    assert "| 9.0000 ± 0.0100 |" in rows["vanilla", "attribution_patching"]
    ours = compare(records, "circle_detection")["table"].set_index("method")
    assert ours.loc["bimt", "logit_difference_ours"] == 2.0 and ours.loc["vanilla", "logit_difference_ours"] == 5.0


def test_seeds_of_one_cell_are_aggregated_with_an_interval_over_seeds():
    records = [fake_record("bimt", value, 0.9, cell="c", seed=seed) for seed, value in ((1, 1.0), (2, 2.0), (3, 3.0))]
    records.append(fake_record("bimt", 7.0, 0.9, cell="c", seed=3))  # a rerun of seed 3 replaces the old one
    row = cells(records).iloc[0]
    assert row["seeds"] == 3
    assert row["logit_difference_mean"] == pytest.approx((1.0 + 2.0 + 7.0) / 3)
    assert row["logit_difference_ci"] == pytest.approx(4.303 * 3.2146 / 3 ** 0.5, rel=1e-3)
    assert row["logit_difference_boot_ci"] == pytest.approx(0.01)


def test_failed_models_are_listed_apart_and_never_ranked():
    records = [fake_record("vanilla", 5.0, 0.86), fake_record("l1", 0.01, 0.99, accuracy=0.1, status="failed")]
    table = leaderboard(records, "circle_detection")
    mine = table[table["source"] == "ours"]
    assert list(mine["method"]) == ["vanilla", "l1"] and list(mine["status"]) == ["ok", "failed"]
    assert best_per_metric(table)["activation_patching"]["logit_difference"] == 5.0
    assert "failed: below the floor" in to_markdown(table, "t")


def test_discovery_time_is_starred_only_when_the_cost_depends_on_the_weights():
    fixed = leaderboard([fake_record("a", 1.0, 0.9), fake_record("b", 2.0, 0.9)], "circle_detection")
    assert "discovery_time_s" not in best_per_metric(fixed)["activation_patching"]
    varying = leaderboard([fake_record("a", 1.0, 0.9, cost_depends=True)], "circle_detection")
    assert "discovery_time_s" in best_per_metric(varying)["activation_patching"]


def test_a_discovery_time_shared_by_a_pack_is_marked_amortised_with_its_note():
    import dataclasses

    alone = fake_record("a", 1.0, 0.9)
    packed = [dataclasses.replace(fake_record("b", 2.0, 0.9, seed=seed), costs={"discovery_packed_with": packs})
              for seed, packs in ((1, 5), (2, 1))]  # one of the cell's seeds was scored in a pack
    text = to_markdown(leaderboard([alone, *packed], "circle_detection"), "t")
    row = {line.split(" | ")[1]: line for line in text.splitlines() if line.startswith("| ours")}
    assert "0.1000 ± 0.0000†" in row["b"] and "†" not in row["a"]
    assert "`†` discovery time amortised" in text
    assert "amortised" not in to_markdown(leaderboard([alone], "circle_detection"), "t")
    # where the time is the model's property, a pack's share never takes the star from a single run's time
    slow = dataclasses.replace(fake_record("a", 1.0, 0.9, cost_depends=True), costs={})
    quick = dataclasses.replace(fake_record("b", 2.0, 0.9, cost_depends=True), costs={"discovery_packed_with": 5})
    quick.metrics["discovery_time_s"]["mean"] = 0.01
    table = leaderboard([slow, quick], "circle_detection")
    assert best_per_metric(table)["activation_patching"]["discovery_time_s"] == 0.1


def edge_record(method: str, logit: float, edges: float, forwards: float, **kwargs) -> ResultRecord:
    """An edge discoverer's row (ACDC-like): circuit edges and what finding them cost, per resample."""
    record = fake_record(method, logit, 0.9, discoverer="acdc", cost_depends=True, **kwargs)
    for name, value in (("circuit_edges", edges), ("forward_passes", forwards), ("edge_tests", forwards * 2)):
        record.metrics[name] = {"mean": value, "ci_low": value - 1, "ci_high": value + 1, "ci": 1.0}
    return record


def test_edge_discoverers_counts_follow_sparsity_and_their_costs_are_starred_per_discoverer():
    import dataclasses

    records = [fake_record("vanilla", 5.0, 0.86), fake_record("bimt", 2.0, 0.97),
               edge_record("vanilla", 6.0, 900.0, 4000.0), edge_record("bimt", 3.0, 120.0, 700.0),
               edge_record("l1", 1.0, 50.0, 300.0, variant="tau=0.1"),  # a variant: ranked last, never starred
               dataclasses.replace(edge_record("l1", 4.0, 80.0, 100.0), costs={"discovery_packed_with": 3})]
    table = leaderboard(records, "circle_detection")
    mine = table[table["source"] == "ours"]
    assert list(zip(mine["method"], mine["discoverer"], mine["variant"], strict=True)) == [
        ("bimt", "activation_patching", "default"), ("vanilla", "activation_patching", "default"),
        ("bimt", "acdc", "default"), ("l1", "acdc", "default"), ("vanilla", "acdc", "default"),
        ("l1", "acdc", "tau=0.1")]
    headers = to_markdown(table, "t").splitlines()[2].split(" | ")
    assert headers[headers.index("circuit sparsity") + 1: headers.index("circuit sparsity") + 4] == [
        "edges in circuit", "forward passes", "edge tests"]
    best = best_per_metric(table)
    assert best["activation_patching"]["logit_difference"] == 2.0 and "forward_passes" not in best[
        "activation_patching"]  # patching costs the same for every model: no star
    # ACDC's own stars: its default rows only; the packed row's cost is a share of one pass, never starred
    assert best["acdc"] == pytest.approx({"logit_difference": 3.0, "sparsity": 0.9, "circuit_edges": 80.0,
                                          "forward_passes": 700.0, "edge_tests": 1400.0, "discovery_time_s": 0.1,
                                          "circuit_accuracy": 0.9})
    rows = {tuple(line.split(" | ")[1:4]): line for line in to_markdown(table, "t").splitlines()
            if line.startswith("| ours")}
    assert "| 700.0 ± 1.0* |" in rows["bimt", "acdc", "default"]
    assert "| 100.0 ± 1.0 |" in rows["l1", "acdc", "default"] and "| 80.0 ± 1.0* |" in rows["l1", "acdc", "default"]
    assert "*" not in rows["l1", "acdc", "tau=0.1"]


def test_compare_reports_orderings_against_the_paper():
    records = [fake_record(m, v, s) for m, v, s in
               [("bimt", 1.0, 0.99), ("l1_local", 2.0, 0.98), ("l1", 3.0, 0.95), ("l1_swap", 2.5, 0.96),
                ("vanilla", 9.0, 0.86), ("bimt", 0.1, 0.999)]]
    records[-1] = fake_record("bimt", 0.1, 0.999, variant="lam=0.5")  # variants are not the paper's method
    verdict = compare(records, "circle_detection")["verdict"]
    assert verdict["logit_difference_order_ours"] == verdict["logit_difference_order_published"]
    assert verdict["logit_difference_kendall_tau"] == 1.0
    assert verdict["bimt_lowest_logit_difference"] and verdict["vanilla_worst_logit_difference"]


def test_kendall_tau_extremes():
    assert kendall_tau(["a", "b", "c"], ["a", "b", "c"]) == 1.0
    assert kendall_tau(["a", "b", "c"], ["c", "b", "a"]) == -1.0


def test_missing_results_file_is_an_error_when_asked_for(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        ResultStore(tmp_path / "nope.sqlite").records(must_exist=True)
