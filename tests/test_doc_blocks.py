"""Docs that show code are run: every ``python`` and ``sh`` block of README.md and docs/*.md works as pasted.

- A ``python`` block is an example file (an ``<!-- example: … -->`` section; the file is run here or by
  tests/e2e/test_examples.py), or a whole script run here in a subprocess (a block that starts its own dev
  stack gets the ``synapse`` marker); ``<!-- run: SETUP -->`` first prepares its folder (:data:`SETUPS`).
  ``<!-- not run: REASON -->`` exempts a block that is output or pseudo-code.
- A ``sh`` block's commands of ours (``qrlink``, ``rendezvous``, ``python -m …``, ``python examples/…``,
  ``make``, ``pip install``) must parse, and the offline ones (``qrlink qr …``) are run for real; a
  ``<!-- output -->`` ``text`` block after them must be what they print. Other tools' commands are exempt by
  their first word (:data:`OTHER_TOOLS`). An unknown first word fails: classify it here.

See docs/testing.md, "Docs that show code are run".
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.support.doc_blocks import Block, blocks, command_lines, following
from tests.support.doc_examples import ROOT

BLOCKS = blocks()
PYTHON = [block for block in BLOCKS if block.lang in ("python", "py")]
SHELL = [block for block in BLOCKS if block.lang in ("sh", "bash", "shell", "console")]

#: Commands of other tools: not ours to run, exempt by their first word.
OTHER_TOOLS = {
    "apt-get", "caddy", "cd", "curl", "docker", "export", "git", "journalctl", "mkdir", "nginx", "npm", "openssl",
    "redis-cli", "redis-server", "rm", "systemctl",
}  # fmt: skip
#: Examples this module runs offline; the others are run against a dev stack by tests/e2e/test_examples.py.
OFFLINE_EXAMPLES = {"examples/flow_by_hand.py"}
#: What a ``<!-- run: NAME -->`` block needs before it runs, written into its working directory.
SETUPS = {"session-file"}
#: ``qrlink`` subcommands that need no network: run for real.
OFFLINE_QRLINK = (["qr", "decode"], ["qr", "render"])


def _offline(block: Block) -> bool:
    return block.example is None and block.marker not in ("not run", "run")


def _run_python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    script = cwd / "doc_block.py"
    script.write_text(code)
    # The suite's environment as is: QRLINK_CACHE holds the Synapse a dev stack block starts.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, script.name], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _params(chosen: list[Block]) -> list[object]:
    """A block that starts its own dev stack (Synapse) carries the ``synapse`` marker."""
    return [
        pytest.param(block, id=str(block), marks=[pytest.mark.synapse] if "devstack" in block.text else [])
        for block in chosen
    ]


# -- python ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("block", PYTHON, ids=str)
def test_every_python_block_is_run_somewhere(block: Block) -> None:
    if block.example is not None:
        live = (ROOT / "tests" / "e2e" / "test_examples.py").read_text()
        assert block.example in OFFLINE_EXAMPLES or f'example("{Path(block.example).name}"' in live, (
            f"{block}: no test runs {block.example}"
        )
    elif block.marker == "not run":
        assert block.marker_value, f"{block}: `not run:` needs a reason"
    elif block.marker == "run":
        assert block.marker_value in SETUPS, f"{block}: unknown setup {block.marker_value!r}"


@pytest.mark.parametrize("block", _params([b for b in PYTHON if _offline(b)]))
def test_offline_python_blocks_run_as_pasted(block: Block, tmp_path: Path) -> None:
    result = _run_python(block.text, tmp_path)

    assert result.returncode == 0, f"{block}:\n{result.stdout}\n{result.stderr}"


@pytest.mark.parametrize("example", sorted(OFFLINE_EXAMPLES))
def test_offline_examples_run(example: str, tmp_path: Path) -> None:
    result = _run_python((ROOT / example).read_text(), tmp_path)

    assert result.returncode == 0, f"{example}:\n{result.stdout}\n{result.stderr}"


def _session_file(folder: Path) -> None:
    """What ``qrlink login`` leaves behind: a session file and its pickle key file, written as it writes them."""
    import json

    from qrlink_client.cli.login import _pickle_key
    from qrlink_client.e2ee import OlmDevice

    key = _pickle_key(folder / "qrlink-session.json.pickle-key")
    device = OlmDevice.generate()
    session = {
        "device_id": device.device_id,
        "pickled_account": device.pickle(key.key),
        "pickle_key_file": str(key.path.resolve()),
    }
    (folder / "qrlink-session.json").write_text(json.dumps(session))


@pytest.mark.parametrize("block", [b for b in PYTHON if b.marker == "run" and b.marker_value in SETUPS], ids=str)
def test_python_blocks_with_a_setup_run_as_pasted(block: Block, tmp_path: Path) -> None:
    {"session-file": _session_file}[block.marker_value](tmp_path)

    result = _run_python(block.text, tmp_path)

    assert result.returncode == 0, f"{block}:\n{result.stdout}\n{result.stderr}"


# -- shell -------------------------------------------------------------------------------------------------


def _words(command: str) -> list[str]:
    words = shlex.split(command)
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
        words.pop(0)
    return words


def _parse(parser_words: list[str], command: str) -> None:
    """Parses ``parser_words`` with the argparse parser of our command ``command`` names."""
    program = Path(parser_words[0]).name
    args = parser_words[1:]
    if program == "qrlink" or args[:2] == ["-m", "qrlink_client"]:
        from qrlink_client.cli.main import build_parser

        build_parser().parse_args(args[2:] if program != "qrlink" else args)
    elif program == "rendezvous" or args[:2] == ["-m", "rendezvous"]:
        from rendezvous.cli import _parser

        _parser().parse_args(args[2:] if program != "rendezvous" else args)
    elif args[:2] == ["-m", "devstack"]:
        from devstack.__main__ import build_parser as devstack_parser

        devstack_parser().parse_args(args[2:])
    elif args[:2] == ["-m", "bench"]:
        from bench import cli, demo_login, jssdk

        if args[2:3] == ["demo-login"]:
            demo_login._parser().parse_args(args[3:])
        elif args[2:3] == ["jssdk"]:
            jssdk._parser().parse_args(args[3:])
        else:
            cli._parser().parse_args(args[2:])
    elif args[:2] == ["-m", "pytest"]:
        for arg in args[2:]:
            if not arg.startswith("-") and not re.fullmatch(r"not \w+|\w+", arg):
                assert (ROOT / arg.split("::")[0]).exists(), f"{command}: no {arg}"
    elif args[:2] == ["-m", "tests.peers"]:
        assert (ROOT / "tests" / "peers" / "__main__.py").exists()
    elif args[:1] and args[0].startswith("examples/"):
        _parse_example(ROOT / args[0], args[1:])
    else:
        pytest.fail(f"{command}: a Python command this test does not know; classify it in {__name__}")


def _parse_example(path: Path, args: list[str]) -> None:
    """Runs the example's own ``parse_args()`` on ``args`` (every example has one)."""
    spec = importlib.util.spec_from_file_location(f"doc_example_{path.stem}", path)
    assert spec is not None and spec.loader is not None, f"no {path}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    saved = sys.argv
    sys.argv = [str(path), *args]
    try:
        module.parse_args()
    finally:
        sys.argv = saved


