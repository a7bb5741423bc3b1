"""Benchmark: training P MNIST models one after another (the one training loop, ``train``) against training
them as one pack (``train_packed``), side by side in one run, for each P in --models (default 5 and 20:
the five regimes x 1 and x 4 seeds); then scoring them one by one against one pack.

Both training arms include the per-model memory probe and the evaluations, start from the same fresh models
(built untimed before each run) and read the same data, moved to the device once before any timing.
Timing: ``benchlib.interleaved`` (Timer at --threads threads, a warm-up run in every turn, the arm that goes
first alternating, best of --repeats). Also printed: how far the packed weights are from the one-by-one
weights, and both arms' mean test accuracy. In float32 the batched matrix products round differently:
vanilla stays within ~1e-6, but L1's sign at zero turns rounding into lr-sized steps and BIMT's discrete swaps
can then choose differently, so those weights drift apart while the accuracies stay alike (the exact agreement
of the algorithm is tested in float64 in tests/test_packed.py).

Scoring (Nainani's protocol on circle detection: --boots resamples of 500 pairs, activation patching, K = 15,
mean ablation): ``discover_and_score`` model after model against ``discover_and_score_pack`` (one batched pass
per resample), pairs on the device once, with how many chosen circuits agree and the largest logit-difference
gap. Target (issue 17, meant for a GPU): 20 models packed >= 10x faster than one by one.

    python scripts/bench_packed.py [--models 5 20] [--steps 1000] [--repeats 2] [--boots 50] [--compile]
                                   [--device cpu|cuda] [--threads N]  (full MNIST: MODBENCH_DATA_DIR=../shared/data)
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import torch

from benchlib import Arm, interleaved, machine, target_line, threads_arg  # scripts/ is on sys.path
from modbench.data.dataset import TaskData
from modbench.experiment import ExperimentSpec, pair_scoring
from modbench.methods import METHODS
from modbench.models import MODELS
from modbench.models.pack import ModelPack
from modbench.provenance import resolve_device
from modbench.scoring import discover_and_score, discover_and_score_pack
from modbench.tasks import TASKS
from modbench.training.packed import Member, train_packed
from modbench.training.trainer import train

REGIMES = ("vanilla", "l1", "l1_local", "l1_swap", "bimt")
TASK = "circle_detection"  # any task on the MNIST MLP: training does not use the pairs
PACKED_TARGET = 10.0


def grid(count: int) -> list[tuple[str, int]]:
    """The first ``count`` of regimes x seeds 1, 2, ... (regimes vary fastest)."""
    return [(REGIMES[i % len(REGIMES)], 1 + i // len(REGIMES)) for i in range(count)]


def members(count: int, device: torch.device) -> list[Member]:
    out = []
    for regime, seed in grid(count):
        torch.manual_seed(seed)
        model = MODELS.get(TASKS.get(TASK).config.model).build().to(device)
        out.append(Member(model, METHODS.get(regime).build(), seed))
    return out


def on_device(data: TaskData, device: torch.device) -> TaskData:
    return TaskData(data.source, data.x_train.to(device), data.y_train.to(device), data.x_test.to(device),
                    data.y_test.to(device))


def max_gap(a: list[torch.nn.Module], b: list[torch.nn.Module]) -> float:
    return max(float((x - y).abs().max()) for one, other in zip(a, b, strict=True)
               for x, y in zip(one.state_dict().values(), other.state_dict().values(), strict=True))


def compare_training(count: int, task, data: TaskData, cfg, device: torch.device,  # noqa: ANN001
                     repeats: int, threads: int, compile_step: bool = False) -> dict[str, Any]:
    """Best seconds of each arm, the trained models of each, and their mean test accuracies."""
    trained: dict[str, tuple[list[torch.nn.Module], list[float]]] = {}

    def one_by_one(models: list[Member]) -> None:
        results = [train(m.model, m.method, task, data, dataclasses.replace(cfg, seed=m.seed), device,
                         show_progress=False, compile_step=compile_step) for m in models]
        trained["alone"] = [m.model for m in models], [r.test_accuracy for r in results]

    def packed(models: list[Member]) -> None:
        results = train_packed(models, task, data, cfg, device, show_progress=False, compile_step=compile_step)
        failed = [r for r in results if isinstance(r, Exception)]
        if failed:
            raise SystemExit(f"a packed model failed: {failed[0]}")
        trained["packed"] = [m.model for m in models], [r.test_accuracy for r in results]

    prepare = lambda: members(count, device)  # noqa: E731
    seconds = interleaved({"alone": Arm(one_by_one, prepare), "packed": Arm(packed, prepare)}, repeats, threads)
    return {"seconds": seconds, "models": {k: v[0] for k, v in trained.items()},
            "accuracy": {k: sum(v[1]) / count for k, v in trained.items()}}


def compare_scoring(models: list[torch.nn.Module], task, data: TaskData, boots: int,  # noqa: ANN001
                    device: torch.device, repeats: int, threads: int) -> dict[str, Any]:
    """Best seconds to score the models one by one and as one pack, circuits that agree, and the largest gap
    in logit difference between the two."""
    spec = ExperimentSpec(TASK, "vanilla").resolved()
    pairs, *rest = pair_scoring(spec, task, data)
    args = (task, pairs.to(device), *rest, dataclasses.replace(spec.discovery, boots=boots), device)
    outcomes: dict[str, list] = {}
    arms = {"alone": Arm(lambda _: outcomes.__setitem__("alone", [discover_and_score(m, *args) for m in models])),
            "packed": Arm(lambda _: outcomes.__setitem__("packed", discover_and_score_pack(ModelPack(models), *args)))}
    seconds = interleaved(arms, repeats, threads)
    pairs_of = list(zip(outcomes["alone"], outcomes["packed"], strict=True))
    same = sum(all(torch.equal(one.circuit.keep[site], other.circuit.keep[site]) for site in one.circuit.keep)
               for one, other in pairs_of)
    gap = max(abs(one.metrics["logit_difference"]["mean"] - other.metrics["logit_difference"]["mean"])
              for one, other in pairs_of)
    return {"seconds": seconds, "same_circuits": same, "logit_difference_gap": gap}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, nargs="+", default=[5, 20])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved turns; each arm's best is kept")
    parser.add_argument("--boots", type=int, default=50, help="resamples when scoring the trained models")
    parser.add_argument("--compile", action="store_true", help="both training arms with compiled steps")
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads [default: torch's choice]")
    args = parser.parse_args()
    threads = threads_arg(args.threads)
    device = resolve_device(args.device)
    task = TASKS.get(TASK).build()
    data = on_device(task.load(None), device)
    cfg = dataclasses.replace(task.config.train, steps=args.steps, eval_every=min(200, args.steps))
    print(f"data {data.source}: {len(data.x_train):,} training and {len(data.x_test):,} test images; "
          f"{args.steps} steps per model{', compiled steps' if args.compile else ''}; best of {args.repeats} "
          "interleaved turns")
    print(machine(device, threads), flush=True)
    print("| models P | one by one (s) | packed (s) | speed-up | per model per 1k steps: one by one / packed (s) "
          "| max weight gap | mean test acc one by one / packed |")
    print("|---|---|---|---|---|---|---|")
    trained, speedups = {}, {}
    for count in args.models:
        row = compare_training(count, task, data, cfg, device, args.repeats, threads, args.compile)
        slow, fast = row["seconds"]["alone"], row["seconds"]["packed"]
        speedups[count], per = slow / fast, 1000 / args.steps / count
        print(f"| {count} | {slow:.1f} | {fast:.1f} | {slow / fast:.2f}x | {slow * per:.2f} / {fast * per:.2f} | "
              f"{max_gap(row['models']['alone'], row['models']['packed']):.1e} | {row['accuracy']['alone']:.4f} / "
              f"{row['accuracy']['packed']:.4f} |", flush=True)
        trained[count] = row["models"]["packed"]
    print(f"\nscoring the packed models: {args.boots} resamples x 500 pairs")
    print("| models P | one by one (s) | packed (s) | speed-up | same consensus circuit | max logit-diff gap |")
    print("|---|---|---|---|---|---|")
    for count, models in trained.items():
        row = compare_scoring(models, task, data, args.boots, device, args.repeats, threads)
        slow, fast = row["seconds"]["alone"], row["seconds"]["packed"]
        print(f"| {count} | {slow:.1f} | {fast:.1f} | {slow / fast:.2f}x | {row['same_circuits']} of {count} | "
              f"{row['logit_difference_gap']:.1e} |", flush=True)
    print(machine(device, threads))
    for count, speedup in speedups.items():
        print(target_line(f"training {count} models packed vs one by one (set for a GPU; {device.type} here)",
                          speedup, PACKED_TARGET, at_least=True))


if __name__ == "__main__":
    main()
