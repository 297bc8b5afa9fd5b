"""The whole development stack: OAuth server + real Synapse + our rendezvous server, on free local ports.

Start order follows the dependencies: the OAuth server first (Synapse fetches its metadata and introspects
against it), then Synapse, then the rendezvous server. Stop order is the reverse. Every part binds to
127.0.0.1. With ``gen2_rendezvous="qrlink"`` a front reverse proxy (:mod:`devstack.front`) starts before
Synapse and becomes the homeserver URL, sending the rendezvous paths to our server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import secrets
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

from devstack._process import ManagedProcess, StartupError, child_environment, free_port, wait_for_http
from devstack.front import FrontProxy, FrontServer
from devstack.oauth import DeviceTokens, OAuthService, OAuthSettings, build_oauth_service
from devstack.serving import ServerThread, bound_socket
from devstack.synapse import SynapseProcess, ensure_synapse, homeserver_config

T = TypeVar("T")


def rendezvous_available() -> bool:
    """Whether this checkout has ``python -m rendezvous serve``."""
    return importlib.util.find_spec("rendezvous.__main__") is not None


class DevStack:
    """A real homeserver for development and tests: an OAuth server in front of Synapse, plus rendezvous.

    Use it as ``with DevStack.start() as stack:`` or ``async with DevStack.start() as stack:``. Every
    component gets a free port on 127.0.0.1 and a temporary data directory that is removed on exit.

    :param rendezvous: start ``python -m rendezvous serve``: ``True`` requires it, ``False`` skips it,
        ``None`` starts it when this checkout has it.
    :param poll_interval: RFC 8628 ``interval`` handed to devices (seconds).
    :param device_code_lifetime: RFC 8628 ``expires_in`` of device codes (seconds).
    :param access_token_lifetime: lifetime of access tokens (seconds).
    :param users: dev users to create at start, localpart to password.
    :param server_name: Synapse's ``server_name`` (user IDs end in ``:<server_name>``).
    :param synapse_overrides: keys deep-merged into Synapse's configuration.
    :param start_timeout: seconds each component may take to answer.
    :param gen2_rendezvous: who hosts Gen-2 sessions. ``"synapse"``: Synapse's own MSC4388 endpoint, and
        :attr:`homeserver_url` is Synapse. ``"qrlink"``: our rendezvous server (required then) behind a front
        reverse proxy that is :attr:`homeserver_url` and Synapse's ``public_baseurl``; Synapse's MSC4388 is off
        and our server's Gen-1 session URLs name the front too.
    :param rendezvous_env: extra ``RENDEZVOUS_*`` settings for our rendezvous server (``RENDEZVOUS_HOLD_ENABLED``).
    """

    def __init__(
        self,
        *,
        rendezvous: bool | None = None,
        poll_interval: int = 5,
        device_code_lifetime: int = 1200,
        access_token_lifetime: int = 3600,
        users: Mapping[str, str] | None = None,
        server_name: str = "localhost",
        synapse_overrides: Mapping[str, Any] | None = None,
        start_timeout: float = 60.0,
        gen2_rendezvous: Literal["synapse", "qrlink"] = "synapse",
        rendezvous_env: Mapping[str, str] | None = None,
    ) -> None:
        if gen2_rendezvous not in ("synapse", "qrlink"):
            raise ValueError(f"gen2_rendezvous must be 'synapse' or 'qrlink', not {gen2_rendezvous!r}")
        if gen2_rendezvous == "qrlink":
            if rendezvous is False:
                raise StartupError("gen2_rendezvous='qrlink' needs the rendezvous server, but rendezvous=False")
            rendezvous = True
        if rendezvous and not rendezvous_available():
            raise StartupError("rendezvous=True, but this checkout has no `python -m rendezvous serve`")
        self._want_rendezvous = rendezvous if rendezvous is not None else rendezvous_available()
        self._gen2_rendezvous = gen2_rendezvous
        self._rendezvous_env = dict(rendezvous_env or {})
        self._poll_interval = poll_interval
        self._device_code_lifetime = device_code_lifetime
        self._access_token_lifetime = access_token_lifetime
        self._initial_users = dict(users or {})
        self.server_name = server_name
        self._synapse_overrides = dict(synapse_overrides or {})
        self._start_timeout = start_timeout
        self._mas_secret = secrets.token_urlsafe(32)
        self._admin_token = secrets.token_urlsafe(32)
        self._data_dir: Path | None = None
        self._oauth_thread: ServerThread | None = None
        self._oauth: OAuthService | None = None
        self._synapse: SynapseProcess | None = None
        self._rendezvous: ManagedProcess | None = None
        self._front: FrontServer | None = None
        self._issuer = ""
        self._homeserver_url = ""
        self._synapse_url = ""
        self._rendezvous_url: str | None = None

    @classmethod
    def start(cls, **options: Any) -> DevStack:
        """A stack to enter with ``with`` or ``async with``; the components start on entry."""
        return cls(**options)

    def __repr__(self) -> str:
        # The MAS shared secret and the admin token are deliberately absent.
        return (
            f"DevStack(homeserver_url={self._homeserver_url!r}, issuer={self._issuer!r}, "
            f"rendezvous_url={self._rendezvous_url!r})"
        )

    # -- where things are ------------------------------------------------------------------------------------

    @property
    def homeserver_url(self) -> str:
        """The client-server API base URL (Synapse's ``public_baseurl``, with a trailing slash): Synapse itself,
        or the front proxy with ``gen2_rendezvous="qrlink"``."""
        return self._homeserver_url

    @property
    def synapse_url(self) -> str:
        """Synapse's own listener, with a trailing slash; equals :attr:`homeserver_url` without a front."""
        return self._synapse_url

    @property
    def issuer(self) -> str:
        """The OAuth server's issuer, with a trailing slash; metadata is below ``.well-known/``."""
        return self._issuer

    @property
    def rendezvous_url(self) -> str | None:
        """Base URL of our rendezvous server, or ``None`` when it was not started."""
        return self._rendezvous_url

    @property
    def admin_token(self) -> str:
        """DEV ONLY: Bearer token for the admin API under ``{issuer}_devstack/admin/``."""
        return self._admin_token

    @property
    def data_dir(self) -> Path:
        """The temporary directory holding Synapse's database, config and logs."""
        if self._data_dir is None:
            raise RuntimeError("the stack is not running")
        return self._data_dir

    def synapse_log_tail(self, chars: int = 4000) -> str:
        """The end of Synapse's logs, for failure messages."""
        return self._synapse.log_tail(chars) if self._synapse is not None else "(Synapse not started)"

    # -- lifecycle -------------------------------------------------------------------------------------------

    def open(self) -> None:
        """Start every component; on failure, stop what started and raise :class:`StartupError`."""
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        python = ensure_synapse()
        self._data_dir = Path(tempfile.mkdtemp(prefix="qrlink-devstack-"))
        oauth_socket = bound_socket()
        self._issuer = f"http://127.0.0.1:{oauth_socket.getsockname()[1]}/"
        synapse_port = free_port()
        self._synapse_url = self._homeserver_url = f"http://127.0.0.1:{synapse_port}/"
        experimental_features: dict[str, Any] | None = None
        synapse_overrides = self._synapse_overrides
        rendezvous_port: int | None = None
        if self._gen2_rendezvous == "qrlink":
            # The front must know where our server will listen before Synapse and our server are up.
            while rendezvous_port in (None, synapse_port):
                rendezvous_port = free_port()
            # The front starts first: Synapse's public_baseurl is the front's URL, and the readiness check of
            # Synapse goes through it. It needs no upstream to be up until a request arrives.
            front_socket = bound_socket()
            self._front = FrontServer(
                FrontProxy(homeserver_url=self._synapse_url, rendezvous_url=f"http://127.0.0.1:{rendezvous_port}/"),
                front_socket,
            )
            self._front.start(self._start_timeout)
            self._homeserver_url = self._front.base_url
            # Gen-1 stays advertised in /versions; Gen-2 is left off in Synapse, as docs/deployment.md says to
            # do when our server answers it, so a Gen-2 request that reached Synapse would fail.
            experimental_features = {"msc4108_enabled": True}
            synapse_overrides = {"public_baseurl": self._homeserver_url, **synapse_overrides}

        self._oauth = build_oauth_service(
            OAuthSettings(
                issuer=self._issuer,
                device_code_lifetime=self._device_code_lifetime,
                poll_interval=self._poll_interval,
                access_token_lifetime=self._access_token_lifetime,
            ),
            # MAS calls Synapse's /_synapse/mas API on Synapse itself, never through the public front.
            homeserver_url=self._synapse_url,
            server_name=self.server_name,
            synapse_secret=self._mas_secret,
            admin_token=self._admin_token,
        )
        self._oauth_thread = ServerThread(self._oauth.app, oauth_socket)
        self._oauth_thread.start(self._start_timeout)

        config = homeserver_config(
            data_dir=self._data_dir / "synapse",
            port=synapse_port,
            server_name=self.server_name,
            mas_endpoint=self._issuer,
            mas_secret=self._mas_secret,
            experimental_features=experimental_features,
            overrides=synapse_overrides,
        )
        self._synapse = SynapseProcess(python, self._data_dir / "synapse", config)
        self._synapse.start(self._start_timeout)

        if self._want_rendezvous:
            self._start_rendezvous(self._data_dir, rendezvous_port)

        for localpart, password in self._initial_users.items():
            self.create_user(localpart, password)

    def _start_rendezvous(self, data_dir: Path, port: int | None) -> None:
        port = port if port is not None else free_port()
        base_url = f"http://127.0.0.1:{port}/"
        # The front carries no WebSocket, so our server must not advertise its watch endpoint behind it.
        behind_front = {"RENDEZVOUS_PUSH_WEBSOCKET": "false"} if self._front is not None else {}
        self._rendezvous = ManagedProcess(
            "rendezvous",
            [sys.executable, "-m", "rendezvous", "serve", "--host", "127.0.0.1", "--port", str(port)],
            log_path=data_dir / "rendezvous.log",
            env=child_environment(
                {
                    # Behind the front, Gen-1 session URLs name the front, as in a reverse-proxied deployment.
                    "RENDEZVOUS_PUBLIC_BASE_URL": self._homeserver_url if self._front is not None else base_url,
                    "RENDEZVOUS_HOMESERVER_URL": self._synapse_url,
                    # Tests and demos create sessions in bursts from one address.
                    "RENDEZVOUS_CREATE_RATE_PER_SECOND": "0",
                    "RENDEZVOUS_SESSION_RATE_PER_SECOND": "0",
                    **behind_front,
                    **self._rendezvous_env,
                }
            ),
        )
        self._rendezvous.start()
        wait_for_http(f"{base_url}health", process=self._rendezvous, timeout=self._start_timeout)
        self._rendezvous_url = base_url

    def close(self) -> None:
        """Stop every component (rendezvous, Synapse, front, OAuth server) and remove the data directory."""
        if self._rendezvous is not None:
            self._rendezvous.stop()
            self._rendezvous = None
        if self._synapse is not None:
            self._synapse.stop()
            self._synapse = None
        if self._front is not None:
            self._front.stop()
            self._front = None
        if self._oauth_thread is not None:
            self._oauth_thread.stop()
            self._oauth_thread = None
        if self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None

    def __enter__(self) -> DevStack:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> DevStack:
        await asyncio.to_thread(self.open)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.close)

    # -- DEV ONLY: accounts without a browser ----------------------------------------------------------------

    def create_user(self, localpart: str, password: str, *, displayname: str | None = None) -> str:
        """DEV ONLY: create (or reset) a user here and in Synapse; returns the Matrix user ID."""
        oauth, thread = self._running()
        user = thread.call(oauth.accounts.create_user(localpart, password, displayname=displayname))
        return oauth.accounts.user_id(user.localpart)

    def login_device(self, localpart: str, device_id: str) -> DeviceTokens:
        """DEV ONLY: sign *localpart* in as *device_id* (created in Synapse) and return its tokens."""
        oauth, thread = self._running()
        return thread.call(oauth.accounts.login_device(localpart, device_id))

    async def async_create_user(self, localpart: str, password: str, *, displayname: str | None = None) -> str:
        """DEV ONLY: :meth:`create_user` for async callers."""
        oauth, thread = self._running()
        user = await thread.acall(oauth.accounts.create_user(localpart, password, displayname=displayname))
        return oauth.accounts.user_id(user.localpart)

    async def async_login_device(self, localpart: str, device_id: str) -> DeviceTokens:
        """DEV ONLY: :meth:`login_device` for async callers."""
        oauth, thread = self._running()
        return await thread.acall(oauth.accounts.login_device(localpart, device_id))

    def set_device_code_lifetime(self, seconds: int) -> None:
        """DEV ONLY: the ``expires_in`` of device codes issued from now on (codes already issued keep theirs)."""
        oauth, _ = self._running()
        oauth.server.settings = dataclasses.replace(oauth.server.settings, device_code_lifetime=seconds)

    async def async_delete_device(self, localpart: str, device_id: str) -> None:
        """DEV ONLY: delete *device_id* of *localpart* from Synapse, as if it had never been provisioned."""
        oauth, thread = self._running()
        await thread.acall(oauth.accounts.synapse.delete_device(localpart, device_id))

    def _running(self) -> tuple[OAuthService, ServerThread]:
        if self._oauth is None or self._oauth_thread is None:
            raise RuntimeError("the stack is not running")
        return self._oauth, self._oauth_thread
