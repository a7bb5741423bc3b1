"""User mistakes: one line on stderr, exit code 2, nothing written."""

from __future__ import annotations

import os

import pytest

from modbench.cli.app import main


def run_cli(args, capsys):
    try:
        main(args)
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def written(root) -> list[str]:
    return [os.path.join(d, f) for d, _, files in os.walk(root) for f in files] if os.path.exists(root) else []


RUN = ["run", "--method", "bimt", "--task", "circle_detection"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "--method", "bimtt", "--task", "circle_detection"], "did you mean 'bimt'"),
        (["run", "--method", "bimt", "--task", "circle"], "unknown task 'circle'"),
        ([*RUN, "--discoverer", "activation_patchin"], "unknown discoverer 'activation_patchin'; did you mean"),
        ([*RUN, "--model", "mlp"], "unknown model"),
        ([*RUN, "--boots", "1"], "boots must be an integer >= 2"),
        ([*RUN, "--ablation", "noise"], "unknown intervention 'noise'"),
        ([*RUN, "--device", "tpu"], "device"),
        ([*RUN, "--data-dir", "/nonexistent"], "not a directory"),
        ([*RUN, "--bogus"], "No such option"),
        ([*RUN, "--top-k", "500"], "larger than site"),
        ([*RUN, "--top-k", "0"], "k must be an integer >= 1"),
        ([*RUN, "--seed", "-1"], "--seed must be >= 0"),
        ([*RUN, "--set", "lam=abc"], "lam must be a finite number"),
        ([*RUN, "--set", "lam=NaN"], "lam must be a finite number"),
        ([*RUN, "--set", "swap_every=1.5"], "swap_every must be an integer"),
        ([*RUN, "--set", "permute_optimizer_state=yes"], "must be true or false"),
        ([*RUN, "--results", "/"], "is a directory"),
        ([*RUN, "--results", "/etc/passwd/r.sqlite"], "is not a directory"),
        (["run", "--method", "cluster", "--task", "cifar10_per_class", "--discoverer", "on_off"], "CIFAR-10 not found"),
        (["clusterability", "--method", "cluster", "--k", "1..3"], "--k values must be >= 2"),
        (["train", "--method", "bimt", "--steps", "0"], "--steps must be >= 1"),
        (["train", "--method", "bimt", "--set", "lam=-1"], "lam must be a finite number >= 0"),
        # every numeric setting range-checked where it is declared (issue 18)
        (["train", "--method", "bimt", "--set", "swap_every=0"], "swap_every must be an integer >= 1"),
        (["train", "--method", "l1_swap", "--set", "swap_every=-5"], "swap_every must be an integer >= 1"),
        (["train", "--method", "l1_local", "--set", "swap_every=-1"], "swap_every must be an integer >= 0"),
        (["train", "--method", "l1", "--set", "layer_separation=0"], "layer_separation must be a finite number > 0"),
        (["train", "--method", "cluster", "--set", "k=1"], "k must be an integer >= 2"),
        ([*RUN, "--set", "swap_top_k=0"], "swap_top_k must be an integer >= 1"),
        ([*RUN, "--set", "lam=1e999"], "lam must be a finite number"),
        ([*RUN, "--discoverer-set", "max_rows=0"], "max_rows must be an integer >= 1"),
        (["run", "--method", "bimt", "--task", "mnist_per_class", "--discoverer-set", "max_images=0"],
         "max_images must be an integer >= 1"),
        (["run", "--method", "cluster", "--task", "mnist_per_class", "--discoverer", "on_off", "--discoverer-set",
          "seed=-1"], "seed must be an integer >= 0"),
        (["list", "widgets"], "unknown kind"),
        (["leaderboard", "show", "--task", "nope"], "unknown task"),
        (["leaderboard", "show", "--task", "circle_detection", "--results", "/tmp/no-such.sqlite"], "does not exist"),
        (["leaderboard", "show", "--task", "circle_detection", "--markdown", "/"], "is a directory"),
        (["leaderboard", "show", "--task", "circle_detection", "--csv", "/"], "is a directory"),
        (["leaderboard", "show", "--task", "circle_detection", "--csv", "/etc/passwd/x.csv"], "is not a directory"),
        ([*RUN, "--figures", "/etc/passwd"], "is not a directory"),
        ([*RUN, "--set", "lam=inf"], "lam must be a finite number"),
    ],
)
def test_bad_input_gives_one_line_and_exit_code_2_and_writes_nothing(args, expected, capsys, tmp_path):
    code, out, err = run_cli(args, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in err
    assert written(os.environ["MODBENCH_HOME"]) == []


def test_list_comes_from_the_registries(capsys):
    from modbench.registries import PLUGIN_KINDS

    code, out, _ = run_cli(["list"], capsys)
    assert code == 0
    for kind, registry in PLUGIN_KINDS.items():
        assert f"[{kind}]" in out and all(key in out for key in registry.keys())


def test_run_end_to_end_on_embedded_digits_writes_a_row(capsys, tmp_path):
    args = ["run", "--method", "l1", "--task", "circle_detection", "--steps", "200", "--boots", "3",
            "--pairs", "40", "--quiet", "--figures", str(tmp_path / "fig")]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert "mnist-5k" in out and "published" in out and "steps=200" in out
    assert list((tmp_path / "fig").glob("circle_detection-l1-mnist-5k-*-circuit.png"))
    code, out, _ = run_cli(["leaderboard", "show", "--task", "circle_detection",
                            "--markdown", str(tmp_path / "board.md")], capsys)
    assert "l1" in (tmp_path / "board.md").read_text()
