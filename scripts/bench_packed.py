"""Benchmark: training P MNIST models one after another (the one training loop, ``train``) against training
them as one pack (``train_packed``), side by side in one run, for each P in --models (default 5 and 20:
the five regimes x 1 and x 4 seeds). Both include the per-model memory probe and the evaluations; the
figure per arm is the best of --repeats. Also prints how far the packed weights are from the one-by-one
weights, and both arms' mean test accuracy. In float32 the batched matrix products round differently: vanilla
stays within ~1e-6, but L1's sign at zero turns rounding into lr-sized steps and BIMT's discrete swaps can then
choose differently, so those weights drift apart while the accuracies stay alike (the exact agreement of the
algorithm is tested in float64 in tests/test_packed.py).

Then the trained models' circuits are found and scored (Nainani's protocol on circle detection: --boots
resamples of 500 pairs, activation patching, K = 15, mean ablation) one model after another
(``discover_and_score``) against the whole pack in one batched pass per resample (``discover_and_score_pack``),
best of --repeats each, with how many chosen circuits agree and the largest logit-difference gap.

    python scripts/bench_packed.py [--models 5 20] [--steps 1000] [--repeats 2] [--boots 50]
                                   [--device cpu|cuda] [--threads N]  (full MNIST: MODBENCH_DATA_DIR=../shared/data)
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from modbench.experiment import ExperimentSpec, pair_scoring
from modbench.methods import METHODS
from modbench.models import MODELS
from modbench.models.pack import ModelPack
from modbench.provenance import device_name, resolve_device
from modbench.scoring import discover_and_score, discover_and_score_pack
from modbench.tasks import TASKS
from modbench.training.packed import Member, train_packed
from modbench.training.trainer import train

REGIMES = ("vanilla", "l1", "l1_local", "l1_swap", "bimt")
TASK = "circle_detection"  # any task on the MNIST MLP: training does not use the pairs


def grid(count: int) -> list[tuple[str, int]]:
    """The first ``count`` of regimes x seeds 1, 2, ... (regimes vary fastest)."""
    return [(REGIMES[i % len(REGIMES)], 1 + i // len(REGIMES)) for i in range(count)]


def members(count: int) -> list[Member]:
    out = []
    for regime, seed in grid(count):
        torch.manual_seed(seed)
        out.append(Member(MODELS.get(TASKS.get(TASK).config.model).build(), METHODS.get(regime).build(), seed))
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def one_by_one(count: int, task, data, cfg, device: torch.device):  # noqa: ANN001, ANN201
    models = members(count)
    sync(device)
    start = time.perf_counter()
    results = [train(member.model, member.method, task, data, dataclasses.replace(cfg, seed=member.seed), device,
                     show_progress=False) for member in models]
    sync(device)
    return time.perf_counter() - start, [m.model for m in models], [r.test_accuracy for r in results]


def packed(count: int, task, data, cfg, device: torch.device):  # noqa: ANN001, ANN201
    models = members(count)
    sync(device)
    start = time.perf_counter()
    results = train_packed(models, task, data, cfg, device, show_progress=False)
    sync(device)
    failed = [r for r in results if isinstance(r, Exception)]
    if failed:
        raise SystemExit(f"a packed model failed: {failed[0]}")
    return time.perf_counter() - start, [m.model for m in models], [r.test_accuracy for r in results]


def max_gap(a: list[torch.nn.Module], b: list[torch.nn.Module]) -> float:
    return max(float((x - y).abs().max()) for one, other in zip(a, b, strict=True)
               for x, y in zip(one.state_dict().values(), other.state_dict().values(), strict=True))


def scoring(models: list[torch.nn.Module], task, data, boots: int, repeats: int, device: torch.device):  # noqa: ANN001, ANN201
    """Best-of-``repeats`` seconds to score the models one by one and as one pack, circuits that agree, and the
    largest gap in logit difference between the two."""
    spec = ExperimentSpec(TASK, "vanilla").resolved()
    args = (task, *pair_scoring(spec, task, data), dataclasses.replace(spec.discovery, boots=boots), device)
    alone_times, pack_times = [], []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        alone = [discover_and_score(model, *args) for model in models]
        sync(device)
        alone_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        packed_outcomes = discover_and_score_pack(ModelPack(models), *args)
        sync(device)
        pack_times.append(time.perf_counter() - start)
    same = sum(all(torch.equal(one.circuit.keep[site], other.circuit.keep[site]) for site in one.circuit.keep)
               for one, other in zip(alone, packed_outcomes, strict=True))
    gap = max(abs(one.metrics["logit_difference"]["mean"] - other.metrics["logit_difference"]["mean"])
              for one, other in zip(alone, packed_outcomes, strict=True))
    return min(alone_times), min(pack_times), same, gap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, nargs="+", default=[5, 20])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--boots", type=int, default=50, help="resamples when scoring the trained models")
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    task = TASKS.get(TASK).build()
    data = task.load(None)
    cfg = dataclasses.replace(task.config.train, steps=args.steps, eval_every=min(200, args.steps))
    print(f"device {device_name(device)}, torch {torch.__version__}, {torch.get_num_threads()} threads, data "
          f"{data.source} ({len(data.x_train)} training images), {args.steps} steps per model, best of "
          f"{args.repeats}", flush=True)
    print("| models P | one by one (s) | packed (s) | speed-up | per model per 1k steps: one by one / packed (s) "
          "| max weight gap | mean test acc one by one / packed |")
    print("|---|---|---|---|---|---|---|")
    trained = {}
    for count in args.models:
        sequential_times, packed_times = [], []
        for _ in range(args.repeats):  # interleaved, so the machine's drifts hit both arms
            seconds, sequential_models, sequential_accuracy = one_by_one(count, task, data, cfg, device)
            sequential_times.append(seconds)
            seconds, packed_models, packed_accuracy = packed(count, task, data, cfg, device)
            packed_times.append(seconds)
        slow, fast = min(sequential_times), min(packed_times)
        per = 1000 / args.steps / count
        print(f"| {count} | {slow:.1f} | {fast:.1f} | {slow / fast:.2f}x | {slow * per:.2f} / {fast * per:.2f} | "
              f"{max_gap(sequential_models, packed_models):.1e} | {sum(sequential_accuracy) / count:.4f} / "
              f"{sum(packed_accuracy) / count:.4f} |", flush=True)
        trained[count] = packed_models
    print(f"\nscoring the packed models: {args.boots} resamples x 500 pairs, best of {args.repeats}")
    print("| models P | one by one (s) | packed (s) | speed-up | same consensus circuit | max logit-diff gap |")
    print("|---|---|---|---|---|---|")
    for count, models in trained.items():
        slow, fast, same, gap = scoring(models, task, data, args.boots, args.repeats, device)
        print(f"| {count} | {slow:.1f} | {fast:.1f} | {slow / fast:.2f}x | {same} of {count} | {gap:.1e} |", flush=True)


if __name__ == "__main__":
    main()
