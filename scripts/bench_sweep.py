"""Benchmark: a sweep's wall time with 1 worker and with every core (the local executor), and the ratio,
in one run.

Each sweep starts from nothing: its own fresh ``MODBENCH_HOME`` (no cached models, an empty results
database), so both train every model. The time is the whole sweep as ``modbench sweep`` runs it: planning
(reading the file, loading each dataset once), starting the worker processes, training, discovery, writing
rows. The 1-worker sweep runs first; on a shared machine, run it more than once.

    python scripts/bench_sweep.py [--file examples/sweeps/tiny.toml] [--workers N] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from modbench.results.store import ResultStore
from modbench.sweeps import ExecutorOptions, execute, make_executor, prepare
from modbench.sweeps.executors import machine_cores


def timed_sweep(path: Path, workers: int, data_dir: Path | None) -> tuple[float, int, int, int]:
    """Seconds, runs, failed runs and trained models of the whole sweep in a fresh home."""
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as home:
        os.environ["MODBENCH_HOME"] = home  # read by the driver and inherited by the spawned workers
        store = ResultStore(Path(home) / "results.sqlite")
        start = time.perf_counter()
        plan = prepare(path, store, data_dir)
        options = ExecutorOptions(workers=workers, device="cpu", data_dir=str(data_dir) if data_dir else None)
        outcomes = execute(plan, make_executor(options, len(plan.todo)), store)
        seconds = time.perf_counter() - start
    models = len({run.training_hash for run in plan.runs})
    return seconds, len(outcomes), sum(outcome.failed for outcome in outcomes), models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", type=Path, default=Path(__file__).parents[1] / "examples/sweeps/tiny.toml")
    parser.add_argument("--workers", type=int, default=machine_cores(), help="the parallel run [default: cores]")
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    print(f"sweep {args.file}, {machine_cores()} cores, local executor, device cpu")
    times = {}
    for workers in (1, args.workers):
        seconds, runs, failed, models = timed_sweep(args.file, workers, args.data_dir)
        times[workers] = seconds
        print(f"{workers:>3} worker{'s' if workers > 1 else ' '}: {seconds:8.1f} s wall "
              f"({runs} runs, {models} models trained, {failed} failed)", flush=True)
    print(f"ratio (1 worker / {args.workers} workers): {times[1] / times[args.workers]:.2f}x")


if __name__ == "__main__":
    main()
