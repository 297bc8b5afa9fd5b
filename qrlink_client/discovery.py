"""Finding the servers of a sign in with QR code, for both generations.

- :func:`well_known_base_url`: a server name (as a Gen-1 QR code carries it) → the homeserver's client-server
  API base URL, through ``/.well-known/matrix/client``.
- :func:`discover_gen1_rendezvous`: the homeserver's own MSC4108 rendezvous endpoint, if ``/versions``
  advertises one; :func:`gen1_create_url` for a rendezvous server given by the user.
- :func:`discover_gen2`: ``GET …/rendezvous`` of MSC4388: may this requester create a session, and does the
  server offer qrlink's push extension?
"""

from __future__ import annotations

import httpx

from ._json import loads
from .errors import QrLinkError
from .transport._engine import _Transport, json_object, matrix_errcode, unexpected
from .transport.errors import CreateNotAvailable, RendezvousProtocolError
from .transport.gen2 import Gen2Discovery, Gen2Prefix, _auth, rendezvous_endpoint
from .transport.options import TransportOptions
from .transport.push import parse_push_discovery

__all__ = [
    "GEN1_RENDEZVOUS_PATH",
    "RendezvousUnavailable",
    "discover_gen1_rendezvous",
    "discover_gen2",
    "gen1_create_url",
    "well_known_base_url",
]

GEN1_RENDEZVOUS_PATH = "_matrix/client/unstable/org.matrix.msc4108/rendezvous"
"""Where an MSC4108 (2024) rendezvous endpoint lives below a client-server API base URL."""


class RendezvousUnavailable(QrLinkError):
    """The homeserver does not advertise an MSC4108 rendezvous endpoint (``org.matrix.msc4108`` in
    ``/versions``); pass one with ``--rendezvous``."""


# --- the homeserver ------------------------------------------------------------------------------------------


async def well_known_base_url(http: httpx.AsyncClient, server_name: str) -> str:
    """``https://{server_name}/.well-known/matrix/client`` → ``m.homeserver.base_url``; the server name itself
    over HTTPS when there is no usable document (as the client-server spec's discovery allows)."""
    fallback = f"https://{server_name}"
    try:
        response = await http.get(f"{fallback}/.well-known/matrix/client")
        body = loads(response.content) if response.status_code == 200 else None
    except (httpx.HTTPError, httpx.InvalidURL, ValueError):  # ValueError: not (I-)JSON, or a URL httpx refuses
        return fallback
    if isinstance(body, dict):
        homeserver = body.get("m.homeserver")
        if isinstance(homeserver, dict) and isinstance(homeserver.get("base_url"), str):
            return str(homeserver["base_url"])
    return fallback


# --- Gen-1 (MSC4108) ------------------------------------------------------------------------------------------


async def discover_gen1_rendezvous(http: httpx.AsyncClient, homeserver_url: str) -> str:
    """The homeserver's MSC4108 create URL, if ``/_matrix/client/versions`` advertises ``org.matrix.msc4108``
    (the check Element's clients make); else :class:`RendezvousUnavailable`."""
    base = homeserver_url.rstrip("/")
    try:
        response = await http.get(f"{base}/_matrix/client/versions")
        body = loads(response.content) if response.status_code == 200 else None
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as error:
        raise RendezvousUnavailable(
            f"cannot read {base}/_matrix/client/versions ({type(error).__name__}); pass --rendezvous"
        ) from None
    features = body.get("unstable_features") if isinstance(body, dict) else None
    if not isinstance(features, dict) or features.get("org.matrix.msc4108") is not True:
        raise RendezvousUnavailable(
            f"{base} does not advertise org.matrix.msc4108 (MSC4108 rendezvous); pass --rendezvous URL"
        )
    return f"{base}/{GEN1_RENDEZVOUS_PATH}"


def gen1_create_url(rendezvous_server: str) -> str:
    """The MSC4108 create URL below a rendezvous server's base URL (``--rendezvous`` may be either)."""
    if rendezvous_server.rstrip("/").endswith(GEN1_RENDEZVOUS_PATH):
        return rendezvous_server.rstrip("/")
    return f"{rendezvous_server.rstrip('/')}/{GEN1_RENDEZVOUS_PATH}"


# --- Gen-2 (MSC4388) ------------------------------------------------------------------------------------------


async def discover_gen2(
    client: httpx.AsyncClient,
    base_url: str,
    access_token: str | None = None,
    *,
    prefix: Gen2Prefix = Gen2Prefix.UNSTABLE,
    options: TransportOptions | None = None,
) -> Gen2Discovery:
    """``GET …/rendezvous``: may this requester create a session, and does the server offer push?

    403 and 404 (API off) mean "not available", as rust-sdk reads them. A rejected *access_token* (401)
    raises :class:`~qrlink_client.transport.CreateNotAvailable`: the server must not treat a bad token as
    anonymous, and neither do we. Also :meth:`Gen2Transport.discover <qrlink_client.transport.Gen2Transport.discover>`.
    """
    # The request goes through the transports' engine, so it is retried like a session request and the push
    # extension's response header is read as a session request's would be.
    probe = _Transport(client, options)
    reply = await probe._request("GET", rendezvous_endpoint(base_url, prefix), "discover", headers=_auth(access_token))
    response = reply.response
    if response.status_code == 200:
        body = json_object(response, "discover")
        available = body.get("create_available")
        if not isinstance(available, bool):
            raise RendezvousProtocolError("discover: create_available is not a boolean", status=200)
        return Gen2Discovery(create_available=available, push=parse_push_discovery(body) or probe.push)
    if response.status_code in (403, 404):
        return Gen2Discovery(create_available=False, push=None)
    if response.status_code == 401:
        raise CreateNotAvailable("discover: access token rejected", status=401, errcode=matrix_errcode(response))
    raise unexpected("discover", response)
