"""ModularTransformer: forward, resumption, permutation invariance, patch_each and wiring."""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import loop_patched
from torch import Tensor
from transformer_lens import HookedTransformer

from modbench.models.base import ModelAdapter, Site, permute_group
from modbench.models.catalog import TransformerConfig
from modbench.models.transformer import ModularTransformer

# distinct sizes, so that a wrong tensor dimension cannot go unnoticed
TINY = TransformerConfig(n_layers=2, d_model=6, n_heads=2, d_head=3, d_mlp=10, d_vocab=7, d_vocab_out=5, n_ctx=4)
TINY_LN = TransformerConfig(n_layers=2, d_model=6, n_heads=3, d_head=2, d_mlp=9, d_vocab=7, d_vocab_out=5, n_ctx=4,
                            act_fn="gelu", normalization_type="LN")
TINY_LNPRE = TransformerConfig(n_layers=1, d_model=6, n_heads=2, d_head=3, d_mlp=8, d_vocab=5, d_vocab_out=5,
                               n_ctx=3, act_fn="silu", normalization_type="LNPre")
CONFIGS = pytest.mark.parametrize("cfg", [TINY, TINY_LN, TINY_LNPRE], ids=["relu", "gelu-LN", "silu-LNPre"])


def make(cfg: TransformerConfig, seed: int = 0) -> ModularTransformer:
    torch.manual_seed(seed)
    model = ModularTransformer(cfg).double()
    with torch.no_grad():  # TL inits biases at 0 and LayerNorm at 1: randomise all, so every one matters
        for param in model.parameters():
            param.normal_(0, 0.5)
    return model


def tokens(cfg: TransformerConfig, n: int = 4, seed: int = 1) -> Tensor:
    return torch.randint(0, cfg.d_vocab, (n, cfg.n_ctx), generator=torch.Generator().manual_seed(seed))


def test_class_and_construction() -> None:
    mro = ModularTransformer.__mro__
    assert mro.index(HookedTransformer) < mro.index(ModelAdapter)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = ModularTransformer(TINY)
    assert not [w for w in caught if "deprecated" in str(w.message)]
    assert model.cfg.d_vocab_out == 5 and model.cfg.init_weights and model.cfg.n_heads == TINY.n_heads
    assert not any(k.startswith("coords_") for k in model.state_dict())
    with pytest.raises(ValueError, match="act_fn"):
        ModularTransformer(TransformerConfig(act_fn="tanh"))


def test_dtype_moves_keep_cfg_in_step(capsys: pytest.CaptureFixture[str]) -> None:
    model = ModularTransformer(TINY_LN)
    assert model.double().cfg.dtype == torch.float64
    assert model.to("cpu", torch.float32).cfg.dtype == torch.float32
    assert model.to(dtype=torch.float64).coords_resid.dtype == torch.float64
    assert model.cfg.device == "cpu" and capsys.readouterr().out == ""


@CONFIGS
def test_forward_and_sites(cfg: TransformerConfig) -> None:
    model, x = make(cfg), tokens(cfg)
    logits, cache = model.run_with_cache(x)
    assert logits.shape == (4, cfg.n_ctx, cfg.d_vocab_out) and logits.dtype == torch.float64
    sites = model.sites()
    assert [s.name for s in sites] == [f"blocks.{l}.{h}" for l in range(cfg.n_layers)
                                       for h in ("attn.hook_z", "mlp.hook_post")]
    assert [s.layer for s in sites] == list(range(2 * cfg.n_layers))
    groups = model.wiring().groups
    for site in sites:
        assert cache[site.name].shape[site.axis] == site.size
        assert groups[site.group].size % site.size == 0
    assert sites[0] == Site("blocks.0.attn.hook_z", "head", cfg.n_heads, axis=2, layer=0, group="blocks.0.attn.vo")


def test_unknown_hooks() -> None:
    model = make(TINY)
    for bad in ("blocks.2.hook_resid_pre", "blocks.0.hook_resid_mid", "hook_embed", "blocks.0.mlp.hook_pre"):
        with pytest.raises(KeyError, match="cannot resume"):
            model.run_from(bad, torch.zeros(1, TINY.n_ctx, TINY.d_model, dtype=torch.float64))
    with pytest.raises(KeyError, match="not a candidate site"):
        model.resume_hook(Site("blocks.2.mlp.hook_post", "neuron", 10, axis=2, layer=5))


