"""Issue 17's GPU measurements in one prepared run: one command, one JSON, one markdown table, under 8 minutes
on an H100. Each section is written out as soon as it ends, so a run cut short keeps what it measured.

  (a) the main job's parts (``modbench run --method bimt --task circle_detection``: 10,000 training steps on
      mnist-5k, then 50 x 500 bootstraps of discovery and held-out scoring) on the CPU and on the device, the
      device's training both eager and with compiled steps; one training run each (its own timer, and the
      wall time with the memory probe and any compilation), discovery + scoring timed with Timer; per-step
      time of a BIMT training step, eager and compiled, on both (Timer); agreement of the device with the CPU
      on the CPU-trained model (its logit difference inside the CPU's 95 % interval, the same circuit on how
      many of 10 resamples); compiled against eager training of a float64 BIMT model on the device, 200 steps
      with a swap (the largest weight gap: rounding keeps it near 1e-12; CUDA graphs must not change it).
  (b) ``bench_packed``'s comparisons for 5 and 20 models (training one by one vs one pack, then scoring).
  (c) ``bench_discovery``'s (a) shipped discovery against (b) plain batched patching, on the device.
  (d) the Table-3 reproduction (``reproduce_nainani.py --pack 20``, full MNIST from --data-dir, 5 regimes x
      2 tasks x exact and attribution patching, 50 x 500 bootstraps, training included) from an empty cache,
      with compiled training steps ($MODBENCH_COMPILE=1), stopped after --table3-timeout seconds.
  (e) training-step peak memory per regime on the device (the allocator's peak, and the profiler's memory
      timeline by category).
Targets (H100/H200): Table 3 <= 120 s; 20 models packed >= 10x one by one; the main job faster on the device
than on the machine's CPU cores; discovery <= 1x the plain patched forward; device results within float32
tolerance of the CPU's. Each target is printed met or MISSED with its figure.

On a device machine (it lacks transformer-lens and mlxtend and cannot download; see the device tool's README):
once, here, in the repository root:
    echo /.whl/ >> .git/info/exclude; echo /.gpu_data/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \\
        transformer-lens==3.9.0 better-abc==0.0.3 fancy-einsum==0.0.3 typeguard==4.6.1 datasets==5.2.0 \\
        dill==0.4.1 multiprocess==0.70.19 mlxtend==0.25.0 beartype==0.23.1
    mkdir -p .gpu_data && cp -r ../shared/data/mnist .gpu_data/
then one device call with carry [".whl", ".gpu_data"] and timeout_s 600:
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \\
        .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit; \\
    python3 scripts/gpu_bench.py --device cuda --data-dir .gpu_data --out $OUT
Dry run here (tiny sizes, every code path but the GPU's): python scripts/gpu_bench.py --device cpu --quick
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
REGIMES = ("vanilla", "l1", "l1_local", "l1_swap", "bimt")


@dataclasses.dataclass(frozen=True)
class Sizes:
    train_steps: int | None  # None: the main job's own budget
    step_timing_steps: int
    equality_steps: int
    boots: int
    agreement_resamples: int
    packed_models: tuple[int, ...]
    packed_steps: int
    packed_boots: int
    discovery_pairs: int
    table3_timeout: float
    memory_steps: int
    repeats: int


FULL = Sizes(None, 200, 200, 50, 10, (5, 20), 300, 20, 500, 150.0, 11, 2)
QUICK = Sizes(60, 5, 5, 2, 2, (2, 3), 10, 2, 20, 5.0, 2, 1)


class Report:
    """The run's JSON (every figure) and markdown table (one row per figure), rewritten after each section."""

    def __init__(self, out: Path, header: dict[str, Any]) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.out, self.data, self.rows = out, {"machine": header}, []

    def add(self, section: str, values: dict[str, Any], rows: list[tuple[str, str, str]]) -> None:
        self.data[section] = values
        self.rows += [(section, *row) for row in rows]
        (self.out / "gpu_bench.json").write_text(json.dumps(self.data, indent=1, default=str))
        lines = [f"{self.data['machine']['line']}", "", "| part | what | figure | target |", "|---|---|---|---|"]
        lines += [f"| {part} | {what} | {figure} | {target} |" for part, what, figure, target in self.rows]
        (self.out / "gpu_bench.md").write_text("\n".join(lines) + "\n")
        for row in rows:
            print(f"  {section}: {row[0]}: {row[1]}" + (f"  [{row[2]}]" if row[2] else ""), flush=True)


