"""Benchmark: a sweep's wall time with 1 worker and with every core (the local executor), and the ratio,
in one run.

Each sweep starts from nothing: its own fresh ``MODBENCH_HOME`` (no cached models, an empty results
database; made untimed before each run), so both train every model. The time is the whole sweep as
``modbench sweep`` runs it: planning (reading the file, loading each dataset once), starting the worker
processes, training, discovery, writing rows. The two arms are ``benchlib.interleaved`` (Timer, a warm-up
run in every turn, the first arm alternating, best of --repeats turns).

    python scripts/bench_sweep.py [--file examples/sweeps/tiny.toml] [--workers N] [--repeats 1] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch

from benchlib import Arm, interleaved, machine  # scripts/ is on sys.path
from modbench.results.store import ResultStore
from modbench.sweeps import ExecutorOptions, execute, make_executor, prepare
from modbench.sweeps.executors import machine_cores


def fresh_home() -> tempfile.TemporaryDirectory:
    home = tempfile.TemporaryDirectory(prefix="bench-sweep-")
    os.environ["MODBENCH_HOME"] = home.name  # read by the driver and inherited by the spawned workers
    return home


def sweep(path: Path, workers: int, data_dir: Path | None, counts: dict[str, int]) -> Arm:
    """The whole sweep in a fresh home; ``counts`` receives its runs, failed runs and trained models."""

    def run(home: tempfile.TemporaryDirectory) -> None:
        with home:
            store = ResultStore(Path(home.name) / "results.sqlite")
            plan = prepare(path, store, data_dir)
            options = ExecutorOptions(workers=workers, device="cpu", data_dir=str(data_dir) if data_dir else None)
            outcomes = execute(plan, make_executor(options, len(plan.todo)), store)
        counts.update(runs=len(outcomes), failed=sum(outcome.failed for outcome in outcomes),
                      models=len({run.training_hash for run in plan.runs}))

    return Arm(run, fresh_home)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", type=Path, default=Path(__file__).parents[1] / "examples/sweeps/tiny.toml")
    parser.add_argument("--workers", type=int, default=machine_cores(), help="the parallel run [default: cores]")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved turns; each arm's best is kept")
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    print(f"sweep {args.file}, local executor, device cpu")
    print(machine(torch.device("cpu"), torch.get_num_threads()), flush=True)
    counts: dict[int, dict[str, int]] = {1: {}, args.workers: {}}
    arms = {workers: sweep(args.file, workers, args.data_dir, counts[workers]) for workers in counts}
    times = interleaved(arms, args.repeats, torch.get_num_threads())
    for workers, seconds in times.items():
        c = counts[workers]
        print(f"{workers:>3} worker{'s' if workers > 1 else ' '}: {seconds:8.1f} s wall "
              f"({c['runs']} runs, {c['models']} models trained, {c['failed']} failed)")
    print(f"ratio (1 worker / {args.workers} workers): {times[1] / times[args.workers]:.2f}x")
    print(machine(torch.device("cpu"), torch.get_num_threads()))


if __name__ == "__main__":
    main()