@CONFIGS
def test_run_from_matches_forward(cfg: TransformerConfig) -> None:
    model, x = make(cfg), tokens(cfg)
    logits, cache = model.run_with_cache(x)
    for site in model.sites():
        hook = model.resume_hook(site)
        assert hook == f"blocks.{site.layer // 2}.hook_resid_pre"
        torch.testing.assert_close(model.run_from(hook, cache[hook]), logits, rtol=0, atol=1e-12)


def allowed_permutation(group, generator: torch.Generator) -> Tensor:
    """A random non-identity permutation the group allows (within its blocks, if any)."""
    block = group.block or group.size
    while True:
        perm = torch.cat([torch.randperm(block, generator=generator) + start for start in range(0, group.size, block)])
        if not torch.equal(perm, torch.arange(group.size)):
            return perm


@CONFIGS
def test_permutations_preserve_function(cfg: TransformerConfig) -> None:
    model, x = make(cfg), tokens(cfg)
    before = model(x)
    params = {name: p.detach().clone() for name, p in model.named_parameters()}
    wiring = model.wiring()
    permutable = [name for name, g in wiring.groups.items() if g.permutable]
    assert permutable == ["resid", *[f"blocks.{l}.{g}" for l in range(cfg.n_layers) for g in ("attn.qk", "attn.vo", "mlp")]]
    generator = torch.Generator().manual_seed(3)
    for name in permutable:
        permute_group(wiring.groups[name], allowed_permutation(wiring.groups[name], generator))
    torch.testing.assert_close(model(x), before, rtol=0, atol=1e-10)
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, params[name])}
    # only the unembedding bias (logits) indexes none of the groups
    assert changed == {name for name in params if not name.endswith("b_U")}


@CONFIGS
def test_patch_each_matches_loop(cfg: TransformerConfig) -> None:
    model = make(cfg)
    clean_x, corrupt_x = tokens(cfg, n=3, seed=1), tokens(cfg, n=3, seed=2)
    _, clean = model.run_with_cache(clean_x)
    _, corrupt = model.run_with_cache(corrupt_x)
    for site in model.sites():
        got = model.patch_each(site, clean[site.name], {h: corrupt[h] for h in model.patch_cache_hooks(site)})
        assert got.shape == (3, site.size, cfg.n_ctx, cfg.d_vocab_out)
        for p in range(3):
            for c in range(site.size):
                want = loop_patched(model, site, clean[site.name], corrupt_x, p, c)
                torch.testing.assert_close(got[p, c], want, rtol=0, atol=1e-12)


@CONFIGS
def test_wire_matrices(cfg: TransformerConfig) -> None:
    model = make(cfg)
    wiring = model.wiring()
    wires = {w.name: w for w in wiring.wires}
    for wire in wires.values():
        assert wire.matrix().shape == (wiring.groups[wire.writes].size, wiring.groups[wire.reads].size)
        if wire.bias is not None:
            assert wire.bias.numel() == wiring.groups[wire.writes].size
    assert [w.is_last for w in wires.values()] == [False] * (len(wires) - 1) + [True]
    attn, mlp = model.blocks[0].attn, model.blocks[0].mlp
    # W_Q (head, d_model, d_head): row h * d_head + j of the matrix is head h's query dimension j
    torch.testing.assert_close(wires["blocks.0.attn.W_Q"].matrix(), attn.W_Q.abs().permute(0, 2, 1).flatten(0, 1))
    torch.testing.assert_close(wires["blocks.0.attn.W_O"].matrix(), attn.W_O.abs().flatten(0, 1).T)
    torch.testing.assert_close(wires["blocks.0.mlp.W_in"].matrix(), mlp.W_in.abs().T)
    torch.testing.assert_close(wires["unembed.W_U"].matrix(), model.unembed.W_U.abs().T)
    assert (wires["embed.W_E"].reads, wires["pos_embed.W_pos"].reads) == ("tokens", "positions")
    for name in (f"blocks.{l}.{kind}" for l in range(cfg.n_layers) for kind in ("attn.qk", "attn.vo", "mlp")):
        writers, readers = wiring.touching(name)
        assert len(writers) == (2 if name.endswith("qk") else 1) and len(readers) == (0 if name.endswith("qk") else 1)
    assert wiring.groups["resid"].coords is model.coords_resid
