"""ACDC as shipped (``modbench.discovery.acdc.acdc_fast``) against the plain sequential algorithm, on trained
models, side by side in one run; then EAP-IG's cost against exact edge patching.

Arms, interleaved (each round runs every arm once; best of ``--repeats`` rounds), same model, pairs, tau, order:

* ``sequential``: the plain algorithm, one forward pass of the whole circuit per edge test
  (``acdc_sequential``; the issue's baseline);
* ``resumed``: the best plain loop of the same work: one pass per edge test, but resumed at the tested edge's
  receiver from the cached values below it (nothing below the receiver is recomputed), and edges whose term is
  zero on every pair cut without a pass (the shipped version skips exactly these);
* ``shipped``: batched rows along predicted decisions, the receiver's next stage updated by its term alone.

Every arm must return the same circuit (checked; any difference is printed). Default models: the modular-addition
transformer and the MNIST MLP (circle detection, BIMT and vanilla), trained or loaded from the cache as
``modbench run`` would (full MNIST with MODBENCH_DATA_DIR, else the embedded digits).

    MODBENCH_DATA_DIR=../shared/data python scripts/bench_acdc.py [--pairs 100] [--threads 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch

from modbench.discovery.acdc import acdc_fast, acdc_sequential, circuit_loss, full_keep, incoming, receivers
from modbench.discovery.acdc import cut_all, reaches_output, try_cut
from modbench.discovery.edges import _leading, edge_forward
from modbench.experiment import ExperimentSpec, record_identity
from modbench.pipeline import build_task, trained_model
from modbench.provenance import device_name
from modbench.registries import DISCOVERERS, INTERVENTIONS


def acdc_resumed(model, graph, task, pairs, replacement, threshold):  # noqa: ANN001, ANN201
    """Sequential ACDC, one pass per edge test resumed at the receiver's stage; zero-term edges cut untested."""
    keep = full_keep(graph, pairs.clean.device)
    loss = circuit_loss(task, "", model(pairs.clean), pairs.clean_labels)
    output, state = edge_forward(model, graph, pairs.clean[None], keep, replacement, record=True)
    current, passes = float(loss(output)[0]), 1
    for slot, r in receivers(graph):
        if not reaches_output(graph, keep, slot.node, r):
            cut_all(slot, keep, r)
            continue
        stage, terms = graph.stage_of(slot.name), {}
        for index, site, s in incoming(slot):
            if index not in terms:
                value = state.values[site.sender]
                terms[index] = slot.combiner.receiver_terms(
                    index, value - _leading(replacement[site.sender], value.dim() - 2), r)
            if bool((terms[index][s] == 0).all()):
                keep[site.name][0, r, s] = False
                continue
            current = try_cut(keep, site.name, r, s, lambda: float(loss(edge_forward(
                model, graph, None, keep, replacement, start=stage, state=state)[0])[0]), current, threshold)
            passes += 1
    return keep, passes


def load(method: str, task_key: str, seed: int, pairs: int, device: torch.device):  # noqa: ANN201
    spec = ExperimentSpec(task=task_key, method=method, train_seed=seed).resolved()
    task = build_task(spec.task, spec.model_config)
    data = task.load(None)
    training = record_identity(spec, data.source, task.config).training
    model, meta = trained_model(training, task, data, device, show_progress=False)
    found = task.contrast(data, spec.discovery.pair_seed)
    found = found.select(torch.randperm(len(found), generator=torch.Generator().manual_seed(0))[:pairs]).to(device)
    return task, model.eval(), found, data.source, meta["training"]["test_accuracy"]


def timed(arms: dict[str, Callable[[], object]], repeats: int) -> tuple[dict[str, float], dict[str, object]]:
    best = {name: float("inf") for name in arms}
    results: dict[str, object] = {}
    for round_ in range(repeats):
        order = list(arms) if round_ % 2 == 0 else list(reversed(arms))  # alternate which arm goes first
        for name in order:
            start = time.perf_counter()
            results[name] = arms[name]()
            best[name] = min(best[name], time.perf_counter() - start)
    return best, results


