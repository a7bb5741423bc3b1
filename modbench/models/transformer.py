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
from collections.abc import Callable
from typing import Any

from jaxtyping import Float
from torch import Tensor, nn
from transformer_lens import HookedTransformer, HookedTransformerConfig

from modbench.models.base import ModelAdapter, NeuronGroup, PermSite, Site, TiedBlocks, Wire, Wiring
from modbench.models.catalog import TransformerConfig
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
