"""CPU time and resident memory of a server's process tree, read from ``/proc``.

A multi-worker server is a supervisor plus worker processes; both figures are sums over the whole tree, so
1 and 2 workers compare fairly.
"""

from __future__ import annotations

import os
from pathlib import Path

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces; everything after the last ")" splits.
    return raw[raw.rindex(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """``root`` and all its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, ()))
    return tree


def cpu_seconds(root: int) -> float:
    """User + system CPU seconds used so far by ``root`` and its live descendants (all threads)."""
    total = 0
    for pid in process_tree(root):
        fields = _stat_fields(pid)
        if fields is not None:
            # After the name: state(0) ppid(1) … utime(11) stime(12), in clock ticks.
            total += int(fields[11]) + int(fields[12])
    return total / _CLOCK_TICKS


def rss_bytes(root: int) -> int:
    """Resident set size (``VmRSS``) of ``root`` and its live descendants, summed."""
    total = 0
    for pid in process_tree(root):
        try:
            status = (_PROC / str(pid) / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
                break
    return total
