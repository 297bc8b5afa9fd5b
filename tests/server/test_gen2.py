"""Gen-2 (MSC4388, newest text) rendezvous over HTTP: JSON bodies, sequence tokens, txnIds, errors."""

from __future__ import annotations

import secrets

import httpx
import pytest

from rendezvous.gen2 import json_body_limit

from .helpers import GEN1, GEN2, GEN2_STABLE, assert_matrix_error, gen1_session, gen2_session


def _txn() -> str:
    return secrets.token_urlsafe(16)


def _put(
    client: httpx.Client, session_id: str, token: str, data: str, txn: str | None = None, prefix: str = GEN2
) -> httpx.Response:
    path = f"{prefix}/{session_id}" if txn is None else f"{prefix}/{session_id}/{txn}"
    return client.put(path, json={"sequence_token": token, "data": data})


# -- discovery and create ----------------------------------------------------------------------------------


def test_discovery_says_create_is_available(client: httpx.Client) -> None:
    response = client.get(GEN2)
    assert response.status_code == 200
    assert response.json()["create_available"] is True


def test_create_answers_id_token_and_lifetime(client: httpx.Client) -> None:
    body = gen2_session(client)
    assert set(body) == {"id", "sequence_token", "expires_in_ms"}
    assert isinstance(body["id"], str) and body["id"]
    assert body["sequence_token"] == "1"
    assert 175_000 <= body["expires_in_ms"] <= 180_000


def test_create_stores_initial_data(client: httpx.Client) -> None:
    session = gen2_session(client, "hello")
    assert client.get(f"{GEN2}/{session['id']}").json()["data"] == "hello"


def test_create_without_data_is_missing_param(client: httpx.Client) -> None:
    assert_matrix_error(client.post(GEN2, json={}), 400, "M_MISSING_PARAM")


@pytest.mark.parametrize("data", [None, 1, ["x"], {"a": "b"}, True])
def test_create_with_non_string_data_is_invalid_param(client: httpx.Client, data: object) -> None:
    assert_matrix_error(client.post(GEN2, json={"data": data}), 400, "M_INVALID_PARAM")


@pytest.mark.parametrize("body", [b"{", b"not json", b"\xff\xfe\x00", b""])
def test_create_with_malformed_json_is_not_json(client: httpx.Client, body: bytes) -> None:
    response = client.post(GEN2, content=body, headers={"Content-Type": "application/json"})
    assert_matrix_error(response, 400, "M_NOT_JSON")


@pytest.mark.parametrize("body", [b"[]", b'"data"', b"null", b"42"])
def test_create_with_json_that_is_not_an_object_is_bad_json(client: httpx.Client, body: bytes) -> None:
    response = client.post(GEN2, content=body, headers={"Content-Type": "application/json"})
    assert_matrix_error(response, 400, "M_BAD_JSON")


@pytest.mark.parametrize("body", [b"[]", b'"data"', b"null"])
def test_put_with_json_that_is_not_an_object_is_bad_json(client: httpx.Client, body: bytes) -> None:
    session = gen2_session(client)
    response = client.put(f"{GEN2}/{session['id']}/{_txn()}", content=body)
    assert_matrix_error(response, 400, "M_BAD_JSON")


def test_create_with_lone_surrogate_is_invalid_param(client: httpx.Client) -> None:
    response = client.post(GEN2, content=b'{"data": "\\ud800"}', headers={"Content-Type": "application/json"})
    assert_matrix_error(response, 400, "M_INVALID_PARAM")


def test_data_limit_is_4096_utf8_bytes_not_characters(client: httpx.Client) -> None:
    # "é" is two bytes in UTF-8: 2048 of them fit, 2049 do not.
    assert client.post(GEN2, json={"data": "é" * 2048}).status_code == 200
    assert_matrix_error(client.post(GEN2, json={"data": "é" * 2049}), 413, "M_TOO_LARGE")


