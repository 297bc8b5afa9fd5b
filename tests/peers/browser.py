"""A real headless Chromium for the tests: Debian's ``chromium`` package, driven by playwright-core from Node.

Chromium is installed with ``apt-get`` on first use when ``/usr/bin/chromium`` is missing and the machine can
(``apt-get`` present, running as root); playwright-core (pinned in ``tests/peers/node/package.json``) only ever
launches that executable and never downloads a browser of its own. The driver is ``tests/peers/node/browser_driver.mjs``
(ops at the top of the script), run through :class:`~tests.peers.node.NodeDriver`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers._cache import cache_dir, file_lock, progress, uncaptured
from tests.peers.node import NodeDriver

CHROMIUM = Path("/usr/bin/chromium")
_APT_TIMEOUT = 900.0  # seconds for each apt-get step; a cold chromium install pulls about a hundred packages


class ChromiumUnavailable(RuntimeError):
    """Chromium is not installed and cannot be installed here; the message says why."""


def _apt(apt_get: str, *args: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        result = subprocess.run(
            [apt_get, *args], capture_output=True, text=True, env=env, timeout=_APT_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise ChromiumUnavailable(f"apt-get {' '.join(args)} did not finish within {_APT_TIMEOUT:.0f}s") from None
    if result.returncode != 0:
        output = (result.stdout + result.stderr)[-3000:]
        raise ChromiumUnavailable(f"apt-get {' '.join(args)} failed with {result.returncode}:\n{output}")


def ensure_chromium() -> Path:
    """Return ``/usr/bin/chromium``, installing Debian's package first if it is missing.

    Raises :class:`ChromiumUnavailable` when it is missing and cannot be installed (no ``apt-get``, not root, or
    the install failed).
    """
    if CHROMIUM.is_file():
        return CHROMIUM
    apt_get = shutil.which("apt-get")
    if apt_get is None:
        raise ChromiumUnavailable(f"{CHROMIUM} is missing and there is no apt-get to install Debian's chromium")
    if os.geteuid() != 0:
        raise ChromiumUnavailable(f"{CHROMIUM} is missing; install it as root: apt-get install -y chromium")
    with file_lock(cache_dir() / "chromium.lock"):
        if CHROMIUM.is_file():
            return CHROMIUM
        started = time.monotonic()
        progress("apt-get update (for chromium; first run only)")
        _apt(apt_get, "update", "-q")
        progress("apt-get install -y chromium (about a hundred packages; first run only)")
        _apt(apt_get, "install", "-y", "-q", "chromium")
        if not CHROMIUM.is_file():
            raise ChromiumUnavailable(f"apt-get installed chromium but {CHROMIUM} is still missing")
        progress(f"chromium installed in {time.monotonic() - started:.0f}s")
    return CHROMIUM


@pytest.fixture(scope="session")
def chromium(pytestconfig: pytest.Config) -> Path:
    """The Chromium executable (installed on first use); the test is skipped, with the reason, if it cannot be."""
    with uncaptured(pytestconfig):
        try:
            return ensure_chromium()
        except ChromiumUnavailable as error:
            pytest.skip(f"no Chromium for the browser tests: {error}")


@pytest.fixture(scope="module")
def browser_driver(chromium: Path, node_packages: Path) -> Iterator[NodeDriver]:
    """A playwright-core driver shared by a test module; each test launches its own browser on a fresh profile."""
    with NodeDriver("browser", default_timeout=60.0) as driver:
        yield driver


@pytest.fixture
def browser(browser_driver: NodeDriver, chromium: Path, tmp_path: Path) -> Iterator[NodeDriver]:
    """A freshly launched headless Chromium (its own ``--user-data-dir`` under ``tmp_path``), closed afterwards."""
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    browser_driver.call("launch", executable_path=str(chromium), user_data_dir=str(profile))
    yield browser_driver
    browser_driver.call("close_browser")
