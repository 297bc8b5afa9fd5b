"""The ``rendezvous`` command: settings validation, config files, and serving with several workers."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from tests.server.test_push_support import cli_server
from tests.support.server import free_port, run_cli, serve_cli

from .helpers import GEN1, GEN2, TEXT


def _assert_config_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2
    stderr: str = result.stderr
    assert "invalid configuration" in stderr
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in stderr, stderr


def test_check_config_accepts_defaults() -> None:
    result = run_cli(["check-config"])
    assert result.returncode == 0, result.stderr


def test_ttl_outside_120_to_300_is_refused_naming_the_variable_and_the_reason() -> None:
    result = run_cli(["serve"], {"RENDEZVOUS_TTL_SECONDS": "60"})
    _assert_config_error(result, "ttl_seconds", "RENDEZVOUS_TTL_SECONDS", "120\N{EN DASH}300 s, as MSC4388 asks")


def test_payload_limit_cannot_be_raised() -> None:
    result = run_cli(["check-config"], {"RENDEZVOUS_MAX_PAYLOAD_BYTES": "8192"})
    _assert_config_error(result, "max_payload_bytes")


def test_non_numeric_value_is_refused() -> None:
    _assert_config_error(run_cli(["check-config"], {"RENDEZVOUS_MAX_SESSIONS": "many"}), "max_sessions")


def test_bad_trusted_proxy_is_refused() -> None:
    result = run_cli(["check-config"], {"RENDEZVOUS_TRUSTED_PROXIES": "10.0.0.0/8, not-an-ip"})
    _assert_config_error(result, "trusted_proxies")


def test_authenticated_policy_needs_a_homeserver() -> None:
    result = run_cli(["check-config"], {"RENDEZVOUS_GEN2_CREATE_POLICY": "authenticated"})
    _assert_config_error(result, "homeserver_url")


def test_unknown_store_scheme_is_refused() -> None:
    _assert_config_error(run_cli(["serve", "--store", "mysql://db"]), "store_url", "unsupported scheme")


def test_memory_store_with_several_workers_is_refused() -> None:
    _assert_config_error(run_cli(["serve", "--workers", "2"]), "workers > 1 needs a shared store")


def test_missing_config_file_is_refused() -> None:
    _assert_config_error(run_cli(["serve", "--config", "/nonexistent/rendezvous.toml"]), "does not exist")


def test_config_file_with_invalid_toml_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("ttl_seconds = = 3\n")
    _assert_config_error(run_cli(["check-config", "--config", str(config)]), "not valid TOML")


def test_config_file_with_unknown_setting_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "typo.toml"
    config.write_text("ttl_secnds = 150\n")
    _assert_config_error(
        run_cli(["check-config", "--config", str(config)]), "ttl_secnds: unknown setting; did you mean ttl_seconds?"
    )


def test_unknown_variable_is_a_warning_with_a_suggestion() -> None:
    result = run_cli(["check-config"], {"RENDEZVOUS_TTL": "100"})
    assert result.returncode == 0, result.stderr
    assert (
        "warning: RENDEZVOUS_TTL is not a setting and is ignored; did you mean RENDEZVOUS_TTL_SECONDS?" in result.stderr
    )


def test_unknown_variable_is_reported_next_to_a_configuration_error() -> None:
    result = run_cli(["check-config"], {"RENDEZVOUS_TTL": "100", "RENDEZVOUS_PROT": "1"})
    assert "did you mean RENDEZVOUS_PORT?" in result.stderr
    result = run_cli(["check-config"], {"RENDEZVOUS_TTL_SECOND": "100", "RENDEZVOUS_MAX_SESSIONS": "0"})
    _assert_config_error(result, "max_sessions", "did you mean RENDEZVOUS_TTL_SECONDS?")


def test_check_config_show_names_every_value_and_its_source(tmp_path: Path) -> None:
    config = tmp_path / "rendezvous.toml"
    config.write_text('store_url = "redis://:hunter2@redis.internal:6379/0"\nttl_seconds = 150\nmax_sessions = 500\n')
    env = {"RENDEZVOUS_CONFIG": str(config), "RENDEZVOUS_MAX_SESSIONS": "600"}
    result = run_cli(["check-config", "--show", "--port", "9000"], env)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split(maxsplit=1)[1] for line in result.stdout.splitlines() if line.strip()}
    assert rows["config"] == f"file: {config} (from RENDEZVOUS_CONFIG)"
    assert rows["port"].split() == ["9000", "flag", "--port"]
    assert rows["max_sessions"].split() == ["600", "env", "RENDEZVOUS_MAX_SESSIONS"]
    assert rows["ttl_seconds"].split() == ["150", "file", str(config)]
    assert rows["store_url"].split() == ["redis://:***@redis.internal:6379/0", "file", str(config)]
    assert rows["host"].split() == ["127.0.0.1", "default"]
    assert "hunter2" not in result.stdout + result.stderr
    assert result.stdout.rstrip().endswith("configuration OK")


def test_check_config_accepts_the_same_options_as_serve() -> None:
    result = run_cli(["check-config", "--workers", "2"])
    _assert_config_error(result, "workers > 1 needs a shared store")


def test_serve_says_what_it_serves_in_one_line_and_names_an_unreachable_store(tmp_path: Path) -> None:
    store = f"redis://:hunter2@127.0.0.1:{free_port()}/0"  # nothing listens there
    env = {"RENDEZVOUS_LOG_LEVEL": "info", "RENDEZVOUS_STORE_URL": store, "RENDEZVOUS_TTL": "100"}
    with cli_server(tmp_path / "server.log", env) as server:
        assert httpx.get(f"{server.base_url}/health").status_code == 503
    text = server.log_text()
    assert "hunter2" not in text
    (startup,) = [line for line in text.splitlines() if "starting" in line]
    assert " INFO rendezvous: rendezvous " in startup
    for field in (
        f"store=redis://:***@127.0.0.1:{store.rsplit(':', 1)[1]}",
        "generations=Gen-1,Gen-2-unstable",
        "gen2_create_policy=open",
        "public_url=built-from-Host",
        "metrics=http://127.0.0.1:",
        "push=long-poll+websocket",
        "gen1_holds=20000ms",
    ):
        assert field in startup, startup
    host_port = store.split("@")[1].split("/")[0]
    (unreachable,) = [line for line in text.splitlines() if "not reachable" in line]
    assert f" WARNING rendezvous: the session store at {host_port} is not reachable (" in unreachable
    assert "Connection refused" in unreachable
    assert "did you mean RENDEZVOUS_TTL_SECONDS?" in text
    # uvicorn's own lines come in the same format.
    assert all(not line.startswith("INFO:") for line in text.splitlines())


def test_config_file_named_by_environment_is_read(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("ttl_seconds = 1000\n")
    _assert_config_error(run_cli(["check-config"], {"RENDEZVOUS_CONFIG": str(config)}), "ttl_seconds")


def test_console_script_reports_its_version() -> None:
    result = run_cli(["--version"])
    assert result.returncode == 0
    assert "rendezvous" in result.stdout


def test_settings_precedence_is_flags_then_environment_then_file(tmp_path: Path) -> None:
    config = tmp_path / "rendezvous.toml"
    config.write_text('ttl_seconds = 150\nmax_payload_bytes = 100\npublic_base_url = "https://from-file.example"\n')
    env = {"RENDEZVOUS_MAX_PAYLOAD_BYTES": "200", "RENDEZVOUS_PUBLIC_BASE_URL": "https://from-env.example"}
    args = ["--config", str(config), "--public-base-url", "https://from-flag.example"]
    with serve_cli(env, args) as base, httpx.Client(base_url=base) as client:
        assert 145_000 <= client.post(GEN2, json={"data": ""}).json()["expires_in_ms"] <= 150_000
        assert client.post(GEN2, json={"data": "a" * 200}).status_code == 200
        assert client.post(GEN2, json={"data": "a" * 201}).status_code == 413
        url = client.post(GEN1, content=b"", headers=TEXT).json()["url"]
        assert url.startswith(f"https://from-flag.example{GEN1}/")


@pytest.fixture(scope="module")
def redis_url() -> str:
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    finally:
        client.close()
    return "redis://127.0.0.1:6379/0"


def test_several_workers_share_sessions_through_redis(redis_url: str) -> None:
    env = {
        "RENDEZVOUS_STORE_URL": redis_url,
        "RENDEZVOUS_TTL_SECONDS": "150",
        "RENDEZVOUS_CREATE_RATE_PER_SECOND": "0",
        "RENDEZVOUS_SESSION_RATE_PER_SECOND": "0",
    }
    with serve_cli(env, ["--workers", "2"]) as base:
        session = httpx.post(f"{base}{GEN2}", json={"data": "shared"}).json()
        assert 145_000 <= session["expires_in_ms"] <= 150_000
        # A fresh connection per request lets the kernel hand requests to either worker.
        for _ in range(20):
            response = httpx.get(f"{base}{GEN2}/{session['id']}", headers={"Connection": "close"})
            assert response.status_code == 200
            assert response.json()["data"] == "shared"