@pytest.mark.parametrize("data", ["a" * 4096, "é" * 2047 + "ab"], ids=["ascii", "two-byte"])
def test_create_with_data_of_exactly_4096_bytes_is_accepted(client: httpx.Client, data: str) -> None:
    session = gen2_session(client, data)
    assert client.get(f"{GEN2}/{session['id']}").json()["data"] == data


@pytest.mark.parametrize("data", ["a" * 4097, "é" * 2048 + "a"], ids=["ascii", "two-byte"])
def test_create_with_data_of_4097_bytes_is_too_large(client: httpx.Client, data: str) -> None:
    # One byte over: the existing test above steps from 4,096 straight to 4,098 bytes.
    assert_matrix_error(client.post(GEN2, json={"data": data}), 413, "M_TOO_LARGE")


def test_data_at_limit_with_every_character_escaped_is_accepted(client: httpx.Client) -> None:
    # json.dumps escapes control characters as \u00XX: six body bytes per data byte.
    response = client.post(GEN2, content=('{"data": "' + "\\u0001" * 4096 + '"}').encode())
    assert response.status_code == 200, response.text


def _padded_create_body(size: int) -> bytes:
    """A valid create body of exactly ``size`` bytes: empty data, padded with JSON whitespace."""
    body = b'{"data": ""}'
    return body[:-1] + b" " * (size - len(body)) + b"}"


def test_json_bound_is_six_bytes_per_data_byte_plus_4096() -> None:
    # 6 bytes per data byte (every byte escaped as \u00XX) plus 4,096 for the rest: 28,672 for the default.
    assert json_body_limit(4096) == 6 * 4096 + 4096


def test_create_body_of_exactly_the_json_bound_is_accepted(client: httpx.Client) -> None:
    response = client.post(GEN2, content=_padded_create_body(json_body_limit(4096)))
    assert response.status_code == 200, response.text


def test_create_body_one_byte_over_the_json_bound_is_too_large(client: httpx.Client) -> None:
    response = client.post(GEN2, content=_padded_create_body(json_body_limit(4096) + 1))
    assert_matrix_error(response, 413, "M_TOO_LARGE")


# -- receive -------------------------------------------------------------------------------------------------


def test_get_answers_data_token_and_lifetime(client: httpx.Client) -> None:
    session = gen2_session(client, "payload")
    response = client.get(f"{GEN2}/{session['id']}")
    assert response.status_code == 200
    body = response.json()
    assert body["data"] == "payload"
    assert body["sequence_token"] == "1"
    assert 0 < body["expires_in_ms"] <= session["expires_in_ms"]


def test_get_keeps_unicode_data(client: httpx.Client) -> None:
    session = gen2_session(client, "ünïcødé ✓ 🎉")
    assert client.get(f"{GEN2}/{session['id']}").json()["data"] == "ünïcødé ✓ 🎉"


def test_get_unknown_session_is_not_found(client: httpx.Client) -> None:
    assert_matrix_error(client.get(f"{GEN2}/doesnotexist"), 404, "M_NOT_FOUND")


def test_get_of_a_gen1_session_is_not_found(client: httpx.Client) -> None:
    url, _ = gen1_session(client, b"gen1")
    session_id = url.rsplit("/", 1)[1]
    assert_matrix_error(client.get(f"{GEN2}/{session_id}"), 404, "M_NOT_FOUND")


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("Sec-Fetch-Dest", "document"),
        ("Sec-Fetch-Mode", "navigate"),
        ("Sec-Fetch-User", "?1"),
        ("Sec-Fetch-Site", "none"),
    ],
)
def test_get_by_browser_navigation_is_forbidden(client: httpx.Client, header: str, value: str) -> None:
    session = gen2_session(client)
    assert_matrix_error(client.get(f"{GEN2}/{session['id']}", headers={header: value}), 403, "M_FORBIDDEN")


def test_get_by_fetch_from_a_page_is_allowed(client: httpx.Client) -> None:
    session = gen2_session(client)
    headers = {"Sec-Fetch-Dest": "empty", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "cross-site"}
    assert client.get(f"{GEN2}/{session['id']}", headers=headers).status_code == 200


