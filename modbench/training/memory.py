"""Peak memory of training steps (never evaluation), measured the same way for every regime.

A probe trains a fresh copy of the model for a few steps numbered as the *last* steps of the schedule (so
the regime's largest lambda applies and, when the step count is a multiple of the swap period, a swap
happens), and reports the peak of what the copy, its optimizer, the regime and the steps allocate:
on CUDA the allocator's peak above the memory in use before; on CPU the peak of live tensor bytes
from the PyTorch profiler's allocation records (exact; resident-set sizes are noise at this scale).

``peak_by_category`` (for benchmarks; slower, it records shapes and stacks) reads the profiler's memory
timeline instead: every tensor's lifetime and role (parameter, gradient, optimizer state, activation, ...),
so the peak is split by what holds it, and tensors that existed before ``work`` (the data) are left out.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

PROBE_STEPS = 10


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """The profiler's C++ side prints start/stop lines on file descriptor 2; keep them off the terminal."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_bytes(work: Callable[[], None], device: torch.device) -> tuple[int, str]:
    """Peak bytes allocated by ``work`` and how they were measured."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        work()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - start, "cuda_max_allocated"
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        work()
    live = peak = 0
    for event in sorted(profiler.events(), key=lambda e: e.time_range.start):
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return peak, "cpu_profiler_live_tensors"


@dataclass(frozen=True)
class MemoryPeak:
    """The peak of live tensor bytes allocated by some work, and what held them at that moment."""

    bytes: int
    by_category: dict[str, int]


def _timeline_categories() -> list[str]:
    """Category names in the order of the profiler's raw timeline (its ``_CATEGORY_TO_INDEX``; None is a
    tensor the profiler could not classify)."""
    from torch.profiler._memory_profiler import _CATEGORY_TO_INDEX

    return [category.name.lower() if category is not None else "unknown" for category in _CATEGORY_TO_INDEX]


def peak_by_category(work: Callable[[], None], device: torch.device) -> MemoryPeak:
    """Peak live bytes of the tensors ``work`` allocates on ``device``, from the profiler's memory timeline
    (raw events: time, action, bytes, category), with the bytes of each category at that peak."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with _quiet_stderr(), profile(activities=activities, profile_memory=True, record_shapes=True,
                                  with_stack=True) as profiler:
        work()
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated for CUDA snapshots, the only category source
        path = Path(folder) / "memory.raw.json.gz"
        profiler.export_memory_timeline(str(path), str(device if device.index is not None or device.type == "cpu"
                                                       else torch.device(device.type, 0)))
        with gzip.open(path, "rt") as file:
            events = json.load(file)
    names = _timeline_categories()
    live, at_peak, peak = [0] * len(names), [0] * len(names), 0
    preexisting_action = 1  # torch.profiler._memory_profiler.Action.PREEXISTING: allocated before ``work``
    for _, action, size, category in sorted(events, key=lambda event: event[0]):
        if action == preexisting_action:
            continue
        live[category] += size
        if sum(live) > peak:
            peak, at_peak = sum(live), list(live)
    return MemoryPeak(peak, dict(zip(names, at_peak, strict=True)))
