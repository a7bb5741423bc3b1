"""Benchmark: wall time, CPU time and peak memory of each regime relative to vanilla, same steps, one run.

Times: all regimes run in one process, interleaved over repeats after a discarded warm-up run, so that drifts
of a shared machine hit every regime alike; each figure is the lowest over repeats. Memory, each regime once in
a fresh subprocess over ``--memory-steps`` (one swap included by default):
the highest total of live tensor bytes, from the PyTorch profiler's allocation records (exact and independent
of the allocator; peak resident memory is noise at this MiB scale). On CUDA: the allocator's peak.

    python scripts/bench_training.py [--steps 2000] [--repeats 5] [--device cpu] [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from modbench.data.mnist import load_mnist
from modbench.methods import METHODS
from modbench.pipeline import build_model, training_spec
from modbench.provenance import device_name, resolve_device
from modbench.training.trainer import TrainConfig, train

REGIMES = ("vanilla", "l1", "l1_local", "l1_swap", "bimt")


def run_once(method: str, data, steps: int, device: torch.device) -> dict[str, float]:
    # Swaps every 500 steps as in the full run; the lambda schedule spans the benchmark's steps.
    spec = training_spec(method, "mnist_mlp", data, TrainConfig(steps=steps, eval_every=steps))
    model = build_model(spec)
    cpu_start = time.process_time()
    result = train(model, METHODS.get(method).build(spec.method_config), data, spec.train, device, show_progress=False)
    return {"wall": result.train_time_s, "cpu": time.process_time() - cpu_start,
            "memory": float(result.peak_memory_bytes or 0)}


def memory_once(method: str, data, steps: int, device: torch.device) -> dict[str, float]:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities, profile_memory=True) as profiler:
        row = run_once(method, data, steps, device)
    if device.type == "cuda":
        return {"tensor": row["memory"]}
    live = peak = 0
    for event in sorted(profiler.events(), key=lambda e: e.time_range.start):
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return {"tensor": float(peak)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default=None)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--memory-steps", type=int, default=600)
    parser.add_argument("--memory-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = resolve_device(args.device)
    data = load_mnist(args.data_dir)
    if args.memory_worker:
        print(json.dumps(memory_once(args.memory_worker, data, args.memory_steps, device)))
        return
    run_once("bimt", data, min(args.steps, 500), device)  # warm-up: allocator, kernels, caches
    best: dict[str, dict[str, float]] = {}
    for repeat in range(args.repeats):
        for method in REGIMES:
            row = run_once(method, data, args.steps, device)
            print(f"repeat {repeat} {method:9s} wall {row['wall']:6.2f} s  cpu {row['cpu']:6.2f} s", flush=True)
            previous = best.setdefault(method, row)
            best[method] = {k: min(previous[k], row[k]) for k in row}
    for method in REGIMES:
        command = [sys.executable, __file__, "--memory-worker", method, "--memory-steps", str(args.memory_steps)]
        command += ["--device", str(device)] + (["--data-dir", str(args.data_dir)] if args.data_dir else [])
        fresh = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
        best[method] |= fresh
    base = best["vanilla"]
    print(f"\n{args.steps} steps on {data.source}, {device_name(device)}, time: best of {args.repeats} "
          f"interleaved repeats; memory: {args.memory_steps} steps, one fresh process per regime")
    print(f"{'regime':9s} {'wall s':>7s} {'x van':>6s} {'cpu s':>7s} {'x van':>6s} "
          f"{'tensor MiB':>10s} {'x van':>6s}")
    for method in REGIMES:
        row = best[method]
        print(f"{method:9s} {row['wall']:7.2f} {row['wall'] / base['wall']:6.3f} {row['cpu']:7.2f} "
              f"{row['cpu'] / base['cpu']:6.3f} {row['tensor'] / 2**20:10.2f} {row['tensor'] / base['tensor']:6.3f}")


if __name__ == "__main__":
    main()
