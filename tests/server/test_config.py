"""Settings errors and warnings an operator can act on, and what the server says about its settings.

Unit tests of :mod:`rendezvous.config` and :mod:`rendezvous.describe`; the command-line side is in test_cli.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rendezvous.cli import SELFTEST_TOKEN_ENV
from rendezvous.config import (
    DEFAULT_PORT,
    OTHER_VARIABLES,
    ConfigError,
    Settings,
    describe_range,
    load_settings,
    similar_settings,
    unknown_variable_warnings,
)
from rendezvous.describe import (
    redact_url,
    setting_sources,
    settings_report,
    shown_value,
    startup_fields,
    store_location,
    store_unreachable_message,
)

# -- unknown variables and typos ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "meant"),
    [
        ("RENDEZVOUS_TTL", "RENDEZVOUS_TTL_SECONDS"),
        ("RENDEZVOUS_PROT", "RENDEZVOUS_PORT"),
        ("RENDEZVOUS_WORKER", "RENDEZVOUS_WORKERS"),
        ("RENDEZVOUS_STORE", "RENDEZVOUS_STORE_URL"),
        ("RENDEZVOUS_TRUSTED_PROXY", "RENDEZVOUS_TRUSTED_PROXIES"),
        ("RENDEZVOUS_GEN2_POLICY", "RENDEZVOUS_GEN2_CREATE_POLICY"),
        ("RENDEZVOUS_LOGLEVEL", "RENDEZVOUS_LOG_LEVEL"),
    ],
)
def test_unknown_variable_is_reported_with_the_setting_it_resembles(variable: str, meant: str) -> None:
    (warning,) = unknown_variable_warnings({variable: "100"})
    assert warning.startswith(f"{variable} is not a setting and is ignored")
    assert f"did you mean {meant}?" in warning


def test_unknown_variable_without_a_near_miss_gets_no_suggestion() -> None:
    assert unknown_variable_warnings({"RENDEZVOUS_XYZZY": "1"}) == ["RENDEZVOUS_XYZZY is not a setting and is ignored"]


def test_a_prefix_of_several_settings_suggests_them_all() -> None:
    (warning,) = unknown_variable_warnings({"RENDEZVOUS_METRICS": "1"})
    assert "RENDEZVOUS_METRICS_ENABLED, RENDEZVOUS_METRICS_PORT or RENDEZVOUS_METRICS_HOST" in warning


def test_settings_and_the_other_known_variables_are_not_reported() -> None:
    environ = {name: "x" for name in OTHER_VARIABLES}
    environ |= {"RENDEZVOUS_PORT": "9000", "rendezvous_ttl_seconds": "150", "PATH": "/bin", "_RENDEZVOUS_X": "1"}
    assert unknown_variable_warnings(environ) == []
    assert SELFTEST_TOKEN_ENV in OTHER_VARIABLES


def test_unknown_variable_does_not_stop_the_settings_loading() -> None:
    assert load_settings(environ={"RENDEZVOUS_TTL": "100"}).ttl_seconds == 180


def test_config_file_typo_suggests_the_setting(tmp_path: Path) -> None:
    config = tmp_path / "rendezvous.toml"
    config.write_text("ttl_secnds = 150\nRENDEZVOUS_PORT = 9000\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config, environ={})
    message = str(caught.value)
    assert "ttl_secnds: unknown setting; did you mean ttl_seconds?" in message
    assert "RENDEZVOUS_PORT: unknown setting; did you mean port?" in message


def test_similar_settings_is_empty_for_nonsense() -> None:
    assert similar_settings("qqqqqqq") == []


# -- ranges with their reasons -------------------------------------------------------------------------------


def _error(**environ: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=environ)
    return str(caught.value)


def test_ttl_range_comes_with_its_reason() -> None:
    assert _error(RENDEZVOUS_TTL_SECONDS="60") == (
        "ttl_seconds (RENDEZVOUS_TTL_SECONDS): 60 is out of range: must be 120\N{EN DASH}300 s, as MSC4388 asks"
    )


def test_payload_range_says_it_may_only_be_lowered() -> None:
    message = _error(RENDEZVOUS_MAX_PAYLOAD_BYTES="8192")
    assert "8192 is out of range: must be 1\N{EN DASH}4096 bytes" in message
    assert "never raised" in message


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("homeserver_timeout_seconds", "more than 0 and at most 60 s"),
        ("create_burst", "at least 1"),
        ("port", "0\N{EN DASH}65535"),
        ("store_url", None),
    ],
)
def test_ranges_are_described_from_the_field_constraints(name: str, text: str | None) -> None:
    described = describe_range(name)
    assert (described is None) if text is None else (described is not None and described.startswith(text))


def test_every_bounded_numeric_setting_describes_its_range() -> None:
    for name, field in Settings.model_fields.items():
        if any(hasattr(c, key) for c in field.metadata for key in ("ge", "gt", "le", "lt")):
            assert describe_range(name), name


# -- secrets and store locations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("memory://", "memory://"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:hunter2@redis:6379/0", "redis://:***@redis:6379/0"),
        ("rediss://user:hunter2@redis.example/1", "rediss://user:***@redis.example/1"),
        ("redis://redis/0?password=hunter2&db=1", "redis://redis/0?password=***&db=1"),
        ("unix:///run/redis.sock?db=0", "unix:///run/redis.sock?db=0"),
    ],
)
def test_redact_url_hides_passwords_only(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    ("url", "location"),
    [
        ("memory://", "this process"),
        ("redis://:hunter2@redis.internal/0", "redis.internal:6379"),
        ("rediss+cluster://user:pw@10.0.0.5:7000", "10.0.0.5:7000"),
        ("redis://[::1]:6380/0", "[::1]:6380"),
        ("unix:///run/redis/redis.sock", "/run/redis/redis.sock"),
    ],
)
def test_store_location_names_host_and_port_without_credentials(url: str, location: str) -> None:
    assert store_location(url) == location


def test_store_unreachable_message_names_the_address_and_the_error_but_no_password() -> None:
    cause = ConnectionError("Error 111 connecting to redis:6379 (auth hunter2). Connection refused.")
    error = RuntimeError("the Redis store is unavailable")
    error.__cause__ = cause
    message = store_unreachable_message("redis://:hunter2@redis:6379/0", error)
    assert "redis:6379" in message
    assert "ConnectionError: Error 111" in message
    assert "Connection refused" in message
    assert "hunter2" not in message
    error.__cause__ = ConnectionError("AUTH failed for p@ss/word")
    assert "p@ss/word" not in store_unreachable_message("redis://:p%40ss%2Fword@redis:6379/0", error)


# -- the startup line --------------------------------------------------------------------------------------------


def test_startup_fields_of_the_defaults() -> None:
    fields = startup_fields(load_settings(environ={}))
    assert fields == {
        "listen": f"http://127.0.0.1:{DEFAULT_PORT}",
        "server": "uvicorn",
        "workers": "1",
        "store": "memory://",
        "generations": "Gen-1,Gen-2-unstable",
        "gen2_create_policy": "open",
        "public_url": "built-from-Host",
        "metrics": f"http://127.0.0.1:{DEFAULT_PORT}/metrics",
        "push": "long-poll+websocket",
        "gen1_holds": "20000ms",
    }
    assert all(" " not in value for value in fields.values())


def test_startup_fields_follow_the_settings() -> None:
    settings = load_settings(
        environ={
            "RENDEZVOUS_STORE_URL": "redis://:hunter2@redis:6379/0",
            "RENDEZVOUS_GEN1_ENABLED": "false",
            "RENDEZVOUS_GEN2_STABLE_API": "true",
            "RENDEZVOUS_PUBLIC_BASE_URL": "https://matrix.example.org/",
            "RENDEZVOUS_METRICS_PORT": "9108",
            "RENDEZVOUS_PUSH_WEBSOCKET": "false",
        }
    )
    fields = startup_fields(settings)
    assert fields["store"] == "redis://:***@redis:6379/0"
    assert fields["generations"] == "Gen-2-unstable,Gen-2-stable"
    assert fields["public_url"] == "https://matrix.example.org"
    assert fields["metrics"] == "http://127.0.0.1:9108/metrics"
    assert fields["push"] == "long-poll"
    off = startup_fields(load_settings(environ={"RENDEZVOUS_GEN2_CREATE_POLICY": "off"}))
    assert off["generations"] == "Gen-1"


def test_the_default_port_clashes_with_no_common_matrix_service() -> None:
    # Synapse, its federation port and usual worker ports, MAS and its internal listener, sliding sync.
    assert DEFAULT_PORT not in {8008, 8448, 8080, 8081, 8083, 8084, 8009, 8000, 9000, 9090}
    assert Settings.model_fields["port"].default == DEFAULT_PORT


# -- check-config --show ------------------------------------------------------------------------------------------


def test_sources_follow_the_precedence(tmp_path: Path) -> None:
    config = tmp_path / "rendezvous.toml"
    config.write_text("ttl_seconds = 150\nport = 9001\nworkers = 1\n")
    sources = setting_sources(
        config_file=config,
        environ={"RENDEZVOUS_PORT": "9002", "rendezvous_workers": "1"},
        flags={"port": "--port"},
    )
    assert sources["port"] == "flag --port"
    assert sources["workers"] == "env RENDEZVOUS_WORKERS"
    assert sources["ttl_seconds"] == f"file {config}"
    assert sources["host"] == "default"


def test_config_file_named_by_the_environment_is_a_source(tmp_path: Path) -> None:
    config = tmp_path / "rendezvous.toml"
    config.write_text("max_sessions = 5\n")
    sources = setting_sources(config_file=None, environ={"RENDEZVOUS_CONFIG": str(config)}, flags={})
    assert sources["max_sessions"] == f"file {config}"


def test_shown_values_hide_secrets() -> None:
    assert shown_value("store_url", "redis://:hunter2@redis/0") == "redis://:***@redis/0"
    assert shown_value("metrics_token", "abc") == "***"
    assert shown_value("public_base_url", None) == "unset"
    assert shown_value("trusted_proxies", []) == "(empty)"
    assert shown_value("gen1_enabled", True) == "true"


def test_report_has_one_row_per_setting() -> None:
    settings = load_settings(environ={})
    lines = settings_report(settings, {})
    assert lines[0].split() == ["setting", "value", "from"]
    assert [line.split()[0] for line in lines[1:]] == list(Settings.model_fields)
    assert all(line.split()[-1] == "default" for line in lines[1:])