def main_job(device: torch.device, sizes: Sizes, threads: int) -> tuple[dict, list]:
    from bench_training import time_arm
    from benchlib import Arm, interleaved, target_line
    from modbench.experiment import ExperimentSpec, pair_scoring, record_identity
    from modbench.methods import METHODS
    from modbench.pipeline import build_model, build_task
    from modbench.scoring import discover_and_score
    from modbench.training.trainer import train

    cpu = torch.device("cpu")
    spec = ExperimentSpec("circle_detection", "bimt").resolved()
    task = build_task(spec.task, spec.model_config)
    data = task.load(None)
    training = record_identity(spec, data.source, task.config).training
    cfg = training.train if sizes.train_steps is None else dataclasses.replace(
        training.train, steps=sizes.train_steps, eval_every=sizes.train_steps)
    values: dict[str, Any] = {"data": data.source, "steps": cfg.steps}
    models = {}
    runs = (("cpu", cpu, False), ("device", device, False), ("device compiled", device, True))
    for label, where, compile_step in runs:
        model, method = build_model(training), METHODS.get(training.method).build(training.method_config)
        start = time.perf_counter()
        result = train(model, method, task, data, cfg, where, show_progress=False, compile_step=compile_step)
        values[f"train {label}"] = {"train_time_s": result.train_time_s, "wall_s": time.perf_counter() - start,
                                    "test_accuracy": result.test_accuracy}
        models[label] = model.eval()
    pairs, discoverer, selection, intervention = pair_scoring(spec, task, data)
    scoring = dataclasses.replace(spec.discovery, boots=sizes.boots)
    outcomes: dict[str, Any] = {}
    alike = {"cpu": (models["cpu"], cpu), "device": (build_model(training).to(device), device)}
    alike["device"][0].load_state_dict(models["cpu"].state_dict())  # the CPU-trained weights on the device
    arms = {label: Arm(lambda _, m=m, w=w, label=label: outcomes.__setitem__(label, discover_and_score(
        m, task, pairs.to(w), discoverer, selection, intervention, scoring, w))) for label, (m, w) in alike.items()}
    seconds = interleaved(arms, sizes.repeats, threads)
    low, high = (outcomes["cpu"].metrics["logit_difference"][k] for k in ("ci_low", "ci_high"))
    on_device = outcomes["device"].metrics["logit_difference"]["mean"]
    same = same_circuits(alike, task, pairs, discoverer, selection, scoring, sizes.agreement_resamples)
    x, y = data.x_train.to(device), data.y_train.to(device)
    step_arms = {f"{label} {kind}": time_arm("bimt", xs, ys, sizes.step_timing_steps, where, kind == "compiled")
                 for label, where, xs, ys in (("cpu", cpu, data.x_train, data.y_train), ("device", device, x, y))
                 for kind in ("eager", "compiled")}
    per_step = {k: v / sizes.step_timing_steps for k, v in interleaved(step_arms, sizes.repeats, threads).items()}
    gap = compiled_gap(device, sizes.equality_steps)
    values |= {"discovery_and_scoring_s": seconds, "logit_difference": {"cpu": [low, high], "device": on_device},
               "same_circuits": same, "step_s": per_step, "compiled_vs_eager_float64": gap}
    main_cpu = values["train cpu"]["train_time_s"] + seconds["cpu"]
    main_device = min(values["train device"]["train_time_s"], values["train device compiled"]["train_time_s"])
    main_device += seconds["device"]
    rows = [(f"training {cfg.steps} steps, {label}", f"{values[f'train {label}']['train_time_s']:.1f} s "
             f"(wall {values[f'train {label}']['wall_s']:.1f} s)", "") for label, _, _ in runs]
    rows += [(f"discovery + scoring, {sizes.boots} x 500, {label}", f"{s:.2f} s", "") for label, s in seconds.items()]
    rows += [(f"BIMT step, {label}", f"{s * 1e3:.2f} ms", "") for label, s in per_step.items()]
    rows += [("main job, cpu / device", f"{main_cpu:.1f} s / {main_device:.1f} s",
              target_line("device faster", main_cpu / main_device, 1.0, at_least=True)),
             ("device logit difference vs cpu 95 % interval", f"{on_device:.4f} in [{low:.4f}, {high:.4f}]",
              "met" if low <= on_device <= high else "MISSED"),
             (f"same circuit on resamples (of {sizes.agreement_resamples})", f"{same}",
              target_line("share", same / sizes.agreement_resamples, 0.9, at_least=True)),
             (f"compiled vs eager training, float64 BIMT, {gap['steps']} steps: largest weight gap",
              f"{gap['max_weight_gap']:.1e}", target_line("gap", gap["max_weight_gap"], 1e-10, False, unit=""))]
    return values, rows


