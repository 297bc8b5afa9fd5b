"""Gen-1 (MSC4108 2024) rendezvous over HTTP: statuses, headers, ETags and errors."""

from __future__ import annotations

import email.utils
import hashlib
import os
import secrets
import time
from urllib.parse import urlsplit

import httpx
import pytest

from rendezvous.store import _redis_scripts as scripts
from tests.support.fault_proxy import fault_proxy_thread
from tests.support.server import serve_settings

from .helpers import (
    GEN1,
    GEN1_SESSION_HEADERS,
    GEN2,
    TEXT,
    assert_matrix_error,
    gen1_create,
    gen1_put,
    gen1_session,
    gen2_session,
)


def _http_time(value: str) -> float:
    parsed = email.utils.parsedate_to_datetime(value)
    assert value.endswith(" GMT")
    return parsed.timestamp()


# -- create --------------------------------------------------------------------------------------------------


def test_create_answers_201_with_absolute_session_url(client: httpx.Client, server: str) -> None:
    response = gen1_create(client)
    assert response.headers["content-type"] == "application/json"
    url = response.json()["url"]
    assert url.startswith(f"{server}{GEN1}/")
    assert len(url) > len(f"{server}{GEN1}/")


def test_create_carries_etag_expires_last_modified(client: httpx.Client) -> None:
    response = gen1_create(client)
    for name in GEN1_SESSION_HEADERS:
        assert name in response.headers
    assert response.headers["etag"].startswith('"') and response.headers["etag"].endswith('"')
    assert response.headers["cache-control"] == "no-store, no-transform"
    assert response.headers["pragma"] == "no-cache"


def test_create_expires_is_the_default_ttl_ahead(client: httpx.Client) -> None:
    before = time.time()
    response = gen1_create(client)
    expires = _http_time(response.headers["expires"])
    last_modified = _http_time(response.headers["last-modified"])
    assert before - 2 <= last_modified <= time.time() + 1
    assert 178 <= expires - last_modified <= 181


def test_create_with_empty_body_then_get_returns_empty_text(client: httpx.Client) -> None:
    url, _ = gen1_session(client)
    response = client.get(url)
    assert response.status_code == 200
    assert response.content == b""


def test_create_stores_initial_payload(client: httpx.Client) -> None:
    url, _ = gen1_session(client, b"initial")
    assert client.get(url).content == b"initial"


@pytest.mark.parametrize("content_type", ["text/plain;charset=UTF-8", "text/plain; charset=utf-8", "text/plain;a=b"])
def test_create_refuses_text_plain_with_parameters(client: httpx.Client, content_type: str) -> None:
    response = client.post(GEN1, content=b"x", headers={"Content-Type": content_type})
    assert_matrix_error(response, 400, "M_INVALID_PARAM")
    assert "exactly text/plain" in response.json()["error"]


def test_put_refuses_text_plain_with_a_charset(client: httpx.Client) -> None:
    url, etag = gen1_session(client)
    response = client.put(url, content=b"x", headers={"Content-Type": "text/plain; charset=utf-8", "If-Match": etag})
    assert_matrix_error(response, 400, "M_INVALID_PARAM")
    assert client.get(url).content == b""  # nothing was written


def test_create_refuses_another_media_type(client: httpx.Client) -> None:
    response = client.post(GEN1, content=b"x", headers={"Content-Type": "application/octet-stream"})
    assert_matrix_error(response, 400, "M_INVALID_PARAM")


def test_create_without_content_type_is_missing_param(client: httpx.Client) -> None:
    response = client.post(GEN1, content=b"x")
    assert_matrix_error(response, 400, "M_MISSING_PARAM")


def test_create_with_wrong_content_type_is_invalid_param(client: httpx.Client) -> None:
    response = client.post(GEN1, content=b"{}", headers={"Content-Type": "application/json"})
    assert_matrix_error(response, 400, "M_INVALID_PARAM")


def test_create_over_payload_limit_is_too_large(client: httpx.Client) -> None:
    response = client.post(GEN1, content=b"a" * 4097, headers=TEXT)
    assert_matrix_error(response, 413, "M_TOO_LARGE")


def test_create_at_payload_limit_is_accepted(client: httpx.Client) -> None:
    url, _ = gen1_session(client, b"a" * 4096)
    assert len(client.get(url).content) == 4096


