"""The figures beside a site's rows, regenerated from what a record points to: its model checkpoint (the
weights with the circuit drawn, |W| heatmaps, the task's own figures such as the embedding's Fourier norms) and
its details (ON/OFF heatmaps, ECS per class). A figure that cannot be made is a note that says why."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from torch import nn

from modbench.errors import UserError, one_line
from modbench.results.record import ResultRecord


@dataclass(frozen=True)
class Figure:
    """``path`` relative to the site's root, or None with ``note`` saying why the figure is unavailable."""

    label: str
    path: str | None
    note: str = ""


def _plain_to_config(default: Any, plain: Any) -> Any:
    """A config dataclass from its plain form (lists back to tuples, nested configs rebuilt)."""
    if dataclasses.is_dataclass(default) and isinstance(plain, dict):
        return dataclasses.replace(default, **{f.name: _plain_to_config(getattr(default, f.name), plain[f.name])
                                               for f in dataclasses.fields(default) if f.name in plain})
    if isinstance(plain, list):
        return tuple(_plain_to_config(None, value) for value in plain)
    return plain


def load_checkpoint_model(record: ResultRecord) -> nn.Module:
    """The trained model a record was scored on, from ``provenance["checkpoint"]`` (SHA-256 checked against its
    sidecar); UserError, worded for the page, when it is not there."""
    from modbench.registries import MODELS
    from modbench.training.checkpoint import CheckpointStore

    path = record.provenance.get("checkpoint")
    if not path:
        raise UserError("the record names no model checkpoint")
    weights = Path(path)
    if not weights.exists():
        raise UserError(f"checkpoint {weights} is not on the machine that built this page")
    config = json.loads(weights.with_suffix(".json").read_text(encoding="utf-8"))["config"]
    spec = MODELS.get(record.model)
    model = spec.build(_plain_to_config(spec.config, config["model_config"]))
    CheckpointStore(weights.parent).load(weights.stem, model, config)
    return model.eval()


class FigureMaker:
    """Writes figures under ``root`` (the site being built). Each model is loaded once and each of its figures
    made once: rows of several discoverers on one model share its weights figures."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._models: dict[str, nn.Module | str] = {}  # by checkpoint: the model, or why it is unavailable
        self._made: dict[str, list[Figure]] = {}

    def for_record(self, record: ResultRecord) -> list[Figure]:
        title = f"{record.method} on {record.task} ({record.variant}, seed {record.train_seed})"
        stem = f"figures/{record.task}/{record.config_hash}"
        figures = []
        if "needs_clusters" in record.details:
            figures.append(self._from_details(record, "ON/OFF", f"{stem}-on-off.png", "on_off_heatmaps", title))
        if "ecs_per_class" in record.details:
            figures.append(self._from_details(record, "ECS per class", f"{stem}-ecs.png", "ecs_bars", title))
        model = self._model(record)
        if record.circuit_size:  # a pair discoverer's record: its circuit on the weights
            figures.append(self._circuit(record, model, f"{stem}-circuit.png", title))
        return figures + self._model_figures(record, model)

    def _from_details(self, record: ResultRecord, label: str, path: str, function: str, title: str) -> Figure:
        from modbench.viz import figures

        return self._attempt(label, path, lambda target: getattr(figures, function)(record.details, target, title))

    def _circuit(self, record: ResultRecord, model: nn.Module | str, path: str, title: str) -> Figure:
        from modbench.site.circuits import stored_circuit
        from modbench.viz.figures import connectivity_graph

        label = "weights with the circuit"
        if isinstance(model, str):
            return Figure(label, None, model)
        circuit = stored_circuit(record.details, model)
        if circuit is None:
            return Figure(label, None, "this record does not store its circuit")
        return self._attempt(label, path, lambda target: connectivity_graph(model, circuit, target, title))

    def _model_figures(self, record: ResultRecord, model: nn.Module | str) -> list[Figure]:
        """|W| heatmaps and the task's own figures of the record's model (made once per checkpoint)."""
        checkpoint = str(record.provenance.get("checkpoint", ""))
        if isinstance(model, str):
            return [Figure("weights", None, model)]
        if checkpoint in self._made:
            return self._made[checkpoint]
        from modbench.viz.weights import weight_heatmaps

        stem = f"figures/models/{Path(checkpoint).stem}"
        title = f"{record.method}, seed {record.train_seed}"
        made = [self._attempt("weights", f"{stem}-weights.png", lambda target: weight_heatmaps(model, target, title))]
        made += self._task_figures(record, model, stem, title)
        self._made[checkpoint] = made
        return made

    def _task_figures(self, record: ResultRecord, model: nn.Module, stem: str, title: str) -> list[Figure]:
        """The figures a task declares (optional ``figures(model, stem, title)``, e.g. Fourier norms)."""
        from modbench.registries import TASKS

        if record.task not in TASKS:
            return []
        task = TASKS.get(record.task).build()
        make = getattr(task, "figures", None)
        if make is None:
            return []
        try:
            paths = make(model, self.root / stem, title)
        except Exception as error:  # noqa: BLE001 (a figure is never worth failing the site)
            return [Figure("task figures", None, f"could not be drawn: {one_line(error)}")]
        return [Figure(path.stem.rsplit("-", 1)[-1], str(path.relative_to(self.root))) for path in paths]

    def _model(self, record: ResultRecord) -> nn.Module | str:
        checkpoint = str(record.provenance.get("checkpoint", ""))
        if checkpoint not in self._models:
            try:
                self._models[checkpoint] = load_checkpoint_model(record)
            except Exception as error:  # noqa: BLE001 (said on the page instead)
                self._models[checkpoint] = f"model unavailable: {one_line(error)}"
        return self._models[checkpoint]

    def _attempt(self, label: str, path: str, draw: Callable[[Path], Any]) -> Figure:
        try:
            draw(self.root / path)
        except Exception as error:  # noqa: BLE001 (said on the page instead)
            return Figure(label, None, f"could not be drawn: {one_line(error)}")
        return Figure(label, path)

    def scatter(self, table: pd.DataFrame, task: str, dataset: str) -> Figure | None:
        """Sparsity against the faithfulness metric (Nainani Figure 3) for a table whose rows carry both."""
        from modbench.viz.figures import sparsity_scatter

        metric = table.attrs.get("primary", "logit_difference")
        columns = ["sparsity_mean", f"{metric}_mean"]
        if not set(columns) <= set(table.columns):
            return None
        rows = table.dropna(subset=columns)
        if not len(rows):
            return None
        path = f"figures/{task}/{dataset}-sparsity.png"
        return self._attempt("sparsity against faithfulness", path,
                             lambda target: sparsity_scatter(rows, target, f"{task} ({dataset})", metric))
