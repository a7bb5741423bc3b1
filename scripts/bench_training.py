"""Benchmark: wall time and training-step peak memory of each regime relative to vanilla, in one run.

Time: --steps training steps of each regime (``Stepper``: forward, loss, backward, regime terms, AdamW,
after-step swaps; the batches on the device before timing, evaluation left out), every regime a
``benchlib.interleaved`` arm (Timer at --threads threads, a warm-up run in every turn, the first arm rotating,
best of --repeats). A fresh model (same initial weights for all) and optimizer are built, untimed, before each
run. --compile also times compiled steps (``trainer.compiled``: the forward and backward compiled, AdamW
eager), each regime's eager and compiled arms side by side in the same turns.
Memory: the profiler's memory timeline (``modbench.training.memory.peak_by_category``): the peak of live tensor
bytes over --memory-steps steps numbered as the last steps up to --swap-step (the swap there included; the
first step allocates the optimizer's moments), split by what holds it (parameters, gradients, optimizer state,
activations, inputs, temporaries, tensors the profiler cannot classify such as a regime's cost matrices).
Each regime in a fresh subprocess. Target (issue 17): BIMT's peak <= 1.1x vanilla's.

    python scripts/bench_training.py [--steps 2000] [--repeats 5] [--memory-steps 11] [--swap-step 500]
                                     [--device cpu] [--data-dir ../shared/data] [--threads 1] [--compile]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import torch

from benchlib import Arm, interleaved, machine, target_line, threads_arg  # scripts/ is on sys.path
from modbench.methods import METHODS
from modbench.methods.connection_cost import cost_terms, slot_costs
from modbench.models import MODELS
from modbench.provenance import resolve_device
from modbench.tasks import TASKS
from modbench.training.memory import peak_by_category
from modbench.training.trainer import Stepper, batches

REGIMES = ("vanilla", "l1", "l1_local", "l1_swap", "bimt")
TASK = "circle_detection"  # any task on the MNIST MLP: training does not use the pairs
MEMORY_TARGET = 1.1
MiB = 2**20


def setup(regime: str, total_steps: int, device: torch.device, compile_step: bool = False,  # noqa: ANN201
          seed: int = 0):
    """A task and a fresh model (same init every time) with its regime and ``Stepper``."""
    task = TASKS.get(TASK).build()
    cfg = dataclasses.replace(task.config.train, steps=total_steps, eval_every=total_steps)
    torch.manual_seed(seed)
    model = MODELS.get(task.config.model).build().to(device)
    return task, cfg, Stepper(model, METHODS.get(regime).build(), task, cfg, total_steps, compile_step)


def batch_rows(n: int, cfg, steps: int, device: torch.device) -> torch.Tensor:  # noqa: ANN001
    index = batches(n, cfg.batch_size, torch.Generator().manual_seed(cfg.seed))
    return torch.stack([next(index) for _ in range(steps)]).to(device)


def time_arm(regime: str, x: torch.Tensor, y: torch.Tensor, steps: int, device: torch.device,
             compile_step: bool) -> Arm:
    def prepare():  # noqa: ANN202
        _, cfg, stepper = setup(regime, steps, device, compile_step)
        return stepper, batch_rows(len(x), cfg, steps, device)

    def run(state) -> None:  # noqa: ANN001
        stepper, rows = state
        for step in range(steps):
            stepper(x[rows[step]], y[rows[step]], step)

    return Arm(run, prepare)


def memory_work(regime: str, x: torch.Tensor, y: torch.Tensor, steps: int, last: int,  # noqa: ANN201
                device: torch.device):
    """``work(count)``: a fresh model of ``regime`` trained ``count`` (default ``steps``) steps numbered up to
    ``last`` (the regime's largest lambda; a swap at ``last`` when it is a multiple of the swap period)."""

    def work(count: int = steps) -> None:
        _, cfg, stepper = setup(regime, last + 1, device)
        rows = batch_rows(len(x), cfg, count, device)
        for offset, step in enumerate(range(last + 1 - count, last + 1)):  # after_step sees step + 1
            stepper(x[rows[offset]], y[rows[offset]], step)

    return work


def memory_worker(regime: str, x: torch.Tensor, y: torch.Tensor, steps: int, last: int,
                  device: torch.device) -> dict[str, object]:
    work = memory_work(regime, x, y, steps, last, device)
    if device.type == "cuda":
        work(1)  # unmeasured: cuBLAS's workspaces, the same for every regime, are not the regime's
    peak = peak_by_category(work, device)
    return {"regime": regime, "peak_bytes": peak.bytes, "by_category": peak.by_category}


def cost_matrix_bytes(regime: str) -> tuple[int, int, int]:
    """Bytes of the regime's per-entry loss costs (weights + biases), its swap slot costs, and parameters.
    Computed here from the wiring, as the regime computes them (whether it keeps the swap costs or not)."""
    _, _, stepper = setup(regime, 1, torch.device("cpu"))
    model, c = stepper.model, stepper.method.config
    wiring = model.wiring()
    _, loss = cost_terms(wiring, slot_costs(wiring, c.weight_factor, c.layer_separation, c.penalize_last_distance),
                         c.layer_separation)
    swap = slot_costs(wiring, c.swap_weight_factor, c.layer_separation, True)
    size = lambda tensors: sum(t.numel() * t.element_size() for t in tensors)  # noqa: E731
    return size(loss), size(swap), size(model.parameters())


def measure_memory(args: argparse.Namespace, device: torch.device, threads: int) -> dict[str, dict]:
    rows = {}
    for regime in REGIMES:
        command = [sys.executable, __file__, "--memory-worker", regime, "--memory-steps", str(args.memory_steps),
                   "--swap-step", str(args.swap_step), "--device", str(device), "--threads", str(threads)]
        command += ["--data-dir", str(args.data_dir)] if args.data_dir else []
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"memory worker for {regime} failed:\n{done.stderr}")
        rows[regime] = json.loads(done.stdout.strip().splitlines()[-1])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved turns; each arm's best is kept")
    parser.add_argument("--memory-steps", type=int, default=11)
    parser.add_argument("--swap-step", type=int, default=500, help="the last memory step (BIMT swaps every 200)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads [default: torch's choice; 1 "
                        "avoids OpenMP oversubscription on a loaded machine]")
    parser.add_argument("--compile", action="store_true", help="also time compiled training steps")
    parser.add_argument("--memory-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = resolve_device(args.device)
    threads = threads_arg(args.threads)
    torch.set_num_threads(threads)
    data = TASKS.get(TASK).build().load(args.data_dir)
    x, y = data.x_train.to(device), data.y_train.to(device)
    if args.memory_worker:
        print(json.dumps(memory_worker(args.memory_worker, x, y, args.memory_steps, args.swap_step, device)))
        return

    print(f"data {data.source}: {len(x):,} training images; {args.steps} steps per run, best of {args.repeats} "
          "interleaved turns")
    print(machine(device, threads), flush=True)
    arms = {regime: time_arm(regime, x, y, args.steps, device, False) for regime in REGIMES}
    if args.compile:
        arms |= {f"{regime} compiled": time_arm(regime, x, y, args.steps, device, True) for regime in REGIMES}
    best = interleaved(arms, args.repeats, threads)
    memory = measure_memory(args, device, threads)
    peak = {regime: row["peak_bytes"] for regime, row in memory.items()}
    print(f"memory: {args.memory_steps} steps up to step {args.swap_step}, profiler memory timeline, one fresh "
          "process per regime")
    compiled = args.compile and f" {'compiled s':>10s} {'eager / compiled':>16s}"
    print(f"{'regime':9s} {'wall s':>7s} {'x vanilla':>9s} {'peak MiB':>9s} {'x vanilla':>9s}{compiled or ''}")
    for regime in REGIMES:
        fast = best.get(f"{regime} compiled")
        side = f" {fast:10.3f} {best[regime] / fast:16.2f}x" if fast else ""
        print(f"{regime:9s} {best[regime]:7.3f} {best[regime] / best['vanilla']:9.3f} {peak[regime] / MiB:9.3f} "
              f"{peak[regime] / peak['vanilla']:9.3f}{side}")
    at_peak = {regime: memory[regime]["by_category"] for regime in ("vanilla", "bimt")}
    print("\nat the peak, by category (MiB): " + ", ".join(
        f"{category} {at_peak['vanilla'][category] / MiB:.3f} -> {at_peak['bimt'][category] / MiB:.3f}"
        for category in at_peak["vanilla"] if at_peak["vanilla"][category] or at_peak["bimt"][category])
        + " (vanilla -> bimt)")
    loss, swap, params = cost_matrix_bytes("bimt")
    print(f"bimt - vanilla peak: {(peak['bimt'] - peak['vanilla']) / MiB:+.3f} MiB; BIMT's per-wire cost matrices "
          f"(from model.wiring()): loss costs {loss / MiB:.3f} MiB + swap slot costs {swap / MiB:.3f} MiB = "
          f"{(loss + swap) / MiB:.3f} MiB, held for the whole run; parameters {params / MiB:.3f} MiB")
    print(machine(device, threads))
    print(target_line("BIMT training memory / vanilla", peak["bimt"] / peak["vanilla"], MEMORY_TARGET,
                      at_least=False))


if __name__ == "__main__":
    main()
