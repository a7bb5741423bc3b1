"""Task files (the top-level tasks/ folder): the built-in tasks are exactly the declarations they were (the same
config types, values and so hashes and checkpoint names), a malformed file is one line naming the file and the
field, and a newcomer's task is one file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from modbench.errors import UserError
from modbench.provenance import config_hash
from modbench.registries import TASK_KINDS, TASKS, register_task_kind
from modbench.tasks.declarations import read_task_file, register_task_file

ROOT = Path(__file__).resolve().parent.parent
# Measured on the Python declarations these files replaced (commit 361566c): cached models and result rows
# elsewhere are named by these, so a task file must reproduce them exactly.
TASK_CONFIGS = {
    "cifar10_per_class": ("ClassTaskConfig", "93b8e56faba25f31", "modbench.tasks.image_classes:ImageClassTask"),
    "circle_detection": ("PairTaskConfig", "3b114bc3a684696f", "modbench.tasks.image_pairs:ImagePairTask"),
    "line_detection": ("PairTaskConfig", "bd1bd98b8d2f2d30", "modbench.tasks.image_pairs:ImagePairTask"),
    "mnist_per_class": ("ClassTaskConfig", "912c73bc4feb31d3", "modbench.tasks.image_classes:ImageClassTask"),
    "modular_addition": ("ModularAdditionConfig", "f28048dd849acb5f",
                         "modbench.tasks.modular_addition_impl:ModularAdditionTask"),
    "wiki_tokens": ("WikiTokensConfig", "32f16d6d22e8ab1d", "modbench.tasks.wiki_tokens_impl:WikiTokensTask"),
}
SOURCES = {"circle_detection": "mnist-5k", "line_detection": "mnist", "mnist_per_class": "mnist-5k",
           "cifar10_per_class": "cifar10", "modular_addition": "modadd-p113-train0.4-split0",
           "wiki_tokens": "wikitext-2-valid"}
CHECKPOINTS = {  # (task, method): the checkpoint name on the data source above
    ("circle_detection", "vanilla"): "vanilla-mnist_mlp-mnist-5k-e50f5eb7cf679415",
    ("circle_detection", "bimt"): "bimt-mnist_mlp-mnist-5k-5edaede055dde834",
    ("circle_detection", "cluster"): "cluster-mnist_mlp-mnist-5k-44d5f52d82c81f10",
    ("line_detection", "vanilla"): "vanilla-mnist_mlp-mnist-f4c676dcba90717a",
    ("line_detection", "bimt"): "bimt-mnist_mlp-mnist-a483925071075a9a",
    ("line_detection", "cluster"): "cluster-mnist_mlp-mnist-a17c981587331dc5",
    ("mnist_per_class", "vanilla"): "vanilla-mnist_mlp_relu-mnist-5k-ecc11603a6e01fab",
    ("mnist_per_class", "bimt"): "bimt-mnist_mlp_relu-mnist-5k-bc5b5c2500ccf071",
    ("mnist_per_class", "cluster"): "cluster-mnist_mlp_relu-mnist-5k-c8560774c7aae5ac",
    ("cifar10_per_class", "vanilla"): "vanilla-cifar_cnn-cifar10-1c245c7ad3f9ed62",
    ("cifar10_per_class", "bimt"): "bimt-cifar_cnn-cifar10-dae01d4b74c5ba47",
    ("cifar10_per_class", "cluster"): "cluster-cifar_cnn-cifar10-f7cd52b13e280d87",
    ("modular_addition", "vanilla"): "vanilla-modadd_transformer-modadd-p113-train0.4-split0-197a0085bb957be6",
    ("modular_addition", "bimt"): "bimt-modadd_transformer-modadd-p113-train0.4-split0-692839738fa6647b",
    ("modular_addition", "cluster"): "cluster-modadd_transformer-modadd-p113-train0.4-split0-486ae2486e9322dd",
    ("wiki_tokens", "vanilla"): "vanilla-wiki_transformer-wikitext-2-valid-23c26078a7477218",
    ("wiki_tokens", "bimt"): "bimt-wiki_transformer-wikitext-2-valid-19da4fd6e7ef5707",
    ("wiki_tokens", "cluster"): "cluster-wiki_transformer-wikitext-2-valid-76286ecc332fe7fc",
}
RECORD_HASHES = {  # config_hash of the record of bimt's default run (default discoverer and selection)
    "circle_detection": "835f95317fbff159", "line_detection": "9344f4cdbe16d285", "mnist_per_class": "925a4272b03d1779",
    "cifar10_per_class": "303f8e2fbea3f34a", "modular_addition": "c60834aca95b2a0d", "wiki_tokens": "91f0dffe9fec9ae4",
}


def test_every_file_in_tasks_is_a_registered_task():
    files = {path.stem for path in (ROOT / "tasks").glob("*.toml")}
    assert files == set(TASK_CONFIGS) and files <= set(TASKS.keys())


@pytest.mark.parametrize("task", sorted(TASK_CONFIGS))
def test_builtin_task_configs_keep_their_types_values_and_hashes(task):
    spec = TASKS.get(task)
    type_name, digest, factory = TASK_CONFIGS[task]
    assert (type(spec.config).__name__, config_hash(spec.config), spec.factory) == (type_name, digest, factory)
    assert spec.traits.get("reads") == ("classes" if task == "wiki_tokens" else None)


@pytest.mark.parametrize(("task", "method"), sorted(CHECKPOINTS))
def test_checkpoint_names_and_record_hashes_are_unchanged(task, method):
    from modbench.experiment import ExperimentSpec, record_identity

    identity = record_identity(ExperimentSpec(task, method).resolved(), SOURCES[task], TASKS.get(task).config)
    assert identity.training.checkpoint_name == CHECKPOINTS[task, method]
    if method == "bimt":
        assert identity.config_hash == RECORD_HASHES[task]


def test_a_task_file_names_its_published_reference():
    from modbench.results.published import nainani_table3, published_citation, published_rows

    for task in ("circle_detection", "line_detection"):
        assert published_rows(task).equals(nainani_table3(task)) and len(published_rows(task)) == 5
        assert published_citation(task) == "Nainani 2024, arXiv:2401.03646, Table 3"
    assert published_rows("mnist_per_class").empty and published_citation("mnist_per_class").startswith("Golechha")


GOOD = 'kind = "image_pairs"\nsummary = "digits 1 <- 7"\n\n[config]\npairs = [[1, 7]]\n'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD + "[config.train]\nsteps = 0", "config.train.steps must be an integer >= 1, got 0"),
        (GOOD + "[config.train]\nlr = 0.0", "config.train.lr must be a finite number > 0"),
        (GOOD + "[config.train]\nlr = nan", "config.train.lr must be a finite number, got nan"),
        (GOOD + '[config.train]\nlr = "fast"', "config.train.lr must be a finite number, got 'fast'"),
        (GOOD + "[config.train]\nbetas = [0.9, 1.0]", "config.train.betas must be two numbers in [0, 1)"),
        (GOOD + "[config.train]\nbetas = [0.9]", "config.train.betas must be a list of 2 values"),
        (GOOD + "[config.train]\nstepz = 10", "config.train: unknown field 'stepz'; did you mean 'steps'?"),
        (GOOD.replace("[config]", "[config]\nquality_floor = 1.5"), "config.quality_floor must be a number in [0, 1]"),
        (GOOD.replace("[config]", "[config]\nsteps_by_source = { mnist-5k = 0 }"),
         "config.steps_by_source must map data sources to steps >= 1"),
        (GOOD.replace("[[1, 7]]", "[[1, 1]]"), "config.pairs must be (clean, corrupted) rules of two different"),
        (GOOD.replace("[[1, 7]]", "[[1, true]]"), "config.pairs[0][1] must be an integer, got True"),
        (GOOD.replace("pairs = ", "pairz = "), "config: unknown field 'pairz'; did you mean 'pairs'?"),
        (GOOD.replace("pairs = [[1, 7]]", 'dataset = "mnist"'), "config: missing field 'pairs'"),
        (GOOD.replace("[config]", '[config]\nmodel = "mnist_mpl"'),
         "config.model: unknown model 'mnist_mpl'; did you mean 'mnist_mlp'?"),
        (GOOD.replace("[config]", '[config]\ndiscoverer = "activation_patchin"'),
         "config.discoverer: unknown discoverer 'activation_patchin'"),
        (GOOD.replace("[config]", '[config]\nmetric = "logit_diff"'), "config.metric: unknown metric 'logit_diff'"),
        (GOOD.replace("image_pairs", "image_pair"), "kind: unknown task kind 'image_pair'; did you mean 'image_pairs'?"),
        (GOOD.replace('kind = "image_pairs"\n', ""), "missing key 'kind'"),
        (GOOD.replace('"digits 1 <- 7"', "3"), "summary must be a non-empty string, got 3"),
        (GOOD + "[confg]\n", "unknown key 'confg'; did you mean 'config'?"),
        (GOOD.replace("[config]\n", "config = 3\n").replace("pairs = [[1, 7]]\n", ""), "config must be a table"),
        (GOOD + '[published]\ncitation = "me"\ntable = "mine.csv"', "published.table 'mine.csv' is not in"),
        (GOOD + "[published]\ncitation = ''", "published.citation must be a non-empty string"),
        ('kind = "modular_addition"\nsummary = "x"\n[config]\nsplit_seed = -1', "config.split_seed must be an integer >= 0"),
        ('kind = "modular_addition"\nsummary = "x"\n[config]\ntrain_fraction = 1', "config.train_fraction must be a "
                                                                                    "number in (0, 1)"),
        ('kind = "modular_addition"\nsummary = "x"\n[config.selection_config]\nfraction = 0',
         "config.selection_config.fraction must be a number in (0, 1]"),
        ('kind = "wiki_tokens"\nsummary = "x"\n[config.finetune]\neval_every = 0', "config.finetune.eval_every must be"),
        ('kind = "image_pairs"\nsummary = "x\n', "not valid TOML"),
    ],
)
def test_a_malformed_task_file_is_one_line_naming_the_file_and_the_field(text, expected, tmp_path):
    path = tmp_path / "newcomer.toml"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        read_task_file(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and expected in message and "\n" not in message, message


def test_a_task_file_name_must_be_a_task_name(tmp_path):
    path = tmp_path / "My Task.toml"
    path.write_text(GOOD)
    with pytest.raises(UserError, match="file name: a task's name"):
        read_task_file(path)


def test_a_good_file_gives_the_kind_s_config_factory_and_traits(tmp_path):
    path = tmp_path / "ones_and_sevens.toml"
    path.write_text(GOOD + '[config.train]\nlr = 1\n[published]\ncitation = "nobody yet"\n')
    spec = read_task_file(path)
    assert spec.key == "ones_and_sevens" and spec.summary == "digits 1 <- 7"
    assert spec.config.pairs == ((1, 7),) and spec.config.train.lr == 1.0 and isinstance(spec.config.train.lr, float)
    assert spec.factory == TASK_KINDS.get("image_pairs").factory and spec.traits["published"].citation == "nobody yet"


def test_a_task_kind_registered_twice_is_rejected():
    with pytest.raises(UserError, match="task kind 'image_pairs' is already registered"):
        register_task_kind("image_pairs", "x:y")(type("Again", (), {}))


def cli(args: list[str], tmp_path: Path, plugins: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MODBENCH_PLUGINS": plugins, "MODBENCH_HOME": str(tmp_path / "home")}
    return subprocess.run([sys.executable, "-m", "modbench", *args], env=env, capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)


def test_the_cli_refuses_a_malformed_task_file_in_one_line_with_exit_2_and_writes_nothing(tmp_path):
    bad = tmp_path / "newcomer.toml"
    bad.write_text(GOOD + "[config.train]\neval_every = 0\n")
    for args in (["list", "tasks"], ["train", "--method", "bimt", "--task", "circle_detection", "--steps", "5"]):
        done = cli(args, tmp_path, str(bad))
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip() == f"modbench: error: {bad}: config.train.eval_every must be an integer >= 1, got 0"
    assert not (tmp_path / "home").exists()


def test_a_newcomer_s_task_is_one_file_that_lists_and_trains(tmp_path, monkeypatch, capsys):
    from modbench.cli.app import main

    task = tmp_path / "ones_and_sevens.toml"
    task.write_text(GOOD + "steps_by_source = { mnist-5k = 30 }\n")
    monkeypatch.setattr(TASKS, "_entries", dict(TASKS._entries))  # registered for this test only
    register_task_file(task)
    main(["list", "tasks"])
    main(["train", "--method", "l1", "--task", "ones_and_sevens", "--quiet"])
    out = capsys.readouterr().out
    assert "ones_and_sevens      digits 1 <- 7\n      pairs=((1, 7),)" in out
    assert '"steps": 30' in out and '"data_source": "mnist-5k"' in out
