"""Pretrained models, offline: a tiny GPT-2 built here goes through the same conversion and loading as the
real weights; without network or cache, ``--model gpt2`` stops with one line."""

from __future__ import annotations

import dataclasses

import huggingface_hub.constants
import pytest
import torch
from test_cli import run_cli
from test_wiki_tokens import write_wiki
from transformer_lens import HookedTransformerConfig
from transformer_lens import loading_from_pretrained as loading

from modbench.errors import UserError
from modbench.methods.catalog import ClusterConfig
from modbench.methods.cluster import ClusterMethod
from modbench.models import pretrained
from modbench.models.catalog import PretrainedConfig
from modbench.models.transformer import ModularTransformer
from modbench.registries import MODELS

VOCAB, N_CTX = 37, 12
# GPT-2's architecture in miniature: LayerNorm, GELU (GPT-2's tanh form), learned positional embeddings.
TINY_GPT2 = HookedTransformerConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=64, d_vocab=VOCAB, n_ctx=N_CTX,
                                    act_fn="gelu_new", normalization_type="LN", eps=1e-5,
                                    positional_embedding_type="standard", original_architecture="GPT2LMHeadModel",
                                    device="cpu")


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    """Never touch the network: offline flags (read by huggingface_hub at import, so patched there too) and an
    empty cache."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))


def tiny_hf_gpt2():  # noqa: ANN201
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=VOCAB, n_positions=N_CTX)
    return GPT2LMHeadModel(config).eval()


def test_a_converted_gpt2_state_dict_loads_unprocessed_and_computes_what_hugging_face_computes():
    hf = tiny_hf_gpt2()
    state = loading.get_pretrained_state_dict("gpt2", TINY_GPT2, hf_model=hf)  # the real path's conversion
    model = pretrained.from_pretrained_weights(TINY_GPT2, state)
    assert isinstance(model, ModularTransformer) and model.cfg.normalization_type == "LN"
    assert torch.equal(model.blocks[0].mlp.W_in, state["blocks.0.mlp.W_in"])  # the released matrix, not folded
    x = torch.randint(0, VOCAB, (3, N_CTX), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(model(x), hf(x).logits, atol=1e-5)
    groups = model.wiring().groups
    assert groups["blocks.1.mlp"].size == 64 and groups["resid"].size == 16
    assert any(site.tensor is model.blocks[0].ln1.w for site in groups["resid"].sites)  # LN scales move too


def test_a_loaded_pretrained_model_fine_tunes_under_the_cluster_regime():
    model = pretrained.from_pretrained_weights(TINY_GPT2, loading.get_pretrained_state_dict(
        "gpt2", TINY_GPT2, hf_model=tiny_hf_gpt2()))
    wires = ("blocks.0.mlp.W_in", "blocks.0.mlp.W_out", "blocks.1.mlp.W_in", "blocks.1.mlp.W_out")
    method = ClusterMethod(ClusterConfig(wires=wires))
    method.setup(model, 10)
    before = method.metrics(model, 0)["clusterability"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for step in range(10):
        loss = sum(method.regularizers(model, step).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert method.metrics(model, 10)["clusterability"] > before


def test_the_registered_factory_fetches_then_loads_through_the_same_function(monkeypatch):
    state = loading.get_pretrained_state_dict("gpt2", TINY_GPT2, hf_model=tiny_hf_gpt2())
    asked = []
    monkeypatch.setattr(loading, "get_pretrained_model_config",
                        lambda name, **kwargs: asked.append((name, kwargs)) or dataclasses.replace(TINY_GPT2))
    monkeypatch.setattr(loading, "get_pretrained_state_dict", lambda name, cfg, **kwargs: state)
    model = MODELS.get("gpt2").build()
    assert asked == [("gpt2", {"device": "cpu", "fold_ln": False})]
    assert torch.equal(model.unembed.W_U, state["unembed.W_U"]) and model.cfg.tokenizer_name is None


@pytest.mark.parametrize("name", ["gpt2", "pythia-70m"])
def test_offline_the_weights_and_the_tokenizer_are_one_line_errors(name):
    config = MODELS.get(name).config
    with pytest.raises(UserError, match=f"could not fetch the pretrained weights of {config.name} ") as error:
        MODELS.get(name).build()
    assert "\n" not in str(error.value)
    with pytest.raises(UserError, match=f"could not fetch the tokenizer of {config.tokenizer} "):
        pretrained.load_tokenizer(config.tokenizer)


def test_an_unknown_pretrained_name_is_a_user_error():
    with pytest.raises(UserError, match="no pretrained model named 'not-a-model'"):
        pretrained.build_pretrained(PretrainedConfig("not-a-model"))


def test_cli_offline_pretrained_run_is_one_line_and_exit_code_2(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    write_wiki(data, monkeypatch=monkeypatch)
    code, out, err = run_cli(["train", "--method", "cluster", "--task", "wiki_tokens", "--model", "gpt2",
                              "--data-dir", str(data), "--quiet"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err
    assert "could not fetch" in lines[0] and "gpt2" in lines[0]
