"""Matrix scope rules (MSC2967) and user codes, without any server."""

from __future__ import annotations

import pytest

from devstack.oauth.models import USER_CODE_ALPHABET, new_user_code, normalize_user_code
from devstack.oauth.scopes import InvalidMatrixScope, device_scope, parse_matrix_scope


def test_stable_scope_names_its_device() -> None:
    assert parse_matrix_scope("urn:matrix:client:api:* urn:matrix:client:device:ABC").device_id == "ABC"


def test_unstable_scope_names_its_device() -> None:
    scope = "urn:matrix:org.matrix.msc2967.client:api:* urn:matrix:org.matrix.msc2967.client:device:ABC"

    assert parse_matrix_scope(scope).device_id == "ABC"


def test_device_id_may_contain_slash_and_plus() -> None:
    assert parse_matrix_scope(device_scope("a/b+c==")).device_id == "a/b+c=="


def test_openid_is_accepted_alongside() -> None:
    assert parse_matrix_scope("openid " + device_scope("D")).tokens[0] == "openid"


def test_same_device_in_both_prefixes_is_one_device() -> None:
    scope = device_scope("D") + " " + device_scope("D", unstable=True)

    assert parse_matrix_scope(scope).device_id == "D"


@pytest.mark.parametrize(
    "scope",
    [
        "",
        "urn:matrix:client:api:*",
        "urn:matrix:client:device:D",
        device_scope("A") + " urn:matrix:client:device:B",
        "urn:matrix:client:api:* urn:matrix:client:device:",
        device_scope("D") + " urn:synapse:admin:*",
        device_scope("x" * 256),
        device_scope("tab\there"),
    ],
    ids=["empty", "no-device", "no-api", "two-devices", "empty-device", "admin", "too-long", "control-char"],
)
def test_invalid_scope_is_rejected(scope: str) -> None:
    with pytest.raises(InvalidMatrixScope):
        parse_matrix_scope(scope)


def test_user_code_is_eight_crockford_characters() -> None:
    code = new_user_code()

    assert len(code) == 8
    assert set(code) <= set(USER_CODE_ALPHABET)


def test_typed_user_code_ignores_case_dashes_and_look_alikes() -> None:
    assert normalize_user_code(" ab1o-il0z ") == "AB10110Z"
