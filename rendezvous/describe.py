"""What the server tells its operator about itself: the startup line, ``check-config --show``, store locations.

Nothing here prints a secret: store URLs lose their password (:func:`redact_url`), and settings that hold one
are shown as ``***``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from pydantic import SecretStr

from . import __version__
from .config import CONFIG_FILE_ENV, CreatePolicy, Settings, _read_toml, env_var_name

#: Stands in for a password or any other secret.
HIDDEN = "***"
#: Query parameters of a URL whose values are secrets (redis-py reads ``?password=``).
_SECRET_QUERY_KEYS = ("pass", "secret", "token", "key")
#: Setting names whose values are secrets whatever their type.
_SECRET_NAME_SUFFIXES = ("_password", "_secret", "_token", "_key")
#: The port Redis listens on when a URL names none.
REDIS_DEFAULT_PORT = 6379


def redact_url(url: str) -> str:
    """``url`` with its password (and any secret-looking query value) replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None and not any(_is_secret_key(key) for key, _ in parse_qsl(parts.query)):
        return url
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        username = user.partition(":")[0]
        netloc = f"{username}:{HIDDEN}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        hidden = [(key, HIDDEN if _is_secret_key(key) else value) for key, value in pairs]
        query = urlencode(hidden, safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _is_secret_key(key: str) -> bool:
    return any(word in key.lower() for word in _SECRET_QUERY_KEYS)


def store_location(url: str) -> str:
    """Where the store named by ``url`` lives: ``host:port`` of a Redis server (the first node of a cluster),
    the socket path of ``unix://``, or ``this process`` for the memory store. Never a password."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "memory":
        return "this process"
    if scheme == "unix":
        return parts.path
    try:
        port = parts.port or REDIS_DEFAULT_PORT
    except ValueError:
        port = REDIS_DEFAULT_PORT
    host = parts.hostname or "localhost"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def scrub(text: str, url: str) -> str:
    """``text`` (an error message) without the password of ``url``, should a library have quoted it."""
    password = urlsplit(url).password
    if not password:
        return text
    # redis-py percent-decodes the password it reads from the URL: hide both spellings.
    for spelling in {password, unquote(password)}:
        text = text.replace(spelling, HIDDEN)
    return text


def store_unreachable_message(url: str, exc: BaseException) -> str:
    """The warning for a store that did not answer at startup: where it is and what went wrong, no password."""
    cause = exc.__cause__ or exc
    error = scrub(f"{type(cause).__name__}: {cause}", url)
    return f"the session store at {store_location(url)} is not reachable ({error}); /health answers 503 until it is"


def generations(settings: Settings) -> list[str]:
    """The API generations and path families served: ``Gen-1``, ``Gen-2-unstable``, ``Gen-2-stable``."""
    served = ["Gen-1"] if settings.gen1_enabled else []
    if settings.gen2_create_policy is not CreatePolicy.OFF:
        served.append("Gen-2-unstable")
        if settings.gen2_stable_api:
            served.append("Gen-2-stable")
    return served


def index_page(settings: Settings, *, health_path: str, openapi_path: str) -> str:
    """``GET /``: what this server is, its version, and where to look next. Plain ASCII text."""
    served = ", ".join(generations(settings)) or "none"
    return (
        f"qrlink rendezvous server {__version__}\n"
        "\n"
        'A Matrix "sign in with QR code" rendezvous (MSC4108 Gen-1, MSC4388 Gen-2). Devices reach it through\n'
        "their homeserver's API paths; there is nothing to use here in a browser.\n"
        "\n"
        f"Serving:         {served}\n"
        f"Health check:    {health_path}\n"
        f"API description: {openapi_path}\n"
        "Documentation:   docs/admin-guide.md and docs/deployment.md in the qrlink source\n"
    )


def _url(host: str, port: int, path: str = "") -> str:
    return f"http://[{host}]:{port}{path}" if ":" in host else f"http://{host}:{port}{path}"


def startup_fields(settings: Settings) -> dict[str, str]:
    """The ``key=value`` fields of the startup line (values without spaces, for the plain log format)."""
    if settings.public_base_url is not None:
        public_url = settings.public_base_url
    elif settings.trusted_proxies:
        public_url = "built-from-Host-or-X-Forwarded-Host"
    else:
        public_url = "built-from-Host"
    if not settings.metrics_enabled:
        metrics = "off"
    elif settings.metrics_port is None:
        metrics = _url(settings.host, settings.port, "/metrics")
    else:
        metrics = _url(settings.metrics_host, settings.metrics_port, "/metrics")
    push = "off"
    if settings.push_enabled:
        push = "long-poll+websocket" if settings.push_websocket else "long-poll"
    return {
        "listen": _url(settings.host, settings.port),
        "server": settings.server,
        "workers": str(settings.workers),
        "store": redact_url(settings.store_url),
        "generations": ",".join(generations(settings)) or "none",
        "gen2_create_policy": settings.gen2_create_policy.value,
        "public_url": public_url,
        "metrics": metrics,
        "push": push,
        # Held Gen-1 polls: how long, so that an operator can compare it with the proxy's read timeout.
        "gen1_holds": f"{settings.hold_ms}ms" if settings.hold_enabled and settings.gen1_enabled else "off",
    }


def startup_message() -> str:
    return f"rendezvous {__version__} starting"


# -- check-config --show ---------------------------------------------------------------------------------------


def setting_sources(
    *,
    config_file: str | Path | None,
    environ: Mapping[str, str],
    flags: Mapping[str, str],
) -> dict[str, str]:
    """Where each setting's effective value comes from, in the precedence :func:`~rendezvous.config.load_settings`
    applies: ``flag --port``, ``env RENDEZVOUS_PORT``, ``file /etc/rendezvous.toml`` or ``default``.

    ``flags`` maps the settings given on the command line to the flag that set them.
    """
    if config_file is None:
        config_file = environ.get(CONFIG_FILE_ENV) or None
    from_file = _read_toml(Path(config_file)) if config_file is not None else {}
    # pydantic-settings matches variable names without regard to case.
    env_names = {key.upper() for key in environ}
    sources = {}
    for name in Settings.model_fields:
        if name in flags:
            sources[name] = f"flag {flags[name]}"
        elif env_var_name(name) in env_names:
            sources[name] = f"env {env_var_name(name)}"
        elif name in from_file:
            sources[name] = f"file {config_file}"
        else:
            sources[name] = "default"
    return sources


def shown_value(name: str, value: Any) -> str:
    """A setting's value as ``check-config --show`` prints it, secrets hidden."""
    if value is None:
        return "unset"
    if isinstance(value, SecretStr) or name.endswith(_SECRET_NAME_SUFFIXES):
        return HIDDEN
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value) if value else "(empty)"
    text = str(getattr(value, "value", value))
    return redact_url(text) if "://" in text else text


def settings_report(settings: Settings, sources: Mapping[str, str]) -> list[str]:
    """``check-config --show``: one line per setting, ``name  value  source``, in declaration order."""
    rows = [("setting", "value", "from")]
    rows += [
        (name, shown_value(name, getattr(settings, name)), sources.get(name, "default"))
        for name in Settings.model_fields
    ]
    name_width = max(len(row[0]) for row in rows)
    value_width = min(max(len(row[1]) for row in rows), 48)
    return [f"{name:<{name_width}}  {value:<{value_width}}  {source}".rstrip() for name, value, source in rows]
