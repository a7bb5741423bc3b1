"""A TransformerLens ``HookedTransformer`` speaking the modbench model protocol (see ``base``).

Candidates are attention heads (``blocks.{l}.attn.hook_z``, axis 2 of (batch, pos, head, d_head)) and MLP
neurons (``blocks.{l}.mlp.hook_post``, axis 2 of (batch, pos, d_mlp)); a patch replaces a candidate at every
position. Both resume from the block's ``hook_resid_pre`` (TransformerLens's ``start_at_layer``). The wiring
treats the residual stream as one permutable group that every embedding, attention and MLP matrix reads or
writes, so a residual permutation moves all of them at once.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from jaxtyping import Float
from torch import Tensor, nn
from transformer_lens import HookedTransformer, HookedTransformerConfig

from modbench.models.base import ModelAdapter, NeuronGroup, PermSite, Site, TiedBlocks, Wire, Wiring
from modbench.models.catalog import TransformerConfig
from modbench.models.edges import OUTPUT, EdgeGraph, EdgeSite, ResidualCombiner, Slot, Stage
from modbench.models.geometry import layer_coords

TL_ACTIVATIONS = ("relu", "gelu", "silu")  # catalog.ACTIVATIONS also has tanh, which TransformerLens lacks
_SITE = re.compile(r"blocks\.(\d+)\.(attn\.hook_z|mlp\.hook_post)")
_RESUME = re.compile(r"blocks\.(\d+)\.hook_resid_pre")


class ModularTransformer(HookedTransformer, ModelAdapter):
    """``HookedTransformer`` built from a modbench :class:`TransformerConfig` or from a TransformerLens
    ``HookedTransformerConfig`` (a pretrained architecture); ``self.cfg`` is TransformerLens's config either
    way and everything here reads it. Group coordinates are buffers (``.to()`` moves them), non-persistent
    since the config fixes them: the state dict is exactly a HookedTransformer's."""

    def __init__(self, cfg: TransformerConfig | HookedTransformerConfig) -> None:
        if isinstance(cfg, TransformerConfig):
            if cfg.act_fn not in TL_ACTIVATIONS:
                raise ValueError(f"a transformer's act_fn must be one of {TL_ACTIVATIONS}, got {cfg.act_fn!r}")
            cfg = HookedTransformerConfig(
                n_layers=cfg.n_layers, d_model=cfg.d_model, n_heads=cfg.n_heads, d_head=cfg.d_head,
                d_mlp=cfg.d_mlp, d_vocab=cfg.d_vocab, d_vocab_out=cfg.d_vocab_out, n_ctx=cfg.n_ctx,
                act_fn=cfg.act_fn, normalization_type=cfg.normalization_type, init_weights=True, device="cpu",
            )  # no seed: TransformerLens would reseed every RNG; the caller seeds torch
        if cfg.d_mlp is None or cfg.attn_only or cfg.gated_mlp:
            raise ValueError("ModularTransformer needs plain (not gated) MLP blocks")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "HookedTransformer is deprecated", DeprecationWarning)
            super().__init__(cfg)
        for name, (size, _) in self._group_specs().items():
            self.register_buffer(self._coords_name(name), layer_coords(size, is_output=name == "logits"),
                                 persistent=False)

    # --- dtype / device: keep self.cfg in step (TL's LayerNorm casts to cfg.dtype, blocks move to cfg.device)

    def to(self, *args: Any, **kwargs: Any) -> ModularTransformer:
        """``nn.Module.to`` with its usual signature, without TransformerLens's prints (``_apply`` syncs cfg)."""
        return nn.Module.to(self, *args, **kwargs)

    def _apply(self, fn: Callable[..., Any], recurse: bool = True) -> ModularTransformer:
        super()._apply(fn, recurse)  # every move (.to, .double, .cuda, ...) ends here at the root
        self.cfg.dtype, self.cfg.device = self.embed.W_E.dtype, str(self.embed.W_E.device)
        return self

    # --- sites and resumption

    def sites(self) -> tuple[Site, ...]:
        c = self.cfg
        return tuple(
            site
            for l in range(c.n_layers)
            for site in (
                Site(f"blocks.{l}.attn.hook_z", "head", c.n_heads, axis=2, layer=2 * l, group=f"blocks.{l}.attn.vo"),
                Site(f"blocks.{l}.mlp.hook_post", "neuron", c.d_mlp, axis=2, layer=2 * l + 1, group=f"blocks.{l}.mlp"),
            )
        )

    def resume_hook(self, site: Site) -> str:
        match = _SITE.fullmatch(site.name)
        if match is None or int(match[1]) >= self.cfg.n_layers:
            raise KeyError(f"{site.name!r} is not a candidate site of this transformer")
        return f"blocks.{match[1]}.hook_resid_pre"

    def run_from(
        self, hook: str, value: Float[Tensor, "batch pos d_model"]
    ) -> Float[Tensor, "batch pos d_vocab_out"]:
        """Continue from block l's residual input (``hook`` = ``blocks.{l}.hook_resid_pre``, which fires)."""
        match = _RESUME.fullmatch(hook)
        if match is None or int(match[1]) >= self.cfg.n_layers:
            raise KeyError(f"cannot resume the transformer from {hook!r} (expected blocks.L.hook_resid_pre, "
                           f"L < {self.cfg.n_layers})")
        return self.forward(value, start_at_layer=int(match[1]))

    # --- wiring

    def _group_specs(self) -> dict[str, tuple[int, bool]]:
        """Group name -> (size, permutable), input to output."""
        c = self.cfg
        specs = {"tokens": (c.d_vocab, False), "positions": (c.n_ctx, False), "resid": (c.d_model, True)}
        for l in range(c.n_layers):
            specs[f"blocks.{l}.attn.qk"] = (c.n_heads * c.d_head, True)  # within heads (see wiring)
            specs[f"blocks.{l}.attn.vo"] = (c.n_heads * c.d_head, True)
            specs[f"blocks.{l}.mlp"] = (c.d_mlp, True)
        specs["logits"] = (c.d_vocab_out, False)
        return specs

    @staticmethod
    def _coords_name(group: str) -> str:
        return "coords_" + group.replace(".", "_")

    def wiring(self) -> Wiring:
        """Groups tokens, positions -> resid <-> per block attn.qk, attn.vo, mlp -> logits. The residual group
        lists every dimension indexing the stream (embeddings, Q/K/V inputs, O/MLP in and out, LayerNorm
        scales and shifts, unembedding); qk and vo flatten (head, d_head) row-major. Function-preserving
        permutations: any of resid or an MLP layer; within each head, Q and K dimensions together (qk) and
        V and O dimensions together (vo); whole heads (``tied``: a head's qk and vo blocks move as one)."""
        c = self.cfg
        sites: dict[str, list[PermSite]] = {name: [] for name in self._group_specs()}
        resid = sites["resid"]
        embed, unembed = self.embed.W_E, self.unembed
        resid.append(PermSite(embed, 1))
        wires = [Wire("embed.W_E", embed, reads="tokens", writes="resid", out_dims=(1,), in_dims=(0,))]
        if hasattr(self, "pos_embed"):  # not with rotary embeddings
            resid.append(PermSite(self.pos_embed.W_pos, 1))
            wires.append(Wire("pos_embed.W_pos", self.pos_embed.W_pos, reads="positions", writes="resid",
                              out_dims=(1,), in_dims=(0,)))
        tied = []
        for l, block in enumerate(self.blocks):
            attn, mlp, prefix = block.attn, block.mlp, f"blocks.{l}"
            qk, vo, hidden = f"{prefix}.attn.qk", f"{prefix}.attn.vo", f"{prefix}.mlp"
            resid += [PermSite(attn.W_Q, 1), PermSite(attn.W_K, 1), PermSite(attn.W_V, 1), PermSite(attn.W_O, 2),
                      PermSite(attn.b_O, 0), PermSite(mlp.W_in, 0), PermSite(mlp.W_out, 1), PermSite(mlp.b_out, 0)]
            resid += [PermSite(p, 0) for p in (*block.ln1.parameters(), *block.ln2.parameters())]  # LN w, b
            sites[qk] += [PermSite(attn.W_Q, (0, 2)), PermSite(attn.W_K, (0, 2)),
                          PermSite(attn.b_Q, (0, 1)), PermSite(attn.b_K, (0, 1))]
            sites[vo] += [PermSite(attn.W_V, (0, 2)), PermSite(attn.b_V, (0, 1)), PermSite(attn.W_O, (0, 1))]
            sites[hidden] += [PermSite(mlp.W_in, 1), PermSite(mlp.b_in, 0), PermSite(mlp.W_out, 0)]
            tied.append(TiedBlocks(f"{prefix}.attn.heads", (qk, vo), c.d_head))
            wires += [
                Wire(f"{prefix}.attn.W_Q", attn.W_Q, reads="resid", writes=qk, out_dims=(0, 2), in_dims=(1,),
                     bias=attn.b_Q),
                Wire(f"{prefix}.attn.W_K", attn.W_K, reads="resid", writes=qk, out_dims=(0, 2), in_dims=(1,),
                     bias=attn.b_K),
                Wire(f"{prefix}.attn.W_V", attn.W_V, reads="resid", writes=vo, out_dims=(0, 2), in_dims=(1,),
                     bias=attn.b_V),
                Wire(f"{prefix}.attn.W_O", attn.W_O, reads=vo, writes="resid", out_dims=(2,), in_dims=(0, 1),
                     bias=attn.b_O),
                Wire(f"{prefix}.mlp.W_in", mlp.W_in, reads="resid", writes=hidden, out_dims=(1,), in_dims=(0,),
                     bias=mlp.b_in),
                Wire(f"{prefix}.mlp.W_out", mlp.W_out, reads=hidden, writes="resid", out_dims=(1,), in_dims=(0,),
                     bias=mlp.b_out),
            ]
        if hasattr(self, "ln_final"):
            resid += [PermSite(p, 0) for p in self.ln_final.parameters()]
        resid.append(PermSite(unembed.W_U, 0))
        wires.append(Wire("unembed.W_U", unembed.W_U, reads="resid", writes="logits", out_dims=(1,), in_dims=(0,),
                          bias=unembed.b_U, is_last=True))
        groups = {
            name: NeuronGroup(name, getattr(self, self._coords_name(name)), permutable, tuple(sites[name]),
                              block=c.d_head if name.endswith((".qk", ".vo")) else 0)
            for name, (_, permutable) in self._group_specs().items()
        }
        return Wiring(groups, tuple(wires), tuple(tied))

    # --- edge graph: the residual graph of heads and MLP blocks (ACDC's, with split q/k/v inputs)

    def edge_graph(self) -> EdgeGraph:
        """Groups: ``embed`` (token + position embedding), per layer ``blocks.l.attn`` (one node per head, its
        ``hook_result``) and ``blocks.l.mlp`` (``hook_mlp_out``). Slots: each head's query, key and value input
        (``blocks.l.attn.q|k|v``, TransformerLens's ``hook_q_input`` etc. with ``use_split_qkv_input``), each MLP
        block's input (``hook_mlp_in``), and the read-out's residual (``resid_final``); every earlier group sends
        into every later slot. The attention output bias b_O belongs to no head: always kept."""
        c = self.cfg
        if c.positional_embedding_type != "standard" or c.parallel_attn_mlp or c.original_architecture in (
                "OLMo2ForCausalLM", "Olmo3ForCausalLM") or c.use_normalization_before_and_after:
            raise NotImplementedError("edge graphs support standard-position, sequential pre-norm transformers")
        groups = {"embed": 1}
        stages, bias = [], torch.zeros(c.d_model, dtype=self.embed.W_E.dtype, device=self.embed.W_E.device)

        def slot(name: str, node: str, receivers: int) -> Slot:
            sites = tuple(EdgeSite(f"{sender}->{name}", sender, name, receivers, size)
                          for sender, size in groups.items())
            return Slot(name, node, receivers, sites, ResidualCombiner(receivers, bias[None]))  # (pos=1, d)

        for l, block in enumerate(self.blocks):
            attn, mlp = f"blocks.{l}.attn", f"blocks.{l}.mlp"
            stages.append(Stage(tuple(slot(f"{attn}.{x}", attn, c.n_heads) for x in "qkv"), (attn,)))
            groups[attn] = c.n_heads
            bias = bias + block.attn.b_O
            stages.append(Stage((slot(f"{mlp}.in", mlp, 1),), (mlp,), per_node=True))
            groups[mlp] = 1
        stages.append(Stage((slot("resid_final", OUTPUT, 1),), ()))
        return EdgeGraph(dict(groups), ("embed",), tuple(stages))

    def edge_inputs(self, inputs: Tensor) -> dict[str, Tensor]:
        tokens = inputs.flatten(0, 1)
        embedded = self.hook_embed(self.embed(tokens)) + self.hook_pos_embed(self.pos_embed(tokens))
        return {"embed": embedded.reshape(*inputs.shape[:2], 1, *embedded.shape[1:])}

    @contextmanager
    def _split_heads(self) -> Iterator[None]:
        """TransformerLens's per-head q/k/v inputs and per-head results, for the duration of an edge pass."""
        saved = self.cfg.use_split_qkv_input, self.cfg.use_attn_result
        self.cfg.use_split_qkv_input = self.cfg.use_attn_result = True
        try:
            yield
        finally:
            self.cfg.use_split_qkv_input, self.cfg.use_attn_result = saved

    def edge_stage(self, index: int, composed: dict[str, Tensor]) -> dict[str, Tensor]:
        """Slot inputs are (G, m, receivers, pos, d_model); TransformerLens's split inputs (batch, pos, head,
        d_model)."""
        layer, part = divmod(index, 2)
        if layer == self.cfg.n_layers:
            resid = self._batch(composed["resid_final"][:, :, 0])
            out = self.unembed(self.ln_final(resid) if hasattr(self, "ln_final") else resid)
            return {OUTPUT: out.reshape(*composed["resid_final"].shape[:2], *out.shape[1:])}
        block, prefix = self.blocks[layer], f"blocks.{layer}"
        if part == 1:
            value = composed[f"{prefix}.mlp.in"]
            out = block.apply_mlp(block.ln2(block.hook_mlp_in(self._batch(value[:, :, 0]))))
            return {f"{prefix}.mlp": out.reshape(value.shape)}
        q, k, v = (self._batch(composed[f"{prefix}.attn.{x}"].movedim(2, 3)) for x in "qkv")
        results: list[Tensor] = []
        with self._split_heads(), self.hooks(fwd_hooks=[(f"{prefix}.attn.hook_result",
                                                         lambda result, hook: results.append(result))]):
            block.attn(query_input=block.ln1(block.hook_q_input(q)), key_input=block.ln1(block.hook_k_input(k)),
                       value_input=block.ln1(block.hook_v_input(v)))
        shape = composed[f"{prefix}.attn.q"].shape
        return {f"{prefix}.attn": results[0].reshape(*shape[:2], *results[0].shape[1:]).movedim(3, 2)}

    @staticmethod
    def _batch(value: Tensor) -> Tensor:
        return value.flatten(0, 1)

