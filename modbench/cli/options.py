"""Validation shared by the commands: cheap checks first, so a bad flag fails before data, training or
any file is touched."""

from __future__ import annotations

import os
from pathlib import Path

from modbench.errors import UserError
from modbench.paths import modbench_home


def results_path(results: Path | None) -> Path:
    return results or modbench_home() / "results.sqlite"


def check_writable_file(path: Path, what: str) -> None:
    """A file we will write later: not a directory, and its nearest existing parent is writable."""
    if path.is_dir():
        raise UserError(f"{what} {path} is a directory")
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"{what} {path} is not writable")
    check_writable_dir(path.parent, what)


def check_writable_dir(path: Path, what: str) -> None:
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{what}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{what}: {existing} is not writable")


def check_data_dir(data_dir: Path | None) -> None:
    if data_dir is not None and not data_dir.is_dir():
        raise UserError(f"--data-dir {data_dir} is not a directory")


def check_seed(name: str, value: int) -> None:
    if value < 0:
        raise UserError(f"--{name} must be >= 0, got {value}")


def check_steps(steps: int | None) -> None:
    if steps is not None and steps < 1:
        raise UserError(f"--steps must be >= 1, got {steps}")


COMPILE_HELP = ("compiled training steps (torch.compile; CUDA graphs on CUDA): the eager results, less launch "
                "overhead on a GPU [env MODBENCH_COMPILE=1]")


def request_compile(flag: bool) -> None:
    """``--compile``: a runtime switch for this process's trainings, never part of a config or cache key."""
    if flag:
        from modbench.training.trainer import COMPILE_ENV

        os.environ[COMPILE_ENV] = "1"
