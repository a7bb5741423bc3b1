"""The frozen result record: one run's identity, metrics, costs and provenance (plain data only, so it
round-trips through JSON unchanged)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

STATUSES = ("ok", "failed")


@dataclass(frozen=True)
class ResultRecord:
    """``cell`` hashes the whole config except the training seed: records of one cell differ only by seed and
    are aggregated over seeds on leaderboards. ``variant`` names what differs from the registered defaults
    ("default" for the canonical row). ``metrics[name]`` holds mean, ci_low, ci_high and ci (half-width)
    over bootstrap resamples. A ``failed`` record (training diverged, or the model is below the task's
    quality floor) is shown but never ranked."""

    task: str
    method: str
    model: str
    discoverer: str
    dataset: str
    variant: str
    cell: str
    config_hash: str
    train_seed: int
    pair_seed: int
    boot_seed: int
    status: str
    failure: str
    faithfulness_metric: str
    metrics: dict[str, dict[str, float]]
    sparsity_per_wire: dict[str, float]
    circuit_size: dict[str, float]
    test_accuracy: float
    best_test_accuracy: float
    best_step: int
    costs: dict[str, Any]
    discovery_cost_depends_on_weights: bool
    config: dict[str, Any]
    definitions: dict[str, str]
    provenance: dict[str, Any]
    details: dict[str, Any] = field(default_factory=dict)  # a discoverer's tables (e.g. per class)
    id: int | None = None
    created: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResultRecord:
        return cls(**data)

    def flat(self) -> dict[str, Any]:
        """One row for tables: identity, ``{metric}_{stat}`` columns, accuracy and costs."""
        row: dict[str, Any] = {key: getattr(self, key) for key in (
            "id", "task", "method", "model", "discoverer", "dataset", "variant", "cell", "config_hash",
            "train_seed", "status", "failure", "test_accuracy", "best_test_accuracy",
            "discovery_cost_depends_on_weights", "faithfulness_metric")}
        for metric, summary in self.metrics.items():
            for stat, value in summary.items():
                row[f"{metric}_{stat}"] = value
        row.update({f"cost_{key}": value for key, value in self.costs.items()})
        return row
