"""Where a sweep's runs execute. Both executors run :func:`run_job` (one run, :func:`run_one`, or a pack of
runs, :func:`run_pack`; each -> a plain dict) and hand the results back to the driver, which alone writes
the store.

``local``: a ``ProcessPoolExecutor`` ("spawn": no forked torch state), one run per process at a time.
``ray``: each run a Ray task declaring its CPU and GPU needs, on a local Ray instance or a running cluster;
Ray is an optional extra (``pip install -e ".[ray]"``). Scheduling across machines is Ray's own.
"""

from __future__ import annotations

import io
import os
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from modbench.errors import UserError, one_line
from modbench.sweeps.spec import RunSpec

EXECUTORS = ("local", "ray")
RAY_MISSING = "--executor ray needs Ray: pip install -e '.[ray]'"
WORKER_DIED = "worker process died (killed, or out of memory?); rerun the sweep to retry"
# Passed on to Ray workers, which may not inherit the driver's environment (plugins, data, cache, offline).
FORWARDED_ENV = ("MODBENCH_PLUGINS", "MODBENCH_HOME", "MODBENCH_DATA_DIR", "MODBENCH_OFFLINE")


def run_one(run: RunSpec, device: str, data_dir: str | None, threads: int) -> dict[str, Any]:
    """Run one experiment in this process: ``{"record": dict | None, "error": str, "seconds": float}``.
    Any exception (training diverged, a user error found late, a bug) is this run's failure, not the sweep's."""
    start = time.perf_counter()
    try:
        from modbench.experiment import run_experiment

        with _worker(threads, device, data_dir) as (torch_device, data_path, _):
            record, _ = run_experiment(run.experiment(), torch_device, data_path, show_progress=False)
        return _result(record, "", time.perf_counter() - start)
    except Exception as error:
        return _result(None, one_line(error), time.perf_counter() - start)


def _result(record: Any, error: str, seconds: float) -> dict[str, Any]:
    return {"record": None if record is None else record.to_dict(), "error": error, "seconds": seconds}


@contextmanager
def _worker(threads: int, device: str, data_dir: str | None) -> Iterator[tuple[Any, Path | None, list[str]]]:
    """A worker's setting: its share of the cores, its device and data folder, and quiet output (data notes and
    warnings from many workers would tear the driver's progress bar apart); the warnings are kept, as text."""
    import torch

    from modbench.provenance import resolve_device

    torch.set_num_threads(threads)  # workers share the cores: oversubscribed threads spin and slow all
    kept: list[str] = []
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()), warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        try:
            yield resolve_device(device), Path(data_dir) if data_dir else None, kept
        finally:
            kept += [str(warning.message) for warning in seen]


@dataclass(frozen=True)
class PackJob:
    """Several models of one architecture (one pack key) in one process: ``train`` names one run per model to
    train (in one pack), ``runs`` the runs to make, those that differ only in their model scored in one pass."""

    train: tuple[RunSpec, ...]
    runs: tuple[RunSpec, ...]


def run_pack(job: PackJob, device: str, data_dir: str | None, threads: int) -> dict[str, Any]:
    """Make a pack in this process: ``{"trained": {training hash: "" or why it diverged}, "runs": [run_one's
    result per run, in job order] or None, "warnings", "error", "seconds"}``. ``runs`` None: the pack failed as
    a whole (one member's bad config, out of memory) before any run's own outcome; the driver then gives its
    runs to the one-by-one path."""
    start = time.perf_counter()
    kept: list[str] = []
    try:
        from modbench.errors import TrainingFailed
        from modbench.experiment import prepare_runs, run_experiments, train_runs

        with _worker(threads, device, data_dir) as (torch_device, data_path, kept):
            built: dict[str, Any] = {}  # tasks and data, loaded once for training and scoring
            models = train_runs(prepare_runs([run.experiment() for run in job.train], data_path, built),
                                torch_device, show_progress=False)
            trained = {h: one_line(m) if isinstance(m, TrainingFailed) else "" for h, m in models.items()}
            results = run_experiments([run.experiment() for run in job.runs], torch_device, data_path,
                                      show_progress=False, trained=models, built=built)
        share = (time.perf_counter() - start) / max(1, len(job.runs))  # the pack's time, shared by its runs
        return {"trained": trained, "runs": [_result(None, one_line(result), share) if isinstance(result, Exception)
                                             else _result(result[0], "", share) for result in results],
                "warnings": kept, "error": "", "seconds": time.perf_counter() - start}
    except Exception as error:
        return {"trained": {}, "runs": None, "warnings": kept, "error": one_line(error),
                "seconds": time.perf_counter() - start}


def run_job(job: RunSpec | PackJob, device: str, data_dir: str | None, threads: int) -> dict[str, Any]:
    """What every executor runs: a pack's runs or one run."""
    return (run_pack if isinstance(job, PackJob) else run_one)(job, device, data_dir, threads)


