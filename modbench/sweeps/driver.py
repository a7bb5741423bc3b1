"""The sweep driver: check everything and name every run's record before any training (:func:`prepare`),
then hand the runs to an executor and write each result as it arrives (:func:`execute`).

The driver is the only writer: one row per finished run, one SQLite transaction each, so a sweep killed at
any point leaves complete rows only, and rerunning it skips every run whose ``config_hash`` has a row.
Runs that share a trained model (same training hash: e.g. two tasks on one dataset, or two discoverers)
never train it at once: the first trains and caches it, the others start when it is done and load it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from modbench.errors import UserError
from modbench.results.record import ResultRecord
from modbench.results.store import ResultStore
from modbench.sweeps.executors import Executor, PackJob
from modbench.sweeps.spec import RunSpec, SweepSpec, check_names, load_sweep


@dataclass(frozen=True)
class PlannedRun:
    """A run and the identity of the record it will make; ``cached``: its model is already trained."""

    index: int
    run: RunSpec
    config_hash: str
    training_hash: str
    cached: bool
    pack_key: str = ""  # runs whose models share it can be trained in one pack (pipeline.pack_key)
    score_key: str = ""  # runs sharing it (not "") can be scored in one pass (experiment.scoring_key)


@dataclass(frozen=True)
class Plan:
    sweep: SweepSpec
    runs: tuple[PlannedRun, ...]  # every run of the file, in sweep order
    done: frozenset[str]  # config hashes that already have a row

    @property
    def todo(self) -> tuple[PlannedRun, ...]:
        return tuple(run for run in self.runs if run.config_hash not in self.done)


@dataclass(frozen=True)
class Outcome:
    """One finished run: ``record`` None when it failed before making one (``reason`` says why); a record
    whose status is failed (below the task's quality floor) is written and counts as failed too."""

    run: PlannedRun
    seconds: float
    record: ResultRecord | None = None
    reason: str = ""

    @property
    def failed(self) -> bool:
        return self.record is None or self.record.status != "ok"

    @property
    def why(self) -> str:
        return self.reason or (self.record.failure if self.record else "")


def prepare(path: Path, store: ResultStore, data_dir: Path | None = None) -> Plan:
    """Read and check the sweep file, then :func:`plan` it. Every mistake is one-line UserError naming the file."""
    sweep = load_sweep(path)
    return plan(sweep, store, data_dir, path)


def plan(sweep: SweepSpec, store: ResultStore, data_dir: Path | None = None, path: Path | str = "sweep") -> Plan:
    """Check a sweep (``path`` names it in errors), build every run's spec (names, overrides, K against each
    model's sites), find each task's data source and so every record's ``config_hash``; all before any
    training or writing. Scripts build a :class:`SweepSpec` and call this directly."""
    from modbench.experiment import record_identity, scoring_key
    from modbench.paths import modbench_home
    from modbench.pipeline import build_task, pack_key
    from modbench.provenance import config_hash
    from modbench.training.checkpoint import CheckpointStore

    check_names(sweep, path)
    runs = sweep.runs()
    try:
        specs = [run.experiment() for run in runs]
    except UserError as error:
        raise UserError(f"{path}: {error}") from None
    checked: set[str] = set()
    try:
        for spec in specs:
            _check_selection(spec, checked)
    except UserError as error:  # worded for `modbench run`'s flag
        raise UserError(f"{path}: {str(error).replace('--top-k', 'top_k')}") from None
    tasks: dict[str, Any] = {}  # built tasks, per (task, model config)
    sources: dict[str, str] = {}  # data sources, per dataset (loaded once: tasks on one dataset share it)
    checkpoints = CheckpointStore(modbench_home() / "models")
    planned = []
    for index, (run, spec) in enumerate(zip(runs, specs, strict=True)):
        key = config_hash([spec.task, spec.model_config])
        if key not in tasks:
            tasks[key] = build_task(spec.task, spec.model_config)
        task = tasks[key]
        if task.config.dataset not in sources:  # missing data: its one-line error, now
            sources[task.config.dataset] = task.load(data_dir).source
        source = sources[task.config.dataset]
        identity = record_identity(spec, source, task.config)
        planned.append(PlannedRun(index, run, identity.config_hash, identity.training.hash,
                                  checkpoints.exists(identity.training.checkpoint_name), pack_key(identity.training),
                                  scoring_key(spec, source)))
    hashes = {run.config_hash for run in planned}
    if len(hashes) < len(planned):  # distinct lists make this impossible; a guard against silent loss
        raise UserError(f"{path}: two runs of the sweep have the same config")
    existing = {record.config_hash for task in sweep.tasks for record in store.records(task)}
    return Plan(sweep, tuple(planned), frozenset(hashes & existing))


def _check_selection(spec: Any, checked: set[str]) -> None:
    """K against the model's sites for the whole sweep first (once per model and selection: ``checked``)."""
    from modbench.experiment import check_selection
    from modbench.provenance import config_hash

    key = config_hash([spec.model, spec.model_config, spec.discoverer, spec.discovery.selection,
                       spec.selection_config])
    if key not in checked:
        check_selection(spec)
        checked.add(key)


def outcome_of(run: PlannedRun, result: dict[str, Any]) -> Outcome:
    """A worker's plain result -> an Outcome; a record naming another config is refused, never written
    (it would defeat the skip of done runs)."""
    seconds = float(result.get("seconds", 0.0))
    if result.get("record") is None:
        return Outcome(run, seconds, reason=str(result.get("error") or "no record returned"))
    record = ResultRecord.from_dict(result["record"])
    if record.config_hash != run.config_hash:
        return Outcome(run, seconds, reason=f"internal error: record config {record.config_hash} is not the "
                                            f"planned {run.config_hash}")
    return Outcome(run, seconds, record)


def write(store: ResultStore, outcome: Outcome) -> Outcome:
    """Append the outcome's record (one transaction); failed-before-a-record outcomes write nothing."""
    if outcome.record is None:
        return outcome
    return Outcome(outcome.run, outcome.seconds, store.append(outcome.record), outcome.reason)


@dataclass(frozen=True)
class PlannedPack:
    """A pack job and what it stands for: ``train`` one run per untrained model it trains, ``runs`` the runs
    it makes (those sharing a scoring key with another model of the pack)."""

    job: PackJob
    train: tuple[PlannedRun, ...]
    runs: tuple[PlannedRun, ...]


def pack_jobs(runs: tuple[PlannedRun, ...], size: int) -> list[PlannedPack]:
    """Packs of at most ``size`` models of one pack key (architecture, data, training config): the untrained
    ones trained together, the runs that can share a scoring pass made together. The other runs (a discoverer
    that is not ``packable``, a scoring key no other model of the pack has) are left to the one-by-one path,
    where they run in parallel; so is a pack with nothing to share (a lone model)."""
    groups: dict[str, dict[str, list[PlannedRun]]] = {}  # pack key -> training hash -> runs
    for run in runs:
        groups.setdefault(run.pack_key, {}).setdefault(run.training_hash, []).append(run)
    packs = []
    for models in groups.values():
        useful = [h for h, mine in models.items() if not mine[0].cached or any(run.score_key for run in mine)]
        for start in range(0, len(useful), size):
            chunk = useful[start : start + size]
            sharing = Counter(key for h in chunk for key in {run.score_key for run in models[h]} if key)
            scored = tuple(run for h in chunk for run in models[h] if sharing[run.score_key] > 1)
            train = tuple(models[h][0] for h in chunk if not models[h][0].cached)
            if len(train) > 1 or scored:
                packs.append(PlannedPack(PackJob(tuple(r.run for r in train), tuple(r.run for r in scored)),
                                         train, scored))
    return packs


def run_packs(todo: tuple[PlannedRun, ...], executor: Executor, size: int, store: ResultStore,
              on_outcome: Callable[[Outcome], None],
              on_pack: Callable[[int, dict[str, Any]], None] = lambda models, result: None,
              ) -> tuple[dict[int, Outcome], tuple[PlannedRun, ...]]:
    """The pack jobs of ``todo`` (:func:`pack_jobs`), each one executor job, writing each run's result as its
    pack returns; returns the outcomes by run index and the runs left to the one-by-one path, with ``cached``
    set for the models the packs trained. A run whose model diverged in its pack fails with that reason; the
    runs of a pack that failed as a whole (one member's bad config, out of memory) are left to the one-by-one
    path, where each error belongs to its own run."""
    packs = pack_jobs(todo, size)
    for index, pack in enumerate(packs):
        executor.submit(-1 - index, pack.job)
    outcomes: dict[int, Outcome] = {}
    trained: dict[str, str] = {}  # training hash -> "" (trained) or why it failed
    for _ in packs:
        index, result = executor.next_done()
        pack = packs[-1 - index]
        trained.update(result.get("trained", {}))
        if result.get("runs") is not None:
            for run, one in zip(pack.runs, result["runs"], strict=True):
                outcomes[run.index] = write(store, outcome_of(run, one))
                on_outcome(outcomes[run.index])
        on_pack(len({run.training_hash for run in pack.train + pack.runs}), result)
    left = []
    for run in todo:
        if run.index in outcomes:
            continue
        if trained.get(run.training_hash):  # diverged in its pack: diverges again alone
            outcomes[run.index] = Outcome(run, 0.0, reason=trained[run.training_hash])
            on_outcome(outcomes[run.index])
        else:
            left.append(replace(run, cached=run.cached or run.training_hash in trained))
    return outcomes, tuple(left)


def pack_message(models: int, result: dict[str, Any]) -> str:
    """A finished pack job, for progress output: what it trained and made, its error, its warnings."""
    trained = sum(1 for why in result.get("trained", {}).values() if not why)
    made = len(result["runs"]) if result.get("runs") is not None else 0
    failure = f": {result['error']} (its runs go one by one)" if result.get("error") else ""
    notes = "".join(f"\n  warning: {text}" for text in result.get("warnings", []))
    return (f"a pack of {models} models trained {trained} and made {made} runs in "
            f"{result.get('seconds', 0.0):.0f} s{failure}{notes}")


def execute(plan: Plan, executor: Executor, store: ResultStore,
            on_outcome: Callable[[Outcome], None] = lambda outcome: None, pack: int = 0,
            on_pack: Callable[[int, dict[str, Any]], None] = lambda models, result: None) -> list[Outcome]:
    """Run every run still to do, writing each result as it arrives; returns the outcomes in sweep order.
    ``pack`` > 1: first make the runs of models of one architecture in packs of at most that many models
    (:func:`run_packs`). On an exception (Ctrl-C) unfinished runs are cancelled; rows already written stay."""
    todo = plan.todo
    outcomes: dict[int, Outcome] = {}
    try:
        if pack > 1:
            outcomes, todo = run_packs(todo, executor, pack, store, on_outcome, on_pack)
        waiting: dict[str, list[PlannedRun]] = {}  # training hash -> runs waiting for the run training it
        by_index = {run.index: run for run in todo}
        for run in todo:
            if run.cached:
                executor.submit(run.index, run.run)
            elif run.training_hash in waiting:
                waiting[run.training_hash].append(run)
            else:
                waiting[run.training_hash] = []
                executor.submit(run.index, run.run)
        while len(outcomes) < len(plan.todo):
            index, result = executor.next_done()
            run = by_index[index]
            outcome = write(store, outcome_of(run, result))
            outcomes[index] = outcome
            on_outcome(outcome)
            if not run.cached:
                for follower in waiting.pop(run.training_hash, []):  # now cached (or failed: they retry)
                    executor.submit(follower.index, follower.run)
    except BaseException:
        executor.close(cancel=True)
        raise
    executor.close()
    return [outcomes[run.index] for run in plan.todo]
