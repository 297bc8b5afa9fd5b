"""The Docker image, without Docker: install exactly what the Dockerfile copies, the way it installs it, and serve.

The Dockerfile is parsed (its ``WORKDIR``, ``COPY``, ``RUN pip install``, ``ENV``, ``EXPOSE`` and ``HEALTHCHECK``);
the copied files go into a temporary tree, ``pip install`` runs there into a fresh virtualenv (no access to this
checkout), and ``rendezvous serve`` from that virtualenv must answer ``/health``; the image's own health check
command must pass against it. A file the Dockerfile forgets to copy, or a dependency the image would lack, fails
here. About 30 s, most of it pip.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from rendezvous.config import DEFAULT_PORT, Settings, env_var_name
from tests.support.server import REPO_ROOT, free_port

DOCKERFILE = REPO_ROOT / "Dockerfile"

pytestmark = [pytest.mark.image, pytest.mark.timeout(180)]
#: What pip prints when it cannot reach a package index (as opposed to a requirement nothing satisfies).
OFFLINE_SIGNS = ("NewConnectionError", "Temporary failure in name resolution", "Network is unreachable")


@dataclass
class Image:
    """What the Dockerfile says, as far as this test needs it."""

    workdir: str = "/"
    copies: list[tuple[list[str], str]] = field(default_factory=list)
    pip_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    exposed: list[int] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)


def _instructions(text: str) -> Iterator[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined and comments dropped."""
    logical = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not logical and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        logical += stripped
        keyword, _, rest = logical.partition(" ")
        yield keyword.upper(), rest.strip()
        logical = ""


def parse_dockerfile(text: str) -> Image:
    image = Image()
    for keyword, rest in _instructions(text):
        if keyword == "WORKDIR":
            image.workdir = rest
        elif keyword == "COPY":
            *sources, destination = shlex.split(rest)
            assert not any(s.startswith("--") for s in sources), f"COPY options are not handled: {rest}"
            image.copies.append((sources, destination))
        elif keyword == "RUN":
            for command in rest.split("&&"):
                words = shlex.split(command)
                if words[:2] == ["pip", "install"]:
                    image.pip_args = words[2:]
        elif keyword == "ENV":
            for assignment in shlex.split(rest):
                name, _, value = assignment.partition("=")
                image.env[name] = value
        elif keyword == "EXPOSE":
            image.exposed += [int(port.split("/")[0]) for port in rest.split()]
        elif keyword == "HEALTHCHECK":
            image.healthcheck = json.loads(rest[rest.index("CMD") + 3 :])
        elif keyword == "CMD":
            image.cmd = json.loads(rest)
    return image


IMAGE = parse_dockerfile(DOCKERFILE.read_text())


def _copy_tree(root: Path) -> Path:
    """The image's WORKDIR as the COPY lines fill it (sources relative to the build context)."""
    workdir = root / IMAGE.workdir.lstrip("/")
    workdir.mkdir(parents=True)
    for sources, destination in IMAGE.copies:
        target = workdir / destination
        for source in sources:
            path = REPO_ROOT / source
            if path.is_dir():
                ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "node_modules")
                shutil.copytree(path, target, ignore=ignore, dirs_exist_ok=True)
            elif destination.endswith("/") or len(sources) > 1:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target / path.name)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
    return workdir


def _image_environ(**extra: str) -> dict[str, str]:
    """A process environment like the container's: no RENDEZVOUS_* or PYTHONPATH of this test run."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("RENDEZVOUS_", "_RENDEZVOUS")) and key not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    return {**env, **IMAGE.env, **extra}


def test_dockerfile_parses_into_what_the_image_needs() -> None:
    assert IMAGE.pip_args, "no pip install line"
    assert IMAGE.exposed == [DEFAULT_PORT]
    assert IMAGE.healthcheck[0] == "python"
    assert IMAGE.cmd == ["rendezvous", "serve"]
    for name in IMAGE.env:
        assert name.removeprefix("RENDEZVOUS_").lower() in Settings.model_fields, name
        assert env_var_name(name.removeprefix("RENDEZVOUS_").lower()) == name


def test_what_the_dockerfile_copies_installs_and_serves(tmp_path: Path) -> None:
    workdir = _copy_tree(tmp_path / "image")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=60)
    bin_dir = venv / "bin"
    # pip's cache only makes the test faster, and fewer retries only make it fail sooner: what gets installed
    # is the same.
    pip_args = [arg for arg in IMAGE.pip_args if arg != "--no-cache-dir"]
    install = subprocess.run(
        [str(bin_dir / "pip"), "install", "--quiet", "--retries", "1", *pip_args],
        cwd=workdir,
        env=_image_environ(),
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    output = install.stdout + install.stderr
    if install.returncode != 0 and any(sign in output for sign in OFFLINE_SIGNS):
        pytest.skip("no package index reachable for the dependencies")
    assert install.returncode == 0, output

    port = free_port()
    env = _image_environ(RENDEZVOUS_HOST="127.0.0.1", RENDEZVOUS_PORT=str(port))
    command = [str(bin_dir / IMAGE.cmd[0]), *IMAGE.cmd[1:]]
    server = subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            assert server.poll() is None, server.communicate()[0].decode()
            try:
                health = httpx.get(f"{base_url}/health", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the installed server did not come up"
                time.sleep(0.1)
        assert health.status_code == 200
        assert "qrlink rendezvous server" in httpx.get(base_url, timeout=5).text
        # The image's HEALTHCHECK, with the image's python (its working directory is the WORKDIR, as in Docker).
        check = subprocess.run(
            [str(bin_dir / "python"), *IMAGE.healthcheck[1:]],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert check.returncode == 0, check.stderr
    finally:
        server.terminate()
        try:
            server.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate(timeout=10)
    # And it fails when nothing answers there.
    failing = subprocess.run(
        [str(bin_dir / "python"), *IMAGE.healthcheck[1:]],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert failing.returncode != 0
