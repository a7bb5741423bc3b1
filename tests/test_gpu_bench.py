"""``scripts/gpu_bench.py`` without a GPU: it refuses ``--device cuda`` in one line (exit 2), and its dry run
(``--device cpu --quick``) runs its sections' code and writes the JSON and the markdown table, each figure
with its verdict (met / MISSED) where a target applies. The sections that compile training steps and train
packs are the slow part; the whole dry run is marked slow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_bench.py"


def dry_run(tmp_path: Path, *parts: str) -> tuple[dict, str]:
    out = tmp_path / "out"
    command = [sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--threads", "1", "--out", str(out)]
    done = subprocess.run(command + (["--parts", *parts] if parts else []), capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "gpu_bench.json").read_text()), (out / "gpu_bench.md").read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_without_cuda_it_says_so_in_one_line_and_exits_2(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cuda", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert len(done.stdout.strip().splitlines()) == 1 and "no CUDA" in done.stdout
    assert not (tmp_path / "gpu_bench.json").exists()


def test_dry_run_of_discovery_memory_and_the_table3_timeout(tmp_path):
    data, table = dry_run(tmp_path, "c", "e", "d")
    assert {"(c) discovery", "(e) memory", "(d) table 3", "total"} <= data.keys()
    assert set(data["(c) discovery"]) == {"shipped", "plain"} and all(v > 0 for v in data["(c) discovery"].values())
    memory = data["(e) memory"]
    assert memory["bimt"]["timeline_bytes"] > memory["vanilla"]["timeline_bytes"] > 0
    assert not data["(d) table 3"]["finished"]  # the quick run's 5 s cannot train five models: the kill path
    assert "| (d) table 3 | Table 3 from an empty cache" in table and "MISSED (did not finish)" in table
    assert "target ratio" in table


@pytest.mark.slow
def test_the_whole_dry_run_covers_every_section(tmp_path):
    data, table = dry_run(tmp_path)
    main_job = data["(a) main job"]
    assert {"train cpu", "train device", "train device compiled", "step_s", "same_circuits"} <= main_job.keys()
    assert main_job["same_circuits"] == 2  # the same weights on the same CPU choose the same circuits
    assert main_job["compiled_vs_eager_float64"]["max_weight_gap"] < 1e-10
    assert set(data["(b) packed"]) == {"2", "3"}
    assert table.count("\n| ") >= 20
