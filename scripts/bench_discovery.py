"""Benchmark: shipped activation patching against the best plain implementations of the same work, on the
MNIST MLP (784-100-100-10 SiLU; circle_detection pairs), side by side in one run, at each --threads count.

Every arm does the whole job: the clean caching forward, the corrupted caching forward, every candidate of
both hidden layers patched for every pair (--pairs x 200 = the patched rows), and the task's metric
(||L_patched - L_clean||_2) per pair and candidate. All under torch.no_grad; no hooks attached in (b)-(d).
  (a) shipped: ``ActivationPatching.score`` (resumes from the cached corrupted activations; on the MLP each
      patched row is a rank-1 change of the next layer's input, so that layer's product is never run).
  (b) plain batched patching: per site and chunk of pairs (the discoverer's chunks), the cached corrupted
      post-activation repeated once per candidate with candidate i of row (pair, i) set to its clean value,
      then the next layers from there (a full product of the next layer, the same in-place activation).
  (c) plain per-candidate loop, batched over pairs: per site and candidate, clone the corrupted
      post-activation, set column i to its clean values, run the next layers.
  (d) footnote: the same loop one pair at a time (its own caching forwards per pair), timed on --loop-pairs
      pairs and extrapolated to --pairs.
  (e) attribution patching (first order: one clean forward, one corrupted forward, one backward), and how
      far its scores agree with (a)'s (``compare_discoverers.agreement``). With --method, (a) and (e) also
      score that method's trained model (as ``modbench run`` trains or loads it) for the agreement.
Scores of (b), (c), (d) are checked equal to (a)'s. Timing: ``benchlib.interleaved`` (Timer, arms in turns,
best of --repeats). Targets: (a)/(b) <= 1 and (c)/(a) >= 5, at every thread count.

    python scripts/bench_discovery.py [--pairs 500] [--repeats 7] [--threads 1 2] [--loop-pairs 2] [--device cpu]
                                      [--method bimt]
"""

from __future__ import annotations

import argparse

import torch

from benchlib import Arm, interleaved, machine, target_line  # scripts/ is on sys.path
from compare_discoverers import agreement, format_agreement, load_trained
from modbench.discovery.activation_patching import ActivationPatching
from modbench.discovery.attribution_patching import AttributionPatching
from modbench.discovery.catalog import ActivationPatchingConfig, AttributionPatchingConfig, TopKConfig
from modbench.discovery.selection import TopK
from modbench.metrics import METRICS
from modbench.models import MODELS
from modbench.provenance import resolve_device
from modbench.tasks import TASKS