def _pip_install(words: list[str], command: str) -> None:
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    for word in words[2:]:
        if "[" in word:
            named = set(word.split("[", 1)[1].rstrip("]'").split(","))
            assert named <= extras, f"{command}: no extra {sorted(named - extras)}"


def _make(words: list[str], command: str) -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target in (word for word in words[1:] if "=" not in word):
        assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"{command}: no make target {target}"


def _check(command: str) -> None:
    words = _words(command)
    program = Path(words[0]).name
    if program in OTHER_TOOLS:
        return
    placeholders = [word for word in words if word[:1] in "<>|"]
    assert not placeholders, f"{command}: the shell reads {placeholders[0]!r} as a redirection or a pipe"
    if program in ("qrlink", "rendezvous"):
        try:
            _parse(words, command)
        except SystemExit as exc:
            pytest.fail(f"{command}: refused ({exc})")
    elif program in ("python", "python3"):
        if words[1:3] == ["-m", "venv"]:
            return
        try:
            _parse(words, command)
        except SystemExit as exc:
            pytest.fail(f"{command}: refused ({exc})")
    elif program == "pip":
        _pip_install(words, command)
    elif program == "make":
        _make(words, command)
    else:
        pytest.fail(f"{command}: unknown command {program!r}; add it to OTHER_TOOLS if it is another tool's")


#: First words that make a line of a block without a language a command of ours.
OURS = {"qrlink", "rendezvous", "python", "python3", "make"}


