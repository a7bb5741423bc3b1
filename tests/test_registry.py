from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from modbench.errors import UserError
from modbench.methods import METHODS
from modbench.registry import Registry, import_plugin

PLUGIN = Path(__file__).parent / "plugins" / "l2_regime.py"


def test_duplicate_keys_are_rejected():
    registry: Registry[int] = Registry("widget")
    registry.add("a", 1)
    with pytest.raises(ValueError, match="already registered"):
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
