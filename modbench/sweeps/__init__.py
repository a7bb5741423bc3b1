"""Sweeps: ``modbench sweep FILE`` expands a TOML file into runs, skips runs whose record already exists
and runs the rest on a process pool (``--executor local``) or on Ray (``--executor ray``).

The file (every key but ``methods`` and ``tasks`` optional; unknown keys are errors)::

    methods = ["vanilla", "l1", "l1_local", "l1_swap", "bimt"]   # registered method names
    tasks = ["circle_detection", "line_detection"]               # registered task names
    discoverers = ["activation_patching"]   # default: each task's own
    seeds = [1, 2, 3]                       # training seeds; default [1]
    model = "mnist_mlp"                     # default: each task's own
    steps = 200                             # training steps; default: the task's budget for its data
    boots = 50                              # bootstrap resamples (default 50)
    pairs = 500                             # pairs per resample (default 500)
    pair_seed = 0                           # default 0
    boot_seed = 0                           # default 0
    top_k = 15                              # selection top_k with K; default: the task's selection
    ablation = "mean"                       # intervention: mean, zero or resample (default mean)

    [method_overrides.bimt]                 # config fields of a listed method, typed as `--set`
    lam = 0.02
    [discoverer_overrides.on_off]           # config fields of a discoverer the sweep uses
    clusters = "contiguous"

Runs are methods x tasks x discoverers x seeds, each exactly the run ``modbench run`` makes from the
same flags (so rows of either are recognised by the other). Lists must be non-empty and without repeats.
Everything is checked before any training or writing: a bad file is one line and exit code 2.
A run is skipped when the results database has a row (ok or failed) with its ``config_hash``; a run that
failed before making a row (training diverged, a crash) is tried again by the next sweep. ``modbench sweep``
exits with 0 when every run is ok, 1 when any failed (listed with its reason, never ranked), 2 for a bad
file or flag. Sweeps record rows only: figures are made by ``modbench run``. With ``--pack N`` the runs of up to N
models of one architecture and training config are made in one executor job: the models the cache lacks trained
in one pack (``modbench.training.packed``), the runs that differ only in their model scored in one batched pass
(``modbench.models.pack``; discoverers declared ``packable``). A pack that fails as a whole leaves its runs to
the one-by-one path.
"""

from modbench.sweeps.driver import Outcome, Plan, PlannedRun, execute, pack_message, plan, prepare
from modbench.sweeps.executors import ExecutorOptions, make_executor
from modbench.sweeps.spec import RunSpec, SweepSpec, load_sweep

__all__ = ["ExecutorOptions", "Outcome", "Plan", "PlannedRun", "RunSpec", "SweepSpec", "execute", "load_sweep",
           "make_executor", "pack_message", "plan", "prepare"]
