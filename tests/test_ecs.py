"""Effective circuit size: the fast pruning equals the authors' sequential procedure mask for mask."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from modbench.discovery import ecs_fast as ecs
from modbench.discovery import ecs_tails
from modbench.discovery.catalog import ECSConfig
from modbench.discovery.ecs import EffectiveCircuitSize, ecs_reference, linear_wires
from modbench.discovery.ecs_exact import ExactLoss
from modbench.discovery.ecs_fast import ecs_fast
from modbench.models.base import permute_group
from modbench.models.catalog import CNNConfig, MLPConfig
from modbench.models.cnn import HookedCNN
from modbench.models.mlp import HookedMLP

TINY = MLPConfig(widths=(12, 7, 6, 4), activation="relu", bias=False)
N_CLASSES = 4


def mlp(cfg: MLPConfig = TINY, seed: int = 0) -> HookedMLP:
    torch.manual_seed(seed)
    return HookedMLP(cfg).to(torch.float64)


def images(n: int, d: int, seed: int = 1) -> Tensor:
    return torch.rand(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def linear_weights(model: HookedMLP) -> list[nn.Parameter]:
    return [block.mlp.linear.weight for block in model.blocks] + [model.unembed.weight]


def snapshot(model: nn.Module) -> dict[str, Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def assert_same_masks(model: nn.Module, x: Tensor, layers: list, threshold: float = 0.0,
                      block: int = 256) -> list[float]:
    """fast == reference for every class, the model untouched; returns each class's share of kept weights."""
    before = snapshot(model)
    kept = []
    for label in range(N_CLASSES):
        rows = x[label::N_CLASSES]  # a few images per class
        reference = ecs_reference(model, rows, label, layers, threshold)
        fast = ecs_fast(model, rows, label, layers, threshold, block=block)
        assert list(fast) == list(reference)
        for name in reference:
            assert fast[name].dtype == torch.bool and fast[name].shape == reference[name].shape
            assert torch.equal(fast[name], reference[name]), (label, name)
        kept.append(sum(int(mask.sum()) for mask in fast.values()) / sum(layer.numel() for layer in layers))
    after = snapshot(model)
    assert all(torch.equal(before[name], after[name]) for name in before)
    return kept


@pytest.mark.parametrize("threshold", [0.0, 0.003])
@pytest.mark.parametrize("block", [256, 3])
def test_fast_equals_reference_on_a_relu_mlp(threshold: float, block: int) -> None:
    model = mlp()
    kept = assert_same_masks(model, images(24, 12), linear_weights(model), threshold, block)
    assert 0 < max(kept) < 1  # decisions both ways


@pytest.mark.parametrize("band", [None, 1e8, 1e15], ids=["default", "wide", "everything"])
def test_near_ties_null_weights_and_float32_follow_the_reference(band: float | None, monkeypatch) -> None:
    """Unused inputs and zero weights (decided from the state's loss), and a widened undecidable band, so
    that the exact paths (the reference's own arithmetic on the exact state) decide many or all weights."""
    if band is not None:
        monkeypatch.setattr(ecs, "TOL_ULPS", band)
    for dtype in (torch.float64, torch.float32):
        model = mlp().to(dtype)
        with torch.no_grad():
            model.blocks[1].mlp.linear.weight[:, ::3] = 0
        x = images(24, 12).to(dtype)
        x[:, :4] = 0
        kept = assert_same_masks(model, x, linear_weights(model))
        assert 0 < max(kept) < 1
    stats: dict = {}
    ecs.ecs_fast(model, x[2::4], 2, linear_weights(model), stats=stats)
    assert stats["null"] >= 4 * 7 + 2 * 6 and stats["null"] + stats["effective"] == 150
    if band == 1e15:
        assert stats["exact_forwards"] >= stats["effective"]


@pytest.mark.parametrize("check", [None, "_stacks", "_chunks"], ids=["batched", "full-product", "rest-per-state"])
def test_batched_near_ties_and_their_fallbacks_follow_the_reference(check: str | None, monkeypatch) -> None:
    """Every candidate too close to call, so the batched exact losses decide them all; also with the stacked
    product, or the rest run on a batch of moved images, failing its bit-for-bit check (the fallbacks)."""
    monkeypatch.setattr(ecs, "TOL_ULPS", 1e15)
    if check is not None:
        monkeypatch.setattr(ExactLoss, check, lambda self, size: False)
    for dtype in (torch.float64, torch.float32):
        model = mlp(seed=3).to(dtype)
        assert_same_masks(model, images(24, 12, seed=4).to(dtype), linear_weights(model), threshold=0.002)
    stats: dict = {}
    ecs.ecs_fast(model, images(6, 12, seed=4).float(), 1, linear_weights(model), stats=stats)
    assert stats["exact_forwards"] >= stats["effective"] and stats["exact_from_layer"] == 3
    if check == "_stacks":  # (whether a check passes otherwise depends on the BLAS)
        assert stats["exact_stacked"] == 0
    if check == "_chunks":
        assert stats["exact_rows"] == 0


def test_near_ties_of_any_module_follow_the_reference(monkeypatch) -> None:
    """No modbench layout: every near-tie by the full forward, the weights set in place."""
    monkeypatch.setattr(ecs, "TOL_ULPS", 1e15)
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(8, 5), nn.Tanh(), nn.Linear(5, 4)).to(torch.float64)
    assert_same_masks(model, images(16, 8, seed=7), [model[0].weight, model[2].weight])


