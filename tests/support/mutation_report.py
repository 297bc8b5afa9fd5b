"""Summarise a mutation run (``make mutate-report``): mutants per verdict for each mutated file, then survivors.

Reads mutmut's per-file results (``mutants/<path>.meta``) through mutmut's own table of exit codes, so a
verdict here is the one ``mutmut results`` and ``mutmut browse`` show. ``mutmut show NAME`` prints a mutant's
diff.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

COLUMNS = ("killed", "survived", "timeout", "no tests", "not checked")


def main(root: Path = Path("mutants")) -> int:
    metas = sorted(root.rglob("*.py.meta"))
    if not metas:
        print(f"no mutation results under {root}/: run `make mutate` first")
        return 1
    print(f"{'file':<44}" + "".join(f"{c:>13}" for c in COLUMNS) + f"{'other':>8}")
    survivors: list[str] = []
    for meta in metas:
        exit_codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
        counts = Counter(status_by_exit_code[code] for code in exit_codes.values())
        other = sum(n for status, n in counts.items() if status not in COLUMNS)
        path = str(meta.relative_to(root)).removesuffix(".meta")
        print(f"{path:<44}" + "".join(f"{counts[c]:>13}" for c in COLUMNS) + f"{other:>8}")
        survivors += sorted(name for name, code in exit_codes.items() if status_by_exit_code[code] == "survived")
    if survivors:
        print("\nsurvivors (`mutmut show NAME` for the diff):")
        for name in survivors:
            print(f"  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
