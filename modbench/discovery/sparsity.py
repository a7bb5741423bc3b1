"""Circuit sparsity on any wiring (Nainani reports it "from 0 to 1" without a formula; this is ours):

    sparsity = 1 - (active edges inside the circuit) / (all edges of the network)

An edge joins a neuron of a wire's read group to one of its write group (a conv kernel's entries between
two channels are one edge, by their summed |w|); it is active when its |w| >= tau * max|W| of its wire,
and inside the circuit when both ends are. Neurons of groups that are no candidate site (inputs, outputs,
the residual stream) always count as inside; a candidate (a neuron, a channel, a head covering d_head
dimensions) counts when kept. Reported over the whole network and per wire (per layer). With K = 15 of 100
neurons per layer, a dense 784-100-100-10 network scores 1 - (784*15 + 15*15 + 15*10) / 89,400 = 0.864,
close to Nainani's FullyDense 0.8635.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from modbench.discovery.base import Circuits
from modbench.models.base import ModelAdapter


@torch.no_grad()
def edge_sparsity(
    model: ModelAdapter, circuits: Circuits, threshold: float = 0.01
) -> tuple[Float[Tensor, " circuits"], dict[str, Float[Tensor, " circuits"]]]:
    """(whole-network sparsity, per-wire sparsity) of every circuit in ``circuits`` (of nodes)."""
    sparsity, per_wire, _ = node_circuit_sparsity(model, circuits, threshold)
    return sparsity, per_wire


@torch.no_grad()
def node_circuit_sparsity(
    model: ModelAdapter, circuits: Circuits, threshold: float = 0.01
) -> tuple[Float[Tensor, " circuits"], dict[str, Float[Tensor, " circuits"]], Float[Tensor, " circuits"]]:
    """(whole-network sparsity, per-wire sparsity, active edges inside) of circuits of nodes."""
    wiring = model.wiring()
    n = len(circuits)
    device = next(iter(circuits.keep.values())).device
    nodes = {name: torch.ones(n, group.size, device=device) for name, group in wiring.groups.items()}
    for site in model.sites():
        if site.group is not None and site.name in circuits.keep:
            repeat = wiring.groups[site.group].size // site.size
            nodes[site.group] = circuits.keep[site.name].float().repeat_interleave(repeat, dim=1)
    inside_total = torch.zeros(n, device=device)
    edges_total = 0
    per_wire = {}
    for wire in wiring.wires:
        magnitude = wire.matrix()
        active = (magnitude >= threshold * magnitude.max()).to(inside_total.dtype)
        inside = torch.einsum("bo,oi,bi->b", nodes[wire.writes], active, nodes[wire.reads])
        per_wire[wire.name] = 1 - inside / magnitude.numel()
        inside_total += inside
        edges_total += magnitude.numel()
    return 1 - inside_total / edges_total, per_wire, inside_total


@torch.no_grad()
def edge_circuit_sparsity(
    model: ModelAdapter, circuits: Circuits, threshold: float = 0.01
) -> tuple[Float[Tensor, " circuits"], dict[str, Float[Tensor, " circuits"]], Float[Tensor, " circuits"]]:
    """The same for circuits of edges: an edge site that is a wire (MLP, CNN) counts its edges as above (active
    when |w| >= threshold * max|W|, inside when kept); a residual edge site (transformer) counts every edge."""
    wires = {wire.name: wire for wire in model.wiring().wires}
    sites = {site.name: site for site in model.edge_graph().sites}
    inside_total, edges_total, per_site = 0.0, 0, {}
    for name, keep in circuits.keep.items():
        site = sites[name]
        if site.wire is not None:
            magnitude = wires[site.wire].matrix()
            active = (magnitude >= threshold * magnitude.max()).flatten()
        else:
            active = torch.ones(site.size, dtype=torch.bool, device=keep.device)
        inside = (keep & active).sum(-1).to(torch.float32)
        per_site[name] = 1 - inside / site.size
        inside_total = inside_total + inside
        edges_total += site.size
    return 1 - inside_total / edges_total, per_site, inside_total
