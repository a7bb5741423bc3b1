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


def edge_discovery_table(records: list, regimes: tuple[str, ...], discoverers: tuple[str, ...], metric: str,
                         default_only: bool = True, extra: tuple[str, ...] = ()) -> str:
    """Does modular training make edge discovery faster or its circuits smaller? Per regime and edge discoverer
    (ok rows; default configs unless ``default_only`` is off, when ``records`` hold one config per cell): the
    mean over training seeds (± t-interval over seeds when there are several) of the edges kept, ACDC's edge
    tests (forward passes of the sequential algorithm), the batched passes run, the discovery time per
    resample, the circuit's faithfulness and the ``extra`` metrics."""
    from modbench.results.leaderboard import cells

    table = cells([r for r in records if r.discoverer in discoverers and (r.variant == "default" or not default_only)])
    columns = [("circuit_edges", "edges kept", "{:.1f}"), ("edge_tests", "edge tests", "{:.0f}"),
               ("forward_passes", "forward passes", "{:.1f}"), ("discovery_time_s", "time / resample (s)", "{:.3f}"),
               (metric, metric.replace("_", " "), "{:.4f}"), ("sparsity", "sparsity", "{:.4f}")]
    columns += [(key, key.replace("_", " "), "{:.4f}") for key in extra]
    lines = ["| discoverer | method | seeds | " + " | ".join(label for _, label, _ in columns) + " |",
             "|" + "---|" * (3 + len(columns))]
    for discoverer in discoverers:
        for method in regimes:
            rows = table[(table["discoverer"] == discoverer) & (table["method"] == method)]
            if not len(rows):
                continue
            row = rows.iloc[0]
            shown = []
            for key, _, fmt in columns:
                mean, ci = row.get(f"{key}_mean"), row.get(f"{key}_ci")
                if mean is None or mean != mean:
                    shown.append("")
                else:
                    shown.append(fmt.format(mean) + (f" ± {fmt.format(ci)}" if row["seeds"] > 1 and ci == ci else ""))
            lines.append(f"| {discoverer} | {method} | {row['seeds']} | " + " | ".join(shown) + " |")
    return "\n".join(lines)
