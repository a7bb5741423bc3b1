"""Benchmark: training P MNIST models one after another (the one training loop, ``train``) against training
them as one pack (``train_packed``), side by side in one run, for each P in --models (default 5 and 20:
the five regimes x 1 and x 4 seeds). Both include the per-model memory probe and the evaluations; the
figure per arm is the best of --repeats. Also prints how far the packed weights are from the one-by-one
weights, and both arms' mean test accuracy. In float32 the batched matrix products round differently: vanilla
stays within ~1e-6, but L1's sign at zero turns rounding into lr-sized steps and BIMT's discrete swaps can then
choose differently, so those weights drift apart while the accuracies stay alike (the exact agreement of the
algorithm is tested in float64 in tests/test_packed.py).

    python scripts/bench_packed.py [--models 5 20] [--steps 1000] [--repeats 2] [--device cpu|cuda]
                                   [--threads N]    (full MNIST with MODBENCH_DATA_DIR=../shared/data)
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from modbench.methods import METHODS
from modbench.models import MODELS
from modbench.provenance import device_name, resolve_device
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, nargs="+", default=[5, 20])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2)
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


if __name__ == "__main__":
    main()
