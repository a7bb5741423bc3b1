"""Peak memory of a block of work: CUDA allocator peak on GPU, peak resident set size on CPU.

On Linux the RSS high-water mark can be reset (``/proc/self/clear_refs`` with ``5``), so the CPU figure
is the peak during the block minus the resident size when it began.
"""

from __future__ import annotations

import resource
from pathlib import Path

import torch


def _rss_kib(field: str) -> int | None:
    status = Path("/proc/self/status")
    if not status.exists():
        return None
    for line in status.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


class PeakMemory:
    """``with PeakMemory(device) as peak: ...`` then ``peak.bytes`` (None where unmeasurable)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.bytes: int | None = None
        self.kind = "cuda_max_allocated" if device.type == "cuda" else "cpu_peak_rss_delta"

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        else:
            try:
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:
                self.kind = "cpu_max_rss"  # cannot reset: fall back to the process-lifetime peak
            self._start = _rss_kib("VmRSS") or 0
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.bytes = torch.cuda.max_memory_allocated(self.device) - self._start
        else:
            peak = _rss_kib("VmHWM")
            if peak is None:
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self.bytes = max(0, peak - self._start) * 1024
