"""``GET /``: a short page saying what the server is, for the admin who opens its address in a browser."""

from __future__ import annotations

import httpx

from rendezvous import __version__


def test_root_names_the_server_its_version_and_where_to_look(client: httpx.Client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert f"qrlink rendezvous server {__version__}" in text
    assert "/health" in text
    assert "/_rendezvous/openapi.json" in text
    assert "docs/admin-guide.md" in text
    # The shared server runs with the stable Gen-2 paths switched on.
    assert "Gen-1, Gen-2-unstable, Gen-2-stable" in text
    assert client.head("/").status_code == 200


def test_root_answers_only_reads(client: httpx.Client) -> None:
    response = client.post("/")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


def test_other_unknown_paths_still_answer_matrix_404(client: httpx.Client) -> None:
    response = client.get("/index.html")
    assert response.status_code == 404
    assert response.json()["errcode"] == "M_UNRECOGNIZED"
