"""Benchmark: batched activation patching vs one plain batched forward over the same rows vs a per-sample
loop (one forward per neuron per pair, timed on a subset and extrapolated), all in one run.

Targets (issue 3): discovery <= 2x the plain forward, >= 100x faster than the per-sample loop.

    python scripts/bench_discovery.py [--pairs 500] [--loop-pairs 4] [--repeats 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from modbench.data.mnist import load_mnist
from modbench.discovery.activation_patching import ActivationPatching, ActivationPatchingConfig, score_per_sample
from modbench.models import MODELS
from modbench.provenance import device_name, resolve_device
from modbench.tasks import TASKS


def timed(fn, device: torch.device, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=500)
    parser.add_argument("--loop-pairs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    spec = MODELS.get("mnist_mlp")
    model = spec.build(spec.config).to(device).eval()  # timing does not depend on the weights' values
    pairs = TASKS.get("circle_detection").make_pairs(load_mnist(), seed=0)
    index = torch.arange(args.pairs) % len(pairs)
    pairs = pairs.select(index).to(device)
    neurons = sum(spec.config.widths[1:-1])
    rows = args.pairs * neurons
    discoverer = ActivationPatching(ActivationPatchingConfig())

    discovery = timed(lambda: discoverer.score(model, pairs), device, args.repeats)
    plain_inputs = pairs.corrupted.repeat(neurons, 1)
    with torch.no_grad():
        forward = timed(lambda: model(plain_inputs), device, args.repeats)
    subset = pairs.select(torch.arange(args.loop_pairs, device=device))
    loop = timed(lambda: score_per_sample(model, subset), device, 1) * args.pairs / args.loop_pairs

    print(f"device {device_name(device)}; {args.pairs} pairs x {neurons} hidden neurons = {rows:,} patched rows")
    print(f"batched discovery          {discovery:10.4f} s")
    print(f"plain forward, same rows   {forward:10.4f} s   "
          f"discovery / forward = {discovery / forward:.2f} (target <= 2)")
    print(f"per-sample loop (extrap.)  {loop:10.2f} s   loop / discovery = {loop / discovery:,.0f}x (target >= 100)")


if __name__ == "__main__":
    main()
