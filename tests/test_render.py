"""The terminal table: a compact default that fits 100 columns with every word whole and nothing cut, every
column with --wide, chosen ones with --columns, the footnote wrapped."""

from __future__ import annotations

import dataclasses
import re

import pytest
from rich.console import Console
from test_cli import run_cli, written
from test_results import edge_record, fake_record

from modbench.cli.render import ColumnChoice, column_choice, layout, render_table
from modbench.errors import UserError
from modbench.results.leaderboard import display_table, footnote, header, known_columns, leaderboard

LONG_FAILURE = "test accuracy 0.1000 below the task's quality floor 0.8 (training diverged at step 1200)"


def busy_table():
    """Every kind of row at once: canonical, another discoverer with edge counts, a variant, a pack's share of
    discovery time, a failed cell with a long reason, the published rows."""
    packed = dataclasses.replace(fake_record("l1_swap", 0.6, 0.98), costs={"discovery_packed_with": 5})
    failed = dataclasses.replace(fake_record("l1", 0.7, 0.95, status="failed", accuracy=0.1), failure=LONG_FAILURE)
    records = [fake_record("vanilla", 0.84, 0.88), fake_record("bimt", 0.24, 0.986), packed, failed,
               fake_record("l1_local", 0.35, 0.987, discoverer="attribution_patching"),
               edge_record("bimt", 0.3, 1234.0, 56789.0),
               fake_record("bimt", 0.2, 0.99, variant="lam=0.02, steps=200")]
    return leaderboard(records, "circle_detection")


def rendered(table, width: int, choice: ColumnChoice = ColumnChoice()) -> list[str]:
    console = Console(width=width, record=True, color_system=None)
    render_table(table, "circle_detection leaderboard (mnist)", console, choice)
    return console.export_text().splitlines()


def assert_whole(table, lines: list[str], width: int, choice: ColumnChoice) -> None:
    """Nothing wider than the console, no ellipsis, every word of every cell and header a whole word of the
    output, and the footnote's words in order."""
    assert max(len(line) for line in lines) <= width
    text = "\n".join(lines)
    assert "…" not in text
    tokens = text.split()
    columns, rows = display_table(table, choice.columns(table))
    words = {word for row in rows for cell in row.values() for word in cell.text.split()}
    words |= {word for column in columns for word in header(column).split()}
    assert words - set(tokens) == set()
    note = footnote(table).split()
    start = tokens.index(note[0])
    assert tokens[start: start + len(note)] == note


def test_the_compact_default_fits_100_columns_without_breaking_a_word_or_cutting_anything():
    table = busy_table()
    columns = ColumnChoice().columns(table)
    assert columns == ("method", "discoverer", "variant", "logit_difference", "sparsity", "test_accuracy", "status")
    lines = rendered(table, 100)
    assert_whole(table, lines, 100, ColumnChoice())
    assert any("0.2400 ± 0.0100*" in line and "bimt" in line for line in lines)  # a number is never wrapped
    assert sum(bool(re.search(r"activation_patching +published ", line)) for line in lines) == 5  # theirs


def test_a_table_whose_words_cannot_fit_is_printed_wider_never_split(capsys, monkeypatch):
    from modbench.cli.render import print_table

    long = "permute_optimizer_state=True, wire=blocks.1.mlp.W_in, clusters=contiguous"
    table = leaderboard([fake_record("bimt", 0.2, 0.99, variant=long)], "circle_detection")
    monkeypatch.setenv("COLUMNS", "100")
    print_table(table, "t")
    lines = capsys.readouterr().out.splitlines()
    assert 100 < max(len(line) for line in lines) == layout(table, ColumnChoice()).min_width
    assert all(word in " ".join(lines).split() for word in long.split())


def test_wide_shows_every_column_and_keeps_words_whole_at_the_width_it_needs():
    table = busy_table()
    wide = ColumnChoice(wide=True)
    columns = wide.columns(table)
    assert columns.index("circuit_edges") == columns.index("sparsity") + 1 and "forward_passes" in columns
    needed = layout(table, wide).min_width
    assert needed > 100  # why --wide prints at its own width on a narrow terminal
    assert_whole(table, rendered(table, needed, wide), needed, wide)
    assert_whole(table, rendered(table, 250, wide), 250, wide)


def test_columns_are_chosen_by_name_and_an_unknown_one_lists_the_known_ones():
    table = busy_table()
    choice = column_choice(False, "method, circuit_edges,forward_passes,status")
    assert choice.columns(table) == ("method", "circuit_edges", "forward_passes", "status")
    lines = rendered(table, 100, choice)
    assert_whole(table, lines, 100, choice)
    assert any(re.search(r"bimt\s+1234\.0 ± 1\.0\*\s+56789\.0 ± 1\.0\*\s+ok", line) for line in lines)
    with pytest.raises(UserError, match=r"unknown column 'acc' \(known: source, method, .*circuit_edges.*status\)"):
        column_choice(False, "method,acc")
    with pytest.raises(UserError, match="cannot be combined"):
        column_choice(True, "method")
    assert set(known_columns()) >= set(ColumnChoice(wide=True).columns(table))


@pytest.mark.parametrize("command", [["leaderboard", "show", "--task", "circle_detection"],
                                     ["run", "--method", "bimt", "--task", "circle_detection"]])
def test_an_unknown_column_on_the_command_line_is_one_line_and_exit_2_before_any_work(command, capsys):
    code, _, err = run_cli([*command, "--columns", "method,nope"], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "unknown column 'nope' (known: source, method" in lines[0]
    assert written(__import__("os").environ["MODBENCH_HOME"]) == []


def test_leaderboard_show_prints_the_compact_table_and_wide_on_request(capsys, tmp_path, monkeypatch):
    from modbench.results.store import ResultStore

    store = ResultStore(tmp_path / "r.sqlite")
    for record in (fake_record("vanilla", 0.84, 0.88), edge_record("bimt", 0.3, 1234.0, 56789.0)):
        store.append(record)
    monkeypatch.setenv("COLUMNS", "100")
    args = ["leaderboard", "show", "--task", "circle_detection", "--results", str(store.path)]
    code, out, _ = run_cli(args, capsys)
    assert code == 0 and "acdc" in out and "forward passes" not in out and " published " in out
    assert max(len(line) for line in out.splitlines()) <= 100
    code, out, _ = run_cli([*args, "--wide"], capsys)
    assert code == 0 and "forward" in out and "56789.0 ± 1.0*" in out
