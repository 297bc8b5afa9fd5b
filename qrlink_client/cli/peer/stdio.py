""":func:`serve`, the thin driver ``qrlink peer`` runs: JSON lines from stdin to a :class:`~.dispatch.Peer`,
its answers to stdout, one line each, in order, until end of input.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import IO

from .dispatch import Peer

__all__ = ["serve"]


async def _serve(stdin: IO[bytes], stdout: IO[bytes]) -> None:
    peer = Peer()
    try:
        while True:
            line = await asyncio.to_thread(stdin.readline)
            if not line:
                break
            if not line.strip():
                continue
            response = await peer.handle_line(line)
            stdout.write(json.dumps(response, separators=(",", ":")).encode("ascii") + b"\n")
            stdout.flush()
    finally:
        await peer.aclose()


def serve(stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None) -> int:
    """Run the peer on binary stdin/stdout until EOF; returns the exit status (0)."""
    asyncio.run(_serve(stdin or sys.stdin.buffer, stdout or sys.stdout.buffer))
    return 0
