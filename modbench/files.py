"""The one atomic-write helper: write to a temporary file beside the target, then rename over it, so a
killed process leaves the old file or the new one, never half of one (and no stray temporary file)."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO

from modbench.errors import UserError


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    except OSError as error:
        raise UserError(f"cannot write {path}: {error.strerror or error}") from None
    try:
        with handle:
            write(handle)
        os.replace(handle.name, path)
    except BaseException as error:
        Path(handle.name).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise UserError(f"cannot write {path}: {error.strerror or error}") from None
        raise
    return path


def write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda handle: handle.write(text.encode()))


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest (``md5``, ``sha1``, ``sha256``) of a file, read in 1 MiB blocks."""
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


DOWNLOAD_TIMEOUT_S = 3.0  # per socket operation: an offline machine fails fast, a slow link still completes


def fetch_checked(url: str, into: IO[bytes], algorithm: str, expected: str) -> None:
    """Stream ``url`` into the open binary file ``into`` and rewind it; OSError when the URL is unreachable or
    the content's ``algorithm`` digest is not ``expected`` (ValueError for a malformed URL)."""
    digest = hashlib.new(algorithm)
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        for block in iter(lambda: response.read(1 << 20), b""):
            digest.update(block)
            into.write(block)
    if digest.hexdigest() != expected:
        raise OSError(f"checksum mismatch for {url}")
    into.seek(0)
