"""Reproduce Nainani (2024) Table 3 on full MNIST through the sweep (the same runs as ``modbench sweep
examples/sweeps/nainani_mnist.toml``): the five regimes x both tasks x the training seeds x four discoverers
(exact and attribution patching of neurons; ACDC and EAP-IG on edges), 50 x 500 bootstraps with circuits chosen on one half of the pairs and
scored on the other. Models are trained once (the two tasks share each model) and cached; rows already in
the results database are reused. Writes leaderboards/mnist_<task>.md beside the published rows, with the
ordering per seed.

    MODBENCH_DATA_DIR=../shared/data python scripts/reproduce_nainani.py [--seeds 1 2 3] [--workers 2] [--pack 15]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import pandas as pd
import torch

from modbench.paths import modbench_home
from modbench.provenance import device_name, git_commit, resolve_device
from modbench.registries import TASKS
from modbench.results.compare import compare, kendall_tau
from modbench.results.leaderboard import is_canonical, leaderboard, to_markdown
from modbench.results.published import nainani_table3
from modbench.results.record import ResultRecord
from modbench.results.store import ResultStore
from modbench.sweeps import ExecutorOptions, Outcome, SweepSpec, execute, make_executor, pack_message, plan
from modbench.viz.figures import sparsity_scatter
from modbench.site import build_site
from reproduction import edge_discovery_table

REGIMES = ("bimt", "l1_local", "l1", "l1_swap", "vanilla")
TASK_KEYS = ("circle_detection", "line_detection")
DISCOVERERS = ("activation_patching", "attribution_patching", "acdc", "eap_ig")
EDGE_DISCOVERERS = ("acdc", "eap_ig")
ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None)
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1], help="training seeds")
    parser.add_argument("--discoverers", nargs="+", default=list(DISCOVERERS))
    parser.add_argument("--workers", type=int, default=None, help="processes [default: one per core]")
    parser.add_argument("--pack", type=int, default=0, help="train and score the models in packs of up to N "
                                                            "(modbench sweep --pack) [0: one by one]")
    parser.add_argument("--out", type=Path, default=ROOT / "leaderboards")
    parser.add_argument("--allow-embedded", action="store_true", help="run on mnist-5k when full MNIST is absent")
    args = parser.parse_args()
    start = time.perf_counter()
    device = resolve_device(args.device)
    data = TASKS.get("circle_detection").build().load(None)
    if data.source != "mnist" and not args.allow_embedded:
        raise SystemExit("full MNIST not found: set MODBENCH_DATA_DIR (e.g. ../shared/data) or --allow-embedded")
    store = ResultStore(args.results or modbench_home() / "results.sqlite")
    sweep = SweepSpec(methods=REGIMES, tasks=TASK_KEYS, seeds=tuple(args.seeds), discoverers=tuple(args.discoverers))
    planned = plan(sweep, store, None, "reproduce_nainani")
    print(f"{len(planned.runs)} runs, {len(planned.runs) - len(planned.todo)} already in {store.path}", flush=True)
    executor = make_executor(ExecutorOptions(workers=args.workers, device=str(device)), max(1, len(planned.todo)))
    outcomes = execute(planned, executor, store, report, args.pack, packed) if planned.todo else []
    if any(outcome.failed for outcome in outcomes):
        raise SystemExit("some runs failed (listed above): their cells would be missing from the leaderboards")
    wanted = {run.config_hash for run in planned.runs}
    for task_key in TASK_KEYS:
        records = [r for r in store.records(task_key) if r.config_hash in wanted]
        write_leaderboard(task_key, records, data.source, start, device, args, len(planned.todo))
    site = build_site(store, args.out / "site")  # every task of the results database
    print(f"wrote {site}")


def packed(models: int, result: dict) -> None:
    print(pack_message(models, result), flush=True)


def report(outcome: Outcome) -> None:
    run, record = outcome.run.run, outcome.record
    if record is None or outcome.failed:
        print(f"FAILED {run.label()}: {outcome.why}", flush=True)
        return
    metric = record.metrics["logit_difference"]
    print(f"{run.task} seed {run.seed} {run.method:9s} {run.discoverer:21s} acc {record.test_accuracy:.4f} "
          f"(best {record.best_test_accuracy:.4f})  logit diff {metric['mean']:.4f} ± {metric['ci']:.4f}  "
          f"sparsity {record.metrics['sparsity']['mean']:.4f}  train {record.costs['train_time_s']:.0f} s "
          f"cached={record.costs['train_cached']}  run {outcome.seconds:.0f} s", flush=True)


def layer_table(records: list[ResultRecord]) -> str:
    """Sparsity per wire (layer), mean over seeds: the whole-network figure is dominated by the input layer."""
    rows = pd.DataFrame([{"method": r.method, **r.sparsity_per_wire} for r in records]).groupby("method").mean()
    rows = rows.loc[[m for m in REGIMES if m in rows.index]]
    header = "| method | " + " | ".join(rows.columns) + " |"
    lines = [header, "|" + "---|" * (len(rows.columns) + 1)]
    lines += [f"| {m} | " + " | ".join(f"{v:.4f}" for v in row) + " |" for m, row in rows.iterrows()]
    return "\n".join(lines)


def seed_orderings(records: list[ResultRecord], task_key: str) -> str:
    """Is the ordering seed noise? Per training seed, the canonical (exact patching) logit-difference order and
    its Kendall tau against the paper; then, per pair of regimes, in how many seeds the paper's sign holds."""
    paper = nainani_table3(task_key).set_index("method")["logit_difference"]
    canonical = [r for r in records if is_canonical(r.task, r.variant, r.discoverer)]
    by_seed: dict[int, dict[str, float]] = {}
    for r in canonical:
        by_seed.setdefault(r.train_seed, {})[r.method] = r.metrics["logit_difference"]["mean"]
    paper_order = list(paper.loc[[m for m in paper.index if m in REGIMES]].sort_values().index)
    lines = [f"Paper's order (lowest logit difference first): {' < '.join(paper_order)}", "",
             "| seed | our order (lowest first) | Kendall tau vs paper |", "|---|---|---|"]
    for seed, values in sorted(by_seed.items()):
        order = sorted(values, key=values.__getitem__)
        shared = [m for m in paper_order if m in values]
        lines.append(f"| {seed} | {' < '.join(order)} | {kendall_tau(order, shared):.2f} |")
    lines += ["", "| pair (paper: first < second) | seeds agreeing | our differences per seed |", "|---|---|---|"]
    for i, low in enumerate(paper_order):
        for high in paper_order[i + 1:]:
            diffs = [v[high] - v[low] for _, v in sorted(by_seed.items()) if low in v and high in v]
            agree = sum(d > 0 for d in diffs)
            lines.append(f"| {low} < {high} | {agree} of {len(diffs)} | "
                         + ", ".join(f"{d:+.4f}" for d in diffs) + " |")
    return "\n".join(lines)


