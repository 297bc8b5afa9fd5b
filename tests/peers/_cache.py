"""Shared plumbing for the self-installing peers: the cache folder, an inter-process lock, progress output."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def cache_dir() -> Path:
    """The folder holding installed peers: ``$QRLINK_CACHE`` if set, else ``~/.cache/qrlink``."""
    configured = os.environ.get("QRLINK_CACHE")
    root = Path(configured).expanduser() if configured else Path.home() / ".cache" / "qrlink"
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on *path* so two processes never install the same peer at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"waiting for another process holding {path}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def progress(message: str) -> None:
    """Print an install step to stderr (see :func:`uncaptured` for making it visible under pytest)."""
    sys.stderr.write(f"[qrlink peers {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


@contextlib.contextmanager
def uncaptured(config: pytest.Config) -> Iterator[None]:
    """Suspend pytest's output capture, so a slow first install shows its progress instead of looking hung."""
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is None:  # running with -p no:capture
        yield
        return
    with capture.global_and_fixture_disabled():
        yield