def compiled_gap(device: torch.device, steps: int) -> dict[str, float]:
    """Compiled against eager training of the same float64 BIMT model on ``device`` (a swap at step 200, when
    reached): the largest weight gap, which rounding alone keeps near 1e-12."""
    from modbench.data.dataset import TaskData
    from modbench.methods import METHODS
    from modbench.models import MODELS
    from modbench.tasks import TASKS
    from modbench.training.trainer import train

    task = TASKS.get("circle_detection").build()
    data = task.load(None)
    data = TaskData(data.source, data.x_train.double(), data.y_train, data.x_test.double(), data.y_test)
    cfg = dataclasses.replace(task.config.train, steps=steps, eval_every=steps)
    models, accuracy = [], []
    for compile_step in (False, True):
        torch.manual_seed(0)
        model = MODELS.get(task.config.model).build().double()
        result = train(model, METHODS.get("bimt").build(), task, data, cfg, device, show_progress=False,
                       compile_step=compile_step)
        models.append(model.state_dict())
        accuracy.append(result.test_accuracy)
    gap = max(float((a - b).abs().max()) for a, b in zip(models[0].values(), models[1].values(), strict=True))
    return {"steps": steps, "max_weight_gap": gap, "test_accuracy_eager": accuracy[0],
            "test_accuracy_compiled": accuracy[1]}


def same_circuits(alike: dict, task, pairs, discoverer, selection, scoring, count: int) -> int:  # noqa: ANN001
    """On how many of the first ``count`` discovery resamples the CPU and the device choose the same circuit."""
    from modbench.scoring import resample, split_pairs

    part, _ = split_pairs(len(pairs), scoring.holdout, scoring.pair_seed)
    chosen = resample(part, count, scoring.pairs_per_boot, torch.Generator().manual_seed(scoring.boot_seed))
    same = 0
    for rows in chosen:
        circuits = []
        for model, where in alike.values():
            scores = discoverer.score(model, task, pairs.select(rows).to(where))
            means = {site: value.cpu()[None] for site, value in scores.mean().items()}
            circuits.append(selection.select(means, scores.lower_is_better).keep)
        same += all(torch.equal(circuits[0][site], circuits[1][site]) for site in circuits[0])
    return same


def packed(device: torch.device, sizes: Sizes, threads: int) -> tuple[dict, list]:
    from bench_packed import PACKED_TARGET, TASK, compare_scoring, compare_training, on_device
    from benchlib import target_line
    from modbench.tasks import TASKS

    task = TASKS.get(TASK).build()
    data = on_device(task.load(None), device)
    cfg = dataclasses.replace(task.config.train, steps=sizes.packed_steps, eval_every=sizes.packed_steps)
    values, rows = {}, []
    for count in sizes.packed_models:
        trained = compare_training(count, task, data, cfg, device, sizes.repeats, threads)
        scored = compare_scoring(trained["models"]["packed"], task, data, sizes.packed_boots, device, sizes.repeats,
                                 threads)
        values[count] = {"training_s": trained["seconds"], "accuracy": trained["accuracy"], **scored}
        speedup = trained["seconds"]["alone"] / trained["seconds"]["packed"]
        rows += [(f"{count} models x {cfg.steps} steps, one by one / packed", f"{trained['seconds']['alone']:.1f} s"
                  f" / {trained['seconds']['packed']:.1f} s", target_line("speed-up", speedup, PACKED_TARGET, True)),
                 (f"{count} models scored ({sizes.packed_boots} x 500), one by one / packed",
                  f"{scored['seconds']['alone']:.1f} s / {scored['seconds']['packed']:.1f} s, same circuits "
                  f"{scored['same_circuits']} of {count}", "")]
    return values, rows


def discovery(device: torch.device, sizes: Sizes, threads: int) -> tuple[dict, list]:
    from bench_discovery import PlainPatching
    from benchlib import Arm, interleaved, target_line
    from modbench.discovery.activation_patching import ActivationPatching
    from modbench.discovery.catalog import ActivationPatchingConfig
    from modbench.models import MODELS
    from modbench.tasks import TASKS

    torch.manual_seed(0)
    model = MODELS.get("mnist_mlp").build().to(device).eval()
    task = TASKS.get("circle_detection").build()
    pairs = task.contrast(task.load(None), seed=0)
    pairs = pairs.select(torch.arange(sizes.discovery_pairs) % len(pairs)).to(device)
    config = ActivationPatchingConfig()
    shipped, plain = ActivationPatching(config), PlainPatching(model, task, config.max_rows)
    with torch.no_grad():
        t = interleaved({"shipped": Arm(lambda _: shipped.score(model, task, pairs)),
                         "plain": Arm(lambda _: plain.batched(pairs))}, sizes.repeats * 3, threads)
    ratio = t["shipped"] / t["plain"]
    return t, [(f"discovery / plain patched forward, {sizes.discovery_pairs} pairs",
                f"{t['shipped'] * 1e3:.2f} ms / {t['plain'] * 1e3:.2f} ms", target_line("ratio", ratio, 1.0, False))]


