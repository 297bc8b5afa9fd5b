"""The documentation shows the example scripts verbatim: each ``<!-- example: … -->`` section of the docs is
exactly its file. After editing an example, run ``make docs`` (``python -m tests.support.doc_examples``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.doc_examples import DOCS, ROOT, render, sections

EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc.name)
def test_every_example_section_is_its_file_verbatim(doc: Path) -> None:
    text = doc.read_text()
    for path, code in sections(text):
        assert code == (ROOT / path).read_text(), f"{doc.name}: the section of {path} differs; run `make docs`"
    assert render(text) == text


def test_the_guide_shows_every_example() -> None:
    shown = {path for doc in DOCS for path, _ in sections(doc.read_text())}

    assert shown == {f"examples/{path.name}" for path in EXAMPLES}


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc.name)
def test_the_guides_python_blocks_compile(doc: Path) -> None:
    # No fragments with a top-level `await` / `async with`: every block is a whole module.
    for number, block in enumerate(doc.read_text().split("```python\n")[1:], start=1):
        compile(block.split("```", 1)[0], f"{doc.name}, Python block {number}", "exec")


def test_render_replaces_a_stale_section_with_the_file() -> None:
    stale = "intro\n<!-- example: examples/secure_channel.py -->\n```python\nold\n```\n<!-- /example -->\nend\n"

    rendered = render(stale)

    assert sections(rendered) == [("examples/secure_channel.py", (ROOT / "examples/secure_channel.py").read_text())]
    assert rendered.startswith("intro\n") and rendered.endswith("<!-- /example -->\nend\n")
    assert sections(stale)[0][1] == "old\n"
