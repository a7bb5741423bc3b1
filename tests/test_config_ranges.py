"""Contract: every numeric setting of every registered config (and of the configs nested in them: a task's
training budget, its selection) is range-checked where it is declared, in ``__post_init__``. Parametrised from
the registries; a new numeric field fails ``test_every_numeric_field_declares_its_range`` until its bad and
boundary values are listed below."""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing

import pytest

from modbench.registries import PLUGIN_KINDS

NAN, INF = math.nan, math.inf
ALL_SIZES = ((0, -1), (1,))  # sizes, counts, intervals: integers >= 1
NONNEGATIVE_INT = ((-1,), (0,))  # seeds, warm-up steps
NONNEGATIVE = ((-0.1,), (0.0,))  # coefficients: finite numbers >= 0
FLOOR = ((-0.1, 1.1), (0.0, 1.0))  # a quality floor: an accuracy in [0, 1]
BUDGETS = (((("mnist-5k", 0),), (("", 5),), (("mnist-5k", 1.5),)), ((("mnist-5k", 1),),))  # steps_by_source
ANY_FINITE = ((), (-1.0, 0.0))  # thresholds on scores: any finite number

# (config type, field): (values __post_init__ must refuse, boundary values it must accept)
RANGES: dict[tuple[str, str], tuple[tuple[object, ...], tuple[object, ...]]] = {
    **{(owner, name): NONNEGATIVE for owner in ("LocalCostConfig", "SwapConfig")
       for name in ("lam", "weight_factor", "swap_weight_factor")},
    **{(owner, "layer_separation"): ((0.0, -1.0), (1e-9,)) for owner in ("LocalCostConfig", "SwapConfig")},
    ("LocalCostConfig", "swap_every"): ((-1,), (0, 1)),  # 0: never swap (l1, l1_local)
    ("SwapConfig", "swap_every"): ((0, -1), (1,)),  # l1_swap, bimt: an interval
    **{(owner, "swap_top_k"): ALL_SIZES for owner in ("LocalCostConfig", "SwapConfig")},
    ("ClusterConfig", "lam"): NONNEGATIVE,
    ("ClusterConfig", "k"): ((1, 0), (2,)),
    ("ClusterConfig", "warmup_steps"): NONNEGATIVE_INT,
    ("MLPConfig", "widths"): (((784, 10), (784, 0, 10), (784, True, 10), [784, 10, 10]), ((1, 1, 1),)),
    **{("CNNConfig", name): ALL_SIZES for name in ("in_channels", "channels", "n_classes")},
    ("CNNConfig", "image_size"): ((0, 3), (2,)),  # even: 2x2 pooling
    ("CNNConfig", "kernel"): ((0, 2), (1,)),  # odd: same padding
    ("CNNConfig", "hidden"): (((), (0,), (5, -1)), ((1,),)),
    **{("TransformerConfig", name): ALL_SIZES for name in ("n_layers", "d_model", "n_heads", "d_head", "d_mlp",
                                                           "d_vocab", "d_vocab_out", "n_ctx")},
    **{("TrainConfig", name): ALL_SIZES for name in ("steps", "batch_size", "eval_every")},
    ("TrainConfig", "seed"): NONNEGATIVE_INT,
    ("TrainConfig", "lr"): ((0.0, -1e-3), (1e-12,)),
    ("TrainConfig", "weight_decay"): NONNEGATIVE,
    ("TrainConfig", "betas"): (((0.9, 1.0), (-0.1, 0.9), (0.9,), (NAN, 0.9), (True, 0.9)), ((0.0, 0.0),)),
    ("PairTaskConfig", "pairs"): (((), ((1, 1),), ((-1, 2),), ((1, 2, 3),), ((True, 2),)), (((0, 1),),)),
    **{(owner, "quality_floor"): FLOOR for owner in ("PairTaskConfig", "ClassTaskConfig", "ModularAdditionConfig",
                                                     "WikiTokensConfig")},
    **{(owner, "steps_by_source"): BUDGETS for owner in ("PairTaskConfig", "ClassTaskConfig",
                                                         "ModularAdditionConfig", "WikiTokensConfig")},
    ("ModularAdditionConfig", "p"): ((2,), (3,)),
    ("ModularAdditionConfig", "train_fraction"): ((0.0, 1.0), (1e-9, 1 - 1e-9)),
    ("ModularAdditionConfig", "split_seed"): NONNEGATIVE_INT,
    ("WikiTokensConfig", "vocab_size"): ((1,), (2,)),
    ("WikiTokensConfig", "n_ctx"): ((1,), (2,)),
    ("TopFractionConfig", "fraction"): ((0.0, 1.5), (1.0,)),
    ("TopKConfig", "k"): ALL_SIZES,
    ("ThresholdConfig", "value"): ANY_FINITE,
    ("ECSConfig", "threshold"): ANY_FINITE,  # the class's loss rise tolerated per removal
    ("ECSConfig", "block"): ALL_SIZES,
    ("ECSConfig", "max_images"): ((0,), (1, None)),  # None: every image
    ("OnOffConfig", "k"): ((1, 9), (2, 8)),  # all 2^k cluster subsets are run
    ("OnOffConfig", "max_images"): ALL_SIZES,
    ("OnOffConfig", "max_classes"): ALL_SIZES,
    ("OnOffConfig", "seed"): NONNEGATIVE_INT,
    **{(owner, "max_rows"): ALL_SIZES for owner in ("ActivationPatchingConfig", "AttributionPatchingConfig",
                                                    "ACDCConfig", "EAPConfig", "EAPIGConfig", "EdgePatchingConfig")},
    ("ACDCConfig", "threshold"): ((0.0, -0.1), (1e-9,)),  # tau > 0
    ("EAPIGConfig", "steps"): ((0, 1001), (1, 1000)),
}


