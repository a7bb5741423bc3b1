"""ACDC's threshold tau against faithfulness, across the five MNIST regimes. At the leaderboards' tau = 0.01 the
edge circuits ACDC keeps are small but unfaithful (each of thousands of pixel edges moves the logit difference
by less than tau, so all are cut); this sweep measures, per tau, the edges kept, the edge tests (the sequential
algorithm's forward passes), the discovery time and the circuit's faithfulness (logit difference to the full
model, circuit accuracy), and so whether modular training's lead in edge tests and circuit size survives at a
tau whose circuits are faithful. Runs go through the sweep driver (records in the results database, reused on
a rerun); writes leaderboards/acdc_tau_sweep.md.

    MODBENCH_DATA_DIR=../shared/data python scripts/acdc_tau_sweep.py [--taus 0.01 0.001 0.0001]
        [--seeds 1 2 3] [--task circle_detection] [--boots 10] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from modbench.paths import modbench_home
from modbench.provenance import device_name, git_commit, resolve_device
from modbench.results.store import ResultStore
from modbench.sweeps import ExecutorOptions, SweepSpec, execute, make_executor, plan
from reproduction import edge_discovery_table

REGIMES = ("bimt", "l1_local", "l1", "l1_swap", "vanilla")
ROOT = Path(__file__).resolve().parent.parent


def sweep_of(tau: float, args: argparse.Namespace) -> SweepSpec:
    return SweepSpec(methods=tuple(args.methods), tasks=(args.task,), seeds=tuple(args.seeds), discoverers=("acdc",),
                     boots=args.boots, pairs=args.pairs, discoverer_overrides=(("acdc", (f"threshold={tau}",)),))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--taus", type=float, nargs="+", default=[0.01, 0.001, 0.0001])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="training seeds")
    parser.add_argument("--task", default="circle_detection")
    parser.add_argument("--methods", nargs="+", default=list(REGIMES), help="regimes [default: the five]")
    parser.add_argument("--boots", type=int, default=10)
    parser.add_argument("--pairs", type=int, default=500)
    parser.add_argument("--workers", type=int, default=None, help="processes [default: one per core]")
    parser.add_argument("--device", default=None)
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "leaderboards")
    args = parser.parse_args()
    start = time.perf_counter()
    device = resolve_device(args.device)
    store = ResultStore(args.results or modbench_home() / "results.sqlite")
    tables, executed, sources = [], 0, set()
    for tau in args.taus:
        planned = plan(sweep_of(tau, args), store, None, f"acdc tau {tau}")
        if planned.todo:
            executor = make_executor(ExecutorOptions(workers=args.workers, device=str(device)), len(planned.todo))
            outcomes = execute(planned, executor, store, lambda outcome, tau=tau: report(tau, outcome))
            if any(outcome.failed for outcome in outcomes):
                raise SystemExit(f"some runs at tau {tau:g} failed (listed above)")
            executed += len(planned.todo)
        wanted = {run.config_hash for run in planned.runs}
        records = [r for r in store.records(args.task) if r.config_hash in wanted]
        sources |= {r.dataset for r in records}
        tables += [f"### tau = {tau:g}", "", edge_discovery_table(records, REGIMES, ("acdc",), "logit_difference",
                                                                  default_only=False, extra=("circuit_accuracy",)), ""]
    out: Path = args.out / "acdc_tau_sweep.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    seeds, taus = " ".join(map(str, args.seeds)), " ".join(f"{t:g}" for t in args.taus)
    header = [f"# ACDC's threshold against faithfulness: {args.task} on {', '.join(sorted(sources))}, "
              f"{len(args.methods)} regimes",
              "",
              f"- Command: `MODBENCH_DATA_DIR=../shared/data python scripts/acdc_tau_sweep.py --taus {taus} "
              f"--seeds {seeds} --task {args.task} --boots {args.boots} --pairs {args.pairs}` (git {git_commit()}, device "
              f"{device_name(device)}, {os.cpu_count()} CPUs, torch {torch.__version__}); {executed} runs executed "
              f"by this call, the others reused from the results database; {time.perf_counter() - start:.0f} s.",
              f"- ACDC on every weight edge (mean ablation, the task's logit-difference metric), {args.boots} "
              f"resamples x {args.pairs} pairs; the circuit is the edges kept in most resamples' runs, scored on "
              "the held-out half. Logit difference: the circuit's distance to the full model (lower = more "
              "faithful); circuit accuracy: its accuracy on the held-out pairs. Mean over training seeds "
              "(± 95 % t-interval over seeds). Edge tests = forward passes of the sequential algorithm.", ""]
    out.write_text("\n".join(header + tables))
    print(f"wrote {out}")


def report(tau: float, outcome) -> None:  # noqa: ANN001
    run, record = outcome.run.run, outcome.record
    if outcome.failed:
        print(f"FAILED tau {tau:g} {run.label()}: {outcome.why}", flush=True)
        return
    m = record.metrics
    print(f"tau {tau:g} seed {run.seed} {run.method:9s} edges {m['circuit_edges']['mean']:.1f} "
          f"tests {m['edge_tests']['mean']:.0f} {m['discovery_time_s']['mean']:.2f} s/resample "
          f"logit diff {m['logit_difference']['mean']:.3f} acc {m['circuit_accuracy']['mean']:.3f} "
          f"run {outcome.seconds:.0f} s", flush=True)


if __name__ == "__main__":
    main()
