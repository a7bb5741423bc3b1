"""What ships: the wheel and the sdist built from this tree hold every file of modbench (code and package data)
and every task file of the top-level tasks/ folder (as the package modbench_tasks), so an installed modbench
lists the same tasks."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = "import sys, setuptools.build_meta as b; getattr(b, sys.argv[1])(sys.argv[2])"  # one build per process


def test_wheel_and_sdist_hold_every_file_of_modbench_and_every_task_file(tmp_path):
    source = tmp_path / "src"  # a copy: building writes build/ and *.egg-info beside the sources
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("modbench", "tasks"):
        shutil.copytree(ROOT / folder, source / folder, ignore=ignore)
    for build in ("build_wheel", "build_sdist"):
        done = subprocess.run([sys.executable, "-c", BUILD, build, str(tmp_path / "dist")], cwd=source,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    [wheel_path], [sdist_path] = (tmp_path / "dist").glob("*.whl"), (tmp_path / "dist").glob("*.tar.gz")

    shipped = {p.relative_to(source).as_posix() for p in (source / "modbench").rglob("*") if p.is_file()}
    task_files = {p.name for p in (source / "tasks").glob("*.toml")}
    assert len(task_files) >= 6
    wheel = set(zipfile.ZipFile(wheel_path).namelist())
    assert shipped <= wheel, sorted(shipped - wheel)  # missing from [tool.setuptools] packages or package-data
    assert {f"modbench_tasks/{name}" for name in task_files | {"__init__.py"}} <= wheel
    with tarfile.open(sdist_path) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {f"tasks/{name}" for name in task_files} <= names and shipped <= names
