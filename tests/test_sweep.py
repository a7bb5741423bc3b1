"""``modbench sweep``: expansion, skipping done runs, one-line errors for bad files, the local and Ray
executors against runs made in one process, failed runs, a sweep killed with SIGKILL, concurrent writers.

Worker processes (spawned, or Ray's) do not run conftest: the toy tasks and this file's test methods reach
them through ``MODBENCH_PLUGINS``, as any outside plugin would."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import run_writers

from modbench.cli.app import main
from modbench.registry import import_plugin
from modbench.results.record import ResultRecord
from modbench.results.store import ResultStore

CONFTEST = Path(__file__).with_name("conftest.py")
TEST_METHODS = '''
"""Test methods: one whose loss becomes NaN, one that SIGKILLs its whole sweep once (when a flag file exists)."""
import os
import signal
from dataclasses import dataclass

import torch

from modbench.methods import MethodBase, register_method


@dataclass(frozen=True)
class Settings:
    scale: float = 1.0


@register_method("sweep_nan", Settings(), "test: the loss becomes NaN")
class NaN(MethodBase):
    def regularizers(self, model, step):
        return {"boom": torch.tensor(float("nan")) * next(model.parameters()).sum()}


@register_method("sweep_kill", Settings(), "test: kills its sweep's process group once")
class KillOnce(MethodBase):
    def setup(self, model, total_steps):
        super().setup(model, total_steps)
        flag = os.environ.get("SWEEP_KILL_FLAG", "")
        if flag and os.path.exists(flag):
            os.unlink(flag)
            os.killpg(os.getpgid(0), signal.SIGKILL)
'''
TOY = 'tasks = ["toy_mlp"]\ntop_k = 3\nboots = 2\npairs = 8\n'


@pytest.fixture(scope="session")
def methods_plugin(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("plugins") / "sweep_methods.py"
    path.write_text(TEST_METHODS)
    import_plugin(str(path))  # here; workers import it through MODBENCH_PLUGINS
    return path


@pytest.fixture
def plugins(methods_plugin, monkeypatch) -> None:
    monkeypatch.setenv("MODBENCH_PLUGINS", os.pathsep.join([str(CONFTEST), str(methods_plugin)]))


def run_cli(args, capsys):
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def sweep_file(tmp_path: Path, text: str, name: str = "sweep.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def written(root: str) -> list[str]:
    return [os.path.join(d, f) for d, _, files in os.walk(root) for f in files] if os.path.exists(root) else []


def comparable(record: ResultRecord) -> dict:
    """A row without what differs between identical runs: its id and time, timings, the checkpoint's path
    and the git commit (others commit to this checkout while tests run; ``git status`` may time out)."""
    row = record.to_dict() | {"id": None, "created": None}
    row["costs"] = {k: v for k, v in row["costs"].items() if k not in ("train_time_s", "inference_us_per_sample")}
    row["metrics"] = {k: v for k, v in row["metrics"].items() if k != "discovery_time_s"}
    row["provenance"] = {k: v for k, v in row["provenance"].items() if k not in ("checkpoint", "git_commit")}
    return row


def differences(a: object, b: object, where: str = "") -> list[str]:
    """Where two plain values differ (for assertion messages)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str) for d in differences(a.get(k), b.get(k), f"{where}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def rows(home: Path) -> list[ResultRecord]:
    return ResultStore(home / "results.sqlite").records()


def test_runs_are_the_product_in_sweep_order_with_defaults_and_overrides(tmp_path, capsys):
    from modbench.sweeps.spec import load_sweep

    path = sweep_file(tmp_path, """
        methods = ["l1", "bimt"]
        tasks = ["toy_mlp", "toy_cnn"]
        seeds = [3, 1, 2]
        top_k = 2
        [method_overrides.bimt]
        lam = 0.02
        swap_every = 10
    """)
    runs = load_sweep(path).runs()
    assert len(runs) == 2 * 2 * 3
    assert [(r.method, r.task, r.seed) for r in runs[:4]] == [("l1", "toy_mlp", 3), ("l1", "toy_mlp", 1),
                                                              ("l1", "toy_mlp", 2), ("l1", "toy_cnn", 3)]
    assert {r.discoverer for r in runs} == {"activation_patching"}  # the tasks' default, named
    spec = runs[-1].experiment()
    assert (spec.method, spec.method_config.lam, spec.method_config.swap_every) == ("bimt", 0.02, 10)
    assert runs[0].experiment().method_config.lam == 0.01  # overrides reach their method only
    code, out, _ = run_cli(["sweep", path, "--dry-run"], capsys)
    assert code == 0 and "12 runs, 0 already done, 12 to run" in out and out.count("todo") == 12
    assert written(os.environ["MODBENCH_HOME"]) == []


def test_runs_whose_config_hash_has_a_row_are_skipped(tmp_path, capsys):
    from modbench.sweeps.driver import prepare

    path = sweep_file(tmp_path, 'methods = ["l1", "vanilla"]\nseeds = [1, 2]\n' + TOY)
    store = ResultStore(tmp_path / "home" / "results.sqlite")
    plan = prepare(path, store)
    assert len(plan.todo) == 4 and not plan.done
    template = ResultRecord(
        task="toy_mlp", method="l1", model="tiny_mlp", discoverer="activation_patching", dataset="toy",
        variant="default", cell="c", config_hash="", train_seed=1, pair_seed=0, boot_seed=0, status="ok",
        failure="", faithfulness_metric="logit_difference", metrics={}, sparsity_per_wire={}, circuit_size={},
        test_accuracy=1.0, best_test_accuracy=1.0, best_step=1, costs={}, discovery_cost_depends_on_weights=True,
        config={}, definitions={}, provenance={})
    store.append(dataclasses.replace(template, config_hash=plan.runs[1].config_hash))
    store.append(dataclasses.replace(template, config_hash=plan.runs[2].config_hash, status="failed"))
    again = prepare(path, store)
    assert [run.index for run in again.todo] == [0, 3]  # a failed row is a result too: rerunning repeats it
    code, out, _ = run_cli(["sweep", path, "--dry-run"], capsys)
    assert code == 0 and "4 runs, 2 already done, 2 to run" in out


GOOD = 'methods = ["l1"]\ntasks = ["toy_mlp"]\n'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('methods = ["l1"\ntasks = ["toy_mlp"]', "not valid TOML"),
        (GOOD + "seed = [1]", "unknown key 'seed'; did you mean 'seeds'?"),
        ('tasks = ["toy_mlp"]', "missing key 'methods'"),
        ('methods = ["bimtt"]\ntasks = ["toy_mlp"]', "unknown method 'bimtt'; did you mean 'bimt'?"),
        ('methods = ["l1"]\ntasks = ["toy_mpl"]', "unknown task 'toy_mpl'; did you mean 'toy_mlp'?"),
        (GOOD + 'discoverers = ["activation_patchin"]', "did you mean 'activation_patching'?"),
        (GOOD + 'model = "tiny_mpl"', "unknown model 'tiny_mpl'"),
        (GOOD + 'ablation = "noise"', "unknown intervention 'noise'"),
        ('methods = "l1"\ntasks = ["toy_mlp"]', "methods must be a list of names"),
        ('methods = ["l1", 2]\ntasks = ["toy_mlp"]', "methods must be a list of names, got 2"),
        ('methods = []\ntasks = ["toy_mlp"]', "methods must not be empty"),
        (GOOD + "seeds = []", "seeds must not be empty"),
        (GOOD + 'seeds = ["1"]', "seeds must be a list of integers"),
        (GOOD + "seeds = [1, 1]", "seeds lists 1 more than once"),
        (GOOD + "seeds = [-1]", "seeds must be >= 0"),
        (GOOD + "steps = 1.5", "steps must be an integer"),
        (GOOD + "steps = 0", "steps must be an integer >= 1"),
        (GOOD + "boots = 1", "boots must be an integer >= 2"),
        (GOOD + "top_k = 50", "larger than site"),
        (GOOD + "method_overrides = 3", "method_overrides must be a table"),
        (GOOD + "[method_overrides.bimt]\nlam = 0.1", "'bimt' is not in methods"),
        (GOOD + "[method_overrides.l1]\nlamda = 0.1", "method_overrides.l1: LocalCostConfig has no field 'lamda'"),
        (GOOD + '[method_overrides.l1]\nlam = "big"', "lam must be a finite number"),
        (GOOD + "[method_overrides.l1]\nlam = nan", "lam must be finite"),
        (GOOD + "[method_overrides.l1]\nswap_every = 1.5", "swap_every must be an integer"),
        (GOOD.replace('"l1"', '"bimt"') + "[method_overrides.bimt]\nswap_every = 0",
         "method_overrides.bimt: invalid SwapConfig: swap_every must be an integer >= 1, got 0"),
        (GOOD + "[method_overrides.l1]\nlayer_separation = 0.0", "layer_separation must be a finite number > 0"),
        (GOOD + "[discoverer_overrides.activation_patching]\nmax_rows = 0", "max_rows must be an integer >= 1"),
        (GOOD + "[discoverer_overrides.ecs]\nthreshold = 1", "'ecs' is not a discoverer of this sweep"),
    ],
)
def test_a_malformed_sweep_file_is_one_line_exit_2_and_nothing_is_written(text, expected, tmp_path, capsys):
    path = sweep_file(tmp_path, text)
    code, out, err = run_cli(["sweep", path, "--workers", "1"], capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in err, err
    assert written(os.environ["MODBENCH_HOME"]) == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--executor", "dask"], "unknown executor 'dask'"),
        (["--address", "10.0.0.1:6379"], "--address is for --executor ray"),
        (["--workers", "0"], "--workers must be >= 1"),
        (["--results", "/"], "is a directory"),
        (["--device", "tpu"], "device"),
    ],
)
def test_bad_flags_are_one_line_exit_2(args, expected, tmp_path, capsys):
    code, _, err = run_cli(["sweep", sweep_file(tmp_path, GOOD), *args], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and expected in err, err
    code, _, err = run_cli(["sweep", tmp_path / "missing.toml"], capsys)
    assert code == 2 and "sweep file" in err and "not found" in err


def test_asking_for_ray_without_ray_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, installed or not
    code, _, err = run_cli(["sweep", sweep_file(tmp_path, GOOD), "--executor", "ray"], capsys)
    assert code == 2 and err.strip() == "modbench: error: --executor ray needs Ray: pip install -e '.[ray]'"
    assert written(os.environ["MODBENCH_HOME"]) == []


def in_process_rows(path: Path, home: Path, monkeypatch) -> list[dict]:
    """The sweep's ok runs made one after another in this process (one torch thread, as a worker on 2 cores)."""
    import torch

    from modbench.experiment import run_experiment
    from modbench.sweeps.spec import load_sweep

    monkeypatch.setenv("MODBENCH_HOME", str(home))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return [comparable(run_experiment(run.experiment(), torch.device("cpu"), show_progress=False)[0])
                for run in load_sweep(path).runs() if run.method != "sweep_nan"]
    finally:
        torch.set_num_threads(threads)


def test_local_pool_rows_equal_one_process_rows_and_failed_runs_are_listed_not_written(
        tmp_path, capsys, monkeypatch, plugins):
    path = sweep_file(tmp_path, 'methods = ["l1", "sweep_nan"]\nseeds = [1, 2]\n' + TOY)
    code, out, err = run_cli(["sweep", path, "--workers", "2", "--device", "cpu"], capsys)
    assert code == 1, err  # a run failed; the others completed
    assert "2 ok, 2 failed" in out and "failed runs (2, never ranked)" in out
    assert out.count("sweep_nan on toy_mlp (activation_patching, seed") == 2 and "loss became nan" in out
    home = Path(os.environ["MODBENCH_HOME"])
    pooled = rows(home)
    assert sorted((r.method, r.train_seed, r.status) for r in pooled) == [("l1", 1, "ok"), ("l1", 2, "ok")]
    by_hash = sorted((comparable(r) for r in pooled), key=lambda row: row["config_hash"])  # completion order varies
    alone = sorted(in_process_rows(path, tmp_path / "other-home", monkeypatch), key=lambda row: row["config_hash"])
    assert by_hash == alone, differences(by_hash, alone)
    # Rerun: the done runs are skipped (no pool is started for nothing), the failed ones are tried again.
    monkeypatch.setenv("MODBENCH_HOME", str(home))
    code, out, _ = run_cli(["sweep", sweep_file(tmp_path, 'methods = ["l1"]\nseeds = [1, 2]\n' + TOY, "ok.toml")],
                           capsys)
    assert code == 0 and "2 runs, 2 already done, 0 to run" in out
    code, out, _ = run_cli(["sweep", path, "--dry-run"], capsys)
    assert "4 runs, 2 already done, 2 to run" in out
    assert len(rows(home)) == 2


def test_with_pack_the_models_train_and_score_in_one_pack_and_the_rows_match_one_by_one(
        tmp_path, capsys, monkeypatch, plugins):
    path = sweep_file(tmp_path, 'methods = ["vanilla", "l1", "sweep_nan"]\nseeds = [1, 2]\n' + TOY)
    code, out, err = run_cli(["sweep", path, "--workers", "2", "--pack", "8", "--device", "cpu"], capsys)
    assert code == 1, err
    assert "a pack of 6 models trained 4 and made 6 runs" in out and "4 ok, 2 failed" in out
    assert "loss became nan" in out
    home = Path(os.environ["MODBENCH_HOME"])
    sidecars = [json.loads(p.read_text()) for p in (home / "models").glob("*.json")]
    assert sorted(s["training"]["packed_with"] for s in sidecars) == [6] * 4  # the diverged ones: no checkpoint
    packed = sorted((comparable(r) for r in rows(home)), key=lambda row: row["config_hash"])
    alone = sorted(in_process_rows(path, tmp_path / "other-home", monkeypatch), key=lambda row: row["config_hash"])
    assert [row["config_hash"] for row in packed] == [row["config_hash"] for row in alone]
    for one, other in zip(packed, alone, strict=True):  # float32: batched matmuls round differently
        assert (one["costs"].pop("packed_with"), other["costs"].pop("packed_with")) == (6, 1)
        # the 4 models that trained were scored in one pass (the diverged ones have no model to score)
        assert (one["costs"].pop("discovery_packed_with"), other["costs"].pop("discovery_packed_with")) == (4, 1)
        assert one["costs"]["train_cached"] is other["costs"]["train_cached"] is False  # trained for these runs
        assert not [d for d in differences(one, other) if not close_text(d)], differences(one, other)


def test_a_pack_trains_its_untrained_models_and_makes_only_the_runs_that_share_a_scoring_pass():
    from modbench.sweeps.driver import PlannedRun, pack_jobs
    from modbench.sweeps.spec import RunSpec

    def planned(name: str, model: str, cached: bool, score_key: str, pack_key: str = "arch") -> PlannedRun:
        run = RunSpec(name, "toy_mlp", "activation_patching", 1, None, None, 2, 8, 0, 0, 3, "mean")
        return PlannedRun(int(name[1]), run, f"cfg-{name}", model, cached, pack_key, score_key)

    def names(runs) -> list[str]:  # noqa: ANN001
        return [run.method if isinstance(run, RunSpec) else run.run.method for run in runs]

    a1, a2 = planned("a1", "A", False, "k1"), planned("a2", "A", False, "")  # a2: a discoverer that cannot pack
    b1, c1 = planned("b1", "B", False, "k1"), planned("c1", "C", True, "k1")
    d1, e1 = planned("d1", "D", True, "k2"), planned("e1", "E", True, "")  # k2: no other model; E: nothing to share
    f1 = planned("f1", "F", False, "k1", pack_key="other")  # alone in its architecture
    [pack] = pack_jobs((a1, a2, b1, c1, d1, e1, f1), 8)
    assert names(pack.train) == names(pack.job.train) == ["a1", "b1"]
    assert names(pack.runs) == names(pack.job.runs) == ["a1", "b1", "c1"]
    [pack] = pack_jobs((a1, a2, b1, c1, d1, e1, f1), 2)  # [A, B] share k1; [C, D] share nothing: no pack
    assert names(pack.runs) == ["a1", "b1"]
    assert pack_jobs((a1, a2, e1), 8) == []  # one untrained model and nothing to share


def test_a_pack_that_fails_as_a_whole_leaves_its_models_to_their_runs(tmp_path, capsys, plugins):
    """One member's config is refused when its training starts: the pack fails, the runs train one by one and
    only that member's runs fail, with its own reason."""
    path = sweep_file(tmp_path, 'methods = ["vanilla", "bimt"]\n' + TOY + "[method_overrides.bimt]\nswap_top_k = 100\n")
    code, out, err = run_cli(["sweep", path, "--workers", "1", "--pack", "4", "--device", "cpu"], capsys)
    assert code == 1, err
    assert "a pack of 2 models trained 0 and made 0 runs" in out and "its runs go one by one" in out
    assert "1 ok, 1 failed" in out
    assert "bimt on toy_mlp (activation_patching, seed 1): swap_top_k=100 is larger than every permutable layer" in out
    home = Path(os.environ["MODBENCH_HOME"])
    assert [(r.method, r.status) for r in rows(home)] == [("vanilla", "ok")]


def close_text(difference: str) -> bool:
    """A line of :func:`differences` between two numbers within float32 rounding of each other."""
    _, _, values = difference.rpartition(": ")
    left, _, right = values.partition(" != ")
    try:
        return float(left) == pytest.approx(float(right), rel=1e-3, abs=1e-4)
    except ValueError:
        return False


def test_a_sweep_killed_with_sigkill_leaves_whole_rows_and_its_rerun_finishes_without_duplicates(
        tmp_path, capsys, plugins):
    path = sweep_file(tmp_path, 'methods = ["l1", "sweep_kill"]\nseeds = [1, 2]\n' + TOY)
    flag = tmp_path / "kill-once"
    flag.touch()
    env = os.environ | {"SWEEP_KILL_FLAG": str(flag)}
    command = [sys.executable, "-m", "modbench", "sweep", str(path), "--workers", "1", "--quiet"]
    # Its own session: the kill (by a run, of its whole process group) takes the driver and its worker.
    killed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, start_new_session=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    home = Path(os.environ["MODBENCH_HOME"])
    before = rows(home)  # every row that is there loads whole
    assert len(before) < 4 and not flag.exists()
    code, out, err = run_cli(["sweep", path, "--workers", "1", "--quiet"], capsys)  # here: one process less
    assert code == 0, err
    assert f"{len(before)} already done, {4 - len(before)} to run" in out
    after = rows(home)
    assert len(after) == 4 and len({r.config_hash for r in after}) == 4
    assert [r.to_dict() for r in after[: len(before)]] == [r.to_dict() for r in before]


def _write_many(path: str, worker: int) -> None:
    """A driver's writes, as a plain result comes back from a worker (no torch imported here)."""
    from modbench.sweeps.driver import PlannedRun, outcome_of, write
    from modbench.sweeps.spec import RunSpec

    run = RunSpec("l1", "toy_mlp", "activation_patching", 1, None, None, 2, 8, 0, 0, 3, "mean")
    store = ResultStore(Path(path))
    for i in range(10):
        record = ResultRecord(
            task="toy_mlp", method="l1", model="tiny_mlp", discoverer="activation_patching", dataset="toy",
            variant="default", cell="c", config_hash=f"{worker}-{i}", train_seed=1, pair_seed=0, boot_seed=0,
            status="ok", failure="", faithfulness_metric="logit_difference", metrics={}, sparsity_per_wire={},
            circuit_size={}, test_accuracy=1.0, best_test_accuracy=1.0, best_step=1, costs={},
            discovery_cost_depends_on_weights=True, config={}, definitions={}, provenance={"w": worker, "i": i})
        planned = PlannedRun(i, run, f"{worker}-{i}", "t", False)
        write(store, outcome_of(planned, {"record": record.to_dict(), "error": "", "seconds": 0.1}))


def test_eight_sweep_processes_writing_at_once_lose_nothing(tmp_path):
    path = str(tmp_path / "results.sqlite")
    run_writers(_write_many, path)
    stored = ResultStore(Path(path)).records()
    assert sorted((r.provenance["w"], r.provenance["i"]) for r in stored) == [(w, i) for w in range(8)
                                                                             for i in range(10)]


def test_ray_and_local_executors_write_the_same_rows(tmp_path, capsys, monkeypatch, plugins):
    pytest.importorskip("ray")
    path = sweep_file(tmp_path, 'methods = ["l1", "vanilla"]\n' + TOY)
    made = {}
    for executor in ("local", "ray"):
        home = tmp_path / executor
        monkeypatch.setenv("MODBENCH_HOME", str(home))
        start = time.perf_counter()
        code, out, err = run_cli(["sweep", path, "--executor", executor, "--workers", "2", "--quiet"], capsys)
        assert code == 0, err
        assert "2 ok, 0 failed" in out, (time.perf_counter() - start, out)
        made[executor] = sorted((comparable(r) for r in rows(home)), key=lambda row: row["config_hash"])
    assert len(made["ray"]) == 2 and made["ray"] == made["local"], differences(made["ray"], made["local"])