def test_each_create_gives_a_new_session(client: httpx.Client) -> None:
    assert gen1_session(client)[0] != gen1_session(client)[0]


# -- receive -------------------------------------------------------------------------------------------------


def test_get_answers_exactly_text_plain_without_charset(client: httpx.Client) -> None:
    url, _ = gen1_session(client, b"payload")
    response = client.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain"
    assert response.content == b"payload"


def test_get_carries_session_headers(client: httpx.Client) -> None:
    url, etag = gen1_session(client, b"payload")
    response = client.get(url)
    for name in GEN1_SESSION_HEADERS:
        assert name in response.headers
    assert response.headers["etag"] == etag
    assert response.headers["content-length"] == "7"


def test_get_with_matching_if_none_match_is_304_with_headers(client: httpx.Client) -> None:
    url, etag = gen1_session(client, b"payload")
    response = client.get(url, headers={"If-None-Match": etag})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == etag
    assert response.headers["content-type"] == "text/plain"
    for name in GEN1_SESSION_HEADERS:
        assert name in response.headers


def test_get_with_stale_if_none_match_is_200(client: httpx.Client) -> None:
    url, etag = gen1_session(client)
    gen1_put(client, url, etag, b"new")
    response = client.get(url, headers={"If-None-Match": etag})
    assert response.status_code == 200
    assert response.content == b"new"


def test_get_with_weak_form_of_current_etag_is_304(client: httpx.Client) -> None:
    url, etag = gen1_session(client)
    assert client.get(url, headers={"If-None-Match": f"W/{etag}"}).status_code == 304


def test_get_with_if_none_match_star_is_304(client: httpx.Client) -> None:
    url, _ = gen1_session(client, b"x")
    assert client.get(url, headers={"If-None-Match": "*"}).status_code == 304


@pytest.mark.parametrize("separator", [",", ", "], ids=["comma", "comma-space"])
def test_get_with_current_etag_in_an_if_none_match_list_is_304(client: httpx.Client, separator: str) -> None:
    url, etag = gen1_session(client, b"x")
    header = separator.join(['"someone-else"', etag, 'W/"older"'])
    assert client.get(url, headers={"If-None-Match": header}).status_code == 304


def test_get_with_garbage_if_none_match_is_200(client: httpx.Client) -> None:
    url, _ = gen1_session(client, b"x")
    response = client.get(url, headers={"If-None-Match": 'garbage, "unterminated'})
    assert response.status_code == 200


def test_head_answers_headers_without_body(client: httpx.Client) -> None:
    url, etag = gen1_session(client, b"payload")
    response = client.head(url)
    assert response.status_code == 200
    assert response.headers["etag"] == etag
    assert response.content == b""


def test_get_unknown_session_is_not_found(client: httpx.Client) -> None:
    assert_matrix_error(client.get(f"{GEN1}/doesnotexist"), 404, "M_NOT_FOUND")


def test_get_id_outside_opaque_grammar_is_not_found(client: httpx.Client) -> None:
    assert_matrix_error(client.get(f"{GEN1}/bad%20id%21"), 404, "M_NOT_FOUND")


def test_get_of_a_gen2_session_is_not_found(client: httpx.Client) -> None:
    session = gen2_session(client, "secret")
    assert_matrix_error(client.get(f"{GEN1}/{session['id']}"), 404, "M_NOT_FOUND")


# -- send
# ------------------------------------------------------------------------------------------------------


def test_put_with_current_etag_is_202_with_new_etag(client: httpx.Client) -> None:
    url, etag = gen1_session(client)
    response = gen1_put(client, url, etag, b"hello")
    assert response.status_code == 202
    assert response.content == b""
    assert response.headers["etag"] != etag
    assert response.headers["content-type"] == "text/plain"
    for name in GEN1_SESSION_HEADERS:
        assert name in response.headers
    get = client.get(url)
    assert get.content == b"hello"
    assert get.headers["etag"] == response.headers["etag"]


