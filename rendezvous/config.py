"""Server settings: defaults, ``RENDEZVOUS_*`` environment variables and an optional TOML file.

Precedence, highest first: explicit overrides (command-line flags), environment variables, the TOML file named
by ``--config`` / ``RENDEZVOUS_CONFIG``, built-in defaults. Everything is validated once at start; a bad value
stops the server with a message naming the setting and its environment variable (:class:`ConfigError`), never
a traceback.
"""

from __future__ import annotations

import contextvars
import difflib
import enum
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

ENV_PREFIX = "RENDEZVOUS_"
#: Names the TOML config file when ``--config`` is not given.
CONFIG_FILE_ENV = "RENDEZVOUS_CONFIG"
#: ``RENDEZVOUS_*`` variables that are no settings but are read all the same (``rendezvous selftest`` reads the
#: second): never reported as unknown.
OTHER_VARIABLES: frozenset[str] = frozenset({CONFIG_FILE_ENV, "RENDEZVOUS_SELFTEST_ACCESS_TOKEN"})

#: The protocol maximum for payloads (MSC4108 "4KB", MSC4388 4096 bytes of ``data``); settings may only lower
#: it, never raise it.
PROTOCOL_MAX_PAYLOAD_BYTES = 4096
#: MSC4388: the minimum lifetime SHOULD be 120 s and the maximum 300 s; one TTL serves both generations.
MIN_TTL_SECONDS = 120
MAX_TTL_SECONDS = 300
#: The default listening port. Chosen to collide with no common Matrix service on the same host: Synapse (8008,
#: federation 8448, workers from 8083), MAS (8080, internal 8081), sliding sync (8009) and the usual metrics
#: ports (9000, 9090, 9100). 8108 is easy to remember: MSC4108.
DEFAULT_PORT = 8108

StoreScheme = Literal["memory", "redis", "rediss", "redis+cluster", "rediss+cluster"]
#: URL schemes of the Redis store (``unix://`` is a Redis server's Unix socket).
REDIS_SCHEMES: frozenset[str] = frozenset(("redis", "rediss", "unix", "redis+cluster", "rediss+cluster"))
STORE_SCHEMES: frozenset[str] = REDIS_SCHEMES | {"memory"}

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(Exception):
    """The configuration is invalid. The message is meant for the operator, one problem per line."""


class CreatePolicy(enum.StrEnum):
    """Who may create Gen-2 (MSC4388) sessions."""

    #: The whole Gen-2 API answers 404 ``M_UNRECOGNIZED``.
    OFF = "off"
    #: Anyone, including a not-yet-logged-in new device.
    OPEN = "open"
    #: Only requests with an access token the configured homeserver accepts.
    AUTHENTICATED = "authenticated"