def table3(device: torch.device, sizes: Sizes, data_dir: Path | None, quick: bool) -> tuple[dict, list]:
    """The reproduction in its own process group (its sweep starts workers), in an empty home; killed, with
    all it started, after the timeout."""
    from benchlib import target_line

    with tempfile.TemporaryDirectory(prefix="gpu-bench-table3-") as home:
        env = os.environ | {"MODBENCH_HOME": home, "MODBENCH_COMPILE": "1", "MODBENCH_OFFLINE": "1"}
        if data_dir is not None:
            env["MODBENCH_DATA_DIR"] = str(data_dir)
        command = [sys.executable, str(ROOT / "scripts/reproduce_nainani.py"), "--device", str(device), "--pack",
                   "20", "--out", str(Path(home) / "leaderboards")] + (["--allow-embedded"] if quick else [])
        start = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   start_new_session=True)
        try:
            output, _ = process.communicate(timeout=sizes.table3_timeout)
            finished = process.returncode == 0
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, finished = process.communicate()[0], False
        seconds = time.perf_counter() - start
    tail = output.strip().splitlines()[-5:]
    values = {"seconds": seconds, "finished": finished, "returncode": process.returncode, "output_tail": tail}
    figure = f"{seconds:.0f} s" if finished else f"not finished in {seconds:.0f} s (rc {process.returncode})"
    verdict = target_line("wall time", seconds, 120, False, " s") if finished else "MISSED (did not finish)"
    return values, [("Table 3 from an empty cache, --pack 20, compiled steps", figure, verdict)]


def memory(device: torch.device, sizes: Sizes) -> tuple[dict, list]:
    from bench_training import memory_work
    from benchlib import target_line
    from modbench.tasks import TASKS
    from modbench.training.memory import peak_bytes, peak_by_category

    data = TASKS.get("circle_detection").build().load(None)
    x, y = data.x_train.to(device), data.y_train.to(device)
    values, rows = {}, []
    for regime in REGIMES:  # steps up to 500: BIMT's swap included
        work = memory_work(regime, x, y, sizes.memory_steps, 500, device)
        if device.type == "cuda":
            work(1)  # unmeasured: cuBLAS's workspaces, the same for every regime, are not the regime's
        allocator, kind = peak_bytes(work, device)
        timeline = peak_by_category(work, device)
        values[regime] = {"peak_bytes": allocator, "kind": kind, "timeline_bytes": timeline.bytes,
                          "by_category": timeline.by_category}
        rows.append((f"training-step peak memory, {regime}", f"{allocator / 2**20:.3f} MiB ({kind}); by the memory "
                     f"timeline {timeline.bytes / 2**20:.3f} MiB", ""))
    ratio = values["bimt"]["timeline_bytes"] / values["vanilla"]["timeline_bytes"]
    rows.append(("BIMT / vanilla (timeline)", f"{ratio:.3f}x", target_line("ratio", ratio, 1.1, False)))
    return values, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a dry run of every code path")
    parser.add_argument("--data-dir", type=Path, default=None, help="holds mnist/ (full MNIST, for Table 3)")
    parser.add_argument("--out", type=Path, default=Path("gpu_bench_out"))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads [default: torch's choice]")
    parser.add_argument("--parts", nargs="+", default=["a", "c", "e", "b", "d"], help="sections, in this order")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_bench: no CUDA device here (torch sees none); --device cpu --quick makes a dry run")
        raise SystemExit(2)
    sys.path.insert(0, str(ROOT / "scripts"))
    os.environ["MODBENCH_OFFLINE"] = "1"  # the main job's data is the embedded mnist-5k: no download attempts
    os.environ.pop("MODBENCH_DATA_DIR", None)
    from benchlib import machine, threads_arg

    threads = threads_arg(args.threads)
    sizes = QUICK if args.quick else FULL
    report = Report(args.out, {"line": machine(device, threads), "sizes": dataclasses.asdict(sizes),
                               "argv": sys.argv[1:]})
    print(report.data["machine"]["line"], flush=True)
    sections = {"a": ("main job", lambda: main_job(device, sizes, threads)),
                "b": ("packed", lambda: packed(device, sizes, threads)),
                "c": ("discovery", lambda: discovery(device, sizes, threads)),
                "d": ("table 3", lambda: table3(device, sizes, args.data_dir, args.quick)),
                "e": ("memory", lambda: memory(device, sizes))}
    start = time.perf_counter()
    for key in args.parts:
        name, run = sections[key]
        print(f"({key}) {name} at {time.perf_counter() - start:.0f} s", flush=True)
        values, rows = run()
        report.add(f"({key}) {name}", values, rows)
    report.add("total", {"seconds": time.perf_counter() - start}, [("wall time", f"{time.perf_counter() - start:.0f} s",
                                                                    "under 8 min on an H100")])
    print(f"wrote {args.out / 'gpu_bench.json'} and {args.out / 'gpu_bench.md'}")


if __name__ == "__main__":
    main()
