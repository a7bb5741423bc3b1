"""Benchmark: wall time and training-step peak memory of each regime relative to vanilla, in one run.

Time: every regime in one process, interleaved over --repeats after a warm-up run of each, so drifts of a
shared machine hit all regimes alike; the figure is the best of the repeats of ``train()``'s own timer
(--steps steps; evaluation runs once, at the end, and is a small part of it). Same initial weights for all.
Memory: training steps only (never evaluation), with ``modbench.training.memory.peak_bytes`` (CUDA: the
allocator's peak; CPU: the peak of live tensor bytes from the profiler) around building a fresh model +
``Stepper`` and running --memory-steps steps (default 501: steps 0..500, so the swap at step 500 is
included); each regime in a fresh subprocess so allocator state does not leak between regimes.

    python scripts/bench_training.py [--steps 2000] [--repeats 5] [--memory-steps 501] [--device cpu]
                                     [--data-dir ../shared/data] [--threads 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import torch

from modbench.methods import METHODS
from modbench.methods.connection_cost import cost_terms, slot_costs
from modbench.models import MODELS
from modbench.provenance import device_name, resolve_device
from modbench.tasks import TASKS
from modbench.training.memory import peak_bytes
from modbench.training.trainer import Stepper, batches, train

REGIMES = ("vanilla", "l1", "l1_local", "l1_swap", "bimt")
TASK = "circle_detection"  # any task on the MNIST MLP: training does not use the pairs
MiB = 2**20


def setup(regime: str, steps: int, seed: int = 0):
    """A task, the train config for ``steps`` steps, a fresh model (same init every time) and the regime."""
    task = TASKS.get(TASK).build()
    cfg = dataclasses.replace(task.config.train, steps=steps, eval_every=steps)
    torch.manual_seed(seed)
    return task, cfg, MODELS.get(task.config.model).build(), METHODS.get(regime).build()


def wall_time(regime: str, data, steps: int, device: torch.device) -> float:
    task, cfg, model, method = setup(regime, steps)
    return train(model, method, task, data, cfg, device, show_progress=False).train_time_s


def memory_worker(regime: str, data, steps: int, device: torch.device) -> dict[str, object]:
    x, y = data.x_train.to(device), data.y_train.to(device)

    def work() -> None:
        task, cfg, model, method = setup(regime, steps)
        stepper = Stepper(model.to(device), method, task, cfg, steps)
        index = batches(len(x), cfg.batch_size, torch.Generator().manual_seed(cfg.seed))
        for step in range(steps):  # after_step sees 1..steps
            rows = next(index).to(device)
            stepper(x[rows], y[rows], step)

    peak, kind = peak_bytes(work, device)
    return {"regime": regime, "peak_bytes": peak, "kind": kind}


def cost_matrix_bytes(regime: str) -> tuple[int, int, int]:
    """Bytes of the regime's per-entry loss costs (weights + biases), its swap slot costs, and parameters.
    Computed here from the wiring, as the regime computes them (whether it keeps the swap costs or not)."""
    _, _, model, method = setup(regime, 1)
    wiring, c = model.wiring(), method.config
    _, loss = cost_terms(wiring, slot_costs(wiring, c.weight_factor, c.layer_separation, c.penalize_last_distance),
                         c.layer_separation)
    swap = slot_costs(wiring, c.swap_weight_factor, c.layer_separation, True)
    size = lambda tensors: sum(t.numel() * t.element_size() for t in tensors)  # noqa: E731
    return size(loss), size(swap), size(model.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory-steps", type=int, default=501)
    parser.add_argument("--device", default=None)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice; "
                        "1 avoids OpenMP oversubscription on a loaded machine)")
    parser.add_argument("--memory-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = TASKS.get(TASK).build().load(args.data_dir)
    if args.memory_worker:
        print(json.dumps(memory_worker(args.memory_worker, data, args.memory_steps, device)))
        return

    for regime in REGIMES:  # warm-up: allocator, kernels, caches, the swap code path
        wall_time(regime, data, min(args.steps, 500), device)
    wall: dict[str, list[float]] = {regime: [] for regime in REGIMES}
    for repeat in range(args.repeats):
        for regime in REGIMES:
            wall[regime].append(wall_time(regime, data, args.steps, device))
        print(f"repeat {repeat}: " + "  ".join(f"{r} {wall[r][-1]:.2f}s" for r in REGIMES), flush=True)
    peak: dict[str, float] = {}
    for regime in REGIMES:
        command = [sys.executable, __file__, "--memory-worker", regime, "--memory-steps", str(args.memory_steps),
                   "--device", str(device), "--threads", str(args.threads)]
        command += ["--data-dir", str(args.data_dir)] if args.data_dir else []
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"memory worker for {regime} failed:\n{done.stderr}")
        row = json.loads(done.stdout.strip().splitlines()[-1])
        peak[regime], kind = row["peak_bytes"], row["kind"]

    best = {regime: min(times) for regime, times in wall.items()}
    print(f"\n{args.steps} steps on {data.source}, {device_name(device)} (--device {args.device or 'auto'}); "
          f"time: best of {args.repeats} interleaved repeats; memory ({kind}): {args.memory_steps} training "
          "steps, one fresh process per regime")
    print(f"{'regime':9s} {'wall s':>7s} {'x vanilla':>9s} {'peak MiB':>9s} {'x vanilla':>9s}")
    for regime in REGIMES:
        print(f"{regime:9s} {best[regime]:7.2f} {best[regime] / best['vanilla']:9.3f} "
              f"{peak[regime] / MiB:9.3f} {peak[regime] / peak['vanilla']:9.3f}")
    loss, swap, params = cost_matrix_bytes("bimt")
    print(f"\nbimt - vanilla peak: {(peak['bimt'] - peak['vanilla']) / MiB:+.3f} MiB, of which BIMT's per-wire cost "
          "matrices (numel x 4 bytes, from model.wiring()):")
    print(f"  loss costs {loss / MiB:.3f} MiB (weights + biases, held) + swap slot costs {swap / MiB:.3f} MiB "
          f"(held, or built at each swap) = {(loss + swap) / MiB:.3f} MiB;")
    print("  the rest is transient at the peak step (penalty-gradient temporaries, swap and cost-building scratch).")
    print(f"  For scale: parameters {params / MiB:.3f} MiB; parameters + gradients + two AdamW moments "
          f"{4 * params / MiB:.3f} MiB.")

if __name__ == "__main__":
    main()
