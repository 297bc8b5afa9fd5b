"""The admin docs' commands and configuration snippets work as pasted.

No nginx, systemd or Docker here, so the snippets are checked for what breaks them in practice: settings files
that do not validate, command lines with options the command lacks, an nginx directive that exists only in a
comment, the deprecated ``listen … http2``, read timeouts that disagree, ports that are not the server's, a
systemd unit started before the network, ``docker run`` variables that set nothing. Examples of the server's
output are compared with what the server prints.
"""

from __future__ import annotations

import itertools
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from rendezvous.cli import _parser
from rendezvous.config import (
    DEFAULT_PORT,
    OTHER_VARIABLES,
    ConfigError,
    Settings,
    env_var_name,
    load_settings,
    unknown_variable_warnings,
)
from rendezvous.describe import setting_sources, settings_report, startup_fields

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
ADMIN_DOCS = [
    ROOT / "README.md",
    DOCS / "admin-guide.md",
    DOCS / "deployment.md",
    DOCS / "configuration.md",
    DOCS / "observability.md",
    DOCS / "push.md",
    DOCS / "redis.md",
    DOCS / "selftest.md",
]
#: Ports the admin docs may send traffic to: the server, the metrics port of the examples, Synapse, Redis.
KNOWN_PORTS = {DEFAULT_PORT, 9108, 8008, 6379}


@dataclass(frozen=True)
class Block:
    path: Path
    lang: str
    text: str

    def __str__(self) -> str:
        return f"{self.path.name} ({self.lang or 'plain'} block)"


_FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>\w*)\n(?P<body>.*?)^(?P=indent)```", re.MULTILINE | re.DOTALL)


def _blocks(*langs: str, docs: list[Path] = ADMIN_DOCS) -> list[Block]:
    found = []
    for path in docs:
        for match in _FENCE.finditer(path.read_text()):
            indent = len(match["indent"])
            body = "".join(line[indent:] for line in match["body"].splitlines(keepends=True))
            if not langs or match["lang"] in langs:
                found.append(Block(path, match["lang"], body))
    return found


def _code(text: str, comment: str = "#") -> str:
    """``text`` without comments (nginx, TOML, shell and systemd comments start with ``#``)."""
    lines = []
    for line in text.splitlines():
        # A '#' inside quotes is no comment; the snippets have none outside them, so the first unquoted one ends it.
        quoted = False
        for index, char in enumerate(line):
            if char in "'\"":
                quoted = not quoted
            elif char == comment and not quoted:
                line = line[:index]
                break
        lines.append(line.rstrip())
    return "\n".join(lines)


# -- settings files -----------------------------------------------------------------------------------------


TOML_BLOCKS = _blocks("toml")


@pytest.mark.parametrize("block", TOML_BLOCKS, ids=str)
def test_toml_examples_are_valid_settings(block: Block, tmp_path: Path) -> None:
    config = tmp_path / "rendezvous.toml"
    config.write_text(block.text)
    settings = load_settings(config, environ={})
    assert set(tomllib.loads(block.text)) <= set(Settings.model_fields)
    if "port" in tomllib.loads(block.text):
        assert settings.port == DEFAULT_PORT, "the examples keep the default port"


def test_there_are_toml_examples() -> None:
    assert len(TOML_BLOCKS) >= 3


# -- command lines ------------------------------------------------------------------------------------------


def _command_lines(block: Block) -> list[list[str]]:
    """The ``rendezvous …`` invocations of a shell block, continuation lines joined, env assignments dropped."""
    commands = []
    for line in _code(block.text.replace("\\\n", " ")).splitlines():
        words = shlex.split(line.removeprefix("$ "))
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
            words.pop(0)
        if words[:2] == ["docker", "exec"]:
            words = words[3:]
        if words and Path(words[0]).name == "rendezvous":
            commands.append(words[1:])
        elif words[:2] == ["make", "serve"] and len(words) > 2:
            commands.append(["serve", *shlex.split(words[2].removeprefix("ARGS="))])
    return commands


COMMANDS = [(block, command) for block in _blocks("sh", "", "ini") for command in _command_lines(block)]


@pytest.mark.parametrize(("block", "command"), COMMANDS, ids=[f"{b}: {' '.join(c)}" for b, c in COMMANDS])
def test_documented_rendezvous_commands_parse(block: Block, command: list[str]) -> None:
    try:
        _parser().parse_args(command)
    except SystemExit as exc:  # argparse's way of refusing
        pytest.fail(f"{block}: rendezvous {' '.join(command)} is refused ({exc})")


def test_the_commands_an_admin_runs_first_are_among_those_checked() -> None:
    subcommands = {command[0] for _, command in COMMANDS}
    assert {"serve", "check-config", "selftest"} <= subcommands
    assert any("--show" in command for _, command in COMMANDS)


def test_readme_gives_the_default_port() -> None:
    assert re.search(rf"`make serve` listens on http://127\.0\.0\.1:{DEFAULT_PORT}\b", (ROOT / "README.md").read_text())


# -- examples of output ------------------------------------------------------------------------------------


def _error(config: Path | None = None, **environ: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(config, environ=environ)
    return str(caught.value)


def test_configuration_examples_of_errors_and_warnings_are_what_the_server_prints(tmp_path: Path) -> None:
    text = (DOCS / "configuration.md").read_text()
    assert f"  {_error(RENDEZVOUS_TTL_SECONDS='60')}\n" in text
    config = tmp_path / "rendezvous.toml"
    config.write_text("ttl_secnds = 150\n")
    assert f"  {_error(config)}\n" in text
    (warning,) = unknown_variable_warnings({"RENDEZVOUS_TTL": "100"})
    assert f"rendezvous: warning: {warning}\n" in text


def test_check_config_show_example_is_what_the_command_prints(tmp_path: Path) -> None:
    config = tmp_path / "rendezvous.toml"
    config.write_text('host = "0.0.0.0"\nworkers = 4\nstore_url = "redis://:hunter2@10.0.0.7:6379/0"\n')
    environ = {"RENDEZVOUS_TTL_SECONDS": "150"}
    settings = load_settings(config, environ=environ, port=9000)
    sources = setting_sources(config_file=config, environ=environ, flags={"port": "--port"})
    printed = [line.replace(str(config), "/etc/rendezvous.toml") for line in settings_report(settings, sources)]
    (block,) = [b for b in _blocks(docs=[DOCS / "configuration.md"]) if "check-config --show" in b.text]
    shown = [line for line in block.text.splitlines()[2:] if line not in ("…", "configuration OK")]
    assert shown
    for line in shown:
        assert line in printed, line


def test_startup_line_example_is_what_the_server_logs_for_the_guides_settings(tmp_path: Path) -> None:
    guide = DOCS / "admin-guide.md"
    (toml,) = [block for block in _blocks("toml", docs=[guide]) if "public_base_url" in block.text]
    config = tmp_path / "rendezvous.toml"
    config.write_text(toml.text)
    fields = startup_fields(load_settings(config, environ={}))
    (line,) = [line for line in guide.read_text().splitlines() if " starting listen=" in line]
    shown = dict(field.split("=", 1) for field in line.split(" starting ", 1)[1].split())
    assert shown == fields


# -- nginx --------------------------------------------------------------------------------------------------


NGINX_BLOCKS = _blocks("nginx")
#: nginx's own variables that the snippets use, and the prefixes of its per-request families.
NGINX_BUILTINS = {"host", "scheme", "proxy_add_x_forwarded_for", "remote_addr", "request_uri", "uri", "args"}
NGINX_FAMILIES = ("http_", "arg_", "cookie_", "sent_http_", "upstream_http_")


def test_there_are_nginx_examples() -> None:
    assert len(NGINX_BLOCKS) >= 3


@pytest.mark.parametrize("block", NGINX_BLOCKS, ids=str)
def test_nginx_variables_are_defined_outside_comments(block: Block) -> None:
    code = _code(block.text)
    # A variable may be defined in another block of the same document (the admin guide's snippet file).
    document_code = "\n".join(_code(b.text) for b in NGINX_BLOCKS if b.path == block.path)
    defined = set(re.findall(r"^\s*map\s+\S+\s+\$(\w+)", document_code, re.MULTILINE))
    defined |= set(re.findall(r"^\s*set\s+\$(\w+)", document_code, re.MULTILINE))
    for name in re.findall(r"\$(\w+)", code):
        if name in NGINX_BUILTINS or name.startswith(NGINX_FAMILIES) or name.isdigit():
            continue
        assert name in defined, f"{block}: ${name} is used but defined only in a comment, or nowhere"


@pytest.mark.parametrize("block", NGINX_BLOCKS, ids=str)
def test_nginx_directives_are_complete_and_current(block: Block) -> None:
    code = _code(block.text)
    assert code.count("{") == code.count("}"), f"{block}: unbalanced braces"
    for line in code.splitlines():
        stripped = line.strip()
        if stripped and stripped != "''      close;":
            assert stripped.endswith((";", "{", "}")), f"{block}: {stripped!r} does not end a directive"
        assert not re.match(r"listen\s.*\bhttp2\b", stripped), f"{block}: deprecated {stripped!r}"
    for server in re.findall(r"server\s*\{(.*?)\n\}", code, re.DOTALL):
        if re.search(r"listen\s+443\s+ssl", server):
            assert re.search(r"^\s*http2 on;", server, re.MULTILINE), f"{block}: HTTPS server without http2 on"


def test_read_timeouts_agree_and_outlast_the_longest_long_poll() -> None:
    timeouts = {
        (block.path.name, value)
        for block in NGINX_BLOCKS
        for value in re.findall(r"proxy_read_timeout\s+(\d+)s;", _code(block.text))
    }
    assert {path for path, _ in timeouts} >= {"admin-guide.md", "deployment.md"}
    values = {int(value) for _, value in timeouts}
    assert len(values) == 1, f"the docs disagree: {sorted(timeouts)}"
    default_wait = Settings.model_fields["push_max_wait_seconds"].default
    assert values.pop() >= default_wait + 10


def test_proxies_send_traffic_only_to_the_documented_ports() -> None:
    for block in _blocks("nginx", "caddyfile", "yaml", "toml"):
        for line in block.text.splitlines():
            for port in re.findall(r"(?:127\.0\.0\.1|localhost):(\d+)", _code(line)):
                # Synapse's homeserver.yaml reaches MAS on MAS's default port.
                assert int(port) in KNOWN_PORTS or (port == "8080" and "MAS" in line), f"{block}: {line.strip()}"


def test_8080_appears_only_as_mas_port() -> None:
    for path in ADMIN_DOCS:
        for line in path.read_text().splitlines():
            if "8080" in line:
                assert "MAS" in line, f"{path.name}: {line.strip()}"


# -- systemd ------------------------------------------------------------------------------------------------


def test_systemd_unit_waits_for_the_network_and_runs_a_valid_command() -> None:
    (unit,) = [block for block in _blocks("ini") if "[Unit]" in block.text]
    lines = _code(unit.text).splitlines()
    assert "Wants=network-online.target" in lines
    (after,) = [line for line in lines if line.startswith("After=")]
    assert "network-online.target" in after.split("=", 1)[1].split()
    (exec_start,) = [line for line in lines if line.startswith("ExecStart=")]
    command = shlex.split(exec_start.split("=", 1)[1])
    assert command[0].startswith("/") and command[0].endswith("/rendezvous"), "systemd needs an absolute path"
    assert _parser().parse_args(command[1:]).command == "serve"
    assert {"[Unit]", "[Service]", "[Install]"} <= set(lines)


# -- Docker -------------------------------------------------------------------------------------------------


def _docker_commands() -> list[list[str]]:
    (block,) = [block for block in _blocks("sh") if "docker run" in block.text]
    return [shlex.split(line) for line in _code(block.text.replace("\\\n", " ")).splitlines() if line.strip()]


def test_docker_run_example_matches_the_image_and_the_settings() -> None:
    commands = _docker_commands()
    build = next(command for command in commands if command[:2] == ["docker", "build"])
    run = next(command for command in commands if command[:2] == ["docker", "run"])
    image = build[build.index("-t") + 1]
    assert run[-1] == image
    options = list(itertools.pairwise(run))
    env = dict(value.split("=", 1) for option, value in options if option == "-e")
    for name in env:
        known = name in OTHER_VARIABLES or name.removeprefix("RENDEZVOUS_").lower() in Settings.model_fields
        assert known and name.startswith("RENDEZVOUS_"), f"docker run sets {name}, which is no setting"
        if name not in OTHER_VARIABLES:
            assert env_var_name(name.removeprefix("RENDEZVOUS_").lower()) == name
    load_settings(environ={key: value for key, value in env.items() if key != "RENDEZVOUS_CONFIG"})
    mounts = [value.split(":") for option, value in options if option == "-v"]
    assert [target for _, target, *_ in mounts] == [env["RENDEZVOUS_CONFIG"]], "the mounted file is the config"
    (published,) = [value for option, value in options if option == "-p"]
    host, host_port, container_port = published.split(":")
    assert host == "127.0.0.1" and int(host_port) == int(container_port) == DEFAULT_PORT
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(rf"^EXPOSE {DEFAULT_PORT}$", dockerfile, re.MULTILINE)
    assert "HEALTHCHECK" in dockerfile
