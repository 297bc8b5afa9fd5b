"""The example scripts shown verbatim in the documentation, and the tool that keeps them so.

A Markdown file embeds ``examples/NAME.py`` between two markers::

    <!-- example: examples/new_device.py -->
    ```python
    … the whole file …
    ```
    <!-- /example -->

``python -m tests.support.doc_examples`` (``make docs``) rewrites every such section from its file;
``tests/test_doc_examples.py`` fails when a section differs from its file.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Every document: README.md and docs/*.md.
DOCS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
SECTION = re.compile(r"(?P<open><!-- example: (?P<path>\S+) -->\n)(?P<body>.*?)(?P<close><!-- /example -->)", re.S)


def render(text: str) -> str:
    """``text`` with every example section replaced by its file, in a ``python`` code block."""

    def section(match: re.Match[str]) -> str:
        source = (ROOT / match["path"]).read_text()
        return f"{match['open']}```python\n{source}```\n{match['close']}"

    return SECTION.sub(section, text)


def sections(text: str) -> list[tuple[str, str]]:
    """(path, code block contents) of every example section in ``text``."""
    found = []
    for match in SECTION.finditer(text):
        body = match["body"]
        code = body.removeprefix("```python\n").removesuffix("```\n") if body.startswith("```python\n") else body
        found.append((match["path"], code))
    return found


def main() -> int:
    for doc in DOCS:
        text = doc.read_text()
        updated = render(text)
        if updated != text:
            doc.write_text(updated)
            print(f"updated {doc.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
