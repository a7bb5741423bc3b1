"""WikiText-2 next-token task on tiny self-written ``wiki.*.tokens`` files: loader, word tokenizer, windows,
pairs, perplexity, training through the CLI and ON interventions on next-token predictions."""

from __future__ import annotations

import hashlib
import json
import math
import zipfile

import pytest
import torch
from conftest import TOY_TRAIN
from test_cli import run_cli

from modbench.data import wikitext
from modbench.data.wikitext import EOS, UNK, WordTokenizer, load_wikitext, windows, words
from modbench.discovery.catalog import OnOffConfig
from modbench.discovery.on_off import OnOff
from modbench.errors import UserError
from modbench.experiment import ExperimentSpec, run_experiment
from modbench.models.catalog import TransformerConfig
from modbench.registries import MODELS, TASKS, register_model, register_task
from modbench.tasks.configs import WikiTokensConfig
from modbench.tasks.wiki_tokens_impl import WikiTokensTask

CPU = torch.device("cpu")
VOCAB, N_CTX = 12, 6
TINY_WIKI_MODEL = TransformerConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=16, d_vocab=VOCAB,
                                    d_vocab_out=VOCAB, n_ctx=N_CTX, act_fn="gelu", normalization_type="LN")
TINY_WIKI = WikiTokensConfig(vocab_size=VOCAB, n_ctx=N_CTX, model="tiny_wiki_transformer", quality_floor=0.0,
                             train=TOY_TRAIN.__class__(**{**TOY_TRAIN.__dict__, "lr": 1e-2}))
if "tiny_wiki" not in TASKS:
    register_model("tiny_wiki_transformer", TINY_WIKI_MODEL, "test language model",
                   factory="modbench.models.transformer:ModularTransformer")
    register_task("tiny_wiki", TINY_WIKI, "test wiki task", factory=WikiTokensTask, reads="classes")

# A predictable text: lines cycle through ten words (so a tiny model learns the next word), plus rare words
# and <unk>. Every split repeats it with its own rare word (only in that split).
CYCLE = "the cat sat on a mat , then it ran ."


def text(rare: str, lines: int = 30) -> str:
    body = [f" {CYCLE} {rare} <unk> {CYCLE} " if i % 5 == 0 else f" {CYCLE} {CYCLE} " for i in range(lines)]
    return "\n".join(["", " = Heading = ", *body, ""]) + "\n"


def write_wiki(root, splits=("valid", "test"), monkeypatch=None):  # noqa: ANN001, ANN201
    """``wiki.<split>.tokens`` files under ``root/wikitext-2``, with the checksum table pointed at them."""
    folder = root / wikitext.FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    sums = dict(wikitext.FILE_SHA1)
    for split in splits:
        path = folder / f"wiki.{split}.tokens"
        path.write_text(text(f"only{split}"), encoding="utf-8")
        sums[split] = hashlib.sha1(path.read_bytes()).hexdigest()
    if monkeypatch is not None:
        monkeypatch.setattr(wikitext, "FILE_SHA1", sums)
    return folder


@pytest.fixture()
def wiki_dir(tmp_path, monkeypatch):
    write_wiki(tmp_path / "data", monkeypatch=monkeypatch)
    return tmp_path / "data"


def test_word_vocabulary_is_by_frequency_then_word_and_maps_the_rest_to_unk():
    train = "b a c a b a <unk> <unk> <unk> <unk> d e".split()
    tokenizer = WordTokenizer(train, 4)
    assert tokenizer.vocab == [UNK, "a", "b", "c"]  # <unk> once, first; c beats d and e (tie) by spelling
    assert WordTokenizer(list(reversed(train)), 4).vocab == tokenizer.vocab  # order of the text is irrelevant
    assert tokenizer.encode_words(["a", "d", "zebra", UNK, "c"]).tolist() == [1, 0, 0, 0, 3]
    assert tokenizer.decode(torch.tensor([2, 0])) == ["b", UNK]
    assert len(WordTokenizer(["x", "y"], 100)) == 3  # a small text: fewer words than asked for