def layers_after(model, layer: int, post: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
    """Logits from hidden layer ``layer``'s post-activation ``post`` (a scratch tensor: activations in place)."""
    if layer + 1 < len(model.blocks):
        return model.run_from(f"blocks.{layer + 1}.mlp.hook_pre", model.blocks[layer + 1].mlp.linear(post),
                              scratch=True)
    return model.hook_logits(model._unembed_in_class_order(post))  # the read-out, classes in order


class PlainPatching:
    """The plain implementations (b)-(d): the same caching forwards and metric as (a), no shortcut, no hooks."""

    def __init__(self, model, task, max_rows: int) -> None:  # noqa: ANN001
        self.model, self.task, self.max_rows = model, task, max_rows
        self.metric = METRICS.get(task.config.metric).function()
        self.sites = model.sites()

    def caches(self, pairs):  # noqa: ANN001, ANN201
        names = [site.name for site in self.sites]
        clean_out, clean = self.model.run_with_cache(pairs.clean, names_filter=names)
        _, corrupted = self.model.run_with_cache(pairs.corrupted, names_filter=names)
        return self.task.readout(clean_out), self.task.targets(pairs.clean_labels), clean, corrupted

    def batched(self, pairs) -> dict[str, torch.Tensor]:  # noqa: ANN001
        reference, labels, clean, corrupted = self.caches(pairs)
        scores = {}
        for site in self.sites:
            n, parts = site.size, []
            chunk = max(1, self.max_rows // n)
            for start in range(0, len(pairs), chunk):
                rows = slice(start, start + chunk)
                patched = corrupted[site.name][rows].repeat_interleave(n, 0)  # row (pair, i): pair's activation
                patched.view(-1, n, n).diagonal(dim1=1, dim2=2).copy_(clean[site.name][rows])  # ... i clean
                logits = self.task.readout(layers_after(self.model, site.layer, patched))
                logits = logits.view(-1, n, logits.shape[-1])
                parts.append(self.metric(logits, reference[rows, None], labels[rows, None]))
            scores[site.name] = torch.cat(parts)
        return scores

    def loop(self, pairs) -> dict[str, torch.Tensor]:  # noqa: ANN001
        reference, labels, clean, corrupted = self.caches(pairs)
        scores = {}
        for site in self.sites:
            per_candidate = []
            for i in range(site.size):
                patched = corrupted[site.name].clone()
                patched[:, i] = clean[site.name][:, i]
                logits = self.task.readout(layers_after(self.model, site.layer, patched))
                per_candidate.append(self.metric(logits, reference, labels))
            scores[site.name] = torch.stack(per_candidate, dim=1)
        return scores

    def batch1_loop(self, pairs) -> dict[str, torch.Tensor]:  # noqa: ANN001
        parts = [self.loop(pairs.select(torch.tensor([p], device=pairs.clean.device))) for p in range(len(pairs))]
        return {site.name: torch.cat([part[site.name] for part in parts]) for site in self.sites}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=7, help="interleaved turns; each arm's best is kept")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads, one run each")
    parser.add_argument("--loop-pairs", type=int, default=2)
    parser.add_argument("--device", default=None)
    parser.add_argument("--method", default=None, help="also score this method's trained model (cached, or "
                        "trained now) with (a) and (e), for their agreement")
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = MODELS.get("mnist_mlp").build().to(device).eval()  # timing does not depend on the weights' values
    task = TASKS.get("circle_detection").build()
    data = task.load(None)
    pairs = task.contrast(data, seed=0)
    available = len(pairs)
    pairs = pairs.select(torch.arange(args.pairs) % available).to(device)  # indices repeat if too few
    subset = pairs.select(torch.arange(min(args.loop_pairs, args.pairs), device=device))
    config = ActivationPatchingConfig()
    shipped, attribution = ActivationPatching(config), AttributionPatching(AttributionPatchingConfig())
    plain = PlainPatching(model, task, config.max_rows)
    arms = {
        "a": Arm(lambda _: shipped.score(model, task, pairs)),
        "b": Arm(lambda _: plain.batched(pairs)),
        "c": Arm(lambda _: plain.loop(pairs)),
        "e": Arm(lambda _: attribution.score(model, task, pairs)),
    }
    rows = args.pairs * sum(site.size for site in model.sites())
    with torch.no_grad():
        reference = shipped.score(model, task, pairs).scores
        same = {name: all(torch.allclose(scores[s], reference[s][: len(scores[s])], atol=1e-5) for s in reference)
                for name, scores in (("b", plain.batched(pairs)), ("c", plain.loop(pairs)),
                                     ("d", plain.batch1_loop(subset)))}
    print(f"data {data.source}: {len(data.x_test):,} test images, {available} circle-detection pairs, "
          f"{args.pairs} used (repeated if fewer); {rows:,} patched rows; best of {args.repeats} interleaved turns")
    for threads in args.threads:
        print(f"\n{machine(device, threads)}")
        with torch.no_grad():
            t = interleaved(arms, args.repeats, threads)
            batch1 = interleaved({"d": Arm(lambda _: plain.batch1_loop(subset))}, 1, threads)["d"]
        batch1 *= args.pairs / len(subset)
        print(f"(a) shipped discovery                          {t['a']:8.4f} s")
        print(f"(b) plain batched patching (full next layer)   {t['b']:8.4f} s   (a)/(b) = {t['a'] / t['b']:.2f}; "
              f"scores equal (a): {same['b']}")
        print(f"(c) plain per-candidate loop, batched over pairs {t['c']:6.4f} s   (c)/(a) = {t['c'] / t['a']:.2f}x; "
              f"scores equal (a): {same['c']}")
        print(f"(e) attribution patching (first order)         {t['e']:8.4f} s   (a)/(e) = {t['a'] / t['e']:.2f}x")
        print(f"footnote (d): the loop one pair at a time, {len(subset)} pairs extrapolated to {args.pairs}: "
              f"{batch1:.2f} s = {batch1 / t['a']:,.0f}x (a); scores equal (a): {same['d']}")
        print(target_line(f"(a)/(b), {threads} thread(s)", t["a"] / t["b"], 1.0, at_least=False))
        print(target_line(f"(c)/(a), {threads} thread(s)", t["c"] / t["a"], 5.0, at_least=True))
    trained, note = model, "the untrained init"
    if args.method:
        trained, meta = load_trained(args.method, "circle_detection", 1, None, device)[3:]
        note = f"{args.method}, {meta['steps']} steps, test accuracy {meta['training']['test_accuracy']:.4f}"
    exact, approx = shipped.score(trained, task, pairs), attribution.score(trained, task, pairs)
    print(f"\n(e) against (a) on {note}:")
    print("\n".join(format_agreement(agreement(exact, approx, TopK(TopKConfig())))))


if __name__ == "__main__":
    main()