class Settings(BaseSettings):
    """Every setting of the rendezvous server. See ``docs/configuration.md``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    # -- listening -------------------------------------------------------------------------------------------
    host: str = Field("127.0.0.1", min_length=1, description="Address to listen on.")
    port: int = Field(DEFAULT_PORT, ge=0, le=65535, description="TCP port to listen on.")
    workers: int = Field(1, ge=1, le=256, description="Worker processes; more than one needs a shared store.")
    server: Literal["uvicorn", "granian"] = Field(
        "uvicorn", description="HTTP server running the app: uvicorn, or granian (the server-granian extra)."
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    access_log: bool = Field(
        False, description="Log every request line. Off by default: session URLs are capabilities."
    )

    # -- public URLs and proxies -----------------------------------------------------------------------------
    public_base_url: str | None = Field(
        None,
        description="Scheme + host (+ path prefix) clients reach this server at, for Gen-1 session URLs.",
    )
    trusted_proxies: Annotated[list[IPNetwork], NoDecode] = Field(
        default_factory=list,
        description="CIDRs of reverse proxies whose forwarding headers (see forwarded_header) are believed.",
    )
    forwarded_header: Literal["x-forwarded", "forwarded"] = Field(
        "x-forwarded",
        description=(
            "The one forwarding header the trusted proxies write: X-Forwarded-For/-Proto/-Host (x-forwarded), "
            "or RFC 7239 Forwarded (forwarded). The other family is ignored, whoever sends it."
        ),
    )

    # -- storage -------------------------------------------------------------------------------------------
    store_url: str = Field("memory://", description="memory:// or a redis://, rediss://, redis+cluster:// URL.")

    # -- limits -------------------------------------------------------------------------------------------
    ttl_seconds: int = Field(180, ge=MIN_TTL_SECONDS, le=MAX_TTL_SECONDS)
    max_payload_bytes: int = Field(PROTOCOL_MAX_PAYLOAD_BYTES, ge=1, le=PROTOCOL_MAX_PAYLOAD_BYTES)
    max_sessions: int = Field(10_000, ge=1)
    create_rate_per_second: float = Field(1.0, ge=0, description="0 disables the create rate limit.")
    create_burst: int = Field(10, ge=1)
    session_rate_per_second: float = Field(20.0, ge=0, description="0 disables the read/write rate limit.")
    session_burst: int = Field(60, ge=1)

    # -- connections: what a reverse proxy would otherwise bound --------------------------------------------
    request_header_timeout_seconds: float = Field(
        5.0, gt=0, le=300, description="Time a client has to send a request's line and headers."
    )
    request_body_timeout_seconds: float = Field(
        10.0, gt=0, le=300, description="Time a client has to send a request's body once its headers are in."
    )
    max_request_header_bytes: int = Field(
        32_768, ge=8192, le=1_048_576, description="Largest request line plus headers; larger ones get 431."
    )
    max_connections: int = Field(
        16_000,
        ge=1,
        description="Open connections per process served normally; past it requests get 503, except /health.",
    )

    # -- generations --------------------------------------------------------------------------------------
    gen1_enabled: bool = True
    gen2_create_policy: CreatePolicy = CreatePolicy.OPEN
    gen2_stable_api: bool = False

    # -- push delivery (qrlink extension: long-poll and WebSocket watch) ----------------------------------
    push_enabled: bool = Field(True, description="Offer long-poll and WebSocket push delivery and advertise it.")
    push_websocket: bool = Field(True, description="Serve the WebSocket watch endpoint (needs push_enabled).")
    push_max_wait_seconds: int = Field(
        30, ge=1, le=300, description="Longest time a long-poll is held before answering with the unchanged state."
    )
    push_max_waiters: int = Field(
        10_000,
        ge=0,
        description="Parked long-polls and watches per process; beyond it long-polls are answered at once.",
    )

    # -- held Gen-1 polls (transparent to standard clients) --------------------------------------------------
    hold_enabled: bool = Field(
        True,
        description=(
            "Hold a Gen-1 GET whose If-None-Match names the current ETag until the session changes (or hold_ms "
            "passes), instead of answering 304 at once."
        ),
    )
    hold_ms: int = Field(
        20_000,
        ge=100,
        le=120_000,
        description="Longest time a Gen-1 poll is held before the usual 304; below every client and proxy timeout.",
    )
    hold_max: int = Field(
        10_000, ge=0, description="Held Gen-1 polls per process; beyond it polls are answered 304 at once."
    )
    hold_max_per_address: int = Field(
        16, ge=0, description="Held Gen-1 polls per client address and process; beyond it 304 at once."
    )

    # -- observability ------------------------------------------------------------------------------------
    log_format: Literal["plain", "json"] = Field("plain", description="Log lines as plain text or JSON objects.")
    metrics_enabled: bool = Field(True, description="Expose Prometheus metrics at /metrics.")
    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="Serve /metrics on this port only, instead of on the main port."
    )
    metrics_host: str = Field("127.0.0.1", min_length=1, description="Address of the separate metrics port.")

    # -- homeserver (for gen2_create_policy = authenticated)
    # ---------------------------------------------------
    homeserver_url: str | None = None
    homeserver_timeout_seconds: float = Field(5.0, gt=0, le=60)
    token_cache_seconds: float = Field(60.0, ge=0, le=3600)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxy_list(cls, value: Any) -> Any:
        # Environment variables carry a plain comma-separated list, TOML a real array.
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("public_base_url", "homeserver_url")
    @classmethod
    def _check_base_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an absolute http:// or https:// URL")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query or fragment")
        return value.rstrip("/")

    @field_validator("store_url")
    @classmethod
    def _check_store_url(cls, value: str) -> str:
        scheme = urlsplit(value).scheme.lower()
        if scheme not in STORE_SCHEMES:
            raise ValueError(f"unsupported scheme {scheme!r}; use one of: {', '.join(sorted(STORE_SCHEMES))}")
        return value

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        if self.gen2_create_policy is CreatePolicy.AUTHENTICATED and self.homeserver_url is None:
            raise ValueError("gen2_create_policy = authenticated needs homeserver_url (RENDEZVOUS_HOMESERVER_URL)")
        if self.workers > 1 and self.store_scheme == "memory":
            raise ValueError(
                "workers > 1 needs a shared store: the memory store lives inside one process, so each worker "
                "would see different sessions. Set store_url (RENDEZVOUS_STORE_URL) to a redis:// URL."
            )
        if self.metrics_port is not None and self.metrics_port == self.port and self.port != 0:
            raise ValueError("metrics_port must differ from port (RENDEZVOUS_METRICS_PORT, RENDEZVOUS_PORT)")
        return self

    @property
    def store_scheme(self) -> str:
        """The lower-cased scheme of :attr:`store_url`."""
        return urlsplit(self.store_url).scheme.lower()

    def __repr__(self) -> str:
        # store_url may carry a Redis password.
        return f"Settings(store={self.store_scheme}://…, gen2_create_policy={self.gen2_create_policy.value})"

    __str__ = __repr__

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlFileSource(settings_cls))


_config_file: contextvars.ContextVar[Path | None] = contextvars.ContextVar("rendezvous_config_file", default=None)


class _TomlFileSource(PydanticBaseSettingsSource):
    """Values from the TOML file chosen by :func:`load_settings` (top-level keys are setting names)."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        path = _config_file.get()
        self._data: dict[str, Any] = _read_toml(path) if path is not None else {}

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None


