"""HookedCNN: forward, resumption, permutation invariance, patch_each and wiring."""

from __future__ import annotations

import pytest
import torch
from conftest import loop_patched
from torch import Tensor

from modbench.models.base import Site, permute_group
from modbench.models.catalog import CNNConfig
from modbench.models.cnn import HookedCNN

TINY = CNNConfig(in_channels=2, image_size=6, channels=4, kernel=3, hidden=(5, 5), n_classes=3)
TINY_BIAS = CNNConfig(in_channels=2, image_size=6, channels=4, kernel=3, hidden=(5, 6, 4), n_classes=3,
                      activation="silu", bias=True)
CONFIGS = pytest.mark.parametrize("cfg", [TINY, TINY_BIAS], ids=["relu-nobias", "silu-bias"])


def make(cfg: CNNConfig, seed: int = 0) -> HookedCNN:
    torch.manual_seed(seed)
    return HookedCNN(cfg).to(torch.float64)


def images(cfg: CNNConfig, n: int = 7, seed: int = 1) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    size = cfg.image_size
    return torch.randn(n, cfg.in_channels, size, size, generator=generator, dtype=torch.float64)


@CONFIGS
def test_forward_shape_and_flat_input(cfg: CNNConfig) -> None:
    model, x = make(cfg), images(cfg)
    logits = model(x)
    assert logits.shape == (7, cfg.n_classes)
    torch.testing.assert_close(model(x.flatten(1)), logits, rtol=0, atol=0)
    _, cache = model.run_with_cache(x)
    assert cache["blocks.0.conv.hook_pre"].shape == (7, cfg.channels, cfg.image_size, cfg.image_size)
    assert cache["blocks.0.conv.hook_post"].shape == (7, cfg.channels, cfg.image_size, cfg.image_size)
    for i, width in enumerate(cfg.hidden, start=1):
        assert cache[f"blocks.{i}.mlp.hook_post"].shape == (7, width)
    torch.testing.assert_close(cache["hook_logits"], logits, rtol=0, atol=0)


def test_sites_and_unknown_hook() -> None:
    model = make(TINY)
    assert model.sites() == (
        Site("blocks.0.conv.hook_post", "channel", 4, axis=1, layer=0, group="blocks.0.conv"),
        Site("blocks.1.mlp.hook_post", "neuron", 5, axis=1, layer=1, group="blocks.1.mlp"),
        Site("blocks.2.mlp.hook_post", "neuron", 5, axis=1, layer=2, group="blocks.2.mlp"),
    )
    assert [model.resume_hook(s) for s in model.sites()] == [
        "blocks.0.conv.hook_pre", "blocks.1.mlp.hook_pre", "blocks.2.mlp.hook_pre"]
    for bad in ("blocks.0.mlp.hook_pre", "blocks.1.conv.hook_pre", "blocks.3.mlp.hook_pre", "hook_logits"):
        with pytest.raises(KeyError, match="cannot resume"):
            model.run_from(bad, torch.zeros(1, 5, dtype=torch.float64))


@CONFIGS
def test_run_from_matches_forward(cfg: CNNConfig) -> None:
    model, x = make(cfg), images(cfg)
    logits, cache = model.run_with_cache(x)
    for site in model.sites():
        hook = model.resume_hook(site)
        torch.testing.assert_close(model.run_from(hook, cache[hook]), logits, rtol=0, atol=1e-12)


@CONFIGS
def test_permutations_preserve_function(cfg: CNNConfig) -> None:
    model, x = make(cfg), images(cfg)
    before = model(x)
    params = {name: p.detach().clone() for name, p in model.named_parameters()}
    order = model.output_order.clone()
    wiring = model.wiring()
    assert list(wiring.groups) == model.group_names()
    assert not wiring.groups["input"].permutable
    generator = torch.Generator().manual_seed(3)
    for group in wiring.groups.values():
        if group.permutable:
            perm = torch.randperm(group.size, generator=generator)
            while torch.equal(perm, torch.arange(group.size)):
                perm = torch.randperm(group.size, generator=generator)
            permute_group(group, perm)
    torch.testing.assert_close(model(x), before, rtol=0, atol=1e-12)
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, params[name])}
    assert changed == set(params)
    assert not torch.equal(model.output_order, order)


@CONFIGS
def test_patch_each_matches_loop(cfg: CNNConfig) -> None:
    model = make(cfg)
    clean_x, corrupt_x = images(cfg, n=3, seed=1), images(cfg, n=3, seed=2)
    _, clean = model.run_with_cache(clean_x)
    _, corrupt = model.run_with_cache(corrupt_x)
    for site in model.sites():
        got = model.patch_each(site, clean[site.name], {h: corrupt[h] for h in model.patch_cache_hooks(site)})
        assert got.shape == (3, site.size, cfg.n_classes)
        for p in range(3):
            for c in range(site.size):
                want = loop_patched(model, site, clean[site.name], corrupt_x, p, c)
                torch.testing.assert_close(got[p, c], want, rtol=0, atol=1e-12)


@CONFIGS
def test_wire_matrices(cfg: CNNConfig) -> None:
    model = make(cfg)
    wires = {w.name: w for w in model.wiring().wires}
    conv = wires["blocks.0.conv.conv2d"]
    assert (conv.reads, conv.writes) == ("input", "blocks.0.conv")
    torch.testing.assert_close(conv.matrix(), model.blocks[0].conv.conv2d.weight.abs().sum((2, 3)))
    assert conv.matrix().shape == (cfg.channels, cfg.in_channels)
    fc1 = wires["blocks.1.mlp.linear"]
    assert (fc1.reads, fc1.writes) == ("blocks.0.conv", "blocks.1.mlp")
    weight = model.blocks[1].mlp.linear.weight.abs().view(cfg.hidden[0], cfg.channels, -1).sum(-1)
    assert fc1.matrix().shape == (cfg.hidden[0], cfg.channels)
    torch.testing.assert_close(fc1.matrix(), weight)
    assert [w.is_last for w in wires.values()] == [False] * (len(wires) - 1) + [True]
    assert list(wires)[-1] == "unembed" and wires["unembed"].writes == "logits"
    groups = model.wiring().groups
    for wire in wires.values():
        assert wire.matrix().shape == (groups[wire.writes].size, groups[wire.reads].size)
