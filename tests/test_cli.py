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


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "--method", "bimtt", "--task", "circle_detection"], "did you mean 'bimt'"),
        (["run", "--method", "bimt", "--task", "circle"], "unknown task 'circle'"),
        (["run", "--method", "bimt", "--task", "circle_detection", "--discoverer", "acdc"], "unknown discoverer"),
        (["run", "--method", "bimt", "--task", "circle_detection", "--boots", "1"], "boots must be >= 2"),
        (["run", "--method", "bimt", "--task", "circle_detection", "--ablation", "noise"], "ablation must be"),
        (["run", "--method", "bimt", "--task", "circle_detection", "--device", "tpu"], "device"),
        (["run", "--method", "bimt", "--task", "circle_detection", "--data-dir", "/nonexistent"], "not a directory"),
        (["run", "--method", "bimt", "--task", "circle_detection", "--bogus"], "No such option"),
        (["train", "--method", "bimt", "--steps", "0"], "--steps must be >= 1"),
        (["train", "--method", "bimt", "--set", "lam=-1"], "lam must be >= 0"),
        (["list", "widgets"], "unknown kind"),
        (["leaderboard", "show", "--task", "nope"], "unknown task"),
    ],
)
def test_bad_input_gives_one_line_and_exit_code_2_and_writes_nothing(args, expected, capsys, tmp_path):
    code, out, err = run_cli(args, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in err
    assert written(os.environ["MODBENCH_HOME"]) == []


def test_list_comes_from_the_registries(capsys):
    code, out, _ = run_cli(["list", "methods"], capsys)
    assert code == 0
    for key in ("vanilla", "l1", "l1_local", "l1_swap", "bimt"):
        assert key in out


def test_run_end_to_end_on_embedded_digits_writes_a_row(capsys, tmp_path):
    args = ["run", "--method", "l1", "--task", "circle_detection", "--steps", "200", "--boots", "3",
            "--pairs", "40", "--quiet", "--figures", str(tmp_path / "fig")]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert "mnist-5k" in out and "published" in out
    assert (tmp_path / "fig" / "circle_detection-l1-mnist-5k-circuit.png").exists()
    code, out, _ = run_cli(["leaderboard", "show", "--task", "circle_detection",
                            "--markdown", str(tmp_path / "board.md")], capsys)
    assert "l1" in (tmp_path / "board.md").read_text()
