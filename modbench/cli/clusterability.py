"""``modbench clusterability``: how modular a trained model is, per hidden matrix, under BSGC clusters of its
weights and of its accumulated gradients, beside the random baseline 1/k (Golechha et al. Figure 2 / Table 2)."""

from __future__ import annotations

from pathlib import Path

import typer

from modbench.cli.app import app
from modbench.errors import UserError


def parse_ks(text: str) -> list[int]:
    """``2..8`` or ``2,4,8``."""
    try:
        if ".." in text:
            low, high = (int(part) for part in text.split(".."))
            ks = list(range(low, high + 1))
        else:
            ks = [int(part) for part in text.split(",")]
    except ValueError:
        raise UserError(f"--k expects A..B or a comma list of integers, got {text!r}") from None
    if not ks or min(ks) < 2:
        raise UserError(f"--k values must be >= 2, got {text!r}")
    return ks


@app.command()
def clusterability(
    method: str = typer.Option(..., help="training method (see `modbench list methods`)"),
    task: str = typer.Option("mnist_per_class", help="task whose data and loss train the model"),
    model: str | None = typer.Option(None, help="model architecture [default: the task's]"),
    k: str = typer.Option("2..8", "--k", help="cluster counts: A..B or a comma list"),
    steps: int | None = typer.Option(None, help="training steps [default: the task's budget]"),
    seed: int = typer.Option(1, help="training seed"),
    gradient_batches: int = typer.Option(50, help="training batches whose gradients are accumulated"),
    device: str | None = typer.Option(None, help="cpu, cuda or cuda:N"),
    data_dir: Path | None = typer.Option(None, help="folder holding the task's data"),
    set_: list[str] = typer.Option([], "--set", help="override a method config field, KEY=VALUE"),
    quiet: bool = typer.Option(False, help="no progress bar"),
) -> None:
    """C per hidden matrix for BSGC clusters (weights and gradients) beside 1/k, for any trained model."""
    ks = parse_ks(k)
    if gradient_batches < 1:
        raise UserError(f"--gradient-batches must be >= 1, got {gradient_batches}")
    from modbench.cli.train import load_or_train

    trained, _, spec, task_impl, data = load_or_train(method, task, model, steps, seed, device, data_dir, set_, quiet)
    from rich.console import Console
    from rich.table import Table

    from modbench.discovery.modularity import clusterability_table

    rows = clusterability_table(trained, task_impl, data, spec.train, ks, gradient_batches)
    table = Table(title=f"clusterability of {method} on {task} ({data.source}, {spec.model})",
                  caption="C = in-cluster W^2 / all W^2 under BSGC co-clusters (rows and columns matched)")
    for header in ("matrix", "k", "random 1/k", "C (weights)", "C (gradients)"):
        table.add_column(header, justify="left" if header == "matrix" else "right")
    for row in rows:
        table.add_row(row["wire"], str(row["k"]), f"{1 / row['k']:.4f}", f"{row['weights']:.4f}",
                      f"{row['gradients']:.4f}")
    Console(width=120).print(table)