# -- send with txnId
# -------------------------------------------------------------------------------------------


def test_put_with_current_token_stores_data_and_returns_next_token(client: httpx.Client) -> None:
    session = gen2_session(client)
    response = _put(client, session["id"], "1", "hello", _txn())
    assert response.status_code == 200
    assert response.json() == {"sequence_token": "2"}
    assert client.get(f"{GEN2}/{session['id']}").json() == {
        "data": "hello",
        "sequence_token": "2",
        "expires_in_ms": pytest.approx(session["expires_in_ms"], abs=5_000),
    }


def test_token_changes_even_when_data_is_identical(client: httpx.Client) -> None:
    session = gen2_session(client, "same")
    first = _put(client, session["id"], "1", "same", _txn()).json()["sequence_token"]
    second = _put(client, session["id"], first, "same", _txn()).json()["sequence_token"]
    assert len({"1", first, second}) == 3


def test_put_with_stale_token_is_409_unstable_errcode(client: httpx.Client) -> None:
    session = gen2_session(client)
    _put(client, session["id"], "1", "first", _txn())
    response = _put(client, session["id"], "1", "second", _txn())
    assert_matrix_error(response, 409, "IO_ELEMENT_MSC4388_CONCURRENT_WRITE")
    assert client.get(f"{GEN2}/{session['id']}").json()["data"] == "first"


@pytest.mark.parametrize("token", ["0", "01", "abc", "", "1.0", "٢", "99999999999999999999999"])
def test_put_with_token_that_is_not_ours_is_409(client: httpx.Client, token: str) -> None:
    session = gen2_session(client)
    assert_matrix_error(_put(client, session["id"], token, "x", _txn()), 409, "IO_ELEMENT_MSC4388_CONCURRENT_WRITE")


def test_repeated_txn_id_replays_success_without_writing_again(client: httpx.Client) -> None:
    session = gen2_session(client)
    txn = _txn()
    first = _put(client, session["id"], "1", "hello", txn)
    replay = _put(client, session["id"], "1", "hello", txn)
    assert replay.status_code == 200
    assert replay.json() == first.json() == {"sequence_token": "2"}
    assert client.get(f"{GEN2}/{session['id']}").json()["sequence_token"] == "2"


def test_repeated_txn_id_replays_original_answer_after_session_moved_on(client: httpx.Client) -> None:
    session = gen2_session(client)
    txn = _txn()
    _put(client, session["id"], "1", "mine", txn)
    _put(client, session["id"], "2", "theirs", _txn())
    replay = _put(client, session["id"], "1", "mine", txn)
    assert replay.json() == {"sequence_token": "2"}
    assert client.get(f"{GEN2}/{session['id']}").json()["data"] == "theirs"


def test_repeated_txn_id_replays_a_recorded_409(client: httpx.Client) -> None:
    session = gen2_session(client)
    _put(client, session["id"], "1", "first", _txn())
    txn = _txn()
    conflict = _put(client, session["id"], "1", "late", txn)
    assert conflict.status_code == 409
    # Even with the now-current token, the same txnId gets the recorded 409 and writes nothing.
    replay = _put(client, session["id"], "2", "late", txn)
    assert_matrix_error(replay, 409, "IO_ELEMENT_MSC4388_CONCURRENT_WRITE")
    assert client.get(f"{GEN2}/{session['id']}").json() == {
        "data": "first",
        "sequence_token": "2",
        "expires_in_ms": pytest.approx(session["expires_in_ms"], abs=5_000),
    }


def test_txn_ids_are_scoped_to_their_session(client: httpx.Client) -> None:
    a, b = gen2_session(client), gen2_session(client)
    txn = _txn()
    assert _put(client, a["id"], "1", "a", txn).json() == {"sequence_token": "2"}
    assert _put(client, b["id"], "1", "b", txn).json() == {"sequence_token": "2"}
    assert client.get(f"{GEN2}/{b['id']}").json()["data"] == "b"


