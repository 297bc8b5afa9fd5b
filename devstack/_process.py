"""Child processes and ports for the stack: start with a log file, wait until HTTP answers, stop by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import httpx

# Every server of the stack is on loopback; a configured proxy must never see that traffic.
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


class StartupError(RuntimeError):
    """A component of the stack did not start; the message ends with the tail of its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def child_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without proxy settings, plus *extra*."""
    env = {key: value for key, value in os.environ.items() if key not in _PROXY_VARIABLES}
    env.update(extra or {})
    return env


class ManagedProcess:
    """One child process whose output goes to a log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self._argv = list(argv)
        self.log_path = log_path
        self._cwd = cwd
        self._env = dict(env) if env is not None else None
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        # argv and env may carry secrets (config paths are fine, but keep the repr minimal).
        return f"ManagedProcess(name={self.name!r}, pid={self.pid}, running={self.running})"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._process.poll() if self._process is not None else None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(  # noqa: S603 - argv is built by the stack, never from input
                self._argv,
                cwd=self._cwd,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Own process group: a Ctrl-C in the terminal reaches only the stack runner, which then stops
                # each child in order instead of all of them dying at once.
                start_new_session=True,
            )

    def stop(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)

    def log_tail(self, chars: int = 4000) -> str:
        if not self.log_path.is_file():
            return f"--- {self.name}: no output ---"
        text = self.log_path.read_text(errors="replace")[-chars:]
        return f"--- {self.name}: {self.log_path} (tail) ---\n{text}"


def wait_for_http(
    url: str,
    *,
    process: ManagedProcess,
    timeout: float,
    ready: Callable[[httpx.Response], bool] = lambda response: response.status_code == 200,
    extra_logs: Callable[[], str] = lambda: "",
) -> None:
    """Poll *url* until *ready* says yes; fail early if *process* exits, with its log tail either way."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while True:
            if not process.running:
                raise StartupError(
                    f"{process.name} exited with {process.returncode} while starting\n"
                    f"{process.log_tail()}{extra_logs()}"
                )
            try:
                if ready(client.get(url)):
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise StartupError(
                    f"{process.name} did not answer {url} within {timeout:.0f}s\n{process.log_tail()}{extra_logs()}"
                )
            time.sleep(0.1)