def test_overflow_safe_estimates_follow_the_reference(monkeypatch) -> None:
    """The estimates' CE shifted by the largest logit, as where exp could overflow."""
    monkeypatch.setattr(ecs_tails, "EXP_LIMIT", -float("inf"))
    model = mlp(seed=5)
    assert_same_masks(model, images(24, 12, seed=8), linear_weights(model))


def test_fast_equals_reference_with_permuted_outputs() -> None:
    model = mlp(seed=2)
    permute_group(model.wiring().groups["logits"], torch.tensor([2, 0, 3, 1]))
    assert not torch.equal(model.output_order, torch.arange(N_CLASSES))
    assert_same_masks(model, images(24, 12, seed=3), linear_weights(model))


@pytest.mark.parametrize("cfg", [MLPConfig(widths=(10, 6, 5, 5, 3 + 1), activation="relu", bias=True),
                                 MLPConfig(widths=(10, 6, 5, 4), activation="silu", bias=True)],
                         ids=["three-hidden-bias", "silu-bias"])
def test_fast_equals_reference_on_other_mlps(cfg: MLPConfig) -> None:
    model = mlp(cfg, seed=4)
    assert_same_masks(model, images(20, 10, seed=5), linear_weights(model))


def test_fast_equals_reference_on_any_module() -> None:
    """A plain nn.Sequential has none of the modbench layout: the generic hook-based path."""
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(8, 5), nn.Tanh(), nn.Linear(5, 4)).to(torch.float64)
    assert_same_masks(model, images(16, 8, seed=7), [model[0].weight, model[2].weight])


def test_fast_equals_reference_on_the_linear_layers_of_a_cnn() -> None:
    torch.manual_seed(8)
    model = HookedCNN(CNNConfig(in_channels=1, image_size=4, channels=3, kernel=3, hidden=(5,), n_classes=4))
    model = model.to(torch.float64)
    layers = [model.blocks[1].mlp.linear.weight, model.unembed.weight]
    assert_same_masks(model, torch.randn(16, 1, 4, 4, dtype=torch.float64), layers)
    assert linear_wires(model) == [("blocks.1.mlp.linear", "blocks.1.mlp.linear.weight"),
                                   ("unembed", "unembed.weight")]  # the conv kernel is left out


def all_needed_model() -> HookedMLP:
    """Positive inputs and hidden weights; the read-out favours class 0 with positive weights and class 1
    with negative ones: every removal lowers the class-0 logit or raises the class-1 logit."""
    model = mlp(MLPConfig(widths=(3, 4, 4, 2), activation="relu", bias=False))
    generator = torch.Generator().manual_seed(9)
    with torch.no_grad():
        for linear in model.linears():
            linear.weight.copy_(0.1 + 0.2 * torch.rand(linear.weight.shape, generator=generator, dtype=torch.float64))
        model.unembed.weight[1].neg_()
    return model


def test_ecs_is_one_when_every_weight_is_needed_and_drops_with_an_unused_input() -> None:
    model = all_needed_model()
    x = 0.5 + images(6, 3, seed=10)
    result = EffectiveCircuitSize(ECSConfig()).per_class(model, x, torch.zeros(6, dtype=torch.long), n_classes=1)
    assert result["ecs_per_class"] == [1.0] and result["ecs_mean"] == 1.0
    assert result["kept_per_wire"] == {"blocks.0.mlp.linear": [1.0], "blocks.1.mlp.linear": [1.0], "unembed": [1.0]}
    x[:, 1] = 0  # input 1 is never used: the 4 weights reading it are not needed
    reference = ecs_reference(model, x, 0, linear_weights(model))
    result = EffectiveCircuitSize(ECSConfig()).per_class(model, x, torch.zeros(6, dtype=torch.long), n_classes=1)
    assert result["kept_per_wire"]["blocks.0.mlp.linear"] == [8 / 12]
    assert result["ecs_per_class"] == [(12 + 16 + 8 - 4) / 36]
    assert int(reference["blocks.0.mlp.linear.weight"].sum()) == 8


def test_analyse_reports_per_class_and_per_wire() -> None:
    model = mlp()
    x, y = images(30, 12, seed=11), torch.arange(30) % N_CLASSES
    result = EffectiveCircuitSize(ECSConfig(max_images=4)).per_class(model, x, y, N_CLASSES)
    assert set(result) == {"ecs_per_class", "ecs_mean", "kept_per_wire"}
    assert len(result["ecs_per_class"]) == N_CLASSES
    assert result["ecs_mean"] == pytest.approx(sum(result["ecs_per_class"]) / N_CLASSES)
    assert list(result["kept_per_wire"]) == ["blocks.0.mlp.linear", "blocks.1.mlp.linear", "unembed"]
    layers = linear_weights(model)
    for c in range(N_CLASSES):
        masks = ecs_reference(model, x[y == c][:4], c, layers)
        kept = sum(int(mask.sum()) for mask in masks.values()) / sum(layer.numel() for layer in layers)
        assert result["ecs_per_class"][c] == pytest.approx(kept)
        unembed = masks["unembed.weight"]
        assert result["kept_per_wire"]["unembed"][c] == int(unembed.sum()) / unembed.numel()
    with pytest.raises(ValueError, match="class 4 has no test images"):
        EffectiveCircuitSize(ECSConfig()).per_class(model, x, y, N_CLASSES + 1)


def test_config_validation_and_bad_layers() -> None:
    for bad in ({"block": 0}, {"max_images": 0}, {"threshold": float("nan")}, {"threshold": float("inf")}):
        with pytest.raises(ValueError):
            ECSConfig(**bad)
    model, other = mlp(), mlp(seed=1)
    with pytest.raises(ValueError, match="parameter of the model"):
        ecs_fast(model, images(4, 12), 0, [other.unembed.weight])