def failure(reason: str) -> dict[str, Any]:
    return _result(None, reason, 0.0)


def machine_cores() -> int:
    """Cores this process may use (a container's or a taskset's limit, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover (not Linux)
        return os.cpu_count() or 1


@runtime_checkable
class Executor(Protocol):
    def submit(self, index: int, run: RunSpec | PackJob) -> None: ...

    def next_done(self) -> tuple[int, dict[str, Any]]:
        """Block until a submitted job finishes: its index and its :func:`run_job` result."""
        ...

    def close(self, cancel: bool = False) -> None: ...


@dataclass(frozen=True)
class ExecutorOptions:
    """``workers`` None = every core (local) or every CPU of the local Ray instance; ``device`` a torch
    device name (``cuda`` makes each Ray task ask for one GPU)."""

    kind: str = "local"
    workers: int | None = None
    address: str | None = None
    device: str = "cpu"
    data_dir: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise UserError(f"unknown executor {self.kind!r} (known: {', '.join(EXECUTORS)})")
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers < 1):
            raise UserError(f"--workers must be >= 1, got {self.workers}")
        if self.address is not None and self.kind != "ray":
            raise UserError("--address is for --executor ray")
        if self.kind == "ray" and self.address is not None and self.workers is not None:
            raise UserError("--workers sizes a local Ray instance; a cluster at --address has its own CPUs")


def check_ray() -> None:
    """Before anything else runs: asking for Ray without it installed is one line."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise UserError(RAY_MISSING) from None


class LocalExecutor:
    def __init__(self, options: ExecutorOptions, runs: int) -> None:
        cores = machine_cores()
        # No more processes than runs: each spawned worker pays for importing torch.
        self.workers = max(1, min(options.workers or cores, runs))
        self.threads = max(1, cores // self.workers)
        self.options = options
        self.pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"))
        self.futures: dict[Future[dict[str, Any]], int] = {}
        self.refused: list[tuple[int, dict[str, Any]]] = []  # submitted to a pool already broken

    def submit(self, index: int, run: RunSpec | PackJob) -> None:
        try:
            future = self.pool.submit(run_job, run, self.options.device, self.options.data_dir, self.threads)
        except BrokenProcessPool:
            self.refused.append((index, failure(WORKER_DIED)))
            return
        self.futures[future] = index

    def next_done(self) -> tuple[int, dict[str, Any]]:
        if self.refused:
            return self.refused.pop(0)
        done, _ = wait(self.futures, return_when=FIRST_COMPLETED)
        future = min(done, key=self.futures.__getitem__)  # several at once: in sweep order
        index = self.futures.pop(future)
        try:
            return index, future.result()
        except BrokenProcessPool:  # a worker was killed (SIGKILL, out of memory): every unfinished run is lost
            return index, failure(WORKER_DIED)
        except Exception as error:  # e.g. a run that cannot be pickled
            return index, failure(one_line(error))

    def close(self, cancel: bool = False) -> None:
        self.pool.shutdown(wait=not cancel, cancel_futures=cancel)


class RayExecutor:
    def __init__(self, options: ExecutorOptions, runs: int) -> None:
        check_ray()
        import ray

        self.ray = ray
        self.options = options
        env = {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}
        gpus = 1 if options.device.startswith("cuda") else 0
        common = {"runtime_env": {"env_vars": env}, "include_dashboard": False, "log_to_driver": False,
                  "logging_level": "ERROR"}
        if options.address:
            ray.init(address=options.address, **common)
        else:  # "local" starts a new instance even when RAY_ADDRESS names a cluster; Ray finds the GPUs
            ray.init(address="local", num_cpus=options.workers or machine_cores(), **common)
        # One CPU (and one GPU for --device cuda) per run; no retries: a crashed run is reported as failed.
        self.remote = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=0)(run_job)
        self.refs: dict[Any, int] = {}

    def submit(self, index: int, run: RunSpec | PackJob) -> None:
        self.refs[self.remote.remote(run, self.options.device, self.options.data_dir, 1)] = index

    def next_done(self) -> tuple[int, dict[str, Any]]:
        [ref], _ = self.ray.wait(list(self.refs), num_returns=1)
        index = self.refs.pop(ref)
        try:
            return index, self.ray.get(ref)
        except Exception as error:  # the task's process died, or the cluster lost the node
            return index, failure(f"Ray task failed: {one_line(error)}")

    def close(self, cancel: bool = False) -> None:
        if cancel:
            for ref in self.refs:
                self.ray.cancel(ref, force=True)
        self.ray.shutdown()


def make_executor(options: ExecutorOptions, runs: int) -> Executor:
    return LocalExecutor(options, runs) if options.kind == "local" else RayExecutor(options, runs)
