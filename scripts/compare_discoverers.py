"""Compare two pair discoverers (default: attribution patching against exact activation patching) on the same
trained model and the same pairs: per site, Spearman rank correlations of their scores (three ways, see
``agreement``), the overlap (Jaccard) of the circuits the task's selection chooses from the mean scores,
and the time of each.

The model is the one ``modbench run`` trains or loads for the same --method/--task/--seed/--steps (cached
under $MODBENCH_HOME/models). The pairs: the first --pairs of the task's pairs (pair seed 0).

    python scripts/compare_discoverers.py --method bimt --task circle_detection [--pairs 500] [--threads 1]
"""

from __future__ import annotations

import argparse

import torch
from scipy.stats import rankdata, spearmanr

from benchlib import Arm, interleaved, machine, threads_arg  # scripts/ is on sys.path

from modbench.discovery.base import CandidateScores, Selection
from modbench.tasks.base import ContrastivePairs


def within_pair_spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over pairs of the Spearman correlation across candidates (ties averaged; pairs where either side
    is constant are left out). Unlike pooling every (pair, candidate) score, it ignores how much the
    unpatched metric varies between pairs, which both sides share and which would inflate the correlation."""
    ra, rb = (torch.from_numpy(rankdata(x.double().cpu().numpy(), axis=1)) for x in (a, b))
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    denominator = ra.norm(dim=1) * rb.norm(dim=1)
    valid = denominator > 0
    return float(((ra * rb).sum(1)[valid] / denominator[valid]).mean()) if bool(valid.any()) else float("nan")


def agreement(exact: CandidateScores, approx: CandidateScores, selection: Selection) -> dict[str, dict[str, float]]:
    """Per site (and ``all`` for the circuit as a whole): ``rho_within`` (per pair, across candidates, then
    averaged), ``rho_pooled`` (over every pair x candidate score at once), ``rho_mean`` (over candidates'
    mean scores: the ranking a selection reads), ``jaccard`` of the selected circuits."""
    exact_mean, approx_mean = exact.mean(), approx.mean()
    chosen = [selection.select({s: v[None] for s, v in means.items()}, scores.lower_is_better).keep
              for means, scores in ((exact_mean, exact), (approx_mean, approx))]
    rows, inter, union = {}, 0, 0
    for site in exact.scores:
        a, b = chosen[0][site][0], chosen[1][site][0]
        inter, union = inter + int((a & b).sum()), union + int((a | b).sum())
        rows[site] = {
            "rho_within": within_pair_spearman(exact.scores[site], approx.scores[site]),
            "rho_pooled": float(spearmanr(exact.scores[site].flatten().cpu(), approx.scores[site].flatten().cpu())
                                .statistic),
            "rho_mean": float(spearmanr(exact_mean[site].cpu(), approx_mean[site].cpu()).statistic),
            "jaccard": int((a & b).sum()) / max(1, int((a | b).sum())),
            "kept": int(a.sum()),
        }
    rows["all"] = {"jaccard": inter / max(1, union), "kept": sum(row["kept"] for row in rows.values())}
    return rows


def format_agreement(rows: dict[str, dict[str, float]]) -> list[str]:
    lines = [f"  {'site':26s} {'Spearman: per pair':>18s} {'pooled':>7s} {'of means':>9s} {'Jaccard':>8s} {'kept':>5s}"]
    for site, row in rows.items():
        rho = [f"{row[k]:.3f}" if k in row else "" for k in ("rho_within", "rho_pooled", "rho_mean")]
        lines.append(f"  {site:26s} {rho[0]:>18s} {rho[1]:>7s} {rho[2]:>9s} {row['jaccard']:8.3f} {row['kept']:5d}")
    return lines


def load_trained(method: str, task_key: str, seed: int, steps: int | None, device: torch.device):  # noqa: ANN201
    """(resolved spec, task, data, model in eval mode, checkpoint record), as ``modbench run`` gets them."""
    from modbench.experiment import ExperimentSpec, record_identity
    from modbench.pipeline import build_task, trained_model

    spec = ExperimentSpec(task=task_key, method=method, train_seed=seed, steps=steps).resolved()
    task = build_task(spec.task, spec.model_config)
    data = task.load(None)
    training = record_identity(spec, data.source, task.config).training
    model, meta = trained_model(training, task, data, device, show_progress=False)
    return spec, task, data, model.eval(), meta | {"steps": training.train.steps}


def main() -> None:
    from modbench.provenance import resolve_device
    from modbench.registries import DISCOVERERS, SELECTIONS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", required=True)
    parser.add_argument("--task", required=True)
    parser.add_argument("--seed", type=int, default=1, help="training seed (as modbench run --seed)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--pairs", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved turns (Timer; each arm's best)")
    parser.add_argument("--exact", default="activation_patching")
    parser.add_argument("--approx", default="attribution_patching")
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--float64", action="store_true", help="score in float64: in float32, candidates with "
                        "near-zero effects (many, in a sparse model) are ranked by rounding noise on both sides")
    args = parser.parse_args()
    threads = threads_arg(args.threads)
    device = resolve_device(args.device)
    spec, task, data, model, meta = load_trained(args.method, args.task, args.seed, args.steps, device)
    pairs = task.contrast(data, spec.discovery.pair_seed)
    pairs = pairs.select(torch.arange(min(args.pairs, len(pairs)))).to(device)
    if args.float64:
        model = model.double()
        if pairs.clean.is_floating_point():
            pairs = ContrastivePairs(pairs.clean.double(), pairs.corrupted.double(), pairs.clean_labels,
                                     pairs.corrupted_labels)
    selection = SELECTIONS.get(spec.discovery.selection).build(spec.selection_config)
    discoverers = {key: DISCOVERERS.get(key).build() for key in (args.exact, args.approx)}
    scores = {key: d.score(model, task, pairs) for key, d in discoverers.items()}
    # Timer synchronises CUDA around what it times; the arms take turns so load drifts hit both alike.
    seconds = interleaved({key: Arm(lambda _, d=d: d.score(model, task, pairs)) for key, d in discoverers.items()},
                          args.repeats, threads)
    print(f"{args.method} on {args.task}: {spec.model} ({meta['steps']} steps, test accuracy "
          f"{meta['training']['test_accuracy']:.4f}, {'cached' if meta['cached'] else 'trained now'}), "
          f"{len(pairs)} pairs, metric {task.config.metric}, selection {spec.discovery.selection} "
          f"{spec.selection_config}; {'float64' if args.float64 else 'float32'}; data {data.source}")
    print(f"  {machine(device, threads)}")
    print(f"  time (best of {args.repeats} interleaved turns): {args.exact} {seconds[args.exact]:.4f} s, {args.approx} "
          f"{seconds[args.approx]:.4f} s (speed-up {seconds[args.exact] / seconds[args.approx]:.1f}x)")
    print("\n".join(format_agreement(agreement(scores[args.exact], scores[args.approx], selection))))


if __name__ == "__main__":
    main()