def test_lines_end_with_eos_and_windows_predict_every_token_once():
    assert words(["a b", "", " c "]) == ["a", "b", EOS, EOS, "c", EOS]
    ids = torch.arange(20)
    x, y = windows(ids, 6)
    assert x.shape == y.shape == (3, 6)  # 19 targets: three full windows, the tail of one token dropped
    assert torch.equal(x[:, 1:], y[:, :-1]) and torch.equal(x[1:, 0], y[:-1, -1])
    assert y.flatten().tolist() == list(range(1, 19))  # each target once, in order
    with pytest.raises(UserError, match="fewer than one window"):
        windows(torch.arange(5), 6)


def test_valid_stands_in_for_a_missing_train_split_and_says_so(wiki_dir):
    data = TASKS.get("tiny_wiki").build().load(wiki_dir)
    assert data.source == "wikitext-2-valid"
    assert "VALID split" in data.note and "evaluated on test" in data.note and "unigram test perplexity" in data.note
    assert data.x_train.shape[1] == N_CTX and data.x_train.dtype == torch.long
    assert int(data.x_train.max()) < VOCAB and int(data.x_test.max()) < VOCAB


def test_with_a_train_split_the_vocabulary_comes_from_train_only(tmp_path, monkeypatch):
    write_wiki(tmp_path, ("train", "valid", "test"), monkeypatch)
    task = WikiTokensTask(WikiTokensConfig(vocab_size=40, n_ctx=N_CTX))
    data = task.load(tmp_path)
    assert data.source == "wikitext-2" and "train split" in data.note
    lines = load_wikitext(tmp_path).train
    vocab = WordTokenizer(words(lines), 40).vocab
    assert "onlytrain" in vocab and "onlyvalid" not in vocab and "onlytest" not in vocab


def test_short_file_names_are_accepted(tmp_path, monkeypatch):
    folder = write_wiki(tmp_path, monkeypatch=monkeypatch)
    for split in ("valid", "test"):
        (folder / f"wiki.{split}.tokens").rename(folder / f"{split}.txt")
    assert load_wikitext(tmp_path).train is None and len(load_wikitext(tmp_path).test) == 33


def test_an_explicit_folder_without_the_files_is_a_one_line_error(tmp_path):
    with pytest.raises(UserError, match="WikiText-2 not found in .*put wiki.train.tokens") as error:
        TASKS.get("tiny_wiki").build().load(tmp_path)
    assert "\n" not in str(error.value) and "MODBENCH_OFFLINE" in str(error.value)


def test_a_file_with_the_wrong_checksum_is_refused(wiki_dir, monkeypatch):
    monkeypatch.setitem(wikitext.FILE_SHA1, "test", "0" * 40)
    with pytest.raises(UserError, match="wrong SHA-1"):
        load_wikitext(wiki_dir)


def test_download_checks_the_archive_then_each_file(tmp_path, monkeypatch):
    source = write_wiki(tmp_path / "src", ("train", "valid", "test"), monkeypatch)
    archive = tmp_path / "wikitext-2-v1.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(source.iterdir()):
            zipped.write(path, f"wikitext-2/{path.name}")
        zipped.writestr("wikitext-2/../evil.tokens", "x")  # never written: not a member we read
    monkeypatch.setattr(wikitext, "ARCHIVE_SHA256", hashlib.sha256(archive.read_bytes()).hexdigest())
    target = tmp_path / "fresh" / wikitext.FOLDER
    assert wikitext.download_wikitext(target, archive.as_uri())
    assert sorted(p.name for p in target.iterdir()) == [f"wiki.{s}.tokens" for s in ("test", "train", "valid")]
    monkeypatch.setattr(wikitext, "ARCHIVE_SHA256", "0" * 64)
    assert not wikitext.download_wikitext(tmp_path / "other", archive.as_uri())
    assert not wikitext.download_wikitext(tmp_path / "other", (tmp_path / "missing.zip").as_uri())


def test_readout_targets_and_pairs(wiki_dir):
    task = TASKS.get("tiny_wiki").build()
    data = task.load(wiki_dir)
    logits = torch.randn(3, N_CTX, VOCAB)
    assert torch.equal(task.readout(logits)[N_CTX + 2], logits[1, 2])
    assert torch.equal(task.targets(data.y_test[:3]), data.y_test[:3].flatten())
    pairs = task.contrast(data, seed=5)
    assert torch.equal(pairs.clean[:, :-1], pairs.corrupted[:, :-1])
    assert bool((pairs.clean[:, -1] != pairs.corrupted[:, -1]).all())
    assert torch.equal(pairs.clean_labels, data.y_test[:, -1])
    assert torch.equal(pairs.corrupted_labels, pairs.clean_labels)
    assert torch.equal(task.contrast(data, seed=5).corrupted, pairs.corrupted)