def bench_model(label: str, method: str, task_key: str, args: argparse.Namespace, device: torch.device) -> None:
    task, model, pairs, source, accuracy = load(method, task_key, args.seed, args.pairs, device)
    graph = model.edge_graph()
    with torch.no_grad():
        values = INTERVENTIONS.get(args.ablation).build().values(model, pairs, edges=True)
    fed = values.values
    tau = args.tau
    arms = {
        "shipped": lambda: acdc_fast(model, graph, task, pairs, fed, tau, "", 1 << 16),
        "resumed": lambda: acdc_resumed(model, graph, task, pairs, fed, tau),
        "sequential": lambda: acdc_sequential(model, graph, task, pairs, fed, tau),
    }
    if args.skip_sequential:
        arms.pop("sequential")
    with torch.no_grad():
        seconds, results = timed(arms, args.repeats)
    keep, costs = results["shipped"]
    same = {name: all(torch.equal(results[name][0][k], keep[k]) for k in keep) for name in arms if name != "shipped"}
    edges = sum(site.size for site in graph.sites)
    kept = sum(int(mask.sum()) for mask in keep.values())
    print(f"\n{label}: {method} on {task_key} ({source}, test accuracy {accuracy:.4f}), {len(pairs)} pairs, "
          f"tau {tau}, {args.ablation} ablation: {edges} edges, {kept} kept, {costs['edge_tests']:.0f} edge tests")
    print(f"  shipped: {seconds['shipped']:.3f} s, {costs['forward_passes']:.0f} batched passes")
    for name in (n for n in arms if n != "shipped"):
        passes = results[name][1]
        print(f"  {name}: {seconds[name]:.3f} s ({passes} passes), same circuit: {same[name]}, shipped is "
              f"{seconds[name] / seconds['shipped']:.1f}x faster")
    attribution_cost(model, task, pairs, values, args.repeats)


def attribution_cost(model, task, pairs, values, repeats: int) -> None:  # noqa: ANN001
    """EAP-IG (5 steps) against exact edge patching: passes and time, and how many of the exact top edges
    EAP-IG puts in its own top (the same count)."""
    arms = {key: (lambda key=key: DISCOVERERS.get(key).build().score(model, task, pairs, replacement=values))
            for key in ("eap_ig", "edge_patching")}
    seconds, results = timed(arms, repeats)
    exact = torch.cat([v.flatten() for v in results["edge_patching"].scores.values()])
    approx = torch.cat([v.flatten() for v in results["eap_ig"].scores.values()])
    top = max(1, int((exact >= 0.01).sum()))
    overlap = len(set(exact.topk(top).indices.tolist()) & set(approx.topk(top).indices.tolist())) / top
    costs = {key: results[key].costs for key in arms}
    print(f"  EAP-IG: {seconds['eap_ig']:.3f} s ({costs['eap_ig']['forward_passes']:.0f} forward + "
          f"{costs['eap_ig']['backward_passes']:.0f} backward passes); exact edge patching: "
          f"{seconds['edge_patching']:.3f} s ({costs['edge_patching']['forward_passes']:.0f} batched passes over "
          f"{len(exact)} edges): {seconds['edge_patching'] / seconds['eap_ig']:.1f}x; top-{top} overlap "
          f"{overlap:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--tau", type=float, default=0.01)
    parser.add_argument("--ablation", default="mean")
    parser.add_argument("--seed", type=int, default=1, help="training seed")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=["modadd:bimt", "modadd:vanilla", "mnist:bimt", "mnist:vanilla"])
    parser.add_argument("--skip-sequential", action="store_true", help="leave out the slowest arm")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    print(f"device {device_name(device)}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"load average {os.getloadavg()[0]:.2f}")
    tasks = {"modadd": "modular_addition", "mnist": "circle_detection"}
    for entry in args.models:
        kind, method = entry.split(":")
        bench_model(entry, method, tasks[kind], args, device)


if __name__ == "__main__":
    main()