def test_put_whose_store_reply_was_lost_is_still_202() -> None:
    # Redis stored the payload, then the connection broke before its reply arrived: the store's re-send must
    # answer as the first attempt did, not 412 (the client would retry with the old ETag and the login break).
    redis = pytest.importorskip("redis")
    from rendezvous.store.redis import RedisStore

    port = urlsplit(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")).port or 6379
    redis.Redis(port=port).script_load(scripts.WRITE)  # so that the lost reply is the write's, not NOSCRIPT
    prefix = f"rztest-{secrets.token_hex(6)}"
    try:
        with fault_proxy_thread(port) as proxy:
            store = RedisStore.from_url(proxy.url, key_prefix=prefix)
            with (
                serve_settings(store=store, create_rate_per_second=0, session_rate_per_second=0) as base,
                httpx.Client(base_url=base, timeout=10) as client,
            ):
                url, etag = gen1_session(client)
                proxy.drop_reply(hashlib.sha1(scripts.WRITE.encode()).hexdigest().encode())
                response = gen1_put(client, url, etag, b"hello")
                assert proxy.dropped == 1
                assert response.status_code == 202
                get = client.get(url)
                assert get.content == b"hello"
                assert get.headers["etag"] == response.headers["etag"]
    finally:
        raw = redis.Redis(port=port)
        for key in raw.scan_iter(match=f"{prefix}:*"):
            raw.delete(key)


def test_etag_changes_even_when_the_body_is_identical(client: httpx.Client) -> None:
    url, etag1 = gen1_session(client, b"same")
    etag2 = gen1_put(client, url, etag1, b"same").headers["etag"]
    etag3 = gen1_put(client, url, etag2, b"same").headers["etag"]
    assert len({etag1, etag2, etag3}) == 3


def test_etags_of_different_sessions_differ(client: httpx.Client) -> None:
    assert gen1_session(client)[1] != gen1_session(client)[1]


def test_put_does_not_extend_expiry(client: httpx.Client) -> None:
    response = gen1_create(client)
    url, etag = response.json()["url"], response.headers["etag"]
    put = gen1_put(client, url, etag, b"x")
    assert put.headers["expires"] == response.headers["expires"]


def test_put_with_stale_etag_is_412_concurrent_write(client: httpx.Client) -> None:
    url, etag = gen1_session(client)
    gen1_put(client, url, etag, b"first")
    response = gen1_put(client, url, etag, b"second")
    body = assert_matrix_error(response, 412, "M_UNKNOWN")
    assert body["org.matrix.msc4108.errcode"] == "M_CONCURRENT_WRITE"
    assert client.get(url).content == b"first"


def test_put_412_does_not_hand_out_the_current_etag(client: httpx.Client) -> None:
    url, etag = gen1_session(client)
    gen1_put(client, url, etag, b"first")
    assert "etag" not in gen1_put(client, url, etag, b"second").headers


def test_put_with_weak_etag_is_412(client: httpx.Client) -> None:
    url, etag = gen1_session(client)
    response = gen1_put(client, url, f"W/{etag}", b"x")
    body = assert_matrix_error(response, 412, "M_UNKNOWN")
    assert "proxy" in body["error"]


def test_put_with_etag_of_another_session_is_412(client: httpx.Client) -> None:
    url, _ = gen1_session(client)
    _, other_etag = gen1_session(client)
    assert_matrix_error(gen1_put(client, url, other_etag, b"x"), 412, "M_UNKNOWN")


def test_put_without_if_match_is_missing_param(client: httpx.Client) -> None:
    url, _ = gen1_session(client)
    assert_matrix_error(client.put(url, content=b"x", headers=TEXT), 400, "M_MISSING_PARAM")


@pytest.mark.parametrize("if_match", ["no-quotes", "*", '"a-1", "b-2"', '"unterminated', ""])
def test_put_with_malformed_if_match_is_invalid_param(client: httpx.Client, if_match: str) -> None:
    url, _ = gen1_session(client)
    assert_matrix_error(gen1_put(client, url, if_match, b"x"), 400, "M_INVALID_PARAM")


def test_put_without_content_type_is_missing_param(client: httpx.Client) -> None:
    url, etag = gen1_session(client)
    response = client.put(url, content=b"x", headers={"If-Match": etag})
    assert_matrix_error(response, 400, "M_MISSING_PARAM")


def test_put_with_wrong_content_type_is_invalid_param(client: httpx.Client) -> None:
    url, etag = gen1_session(client)
    response = client.put(url, content=b"x", headers={"If-Match": etag, "Content-Type": "text/html"})
    assert_matrix_error(response, 400, "M_INVALID_PARAM")


def test_put_over_payload_limit_is_too_large_and_keeps_payload(client: httpx.Client) -> None:
    url, etag = gen1_session(client, b"kept")
    assert_matrix_error(gen1_put(client, url, etag, b"a" * 4097), 413, "M_TOO_LARGE")
    assert client.get(url).content == b"kept"


def test_put_unknown_session_is_not_found(client: httpx.Client) -> None:
    _, etag = gen1_session(client)
    assert_matrix_error(gen1_put(client, f"{GEN1}/doesnotexist", etag, b"x"), 404, "M_NOT_FOUND")


def test_put_to_a_gen2_session_is_not_found_and_changes_nothing(client: httpx.Client) -> None:
    session = gen2_session(client, "untouched")
    response = gen1_put(client, f"{GEN1}/{session['id']}", '"AAAAAAAA-1"', b"x")
    assert_matrix_error(response, 404, "M_NOT_FOUND")
    assert client.get(f"{GEN2}/{session['id']}").json()["data"] == "untouched"


def test_put_keeps_binary_payload_byte_for_byte(client: httpx.Client) -> None:
    url, etag = gen1_session(client)
    payload = bytes(range(256))
    assert gen1_put(client, url, etag, payload).status_code == 202
    assert client.get(url).content == payload


# -- cancel
# ----------------------------------------------------------------------------------------------------


def test_delete_is_204_then_session_is_gone(client: httpx.Client) -> None:
    url, _ = gen1_session(client)
    response = client.delete(url)
    assert response.status_code == 204
    assert response.headers["content-type"] == "text/plain"
    assert response.headers["content-length"] == "0"
    assert_matrix_error(client.get(url), 404, "M_NOT_FOUND")


def test_delete_twice_is_not_found(client: httpx.Client) -> None:
    url, _ = gen1_session(client)
    client.delete(url)
    assert_matrix_error(client.delete(url), 404, "M_NOT_FOUND")


def test_put_after_delete_is_not_found(client: httpx.Client) -> None:
    url, etag = gen1_session(client)
    client.delete(url)
    assert_matrix_error(gen1_put(client, url, etag, b"x"), 404, "M_NOT_FOUND")


# -- headers on every answer
# -----------------------------------------------------------------------------------


def test_errors_carry_cache_and_date_headers(client: httpx.Client) -> None:
    response = client.get(f"{GEN1}/doesnotexist")
    for name in ("expires", "last-modified", "cache-control", "pragma", "content-length"):
        assert name in response.headers
    _http_time(response.headers["expires"])


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
def test_every_answer_allows_any_origin_and_exposes_etag(client: httpx.Client, method: str) -> None:
    url, _ = gen1_session(client)
    response = client.request(method, url if method != "POST" else GEN1, headers=TEXT)
    assert response.headers["access-control-allow-origin"] == "*"
    exposed = [h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")]
    assert "etag" in exposed


# -- routing
# ---------------------------------------------------------------------------------------------------


def test_unsupported_method_on_collection_is_405_unrecognized(client: httpx.Client) -> None:
    response = client.get(GEN1)
    assert_matrix_error(response, 405, "M_UNRECOGNIZED")
    assert "POST" in response.headers["allow"]


def test_unsupported_method_on_session_is_405_unrecognized(client: httpx.Client) -> None:
    url, _ = gen1_session(client)
    assert_matrix_error(client.post(url, content=b"", headers=TEXT), 405, "M_UNRECOGNIZED")


def test_path_below_a_session_is_unrecognized(client: httpx.Client) -> None:
    url, _ = gen1_session(client)
    assert_matrix_error(client.get(f"{url}/extra"), 404, "M_UNRECOGNIZED")


def test_preflight_on_session_url_allows_conditional_headers_and_methods(client: httpx.Client) -> None:
    url, _ = gen1_session(client)
    response = client.options(
        url,
        headers={
            "Origin": "https://app.element.io",
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "if-match, content-type",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "*"
    allowed_headers = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"if-match", "if-none-match", "content-type"} <= allowed_headers
    methods = {m.strip() for m in response.headers["access-control-allow-methods"].split(",")}
    assert {"GET", "PUT", "DELETE", "POST", "OPTIONS"} <= methods


def test_preflight_on_create_url_is_allowed(client: httpx.Client) -> None:
    response = client.options(GEN1, headers={"Origin": "https://x", "Access-Control-Request-Method": "POST"})
    assert response.status_code == 204
    assert "POST" in response.headers["access-control-allow-methods"]