def test_the_word_vocabulary_must_fit_the_model_and_a_pretrained_model_brings_its_tokenizer():
    task = TASKS.get("wiki_tokens").build()
    with pytest.raises(UserError, match="d_vocab is 12, smaller than the task's 4096-word"):
        task.for_model(TINY_WIKI_MODEL)
    assert task.for_model(MODELS.get("wiki_transformer").config) is task
    with pytest.raises(UserError, match="MLPConfig is not a language model"):
        task.for_model(MODELS.get("mnist_mlp").config)
    bound = task.for_model(MODELS.get("pythia-70m").config)
    assert bound.config.tokenizer == "EleutherAI/pythia-70m" and bound.config.train == task.config.finetune
    assert bound.config.dataset == "wikitext2-EleutherAI_pythia-70m-ctx64" != task.config.dataset


def test_pair_discoverers_are_refused_before_any_work():
    with pytest.raises(UserError, match="read per class"):
        ExperimentSpec(task="tiny_wiki", method="vanilla", discoverer="activation_patching").resolved()


def test_perplexity_is_exp_of_the_mean_cross_entropy(wiki_dir):
    task = TASKS.get("tiny_wiki").build()
    data = task.load(wiki_dir)
    torch.manual_seed(0)
    model = MODELS.get("tiny_wiki_transformer").build()
    value = task.evaluate(model, data)["test_perplexity"]
    with torch.no_grad():
        ce = torch.nn.functional.cross_entropy(task.readout(model(data.x_test)), task.targets(data.y_test))
    assert value["mean"] == pytest.approx(math.exp(float(ce)), rel=1e-5)
    assert value["ci_low"] <= value["mean"] <= value["ci_high"]


def test_cli_trains_the_task_from_an_explicit_data_dir(wiki_dir, capsys):
    code, out, err = run_cli(["train", "--method", "vanilla", "--task", "tiny_wiki", "--data-dir", str(wiki_dir),
                              "--steps", "5", "--quiet"], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["data_source"] == "wikitext-2-valid" and summary["steps"] == 5 and summary["test_accuracy"] >= 0


def trained_tiny(wiki_dir):  # noqa: ANN001, ANN201
    task = TASKS.get("tiny_wiki").build()
    data = task.load(wiki_dir)
    from modbench.registries import METHODS
    from modbench.training.trainer import train

    torch.manual_seed(0)
    model = MODELS.get("tiny_wiki_transformer").build()
    train(model, METHODS.get("vanilla").build(), task, data, TINY_WIKI.train, CPU, show_progress=False)
    return model.eval(), task, data


def test_on_interventions_on_next_token_predictions_give_a_distribution_of_needs(wiki_dir):
    model, task, data = trained_tiny(wiki_dir)
    result = OnOff(OnOffConfig(k=2, clusters="contiguous")).analyse(model, task, data)
    intact = (task.readout(model(data.x_test)).argmax(-1) == task.targets(data.y_test)).double().mean()
    assert float(intact) > 0.3  # the cycle is learnt: there are correct tokens to explain
    assert result["summary"]["intact_accuracy"] == pytest.approx(float(intact))
    assert sum(result["needs_clusters"]) == pytest.approx(1.0)  # every correct token needs 1..k clusters
    assert len(result["needs_clusters"]) == 2
    assert 0 <= result["summary"]["right_without_clusters"] <= 1
    tiny = OnOff(OnOffConfig(k=2, clusters="contiguous", max_classes=3)).analyse(model, task, data)
    assert len(tiny["classes"]) == 3 and len(tiny["on_accuracy"][0]) == 3  # the 3 most frequent next tokens
    assert tiny["needs_clusters"] == result["needs_clusters"]


def test_run_experiment_records_perplexity_and_the_data_note(wiki_dir):
    spec = ExperimentSpec(task="tiny_wiki", method="vanilla", discoverer="on_off",
                          discoverer_config=OnOffConfig(k=2, clusters="contiguous"))
    record, _ = run_experiment(spec, CPU, wiki_dir, show_progress=False)
    assert "VALID split" in record.provenance["data_note"]
    assert record.metrics["test_perplexity"]["mean"] > 1
    assert sum(record.details["needs_clusters"]) == pytest.approx(1.0)
