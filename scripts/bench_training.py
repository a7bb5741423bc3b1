"""Benchmark: wall time and peak memory of each regime relative to vanilla, for the same steps, in one run.

Each measurement runs in a fresh subprocess (so CPU peak-RSS figures do not leak between regimes); regimes
are interleaved over repeats and the fastest repeat is kept. On CUDA, memory is the allocator's peak.

    python scripts/bench_training.py [--steps 2000] [--repeats 2] [--device cpu] [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REGIMES = ("vanilla", "l1", "l1_local", "l1_swap", "bimt")


def worker(method: str, steps: int, device_name: str | None, data_dir: str | None) -> None:
    import torch

    from modbench.data.mnist import load_mnist
    from modbench.pipeline import build_model, training_spec
    from modbench.provenance import resolve_device
    from modbench.methods import METHODS
    from modbench.training.trainer import TrainConfig, train

    data = load_mnist(Path(data_dir) if data_dir else None)
    device = resolve_device(device_name)
    # Swaps every 500 steps as in the full run; lambda schedule spans the benchmark's steps.
    spec = training_spec(method, "mnist_mlp", data, TrainConfig(steps=steps, eval_every=steps))
    model = build_model(spec)
    result = train(model, METHODS.get(method).build(spec.method_config), data, spec.train, device, show_progress=False)
    print(json.dumps({"method": method, "time_s": result.train_time_s, "peak_bytes": result.peak_memory_bytes,
                      "memory_kind": result.peak_memory_kind, "data": data.source, "device": str(device),
                      "torch_threads": torch.get_num_threads()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.steps, args.device, args.data_dir)
        return
    best: dict[str, dict] = {}
    for repeat in range(args.repeats):
        for method in REGIMES:
            command = [sys.executable, __file__, "--worker", method, "--steps", str(args.steps)]
            command += ["--device", args.device] if args.device else []
            command += ["--data-dir", args.data_dir] if args.data_dir else []
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"repeat {repeat} {method:9s} {row['time_s']:8.2f} s  peak {row['peak_bytes'] / 2**20:8.1f} MiB",
                  flush=True)
            if method not in best or row["time_s"] < best[method]["time_s"]:
                best[method] = {**row, "peak_bytes": min(row["peak_bytes"], best.get(method, row)["peak_bytes"])}
    base = best["vanilla"]
    print(f"\n{args.steps} steps on {base['data']}, device {base['device']}, "
          f"{base['torch_threads']} threads, best of {args.repeats}; memory = {base['memory_kind']}")
    print(f"{'regime':9s} {'time (s)':>9s} {'x vanilla':>10s} {'peak MiB':>9s} {'x vanilla':>10s}")
    for method in REGIMES:
        row = best[method]
        print(f"{method:9s} {row['time_s']:9.2f} {row['time_s'] / base['time_s']:10.3f} "
              f"{row['peak_bytes'] / 2**20:9.1f} {row['peak_bytes'] / max(base['peak_bytes'], 1):10.3f}")


if __name__ == "__main__":
    main()