def write_leaderboard(task_key: str, records: list[ResultRecord], source: str, start: float,
                      device: torch.device, args: argparse.Namespace, executed: int) -> None:
    table = leaderboard(records, task_key, source)
    verdict = compare(records, task_key, source)["verdict"]
    trained = {(r.method, r.train_seed): r.costs["train_time_s"] for r in records}  # one per model
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    figure = sparsity_scatter(table, out / f"mnist_{task_key}_sparsity.png", f"{task_key} ({source})")
    seeds = " ".join(map(str, args.seeds))
    first = records[0]
    header = [
        f"# {task_key} on {source}: our five regimes beside Nainani (2024) Table 3",
        "",
        f"- Command: `MODBENCH_DATA_DIR=../shared/data python scripts/reproduce_nainani.py --seeds {seeds}"
        + (f" --pack {args.pack}" if args.pack else "") + "` "
        f"(git {git_commit()}, device {device_name(device)}, {os.cpu_count()} CPUs, torch {torch.__version__}).",
        f"- Time: training {sum(trained.values()):.0f} s for the {len(trained)} models of this table (as recorded "
        "when each was trained, some on a loaded machine); this script "
        f"{time.perf_counter() - start:.0f} s up to this file, running {executed} of the sweep's runs (the others "
        "were already in the results database).",
        f"- Bootstrap: {first.config['discovery']['boots']} resamples x {first.config['discovery']['pairs_per_boot']} "
        f"pairs; the {first.costs['n_pairs']} test-split pairs are split once into a discovery half and a held-out "
        "half; each resample's circuit (K = 15 neurons per hidden layer, chosen on a resample of the discovery "
        "half) is scored on a resample of the held-out half. Non-circuit neurons mean-ablated; sparsity edge "
        "threshold 0.01 x max|W| per layer. Discovery time is per resample and does not depend on the weights "
        "(not starred). ACDC and EAP-IG score edges (every weight; a cut edge carries its sender's mean value): "
        "ACDC with tau = 0.01 (logit difference), its circuit the edges it kept in most resamples' runs; EAP-IG with "
        "5 steps, its circuit every edge whose score reaches 0.01. Their discovery time and forward passes are "
        "starred: ACDC's cost depends on the weights.",
        f"- Training seeds: {seeds}" + (" (metric = mean over seeds, ± = 95 % t-interval over seeds)"
                                         if len(args.seeds) > 1 else " (± = 95 % bootstrap interval)") + ".",
        "",
    ]
    body = to_markdown(table, f"{task_key} leaderboard ({source})")
    footer = ["### Edge discovery across regimes (does modular training make discovery faster, circuits smaller?)", "",
              edge_discovery_table(records, REGIMES, EDGE_DISCOVERERS, "logit_difference"), "",
              "### Sparsity per layer (wire)", "", layer_table([r for r in records if r.discoverer not in
                                                             EDGE_DISCOVERERS]), "",
              "### Ordering against the paper (canonical rows, mean over seeds)", "", "```json",
              json.dumps(verdict, indent=2), "```", "", "### Ordering per training seed", "",
              seed_orderings(records, task_key), "",
              "", f"![sparsity vs logit difference]({figure.name})", ""]
    (out / f"mnist_{task_key}.md").write_text("\n".join(header) + "\n" + body + "\n" + "\n".join(footer))
    print(f"wrote {out / f'mnist_{task_key}.md'}")


if __name__ == "__main__":
    main()
