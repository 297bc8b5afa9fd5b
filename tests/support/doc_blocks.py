"""The fenced code blocks of the documentation, with what decides how CI runs them.

A block is preceded (blank lines aside) by at most one marker comment:

- ``<!-- not run: REASON -->``: the block is output or pseudo-code nobody can run;
- ``<!-- run: SETUP -->``: a Python block that needs something in its folder first (a setup of
  tests/test_doc_blocks.py);
- ``<!-- output -->``: a ``text`` block that is the output of the shell block before it (checked line by line).

Blocks inside an ``<!-- example: … -->`` section are example files (tests/support/doc_examples.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tests.support.doc_examples import DOCS, SECTION

_FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w-]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)
_MARKER = re.compile(r"<!-- (?P<kind>not run|run|output)(?::\s*(?P<value>.*?))?\s*-->\s*\Z", re.S)


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int
    lang: str
    text: str
    marker: str | None  # "not run", "run", "output" or None
    marker_value: str
    example: str | None  # the examples/ path of the section the block is in

    def __str__(self) -> str:
        return f"{self.doc.name}:{self.line} ({self.lang or 'plain'})"


def blocks(docs: tuple[Path, ...] = DOCS) -> list[Block]:
    found = []
    for doc in docs:
        text = doc.read_text()
        sections = [(match.start(), match.end(), match["path"]) for match in SECTION.finditer(text)]
        for match in _FENCE.finditer(text):
            indent = len(match["indent"])
            body = "".join(line[indent:] for line in match["body"].splitlines(keepends=True))
            before = text[: match.start()].rstrip()
            marker = _MARKER.search(before[before.rfind("\n") + 1 :] if "\n" in before else before)
            example = next((path for start, end, path in sections if start < match.start() < end), None)
            found.append(
                Block(
                    doc=doc,
                    line=text.count("\n", 0, match.start()) + 1,
                    lang=match["lang"],
                    text=body,
                    marker=marker["kind"] if marker else None,
                    marker_value=(marker["value"] or "") if marker else "",
                    example=example,
                )
            )
    return found


def following(block: Block, every: list[Block]) -> Block | None:
    """The next block of the same document."""
    later = [other for other in every if other.doc == block.doc and other.line > block.line]
    return min(later, key=lambda other: other.line) if later else None


def command_lines(text: str) -> list[str]:
    """The commands of a shell block: continuation lines joined, comments and prompts dropped."""
    commands = []
    for raw in text.replace("\\\n", " ").splitlines():
        line = raw.strip().removeprefix("$ ")
        quoted = ""
        for index, char in enumerate(line):
            if char in "'\"" and (not quoted or quoted == char):
                quoted = "" if quoted else char
            elif char == "#" and not quoted and (index == 0 or line[index - 1].isspace()):
                line = line[:index]
                break
        if line.strip():
            commands.append(line.strip())
    return commands
