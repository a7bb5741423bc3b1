"""Reproduce Nainani (2024) Table 3 on full MNIST: train the five regimes once (or load them from the
cache), run both tasks with 50 x 500 bootstraps, write leaderboards/mnist_<task>.md beside the published rows.

    MODBENCH_DATA_DIR=../shared/data python scripts/reproduce_nainani.py [--device cpu] [--results PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from modbench.data.mnist import load_mnist
from modbench.discovery import DISCOVERERS
from modbench.paths import modbench_home
from modbench.pipeline import default_steps, trained_model, training_spec
from modbench.provenance import device_name, git_commit, resolve_device
from modbench.results.compare import compare
from modbench.results.leaderboard import leaderboard, to_markdown
from modbench.results.store import ResultStore
from modbench.runner import DiscoveryConfig, build_record, discover_and_score
from modbench.tasks import TASKS
from modbench.training.trainer import TrainConfig
from modbench.viz.figures import sparsity_scatter

REGIMES = ("bimt", "l1_local", "l1", "l1_swap", "vanilla")
TASK_KEYS = ("circle_detection", "line_detection")
ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None)
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "leaderboards")
    parser.add_argument("--allow-embedded", action="store_true", help="run on mnist-5k when full MNIST is absent")
    args = parser.parse_args()
    start = time.perf_counter()
    device = resolve_device(args.device)
    data = load_mnist()
    if data.source != "mnist" and not args.allow_embedded:
        raise SystemExit("full MNIST not found: set MODBENCH_DATA_DIR (e.g. ../shared/data) or --allow-embedded")
    store = ResultStore(args.results or modbench_home() / "results.sqlite")
    cfg = DiscoveryConfig(seed=args.seed)
    train_cfg = TrainConfig(steps=default_steps(data.source), seed=args.seed)
    models, trainings = {}, {}
    for method in REGIMES:
        spec = training_spec(method, "mnist_mlp", data, train_cfg)
        models[method], trainings[method] = trained_model(spec, data, device, show_progress=False)
        t = trainings[method]["training"]
        print(f"{method:9s} test acc {t['test_accuracy']:.4f} (best {t['best_test_accuracy']:.4f} at step "
              f"{t['best_step']}), trained in {t['train_time_s']:.0f} s, cached={trainings[method]['cached']}",
              flush=True)
    for task_key in TASK_KEYS:
        task = TASKS.get(task_key)
        pairs = task.make_pairs(data, args.seed)
        discoverer = DISCOVERERS.get(task.discoverer)
        records = []
        for method in REGIMES:
            outcome = discover_and_score(models[method], pairs, discoverer.build(), cfg, device)
            record = build_record(task=task, method=method, discoverer_key=task.discoverer,
                                  discoverer_config=discoverer.config, cfg=cfg, data=data, model=models[method],
                                  training=trainings[method], outcome=outcome, n_pairs=len(pairs), device=device)
            record["id"] = store.append(record)
            records.append(record)
            print(f"{task_key} {method:9s} logit diff {record['logit_difference_mean']:.4f} ± "
                  f"{record['logit_difference_ci']:.4f}  sparsity {record['sparsity_mean']:.4f}  "
                  f"time {record['discovery_time_s_mean']:.3f} s", flush=True)
        write_leaderboard(task_key, records, data.source, trainings, start, device, args.out, len(pairs), cfg)


def write_leaderboard(task_key, records, source, trainings, start, device, out: Path, n_pairs, cfg) -> None:
    table = leaderboard(records, task_key, source)
    verdict = compare(records, task_key, source)["verdict"]
    elapsed = time.perf_counter() - start
    train_total = sum(t["training"]["train_time_s"] for t in trainings.values())
    cached = [m for m, t in trainings.items() if t["cached"]]
    out.mkdir(parents=True, exist_ok=True)
    figure = sparsity_scatter(table, out / f"mnist_{task_key}_sparsity.png", f"{task_key} ({source})")
    header = [
        f"# {task_key} on {source}: our five regimes beside Nainani (2024) Table 3",
        "",
        f"- Command: `MODBENCH_DATA_DIR=../shared/data python scripts/reproduce_nainani.py` "
        f"(git {git_commit()}, {platform.node() or 'host'}, device {device_name(device)}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}).",
        f"- Time: training of the five models {train_total:.0f} s (as recorded when trained"
        + (f"; loaded from cache this run: {', '.join(cached)})" if cached else ", in this run)")
        + f" + this script up to this file {elapsed:.0f} s"
        + (f" = {(train_total + elapsed) / 60:.1f} min for the whole reproduction." if cached else "."),
        f"- Bootstrap: {cfg.boots} resamples x {cfg.pairs_per_boot} pairs from {n_pairs} test-split pairs; "
        f"K = {cfg.top_k} neurons per hidden layer; non-circuit neurons {cfg.ablation}-ablated; "
        f"sparsity edge threshold {cfg.edge_threshold} x max|W| per layer. Discovery time is per resample.",
        "",
    ]
    body = to_markdown(table, f"{task_key} leaderboard ({source})")
    footer = ["### Ordering against the paper", "", "```json", json.dumps(verdict, indent=2), "```", "",
              f"![sparsity vs logit difference]({figure.name})", ""]
    (out / f"mnist_{task_key}.md").write_text("\n".join(header) + "\n" + body + "\n" + "\n".join(footer))
    print(f"wrote {out / f'mnist_{task_key}.md'}")


if __name__ == "__main__":
    main()
