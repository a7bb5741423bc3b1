"""Benchmark: the shipped exact ECS search (``ecs_fast``) against the best plain implementation of the authors'
sequential procedure, and against the procedure run literally, side by side in one run.

Model: the MNIST MLP 784-64-64-10, ReLU, no bias (``mnist_mlp_relu``), trained --steps Adam steps (lr 1e-3,
batch 128, cross-entropy) on the circle_detection task's MNIST split (the embedded 5k digits offline, or
--data-dir), so the loss landscape is that of a trained network. One class (--class), its test images
(--images; default all). Pruned: the three Linear weights (50,176 + 4,096 + 640 = 54,912 weights).

Arms (``benchlib.interleaved``: Timer, arms in turns, best of --repeats; --threads torch threads):
  fast    ``ecs_fast`` over all three layers.
  plain   the like-for-like baseline: the same sequential loop, with the two savings ``ecs.py`` proves
          exact and that need no cleverness: each layer's input is computed once (layers below it are not
          being pruned), so a weight costs one forward *from its layer*; and null weights (0, or reading an
          input that is 0 for every image: their forward is bit-identical to the current state's) are
          removed without a forward.
  literal ``ecs_reference`` (one full forward per weight, null weights included) on the last two layers
          (4,736 weights); its time per weight (the same full forward for every weight of any layer) is
          extrapolated to all 54,912.
Checked: plain's masks equal fast's on every weight; literal's on the last two layers; and the literal
rule's decision at --sample weights spread over every row of the first layer, each on the state that fast's
masks say the earlier decisions left (equal there for every weight, if fast's masks are the reference's).
Targets: literal / fast >= 20 (extrapolated), and plain / fast >= 20.

    python scripts/bench_ecs.py [--class 0] [--images N] [--steps 300] [--repeats 3] [--threads 1]
                                [--sample 512] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch
import torch.nn.functional as F

from benchlib import Arm, interleaved, machine, target_line  # scripts/ is on sys.path
from modbench.discovery.ecs import ecs_reference
from modbench.discovery.ecs_fast import ecs_fast
from modbench.models import MODELS
from modbench.tasks import TASKS

TARGET = 20.0


def train(model, data, steps: int, seed: int) -> float:  # noqa: ANN001
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(steps):
        rows = torch.randint(0, len(data.x_train), (128,), generator=generator)
        loss = F.cross_entropy(model(data.x_train[rows]), data.y_train[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return float((model(data.x_test).argmax(-1) == data.y_test).float().mean())


def linears(model) -> list[torch.nn.Linear]:  # noqa: ANN001
    return [block.mlp.linear for block in model.blocks] + [model.unembed]


def forward_from(model, index: int, x_in: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
    """Logits from the input of Linear ``index``, by the operations the full forward applies from there."""
    if index < len(model.blocks):
        return model.run_from(f"blocks.{index}.mlp.hook_pre", model.blocks[index].mlp.linear(x_in))
    return model.hook_logits(model._unembed_in_class_order(x_in))  # the read-out, classes in order


@torch.no_grad()
def ecs_plain(model, x: torch.Tensor, label: int, threshold: float = 0.0) -> dict[str, torch.Tensor]:  # noqa: ANN001
    """The authors' sequential rule (last layer first, row-major, a weight kept when removing it raises the
    class's mean CE above the original by more than ``threshold``), with cached layer inputs and null weights
    removed unevaluated. Keep masks by parameter name, as ``ecs_reference`` returns them."""
    work = copy.deepcopy(model).eval()
    target = torch.full((len(x),), label)
    base = F.cross_entropy(work(x), target)
    names = {id(p): name for name, p in work.named_parameters()}
    _, inputs = work.run_with_cache(x, names_filter=[f"blocks.{i}.mlp.hook_post" for i in range(len(work.blocks))])
    layer_inputs = [x.flatten(1)] + [inputs[f"blocks.{i}.mlp.hook_post"] for i in range(len(work.blocks))]
    masks = {}
    for index in reversed(range(len(layer_inputs))):
        weight, x_in = linears(work)[index].weight, layer_inputs[index]
        flat = weight.view(-1)
        null = ((flat == 0) | (x_in == 0).all(0).repeat(weight.shape[0])).tolist()
        keep = torch.zeros(flat.numel(), dtype=torch.bool)
        for k in range(flat.numel()):
            old = flat[k].item()
            flat[k] = 0
            if null[k]:
                continue  # its forward would give the current state's loss, which the last removal accepted
            if float(F.cross_entropy(forward_from(work, index, x_in), target) - base) > threshold:
                flat[k] = old
                keep[k] = True
        masks[names[id(weight)]] = keep.view(weight.shape)
    return masks


@torch.no_grad()
def literal_decisions(model, x: torch.Tensor, label: int, masks: dict[str, torch.Tensor], name: str,  # noqa: ANN001
                      sample: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """The literal rule's decision (one full forward) at each sampled flat index of ``name``, on the state the
    earlier decisions leave when they are ``masks``'s: later layers pruned by their masks, this layer's
    weights before the sampled one by its mask."""
    work = copy.deepcopy(model).eval()
    target = torch.full((len(x),), label)
    base = F.cross_entropy(work(x), target)
    params = dict(work.named_parameters())
    order = list(masks)  # forward order
    for later in order[order.index(name) + 1:]:
        params[later].mul_(masks[later].to(params[later].dtype))
    original, mask = params[name].detach().clone().view(-1), masks[name].view(-1)
    decisions = []
    for k in sample.tolist():
        flat = params[name].view(-1)
        flat.copy_(original)
        flat[:k].mul_(mask[:k].to(flat.dtype))
        flat[k] = 0
        decisions.append(float(F.cross_entropy(work(x), target) - base) > threshold)
    return torch.tensor(decisions)


def spread(rows: int, cols: int, count: int, seed: int) -> torch.Tensor:
    """``count`` flat indices of a rows x cols matrix, the same number (at least one) from every row."""
    generator = torch.Generator().manual_seed(seed)
    per_row = max(1, count // rows)
    picks = [r * cols + torch.randperm(cols, generator=generator)[:per_row] for r in range(rows)]
    return torch.cat(picks).sort().values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--class", dest="label", type=int, default=0)
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved turns; each arm's best is kept")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sample", type=int, default=512, help="first-layer weights checked against the literal "
                        "rule, spread over its rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = TASKS.get("circle_detection").build().load(args.data_dir)
    torch.manual_seed(args.seed)
    model = MODELS.get("mnist_mlp_relu").build()
    accuracy = train(model, data, args.steps, args.seed)
    model.eval()
    x = data.x_test[data.y_test == args.label][: args.images]
    layers = [linear.weight for linear in linears(model)]
    names = [name for layer in layers for name, param in model.named_parameters() if param is layer]
    total, tail = sum(layer.numel() for layer in layers), sum(layer.numel() for layer in layers[1:])
    stats: dict = {}
    results: dict[str, dict[str, torch.Tensor]] = {}

    def keep(key: str, masks: dict[str, torch.Tensor]) -> None:
        results[key] = masks

    arms = {"fast": Arm(lambda _: keep("fast", ecs_fast(model, x, args.label, layers, stats=stats))),
            "plain": Arm(lambda _: keep("plain", ecs_plain(model, x, args.label))),
            "literal": Arm(lambda _: keep("literal", ecs_reference(model, x, args.label, layers[1:])))}
    print(f"model mnist_mlp_relu 784-64-64-10 after {args.steps} Adam steps (test accuracy {accuracy:.3f}); data "
          f"{data.source}: {len(data.x_test):,} test images, class {args.label}: {len(x)} images")
    print(machine(torch.device("cpu"), args.threads))
    t = interleaved(arms, args.repeats, args.threads)
    fast, plain, literal = results["fast"], results["plain"], results["literal"]
    sample = spread(*layers[0].shape, args.sample, args.seed)
    decided = literal_decisions(model, x, args.label, fast, names[0], sample)
    plain_same = all(torch.equal(plain[name], fast[name]) for name in names)
    literal_same = all(torch.equal(literal[name], fast[name]) for name in names[1:])
    sample_same = int((decided == fast[names[0]].view(-1)[sample]).sum())
    extrapolated = t["literal"] / tail * total
    ecs = sum(int(mask.sum()) for mask in fast.values()) / total

    print(f"ECS {ecs:.4f}; kept per layer: " + ", ".join(f"{n} {float(fast[n].float().mean()):.4f}" for n in names))
    print(f"fast:    {t['fast']:8.3f} s   ({stats['passes']} batched passes, {stats['null']:,} null weights, "
          f"{stats['exact_forwards']:,} exact forwards for near-ties in one run)")
    print(f"plain:   {t['plain']:8.3f} s   (one forward from the layer per non-null weight); masks equal fast on "
          f"all {total:,} weights: {plain_same}")
    print(f"literal: {t['literal']:8.3f} s for the last two layers ({tail:,} weights, "
          f"{t['literal'] / tail * 1e3:.3f} ms per weight), extrapolated to all {total:,}: {extrapolated:.1f} s; "
          f"masks equal fast there: {literal_same}")
    print(f"literal rule at {len(sample)} first-layer weights ({len(sample) // layers[0].shape[0]} in each of its "
          f"{layers[0].shape[0]} rows), on fast's state: {sample_same} of {len(sample)} decisions equal fast's")
    print(target_line("plain / fast", t["plain"] / t["fast"], TARGET, at_least=True))
    print(target_line("literal (extrapolated) / fast", extrapolated / t["fast"], TARGET, at_least=True))


if __name__ == "__main__":
    main()
