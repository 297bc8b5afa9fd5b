"""A ``qrlink`` command run as a real child process, its stdout and stderr read line by line as they come.

Every wait has a deadline, and so has the whole run (``within``): a test that waits for a line or the exit fails
with a message naming what it waited for and the output so far, well before the pytest timeout.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

QRLINK = Path(sys.executable).with_name("qrlink")
_PROXY_VARIABLES = {"http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"}


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without proxies (every server is on loopback), plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if key not in _PROXY_VARIABLES}
    env.update(extra or {})
    return env


class Qrlink:
    """``qrlink <args>``: stdin is a pipe the test writes answers to; output lines are collected by threads.

    ``program`` runs another command instead of ``qrlink`` (e.g. ``[sys.executable, "examples/x.py"]``).
    No wait goes past ``within`` seconds after the start, whatever its own timeout: a test's waits on one process
    add up to at most that (keep it below the module's pytest timeout).
    """

    def __init__(
        self,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        program: Sequence[str] | None = None,
        within: float = 120.0,
    ):
        self.args = list(args)
        self.name = Path(program[-1]).name if program else f"qrlink {self.args[0]}"
        self.started = time.monotonic()
        self.deadline = self.started + within
        self.process = subprocess.Popen(
            [*(program or [str(QRLINK)]), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(env),
            cwd=cwd,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._collect, args=(stream, lines), daemon=True)
            for stream, lines in ((self.process.stdout, self.stdout), (self.process.stderr, self.stderr))
        ]
        for reader in self._readers:
            reader.start()

    def _collect(self, stream: object, lines: list[str]) -> None:
        assert hasattr(stream, "readline")
        for line in iter(stream.readline, ""):
            with self._changed:
                lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, pattern: str, *, stream: str = "stderr", timeout: float = 60.0) -> re.Match[str]:
        """The first line of ``stream`` matching ``pattern``; fails when the process ends or time runs out."""
        lines = self.stdout if stream == "stdout" else self.stderr
        compiled = re.compile(pattern)
        deadline = min(time.monotonic() + timeout, self.deadline)
        with self._changed:
            while True:
                for line in lines:
                    if match := compiled.search(line):
                        return match
                left = deadline - time.monotonic()
                ended = self.process.poll() is not None and not any(r.is_alive() for r in self._readers)
                if left <= 0 or ended:
                    why = "it ended" if ended else "gave up"
                    raise AssertionError(
                        f"no {pattern!r} on {stream} of {self.name} ({why} {self._elapsed()} after its start)"
                        f":\n{self.output()}"
                    )
                self._changed.wait(min(left, 0.5))

    def answer(self, line: str) -> None:
        """Type ``line`` on the process's stdin."""
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def finish(self, timeout: float = 60.0) -> int:
        """Wait for the exit status (killing the process if it takes longer than ``timeout``)."""
        try:
            status = self.process.wait(max(0.0, min(timeout, self.deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"{self.name} did not end (gave up {self._elapsed()} after its start):\n{self.output()}"
            ) from None
        for reader in self._readers:  # the last lines are in once both pipes are at their end
            reader.join(10)
        return status

    def _elapsed(self) -> str:
        return f"{time.monotonic() - self.started:.0f} s"

    def output(self) -> str:
        with self._changed:
            return "--- stdout\n" + "\n".join(self.stdout) + "\n--- stderr\n" + "\n".join(self.stderr)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
