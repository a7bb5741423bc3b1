"""What every benchmark script shares, written once: timing through ``torch.utils.benchmark.Timer``, arms
interleaved and each taken at its best, the machine's state printed beside every figure, and targets said
plainly (met or missed).

Timing: each arm is a ``Timer`` at an explicit thread count (``Timer`` synchronises an accelerator around
every block it times, and its ``blocked_autorange`` warms up while it sizes the block). ``interleaved`` runs
the arms in turns, the first arm rotating from turn to turn, so a shared machine's load drifts over all arms
alike; an arm's figure is its best turn (the median of the turn's blocks), the run least disturbed by others.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.benchmark import Timer


@dataclass
class Arm:
    """One side of a comparison: ``run(state)`` is timed; ``prepare()`` (untimed) builds ``state`` before each
    timed block (a fresh model to train, say); without it ``run`` gets None."""

    run: Callable[[Any], Any]
    prepare: Callable[[], Any] | None = None


def timer(arm: Arm, threads: int) -> Timer:
    setup = "state = prepare()" if arm.prepare is not None else "state = None"
    return Timer(stmt="run(state)", setup=setup, globals={"run": arm.run, "prepare": arm.prepare},
                 num_threads=threads)


def interleaved(arms: dict[str, Arm], repeats: int, threads: int, min_run_time: float = 0.2) -> dict[str, float]:
    """Best-of-``repeats`` seconds per call of each arm, the arms interleaved (see the module docstring).
    An arm that takes longer than ``min_run_time`` runs twice a turn: once to warm up, once timed."""
    timers = {name: timer(arm, threads) for name, arm in arms.items()}
    names = list(arms)
    best = {name: float("inf") for name in names}
    for turn in range(repeats):
        for name in names[turn % len(names):] + names[: turn % len(names)]:
            best[name] = min(best[name], timers[name].blocked_autorange(min_run_time=min_run_time).median)
    return best


def threads_arg(value: int | None) -> int:
    """The thread count every arm runs at: the one asked for, else torch's default (said in the output)."""
    return value if value else torch.get_num_threads()


def other_training_jobs() -> int:
    """Processes of ``modbench train`` (or its module form) running beside this one: they share the cores."""
    count = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            words = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        text = b" ".join(words)
        count += b"modbench" in text and b" train" in text
    return count


def machine(device: torch.device, threads: int) -> str:
    """One line on what the figures were measured on: torch, device, threads, cores, load, other jobs."""
    from modbench.provenance import device_name

    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    jobs = other_training_jobs()
    busy = f"; {jobs} other modbench training job(s) running" if jobs else ""
    return (f"torch {torch.__version__}, {device_name(device)}, {threads} torch thread(s) per arm, "
            f"{os.cpu_count()} cores, load average {load} (1/5/15 min){busy}")


def verdict(value: float, target: float, at_least: bool) -> str:
    """``met`` or ``MISSED``: ``value`` >= ``target`` when ``at_least``, else ``value`` <= ``target``."""
    return "met" if (value >= target if at_least else value <= target) else "MISSED"


def target_line(label: str, value: float, target: float, at_least: bool, unit: str = "x") -> str:
    sign = ">=" if at_least else "<="
    return f"target {label}: {value:.3g}{unit} (target {sign} {target:g}{unit}): {verdict(value, target, at_least)}"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