@pytest.mark.parametrize("txn", ["bad%20txn", "with%2Fslash", "%C3%A9", "a" * 256, "x%00"])
def test_put_with_invalid_txn_id_is_invalid_param(client: httpx.Client, txn: str) -> None:
    session = gen2_session(client)
    assert_matrix_error(_put(client, session["id"], "1", "x", txn), 400, "M_INVALID_PARAM")


def test_put_without_sequence_token_is_missing_param(client: httpx.Client) -> None:
    session = gen2_session(client)
    response = client.put(f"{GEN2}/{session['id']}/{_txn()}", json={"data": "x"})
    assert_matrix_error(response, 400, "M_MISSING_PARAM")


@pytest.mark.parametrize("body", [{"sequence_token": 1, "data": "x"}, {"sequence_token": "1", "data": 5}])
def test_put_with_non_string_fields_is_invalid_param(client: httpx.Client, body: dict[str, object]) -> None:
    session = gen2_session(client)
    assert_matrix_error(client.put(f"{GEN2}/{session['id']}/{_txn()}", json=body), 400, "M_INVALID_PARAM")


def test_put_with_malformed_json_is_not_json(client: httpx.Client) -> None:
    session = gen2_session(client)
    response = client.put(f"{GEN2}/{session['id']}/{_txn()}", content=b'{"sequence_token": "1",')
    assert_matrix_error(response, 400, "M_NOT_JSON")


def test_put_over_data_limit_is_too_large(client: httpx.Client) -> None:
    session = gen2_session(client)
    assert_matrix_error(_put(client, session["id"], "1", "a" * 4097, _txn()), 413, "M_TOO_LARGE")


def test_put_with_data_of_exactly_4096_bytes_is_accepted(client: httpx.Client) -> None:
    session = gen2_session(client)
    response = _put(client, session["id"], "1", "é" * 2047 + "ab", _txn())
    assert response.status_code == 200, response.text
    assert client.get(f"{GEN2}/{session['id']}").json()["data"] == "é" * 2047 + "ab"


def test_put_with_two_byte_data_of_4097_bytes_is_too_large_and_changes_nothing(client: httpx.Client) -> None:
    session = gen2_session(client, "before")
    assert_matrix_error(_put(client, session["id"], "1", "é" * 2048 + "a", _txn()), 413, "M_TOO_LARGE")
    after = client.get(f"{GEN2}/{session['id']}").json()
    assert (after["data"], after["sequence_token"]) == ("before", "1")


def test_put_unknown_session_is_not_found(client: httpx.Client) -> None:
    assert_matrix_error(_put(client, "doesnotexist", "1", "x", _txn()), 404, "M_NOT_FOUND")


def test_put_to_a_gen1_session_is_not_found_and_changes_nothing(client: httpx.Client) -> None:
    url, _ = gen1_session(client, b"gen1")
    session_id = url.rsplit("/", 1)[1]
    assert_matrix_error(_put(client, session_id, "1", "x", _txn()), 404, "M_NOT_FOUND")
    assert client.get(url).content == b"gen1"


# -- send without txnId (Synapse's older form)
# -------------------------------------------------------------------


def test_legacy_put_with_current_token_writes(client: httpx.Client) -> None:
    session = gen2_session(client)
    assert _put(client, session["id"], "1", "hello").json() == {"sequence_token": "2"}


def test_legacy_retry_with_previous_token_and_same_data_gets_current_token(client: httpx.Client) -> None:
    session = gen2_session(client)
    _put(client, session["id"], "1", "hello")
    retry = _put(client, session["id"], "1", "hello")
    assert retry.status_code == 200
    assert retry.json() == {"sequence_token": "2"}
    assert client.get(f"{GEN2}/{session['id']}").json()["sequence_token"] == "2"


def test_legacy_retry_with_previous_token_but_other_data_is_409(client: httpx.Client) -> None:
    session = gen2_session(client)
    _put(client, session["id"], "1", "hello")
    assert_matrix_error(_put(client, session["id"], "1", "other"), 409, "IO_ELEMENT_MSC4388_CONCURRENT_WRITE")