def load_settings(
    config_file: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build and validate the settings, or raise :class:`ConfigError` describing every problem.

    ``config_file`` defaults to ``$RENDEZVOUS_CONFIG``. ``overrides`` (``None`` values are ignored) win over
    the environment, which wins over the file.
    """
    env = os.environ if environ is None else environ
    if config_file is None:
        config_file = env.get(CONFIG_FILE_ENV) or None
    token = _config_file.set(Path(config_file) if config_file is not None else None)
    try:
        explicit = {key: value for key, value in overrides.items() if value is not None}
        if environ is None:
            return Settings(**explicit)
        return _settings_from_mapping(environ, explicit)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
    finally:
        _config_file.reset(token)


def _settings_from_mapping(environ: Mapping[str, str], explicit: dict[str, Any]) -> Settings:
    # pydantic-settings reads os.environ only; for an explicit mapping, feed the prefixed keys in as init
    # values underneath the explicit overrides.
    from_env: dict[str, Any] = {}
    for key, value in environ.items():
        if key.startswith(ENV_PREFIX) and key != CONFIG_FILE_ENV:
            name = key[len(ENV_PREFIX) :].lower()
            if name in Settings.model_fields:
                from_env[name] = value
    return Settings(**{**from_env, **explicit})


def env_var_name(field_name: str) -> str:
    """The environment variable that sets ``field_name``."""
    return ENV_PREFIX + field_name.upper()


def similar_settings(name: str) -> list[str]:
    """Setting names ``name`` may have been meant as (a typo, a missing suffix, an environment variable's name)."""
    name = name.lower().removeprefix(ENV_PREFIX.lower())
    fields = list(Settings.model_fields)
    # "ttl" for ttl_seconds, "metrics" for metrics_*: a whole leading part of the real name.
    leading = [field for field in fields if field.startswith(name + "_")]
    return leading[:3] or difflib.get_close_matches(name, fields, n=3, cutoff=0.6)


def _did_you_mean(names: list[str]) -> str:
    if not names:
        return ""
    alternatives = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    return f"; did you mean {alternatives}?"


def unknown_variable_warnings(environ: Mapping[str, str] | None = None) -> list[str]:
    """One warning per ``RENDEZVOUS_*`` variable that sets nothing (``RENDEZVOUS_TTL`` for ``…_TTL_SECONDS``).

    Such a variable is ignored; a typo in one would otherwise go unnoticed.
    """
    env = os.environ if environ is None else environ
    warnings = []
    for key in sorted(env):
        upper = key.upper()
        if not upper.startswith(ENV_PREFIX) or upper in OTHER_VARIABLES:
            continue
        if upper[len(ENV_PREFIX) :].lower() in Settings.model_fields:
            continue
        suggestions = [env_var_name(name) for name in similar_settings(upper)]
        warnings.append(f"{key} is not a setting and is ignored{_did_you_mean(suggestions)}")
    return warnings


#: Why a setting's range is what it is, shown with the range when a value falls outside it.
RANGE_REASONS: dict[str, str] = {
    "ttl_seconds": "as MSC4388 asks",
    "max_payload_bytes": "the protocols' limit: it may be lowered, never raised",
    "push_max_wait_seconds": "no session lives longer than 300 s",
    "hold_ms": "clients give up on a request after 30 s (matrix-rust-sdk), proxies after 30-60 s",
    "port": "0 lets the system pick a free port",
}
_RANGE_ERRORS = frozenset({"greater_than", "greater_than_equal", "less_than", "less_than_equal"})


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def describe_range(name: str) -> str | None:
    """The bounds of a numeric setting, its unit and the reason if known: ``120-300 s, as MSC4388 asks``."""
    field = Settings.model_fields.get(name)
    if field is None:
        return None
    bounds: dict[str, Any] = {}
    for constraint in field.metadata:
        for key in ("ge", "gt", "le", "lt"):
            if getattr(constraint, key, None) is not None:
                bounds[key] = getattr(constraint, key)
    unit = " s" if name.endswith("_seconds") else " ms" if name.endswith("_ms") else ""
    unit = " bytes" if name.endswith("_bytes") else unit
    if "ge" in bounds and "le" in bounds:
        text = f"{_number(bounds['ge'])}\N{EN DASH}{_number(bounds['le'])}{unit}"
    elif "gt" in bounds and "le" in bounds:
        text = f"more than {_number(bounds['gt'])} and at most {_number(bounds['le'])}{unit}"
    elif "ge" in bounds:
        text = f"at least {_number(bounds['ge'])}{unit}"
    elif "gt" in bounds:
        text = f"more than {_number(bounds['gt'])}{unit}"
    else:
        return None
    reason = RANGE_REASONS.get(name)
    return f"{text}, {reason}" if reason else text


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem: ``setting (ENV_VAR): message``."""
    lines = []
    for error in exc.errors(include_url=False):
        loc = error.get("loc") or ()
        name = str(loc[0]) if loc else ""
        message = str(error.get("msg", "invalid value"))
        if error.get("type") == "extra_forbidden":
            lines.append(f"{name}: unknown setting{_did_you_mean(similar_settings(name))}")
        elif name in Settings.model_fields:
            allowed = describe_range(name) if error.get("type") in _RANGE_ERRORS else None
            if allowed is not None:
                message = f"{error.get('input')!s} is out of range: must be {allowed}"
            lines.append(f"{name} ({env_var_name(name)}): {message}")
        else:
            lines.append(message.removeprefix("Value error, "))
    return "\n".join(lines) if lines else str(exc)
