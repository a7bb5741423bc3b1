from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from modbench.errors import UserError
from modbench.registries import METHODS
from modbench.registry import Registry, import_plugin

PLUGIN = Path(__file__).parent / "plugins" / "l2_regime.py"


def test_duplicate_keys_are_rejected():
    registry: Registry[int] = Registry("widget")
    registry.add("a", 1)
    with pytest.raises(UserError, match="already registered"):
        registry.add("a", 2)


def test_unknown_key_lists_known_keys_and_suggests_the_closest():
    with pytest.raises(UserError) as info:
        METHODS.get("bimtt")
    message = str(info.value)
    assert "did you mean 'bimt'" in message and "l1_local" in message and "vanilla" in message


def test_builtin_regimes_are_registered():
    assert {"vanilla", "l1", "l1_local", "l1_swap", "bimt"} <= set(METHODS.keys())


def test_plugin_file_registers_a_method():
    import_plugin(str(PLUGIN))
    spec = METHODS.get("l2_example")
    assert spec.config.lam == 1e-4
    with pytest.raises(ValueError):
        type(spec.config)(lam=-1.0)


def test_missing_plugin_is_a_user_error():
    with pytest.raises(UserError, match="not found"):
        import_plugin("no_such_module_for_modbench")


def test_entry_point_plugin_trains_with_the_cli(tmp_path):
    """A package that only declares an entry point adds a method: no modbench file is edited."""
    (tmp_path / "l2_regime.py").write_text(PLUGIN.read_text())
    dist = tmp_path / "l2_regime-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: l2-regime\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[modbench.methods]\nl2_example = l2_regime\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "MODBENCH_PLUGINS": ""}
    command = [sys.executable, "-m", "modbench", "train", "--method", "l2_example", "--steps", "30", "--quiet"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert '"method": "l2_example"' in done.stdout and '"data_source": "mnist-5k"' in done.stdout


def test_importing_and_listing_loads_neither_torch_nor_transformer_lens():
    """``modbench --help`` and ``modbench list`` must answer fast: declarations never import torch."""
    code = ("import sys; from modbench.cli.app import main\n"
            "try:\n    main(['list'])\nexcept SystemExit:\n    pass\n"
            "heavy = sorted(m for m in ('torch', 'transformer_lens', 'pandas', 'sklearn') if m in sys.modules)\n"
            "print('HEAVY', heavy)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout and "bimt" in done.stdout


def test_registry_module_imports_no_plugin():
    code = "import sys, modbench, modbench.registry; print(sorted(m for m in sys.modules if m.startswith('modbench')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "['modbench', 'modbench.errors', 'modbench.registry']"


def test_a_plugin_that_fails_to_import_is_one_line(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("import no_such_dependency_anywhere\n")
    with pytest.raises(UserError, match="failed to import: ModuleNotFoundError"):
        import_plugin(str(broken))
    taken = tmp_path / "taken.py"
    taken.write_text("from modbench.registries import register_method\n"
                     "from modbench.methods.catalog import LocalCostConfig\n"
                     "register_method('bimt', LocalCostConfig(), 'again', factory='x:y')\n")
    METHODS.keys()
    with pytest.raises(UserError, match="'bimt' is already registered"):
        import_plugin(str(taken))


def test_two_plugin_files_with_the_same_name_in_different_folders_both_load(tmp_path):
    for folder, key in (("a", "same_name_one"), ("b", "same_name_two")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "plugin.py").write_text(
            "from modbench.registries import register_method\n"
            "from modbench.methods.catalog import LocalCostConfig\n"
            f"register_method({key!r}, LocalCostConfig(), 'x', factory='modbench.methods.local_cost:LocalCostMethod')\n")
        import_plugin(str(tmp_path / folder / "plugin.py"))
    assert {"same_name_one", "same_name_two"} <= set(METHODS.keys())


def test_the_repository_holds_no_symlinks():
    root = Path(__file__).resolve().parent.parent
    listed = subprocess.run(["git", "-C", str(root), "ls-files", "-s"], capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    assert [line for line in listed.stdout.splitlines() if line.startswith("120000")] == []