def _plain_commands(block: Block) -> list[str]:
    """The commands in a block without a language (output with ``$ `` prompts, or a bare command line)."""
    lines = block.text.splitlines()
    if any(line.startswith("$ ") for line in lines):
        return command_lines("\n".join(line for line in lines if line.startswith("$ ")))
    commands = []
    for command in command_lines(block.text):
        words = [word for word in command.split() if not re.fullmatch(r"[A-Z_]+=\S*", word)]
        if words and Path(words[0]).name in OURS:
            commands.append(command)
    return commands


COMMANDS = [(block, command) for block in SHELL for command in command_lines(block.text)]
COMMANDS += [(block, command) for block in BLOCKS if block.lang == "" for command in _plain_commands(block)]


@pytest.mark.parametrize(("block", "command"), COMMANDS, ids=[f"{b}: {c[:60]}" for b, c in COMMANDS])
def test_shell_commands_of_ours_parse(block: Block, command: str) -> None:
    _check(command)


def _runs_offline(command: str) -> bool:
    words = _words(command)
    return Path(words[0]).name == "qrlink" and any(words[1:3] == prefix for prefix in OFFLINE_QRLINK)


RUNNABLE = [block for block in SHELL if all(_runs_offline(command) for command in command_lines(block.text))]


@pytest.mark.parametrize("block", RUNNABLE, ids=str)
def test_offline_commands_run_and_print_what_the_doc_shows(block: Block, tmp_path: Path) -> None:
    qrlink = Path(sys.executable).with_name("qrlink")
    printed: list[str] = []
    for command in command_lines(block.text):
        words = _words(command)
        result = subprocess.run([str(qrlink), *words[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"{block}: {command}\n{result.stderr}"
        printed += (result.stdout + result.stderr).splitlines()
    output = following(block, BLOCKS)
    if output is not None and output.marker == "output":
        for line in output.text.splitlines():
            assert line in printed, f"{output}: {line!r} is not what `{block.text.strip()[:60]}` prints"


def test_output_blocks_follow_commands_that_are_run() -> None:
    for block in BLOCKS:
        if block.marker == "output":
            before = [other for other in BLOCKS if other.doc == block.doc and other.line < block.line]
            assert before and before[-1] in RUNNABLE, f"{block}: `output` after a block that is not run"
            assert block.lang == "text", f"{block}: an output block is ```text"


@pytest.mark.parametrize(
    "command",
    [
        "frobnicate --fast",  # a new tool: classify it
        "qrlink login --no-such-option",
        "rendezvous serve --port nine",
        ".venv/bin/python -m devstack up --user alice",
        "make no-such-target",
        ".venv/bin/pip install -e '.[no-such-extra]'",
        ".venv/bin/python examples/new_device.py --scan <payload>",
        ".venv/bin/python examples/new_device.py --no-such-option",
        ".venv/bin/python -m pytest tests/no_such_area",
    ],
)
def test_a_broken_command_fails_the_check(command: str) -> None:
    with pytest.raises((pytest.fail.Exception, AssertionError)):
        _check(command)


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang == ""], ids=str)
def test_no_python_hides_in_a_block_without_a_language(block: Block) -> None:
    python = re.compile(r"^(import \w|from [\w.]+ import |await |async (def|with) |def \w+\()", re.M)
    assert not python.search(block.text), f"{block}: Python code goes in a ```python block, which is run"


def test_the_rule_covers_every_kind_of_block() -> None:
    assert len(PYTHON) >= 10 and len(COMMANDS) >= 40 and RUNNABLE


def test_devstack_up_prints_what_devstack_md_shows(capsys: pytest.CaptureFixture[str]) -> None:
    from types import SimpleNamespace

    from devstack.__main__ import _print_urls

    doc = ROOT / "docs" / "devstack.md"
    (shown,) = [block for block in BLOCKS if block.doc == doc and block.text.startswith("devstack: up;")]
    homeserver, issuer, rendezvous = "http://127.0.0.1:34591/", "http://127.0.0.1:39965/", "http://127.0.0.1:49741/"
    stack = SimpleNamespace(
        homeserver_url=homeserver, synapse_url=homeserver, server_name="localhost", issuer=issuer,
        rendezvous_url=rendezvous,
    )  # fmt: skip

    _print_urls(stack, ["alice"], Path("~/.cache/qrlink/devstack-state.json"))  # type: ignore[arg-type]

    assert capsys.readouterr().out == shown.text
