"""Device codes expire (RFC 8628 §3.5 ``expired_token``), tested on an OAuth server with 1-second codes.

This server runs alone on real uvicorn: an expired grant never reaches the homeserver, so the homeserver it
points at is never called.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import httpx
import pytest

from devstack.browser import Browser
from devstack.oauth import OAuthSettings, build_oauth_service
from devstack.serving import ServerThread, bound_socket
from tests.devstack.flow import OAuthClient

LIFETIME = 1
USER, PASSWORD = "carol", "carol-password"


@pytest.fixture(scope="module")
def short_lived_issuer() -> Iterator[str]:
    sock = bound_socket()
    issuer = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    service = build_oauth_service(
        OAuthSettings(issuer=issuer, device_code_lifetime=LIFETIME, poll_interval=0),
        # Nothing listens on the discard port: a provisioning call would fail loudly.
        homeserver_url="http://127.0.0.1:9/",
        server_name="localhost",
        synapse_secret=secrets.token_urlsafe(16),
        admin_token=secrets.token_urlsafe(16),
    )
    service.accounts.store.add_user(USER, PASSWORD)  # in memory only: this server never provisions
    thread = ServerThread(service.app, sock)
    thread.start(timeout=10)
    try:
        yield issuer
    finally:
        thread.stop()


@pytest.fixture
def short_oauth(short_lived_issuer: str) -> Iterator[OAuthClient]:
    with httpx.Client(timeout=10, trust_env=False) as http:
        metadata = http.get(f"{short_lived_issuer}.well-known/openid-configuration").json()
        yield OAuthClient(http, metadata)


def test_polling_after_expiry_gets_expired_token(short_oauth: OAuthClient) -> None:
    client_id, grant = short_oauth.start("EXPIRING")

    time.sleep(LIFETIME + 0.2)
    response = short_oauth.poll(client_id, grant["device_code"])

    assert response.status_code == 400
    assert response.json()["error"] == "expired_token"


def test_verification_page_refuses_an_expired_code(short_oauth: OAuthClient) -> None:
    _, grant = short_oauth.start("EXPIRING")
    time.sleep(LIFETIME + 0.2)

    with Browser() as browser:
        page = browser.sign_in_with_code(grant["verification_uri_complete"], grant["user_code"], USER, PASSWORD)

    assert page.status_code == 410
    assert "expired" in page.text
    assert "Approve" not in page.text
