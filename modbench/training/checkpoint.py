"""Trained-model cache: one weights file and one JSON sidecar per training config hash.

The same config is never trained twice. Weights are read with ``torch.load(weights_only=True)``; the
sidecar records the full config and the weights' SHA-256, so a corrupted or mismatched checkpoint is
an error, never a silent retrain over it. Files are written to a temporary name and renamed.
"""

from __future__ import annotations

import fcntl
import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modbench.errors import CheckpointError, one_line
from modbench.files import atomic_write, file_digest


def _sha256(path: Path) -> str:
    return file_digest(path, "sha256")


def progress_every(steps: int) -> int:
    """How often a training saves its progress: every 5 % of the run, at least 500 steps apart (short runs,
    e.g. tests, never save)."""
    return max(500, -(-steps // 20))


PROGRESS_KEYS = ("step", "model", "optimizer", "order", "history", "elapsed", "peak", "peak_kind")


def _same_shapes(saved: Any, expected: dict[str, Any]) -> bool:
    return (isinstance(saved, dict) and saved.keys() == expected.keys()
            and all(getattr(saved[k], "shape", None) == v.shape for k, v in expected.items()))


@dataclass(frozen=True)
class ProgressFile:
    """A training's periodic state (weights, optimizer, batch order, history), so that a killed run resumes
    where it was instead of at step 0. Written atomically; tagged with the training config's hash. It is a
    cache of work, not a result: one that cannot be read is set aside with a warning and training restarts."""

    path: Path
    config_hash: str
    every: int

    def load(self, expected: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The saved state, if there is one that fits ``expected`` (the model's state dict: same names and
        shapes, e.g. not a state left by an older version of the model's code)."""
        if not self.path.exists():
            return None
        try:
            with warnings.catch_warnings():  # torch's note on a foreign pickle protocol: the error below says it
                warnings.simplefilter("ignore")
                state = torch.load(self.path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict) or state.get("config_hash") != self.config_hash:
                raise ValueError("made by another config")
            missing = [key for key in PROGRESS_KEYS if key not in state]
            if missing:
                raise ValueError(f"no {', '.join(missing)}")
            if expected is not None and not _same_shapes(state["model"], expected):
                raise ValueError("its weights do not fit the model")
            return state
        except Exception as error:  # weights_only refuses pickled code; any damage means: start again
            warnings.warn(f"ignoring training progress {self.path} ({one_line(error, 120)}); "
                          "training from step 0", stacklevel=2)
            self.discard()
            return None

    def save(self, state: dict[str, Any]) -> None:
        plain = {"config_hash": self.config_hash, **state}
        atomic_write(self.path, lambda handle: torch.save(plain, handle))

    def due(self, done: int, steps: int) -> bool:
        """Save after ``done`` of ``steps`` steps? Every ``every`` steps, never at the end (the checkpoint is)."""
        return done % self.every == 0 and done < steps

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


class CheckpointStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def paths(self, name: str) -> tuple[Path, Path]:
        return self.root / f"{name}.pt", self.root / f"{name}.json"

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold ``name``'s lock file (POSIX advisory lock): processes that would train the same model take
        turns, so one trains and saves while the others wait, then load its checkpoint (no sidecar of one
        run beside another run's weights)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"{name}.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def progress(self, name: str, config_hash: str, steps: int) -> ProgressFile:
        return ProgressFile(self.root / f"{name}.progress.pt", config_hash, progress_every(steps))

    def exists(self, name: str) -> bool:
        """The sidecar, written last, marks a complete checkpoint: weights without it are what a kill between
        the two writes leaves, and are simply overwritten by the next save."""
        return self.paths(name)[1].exists()

    def save(self, name: str, model: nn.Module, config: dict[str, Any], info: dict[str, Any]) -> Path:
        weights, sidecar = self.paths(name)
        # clone: a packed model's tensors are views of its pack, and torch.save would store the whole pack
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        atomic_write(weights, lambda handle: torch.save(state, handle))
        meta = {"config": config, "sha256": _sha256(weights), **info}
        atomic_write(sidecar, lambda handle: handle.write(json.dumps(meta, indent=2).encode()))
        return weights

    def load(self, name: str, model: nn.Module, config: dict[str, Any]) -> dict[str, Any]:
        """Fill ``model`` from the checkpoint; returns the sidecar. Raises CheckpointError on any mismatch."""
        weights, sidecar = self.paths(name)
        hint = f"delete {weights} and {sidecar} to retrain"
        if not (weights.exists() and sidecar.exists()):
            raise CheckpointError(f"incomplete checkpoint {name}: {hint}")
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            meta = None
        if not isinstance(meta, dict):
            raise CheckpointError(f"checkpoint sidecar {sidecar} is not a JSON object: {hint}")
        if meta.get("config") != config:
            raise CheckpointError(f"checkpoint {name} was trained with a different config: {hint}")
        if meta.get("sha256") != _sha256(weights):
            raise CheckpointError(f"checkpoint {weights} is corrupted (SHA-256 mismatch): {hint}")
        try:
            with warnings.catch_warnings():  # torch warns about a foreign pickle protocol before refusing it
                warnings.simplefilter("ignore")
                state = torch.load(weights, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except Exception as error:  # weights_only refuses pickled code: a clear error, never a traceback
            raise CheckpointError(f"checkpoint {weights} cannot be loaded ({one_line(error, 200)}): {hint}") from None
        return meta
