"""Benchmark: the authors' sequential ECS procedure vs the shipped ``ecs_fast``, in one run.

Model: the MNIST MLP 784-64-64-10, ReLU, no bias (``mnist_mlp_relu``), trained --steps Adam steps (lr 1e-3,
batch 128, cross-entropy) on the circle_detection task's MNIST split (the embedded 5k digits offline, or
--data-dir), so the loss landscape is that of a trained network. One class (--class), its test images
(--images; default all). Pruned: the three Linear weights (50,176 + 4,096 + 640 = 54,912 weights).

Measured (wall clock and process CPU time; --threads torch threads, default 1):
  fast       ecs_fast over all three layers; the median of --repeats runs.
  reference  ecs_reference (one full forward per weight) run fully on the last two layers (4,736 weights),
             then once more on all layers with max_weights = 4,736 + --ref-weights, i.e. the last two layers
             and the first --ref-weights weights of the first layer in the reference's own order.
             Extrapolated full time = (second run) / (4,736 + ref-weights) x 54,912: every weight costs the
             reference one full forward of the class's images, whichever layer it is in (the first run's
             time per weight is printed as a cross-check).
Checked: the reference's masks equal the fast masks wherever the reference ran (the last two layers in
full, the first --ref-weights weights of the first layer). Target: extrapolated reference / fast >= 20.

    python scripts/bench_ecs.py [--class 0] [--images N] [--ref-weights 2000] [--steps 300] [--repeats 3]
                                [--threads 1] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from modbench.discovery.ecs import ecs_reference
from modbench.discovery.ecs_fast import ecs_fast
from modbench.models import MODELS
from modbench.tasks import TASKS

TARGET = 20.0


def train(model, data, steps: int, seed: int) -> float:
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(steps):
        rows = torch.randint(0, len(data.x_train), (128,), generator=generator)
        loss = F.cross_entropy(model(data.x_train[rows]), data.y_train[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return float((model(data.x_test).argmax(-1) == data.y_test).float().mean())


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--class", dest="label", type=int, default=0)
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--ref-weights", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = TASKS.get("circle_detection").build().load(args.data_dir)
    torch.manual_seed(args.seed)
    model = MODELS.get("mnist_mlp_relu").build()
    accuracy = train(model, data, args.steps, args.seed)
    model.eval()
    x = data.x_test[data.y_test == args.label][: args.images]
    layers = [block.mlp.linear.weight for block in model.blocks] + [model.unembed.weight]
    names = [name for name, param in model.named_parameters() for layer in layers if param is layer]
    first, last_two = layers[0].numel(), sum(layer.numel() for layer in layers[1:])
    sample = min(args.ref_weights, first)

    with torch.no_grad():
        stats: dict = {}
        runs = [timed(lambda: ecs_fast(model, x, args.label, layers, stats=stats)) for _ in range(args.repeats)]
        fast = runs[0][0]
        fast_wall = statistics.median(run[1] for run in runs)
        fast_cpu = statistics.median(run[2] for run in runs)
        ref_tail, tail_wall, tail_cpu = timed(lambda: ecs_reference(model, x, args.label, layers[1:]))
        ref_all, all_wall, all_cpu = timed(
            lambda: ecs_reference(model, x, args.label, layers, max_weights=last_two + sample))

    total = first + last_two
    ref_wall, ref_cpu = all_wall / (last_two + sample) * total, all_cpu / (last_two + sample) * total
    same_tail = all(torch.equal(ref_tail[name], fast[name]) for name in names[1:])
    same_all_tail = all(torch.equal(ref_all[name], fast[name]) for name in names[1:])
    same_first = torch.equal(ref_all[names[0]].view(-1)[:sample], fast[names[0]].view(-1)[:sample])
    ecs = sum(int(mask.sum()) for mask in fast.values()) / (first + last_two)

    print(f"model mnist_mlp_relu 784-64-64-10 after {args.steps} Adam steps (test accuracy {accuracy:.3f}); "
          f"data {data.source}; class {args.label}: {len(x)} images; torch threads {args.threads}")
    print(f"ECS (fast) {ecs:.4f}; kept per layer: "
          + ", ".join(f"{name} {float(fast[name].float().mean()):.4f}" for name in names))
    print(f"fast: median of {args.repeats}: {fast_wall:.2f} s wall, {fast_cpu:.2f} s CPU; "
          f"{stats['passes']} batched passes, {stats['evaluations']:,} candidate evaluations, "
          f"{stats['null']:,} null weights decided without evaluation, {stats['exact_forwards']:,} exact "
          f"forwards for near-ties (max |estimate - reference| = {stats['max_error_over_tol']:.2f} x tol, "
          f"tol {stats['tol']:.2e})")
    print(f"reference, last two layers ({last_two:,} weights): {tail_wall:.2f} s wall, {tail_cpu:.2f} s CPU "
          f"({tail_wall / last_two * 1e3:.3f} ms per weight); masks equal fast: {same_tail and same_all_tail}")
    print(f"reference, last two layers + first {sample:,} of {first:,} first-layer weights: {all_wall:.2f} s wall, "
          f"{all_cpu:.2f} s CPU ({all_wall / (last_two + sample) * 1e3:.3f} ms per weight); masks of the first-layer "
          f"weights equal fast: {same_first}")
    print(f"reference extrapolated to all {total:,} weights: {ref_wall:.1f} s wall, {ref_cpu:.1f} s CPU")
    print(f"speed-up: {ref_wall / fast_wall:.1f}x wall, {ref_cpu / fast_cpu:.1f}x CPU (target >= {TARGET:.0f}x)")


if __name__ == "__main__":
    main()
