"""Shared plumbing for the self-installing peers: the cache folder, an inter-process lock, progress output.

The cache folder and its lock are the development stack's (:mod:`devstack.synapse`), so every installed peer
lives in one place and one lock discipline guards it.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.synapse import cache_dir, install_lock

__all__ = ["cache_dir", "file_lock", "progress", "uncaptured"]


def progress(message: str) -> None:
    """Print an install step to stderr (see :func:`uncaptured` for making it visible under pytest)."""
    sys.stderr.write(f"[qrlink peers {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def file_lock(path: Path) -> contextlib.AbstractContextManager[None]:
    """Hold an exclusive ``flock`` on *path* so two processes never install the same peer at once."""
    return install_lock(path, progress)


@contextlib.contextmanager
def uncaptured(config: pytest.Config) -> Iterator[None]:
    """Suspend pytest's output capture, so a slow first install shows its progress instead of looking hung."""
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is None:  # running with -p no:capture
        yield
        return
    with capture.global_and_fixture_disabled():
        yield
