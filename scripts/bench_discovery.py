"""Benchmark: shipped activation patching vs like-for-like baselines, on the MNIST MLP (circle_detection pairs).

Measured (median of --repeats runs after a warm-up, interleaved so load drifts hit every variant alike;
all under torch.no_grad; weights are the untrained init: timing does not depend on their values):
  (a) discovery: ActivationPatching(...).score(model, task, pairs), its two caching forwards included;
  (b) the limit to beat: per site, a plain forward from the site's resume hook over the same rows (the
      corrupted resume activation repeated site.size times per pair), plus the same two caching forwards;
  (c) the per-neuron loop batched over pairs: per site and candidate, one forward from the resume hook over
      all pairs with that candidate hooked to its clean value; scores must equal (a)'s;
  (d) footnote: the batch-1 loop (one full forward per pair per candidate), timed on --loop-pairs pairs
      and extrapolated to --pairs;
  (e) attribution patching (first order: one clean forward, one corrupted forward, one backward) on the same
      pairs: its time, (a)/(e), and its agreement with (a): per site the Spearman rank correlation across
      candidates per pair (averaged), over all scores pooled, and of the mean scores, and the Jaccard
      overlap of the top-K circuits (K = 15; ``compare_discoverers.agreement``). With
      --method, (a) and (e) run on that method's trained model (as ``modbench run`` trains or loads it),
      whose scores mean more than the init's; the other rows keep the init.
Targets: (a)/(b) <= 1 and (c)/(a) >= 5.

    python scripts/bench_discovery.py [--pairs 500] [--repeats 7] [--loop-pairs 2] [--device cpu] [--threads 1]
                                      [--method bimt]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from modbench.discovery.activation_patching import ActivationPatching
from modbench.discovery.attribution_patching import AttributionPatching
from modbench.discovery.catalog import ActivationPatchingConfig, AttributionPatchingConfig, TopKConfig
from modbench.discovery.selection import TopK
from modbench.models import MODELS
from modbench.provenance import device_name, resolve_device
from modbench.tasks import TASKS

from compare_discoverers import agreement, format_agreement, load_trained  # scripts/ is on sys.path


def set_to_clean(clean, site, i):
    def hook(activation, hook=None):  # candidate i of every row takes its clean value, in place
        activation.select(site.axis, i).copy_(clean.select(site.axis, i))
        return activation
    return hook


def caching_forwards(model, pairs):
    """The clean run (site activations) and the corrupted run (resume activations), as both sides need."""
    sites = model.sites()
    clean_out, clean = model.run_with_cache(pairs.clean, names_filter=[site.name for site in sites])
    _, corrupted = model.run_with_cache(pairs.corrupted, names_filter=[model.resume_hook(s) for s in sites])
    return clean_out, clean, corrupted


def plain_forward(model, pairs, max_rows):
    _, _, corrupted = caching_forwards(model, pairs)
    for site in model.sites():
        resume = corrupted[model.resume_hook(site)]
        chunk = max(1, max_rows // site.size)  # the same chunks as the discoverer
        for start in range(0, len(pairs), chunk):
            model.run_from(model.resume_hook(site), resume[start:start + chunk].repeat_interleave(site.size, 0))


def neuron_loop(model, task, pairs):
    clean_out, clean, corrupted = caching_forwards(model, pairs)
    reference = task.readout(clean_out)
    scores = {}
    for site in model.sites():
        resume, per_candidate = corrupted[model.resume_hook(site)], []
        for i in range(site.size):
            with model.hooks(fwd_hooks=[(site.name, set_to_clean(clean[site.name], site, i))]):
                out = model.run_from(model.resume_hook(site), resume)
            per_candidate.append((task.readout(out) - reference).norm(dim=-1))
        scores[site.name] = torch.stack(per_candidate, dim=1)
    return scores


def batch1_loop(model, task, pairs):
    names = [site.name for site in model.sites()]
    scores = {site.name: torch.empty(len(pairs), site.size) for site in model.sites()}
    for p in range(len(pairs)):
        clean_out, clean = model.run_with_cache(pairs.clean[p:p + 1], names_filter=names)
        reference = task.readout(clean_out)
        for site in model.sites():
            for i in range(site.size):
                out = model.run_with_hooks(pairs.corrupted[p:p + 1],
                                           fwd_hooks=[(site.name, set_to_clean(clean[site.name], site, i))])
                scores[site.name][p, i] = (task.readout(out) - reference).norm(dim=-1)[0]
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--loop-pairs", type=int, default=2)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--method", default=None, help="(a) and (e) on this method's trained model (cached, or "
                        "trained now) [default: the untrained init]")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = MODELS.get("mnist_mlp").build().to(device).eval()
    task = TASKS.get("circle_detection").build()
    data = task.load(None)
    pairs = task.contrast(data, seed=0)
    pairs = pairs.select(torch.arange(args.pairs) % len(pairs)).to(device)  # indices repeat if too few
    subset = pairs.select(torch.arange(min(args.loop_pairs, args.pairs), device=device))
    config = ActivationPatchingConfig()
    discoverer = ActivationPatching(config)
    attribution = AttributionPatching(AttributionPatchingConfig())
    trained, trained_note = model, "untrained init"
    if args.method:
        trained, meta = load_trained(args.method, "circle_detection", 1, None, device)[3:]
        trained_note = f"{args.method}, {meta['steps']} steps, test accuracy {meta['training']['test_accuracy']:.4f}"
    rows = args.pairs * sum(site.size for site in model.sites())
    variants = {
        "discovery": lambda: discoverer.score(trained, task, pairs),
        "forward": lambda: plain_forward(model, pairs, config.max_rows),
        "loop": lambda: neuron_loop(model, task, pairs),
        "batch1": lambda: batch1_loop(model, task, subset),
        "attribution": lambda: attribution.score(trained, task, pairs),
    }
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    times: dict[str, list[float]] = {name: [] for name in variants}
    with torch.no_grad():
        results = {name: fn() for name, fn in variants.items()}  # warm-up, and the results to compare
        for _ in range(args.repeats):
            for name, fn in variants.items():
                sync()
                start = time.perf_counter()
                fn()
                sync()
                times[name].append(time.perf_counter() - start)
    t = {name: statistics.median(values) for name, values in times.items()}
    shipped = results["discovery"].scores
    init = shipped if trained is model else discoverer.score(model, task, pairs).scores  # (c), (d) run on init
    loop_ok = all(torch.allclose(results["loop"][s], init[s], atol=1e-5) for s in shipped)
    batch1_ok = all(torch.allclose(results["batch1"][s].to(device), init[s][: len(subset)], atol=1e-5)
                    for s in shipped)
    batch1 = t["batch1"] * args.pairs / len(subset)

    print(f"device {device_name(device)} (--device {args.device or 'auto'}); data {data.source}; "
          f"{args.pairs} pairs x {rows // args.pairs} candidates = {rows:,} patched rows; "
          f"median of {args.repeats} interleaved repeats")
    print(f"(a) discovery (shipped)                    {t['discovery']:9.4f} s")
    print(f"(b) forward from patched layer, same rows  {t['forward']:9.4f} s   "
          f"(a)/(b) = {t['discovery'] / t['forward']:.2f}  (target <= 1)")
    print(f"(c) per-neuron loop, batched over pairs    {t['loop']:9.4f} s   "
          f"(c)/(a) = {t['loop'] / t['discovery']:.1f}x  (target >= 5); scores equal (a): {loop_ok}")
    print(f"footnote: (d) batch-1 loop, {len(subset)} pairs extrapolated to {args.pairs}: {batch1:.2f} s "
          f"= {batch1 / t['discovery']:,.0f}x (a); scores equal (a): {batch1_ok}")
    print(f"(e) attribution patching (first order)     {t['attribution']:9.4f} s   "
          f"(a)/(e) = {t['discovery'] / t['attribution']:.1f}x; agreement with (a) on the {trained_note}:")
    print("\n".join(format_agreement(agreement(results["discovery"], results["attribution"], TopK(TopKConfig())))))


if __name__ == "__main__":
    main()
