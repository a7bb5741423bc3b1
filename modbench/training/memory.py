"""Peak memory of training steps (never evaluation), measured the same way for every regime.

A probe trains a fresh copy of the model for a few steps numbered as the *last* steps of the schedule (so
the regime's largest lambda applies and, when the step count is a multiple of the swap period, a swap
happens), and reports the peak of what the copy, its optimizer, the regime and the steps allocate:
on CUDA the allocator's peak above the memory in use before; on CPU the peak of live tensor bytes
from the PyTorch profiler's allocation records (exact; resident-set sizes are noise at this scale).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

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
