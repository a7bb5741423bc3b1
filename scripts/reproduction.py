"""What the reproduction scripts share: their common flags (--device, --seed, --threads, --results, --out)
and the set-up those flags ask for. Imported by the scripts beside it (``python scripts/reproduce_*.py``)."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from modbench.paths import modbench_home
from modbench.provenance import resolve_device
from modbench.results.store import ResultStore

ROOT = Path(__file__).resolve().parent.parent


def reproduction_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser with the flags every reproduction takes; a script adds its own."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None)
    parser.add_argument("--seed", type=int, default=1, help="training seed")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--results", type=Path, default=None, help="[default: $MODBENCH_HOME/results.sqlite]")
    parser.add_argument("--out", type=Path, default=ROOT / "leaderboards")
    return parser


@dataclass(frozen=True)
class Setting:
    device: torch.device
    store: ResultStore
    start: float  # perf_counter at set-up, for the script's wall time


def set_up(args: argparse.Namespace) -> Setting:
    if args.threads:
        torch.set_num_threads(args.threads)
    return Setting(resolve_device(args.device), ResultStore(args.results or modbench_home() / "results.sqlite"),
                   time.perf_counter())