def test_legacy_retry_with_older_token_and_same_data_is_409(client: httpx.Client) -> None:
    session = gen2_session(client)
    _put(client, session["id"], "1", "a")
    _put(client, session["id"], "2", "b")
    assert_matrix_error(_put(client, session["id"], "1", "b"), 409, "IO_ELEMENT_MSC4388_CONCURRENT_WRITE")


# -- cancel --------------------------------------------------------------------------------------------------


def test_delete_is_200_empty_object_then_gone(client: httpx.Client) -> None:
    session = gen2_session(client)
    response = client.delete(f"{GEN2}/{session['id']}")
    assert response.status_code == 200
    assert response.json() == {}
    assert_matrix_error(client.get(f"{GEN2}/{session['id']}"), 404, "M_NOT_FOUND")


def test_second_delete_is_not_found(client: httpx.Client) -> None:
    session = gen2_session(client)
    client.delete(f"{GEN2}/{session['id']}")
    assert_matrix_error(client.delete(f"{GEN2}/{session['id']}"), 404, "M_NOT_FOUND")


def test_delete_of_a_gen1_session_is_not_found_and_keeps_it(client: httpx.Client) -> None:
    url, _ = gen1_session(client, b"gen1")
    assert_matrix_error(client.delete(f"{GEN2}/{url.rsplit('/', 1)[1]}"), 404, "M_NOT_FOUND")
    assert client.get(url).status_code == 200


def test_gen1_delete_of_a_gen2_session_is_not_found_and_keeps_it(client: httpx.Client) -> None:
    session = gen2_session(client)
    assert_matrix_error(client.delete(f"{GEN1}/{session['id']}"), 404, "M_NOT_FOUND")
    assert client.get(f"{GEN2}/{session['id']}").status_code == 200


# -- stable prefix
# -----------------------------------------------------------------------------------------------


def test_stable_prefix_serves_the_same_api(client: httpx.Client) -> None:
    session = gen2_session(client, "x", prefix=GEN2_STABLE)
    response = _put(client, session["id"], "1", "y", _txn(), prefix=GEN2_STABLE)
    assert response.json() == {"sequence_token": "2"}


def test_stable_prefix_conflict_errcode_is_m_concurrent_write(client: httpx.Client) -> None:
    session = gen2_session(client, prefix=GEN2_STABLE)
    _put(client, session["id"], "1", "a", _txn(), prefix=GEN2_STABLE)
    response = _put(client, session["id"], "1", "b", _txn(), prefix=GEN2_STABLE)
    assert_matrix_error(response, 409, "M_CONCURRENT_WRITE")


# -- CORS and routing
# --------------------------------------------------------------------------------------------


def test_answers_allow_any_origin(client: httpx.Client) -> None:
    assert client.get(GEN2).headers["access-control-allow-origin"] == "*"


def test_preflight_allows_authorization_and_content_type(client: httpx.Client) -> None:
    session = gen2_session(client)
    response = client.options(
        f"{GEN2}/{session['id']}/{_txn()}",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "PUT"},
    )
    assert response.status_code == 204
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert "PUT" in response.headers["access-control-allow-methods"]


def test_get_on_txn_path_is_405(client: httpx.Client) -> None:
    session = gen2_session(client)
    assert_matrix_error(client.get(f"{GEN2}/{session['id']}/{_txn()}"), 405, "M_UNRECOGNIZED")


def test_delete_on_collection_is_405(client: httpx.Client) -> None:
    assert_matrix_error(client.delete(GEN2), 405, "M_UNRECOGNIZED")


def test_deeper_path_is_unrecognized(client: httpx.Client) -> None:
    assert_matrix_error(client.put(f"{GEN2}/a/b/c", json={}), 404, "M_UNRECOGNIZED")


def test_unknown_route_is_unrecognized(client: httpx.Client) -> None:
    assert_matrix_error(client.get("/_matrix/client/v3/sync"), 404, "M_UNRECOGNIZED")
