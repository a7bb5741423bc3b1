"""Where modbench keeps things: ``$MODBENCH_HOME`` (default ``~/.cache/modbench``) and the data folder."""

from __future__ import annotations

import os
from pathlib import Path


def modbench_home() -> Path:
    """``MODBENCH_HOME`` if set, else ``modbench`` in the user cache folder (``XDG_CACHE_HOME`` or ~/.cache)."""
    env = os.environ.get("MODBENCH_HOME")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "modbench"


def default_data_dir() -> Path:
    """``MODBENCH_DATA_DIR`` if set, else ``data`` under the modbench home."""
    env = os.environ.get("MODBENCH_DATA_DIR")
    return Path(env).expanduser() if env else modbench_home() / "data"