def registered_configs() -> dict[str, object]:
    """One instance of every config type of modbench's own registered plugins, and of the configs nested in
    their fields and traits (a task's ``train``, its ``selection_config``), by type name."""
    found: dict[str, object] = {}

    def visit(value: object) -> None:
        if isinstance(value, dict):
            for item in value.values():
                visit(item)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type) \
                and type(value).__module__.startswith("modbench.") and type(value).__name__ not in found:
            found[type(value).__name__] = value
            for field in dataclasses.fields(value):
                visit(getattr(value, field.name))

    for registry in PLUGIN_KINDS.values():
        for key in registry.keys():
            visit(registry.get(key).config)
            visit(registry.get(key).traits)
    return found


CONFIGS = registered_configs()


def _numbers_in(hint: object) -> bool:
    """Does the annotation hold a number (int or float, maybe in a tuple or with None)?"""
    if hint in (int, float):
        return True
    return typing.get_origin(hint) in (tuple, typing.Union, types.UnionType) \
        and any(_numbers_in(arg) for arg in typing.get_args(hint))


def numeric_fields(config: object) -> dict[str, object]:
    hints = typing.get_type_hints(type(config))
    return {f.name: hints[f.name] for f in dataclasses.fields(config) if _numbers_in(hints[f.name])}


def checked(config: object, name: str, value: object) -> None:
    """``config`` with ``name`` set to ``value``, through its ``__post_init__`` alone (no run-time type hooks)."""
    changed = copy.copy(config)
    object.__setattr__(changed, name, value)
    changed.__post_init__()


def test_every_numeric_field_declares_its_range():
    declared = {(owner, name) for owner, config in CONFIGS.items() for name in numeric_fields(config)}
    assert declared - set(RANGES) == set(), "numeric fields with no range listed in RANGES"
    assert set(RANGES) - declared == set(), "RANGES lists fields no registered config has"


@pytest.mark.parametrize(("owner", "name"), sorted(RANGES))
def test_out_of_range_values_are_refused_by_post_init_and_boundaries_accepted(owner, name):
    config = CONFIGS[owner]
    refused, accepted = RANGES[owner, name]
    for value in refused:
        with pytest.raises(ValueError) as info:
            checked(config, name, value)
        assert str(info.value).startswith(f"{name} "), info.value  # the task-file loader names the field by it
    for value in accepted:
        checked(config, name, value)


@pytest.mark.parametrize("owner", sorted(CONFIGS))
def test_non_finite_and_wrongly_typed_numbers_are_refused(owner):
    config = CONFIGS[owner]
    for name, hint in numeric_fields(config).items():
        optional = type(None) in typing.get_args(hint)
        scalar = hint if hint in (int, float) else next((a for a in typing.get_args(hint) if a in (int, float)), None)
        if scalar is None or typing.get_origin(hint) is tuple:
            continue  # tuples: RANGES lists their bad values
        bad = [NAN, INF, -INF, True, "1", *([] if optional else [None]), *([1.5] if scalar is int else [])]
        for value in bad:
            with pytest.raises(ValueError):
                checked(config, name, value)

