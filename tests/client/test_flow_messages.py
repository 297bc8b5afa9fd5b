"""The m.login.* messages: what we emit, and what we accept from real clients."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qrlink_client.e2ee import BackupKey, BackupSecret, CrossSigningKeys, SecretsBundle
from qrlink_client.errors import QrLinkError
from qrlink_client.flow import (
    DEVICE_AUTHORIZATION_GRANT,
    DeclinedMessage,
    DeviceAuthorizationGrantInfo,
    FailureMessage,
    FailureReason,
    Homeserver,
    HomeserverField,
    InvalidField,
    MalformedMessage,
    MessageError,
    MessageType,
    MissingField,
    ProtocolAcceptedMessage,
    ProtocolMessage,
    ProtocolsMessage,
    SecretsMessage,
    SuccessMessage,
    UnknownMessageType,
    parse_message,
)


def dumps(obj: Any) -> bytes:
    return json.dumps(obj).encode()


# --- emitting -------------------------------------------------------------------------------------------


def test_protocols_for_gen2_peers_uses_base_url() -> None:
    message = ProtocolsMessage((DEVICE_AUTHORIZATION_GRANT,), "https://hs.example/")

    assert json.loads(message.to_json()) == {
        "type": "m.login.protocols",
        "protocols": ["device_authorization_grant"],
        "base_url": "https://hs.example/",
    }


def test_protocols_for_gen1_peers_uses_homeserver() -> None:
    message = ProtocolsMessage((DEVICE_AUTHORIZATION_GRANT,), "https://hs.example/", HomeserverField.HOMESERVER)

    assert json.loads(message.to_json())["homeserver"] == "https://hs.example/"
    assert "base_url" not in json.loads(message.to_json())


def test_absent_verification_uri_complete_is_left_out_not_null() -> None:
    message = ProtocolMessage("DEV", DeviceAuthorizationGrantInfo("https://auth.example/link"))

    assert json.loads(message.to_json())["device_authorization_grant"] == {
        "verification_uri": "https://auth.example/link"
    }


def test_failure_never_emits_homeserver() -> None:
    # rust-sdk reads it as a URL; a server name there would make it reject the whole message.
    message = FailureMessage(FailureReason.USER_CANCELLED, homeserver="example.org")

    assert json.loads(message.to_json()) == {"type": "m.login.failure", "reason": "user_cancelled"}


@pytest.mark.parametrize(
    "message",
    [
        ProtocolsMessage(("device_authorization_grant",), "https://hs.example/"),
        ProtocolsMessage((), "example.org", HomeserverField.HOMESERVER),
        ProtocolMessage("A/b+c", DeviceAuthorizationGrantInfo("https://a/link", "https://a/link?code=X")),
        ProtocolAcceptedMessage(),
        SuccessMessage(),
        DeclinedMessage(),
        FailureMessage(FailureReason.UNABLE_TO_OPEN_VERIFICATION_URI),
    ],
    ids=lambda m: type(m).__name__,
)
def test_every_message_round_trips(message: Any) -> None:
    assert parse_message(message.to_json()) == message


def test_secrets_round_trip_with_and_without_backup() -> None:
    keys = CrossSigningKeys.generate()
    for bundle in (
        SecretsBundle(keys),
        SecretsBundle(keys, BackupSecret(BackupKey.generate(), "1")),
    ):
        parsed = parse_message(SecretsMessage(bundle).to_json())
        assert isinstance(parsed, SecretsMessage)
        assert parsed.secrets.to_content() == bundle.to_content()


def test_secrets_message_repr_shows_no_private_key() -> None:
    bundle = SecretsBundle(CrossSigningKeys.generate(), BackupSecret(BackupKey.generate(), "1"))
    text = repr(SecretsMessage(bundle))

    for secret in bundle.to_content()["cross_signing"].values():
        assert secret not in text
    assert bundle.to_content()["backup"]["key"] not in text


# --- tolerant parsing -----------------------------------------------------------------------------------


def test_rust_sdk_null_verification_uri_complete_is_absent() -> None:
    parsed = parse_message(
        dumps(
            {
                "type": "m.login.protocol",
                "protocol": "device_authorization_grant",
                "device_authorization_grant": {"verification_uri": "https://a/link", "verification_uri_complete": None},
                "device_id": "Vq3/XGd+0Plv8nLk1JYnZ0A2cQJtG0uY3QdYBqkQ1Qs",
            }
        )
    )

    assert isinstance(parsed, ProtocolMessage)
    assert parsed.device_authorization_grant == DeviceAuthorizationGrantInfo("https://a/link", None)
    assert parsed.device_authorization_grant.uri_to_open == "https://a/link"


def test_rust_sdk_null_backup_means_no_backup() -> None:
    content = SecretsBundle(CrossSigningKeys.generate()).to_content()

    parsed = parse_message(dumps({"type": "m.login.secrets", **content, "backup": None}))

    assert isinstance(parsed, SecretsMessage) and parsed.secrets.backup is None


def test_rust_sdk_null_failure_homeserver_is_accepted() -> None:
    parsed = parse_message(b'{"type":"m.login.failure","reason":"device_not_found","homeserver":null}')

    assert parsed == FailureMessage(FailureReason.DEVICE_NOT_FOUND)


def test_failure_homeserver_is_parsed() -> None:
    parsed = parse_message(b'{"type":"m.login.failure","reason":"unsupported_protocol","homeserver":"https://hs/"}')

    assert parsed == FailureMessage(FailureReason.UNSUPPORTED_PROTOCOL, homeserver="https://hs/")


def test_failure_homeserver_that_is_not_a_string_is_invalid_field() -> None:
    with pytest.raises(InvalidField) as raised:
        parse_message(b'{"type":"m.login.failure","reason":"user_cancelled","homeserver":5}')

    assert (raised.value.message_type, raised.value.field) == ("m.login.failure", "homeserver")


def test_homeserver_as_url_with_trailing_slash() -> None:
    parsed = parse_message(
        b'{"type":"m.login.protocols","protocols":["device_authorization_grant"],"homeserver":"https://hs.example/"}'
    )

    assert isinstance(parsed, ProtocolsMessage)
    assert parsed.homeserver_field is HomeserverField.HOMESERVER
    assert parsed.location == Homeserver(base_url="https://hs.example/")


def test_homeserver_as_js_sdk_server_name() -> None:
    parsed = parse_message(
        b'{"type":"m.login.protocols","protocols":["device_authorization_grant"],"homeserver":"example.org:8448"}'
    )

    assert isinstance(parsed, ProtocolsMessage)
    assert parsed.location == Homeserver(server_name="example.org:8448")


def test_base_url_wins_over_homeserver() -> None:
    parsed = parse_message(
        dumps(
            {
                "type": "m.login.protocols",
                "protocols": [],
                "homeserver": "example.org",
                "base_url": "https://matrix.example.org",
            }
        )
    )

    assert isinstance(parsed, ProtocolsMessage)
    assert parsed.location == Homeserver(base_url="https://matrix.example.org")
    assert parsed.homeserver_field is HomeserverField.BASE_URL


def test_unknown_failure_reason_is_kept_as_text() -> None:
    parsed = parse_message(b'{"type":"m.login.failure","reason":"insecure_channel_detected"}')

    assert parsed == FailureMessage("insecure_channel_detected")


def test_unknown_extra_fields_are_ignored() -> None:
    assert parse_message(b'{"type":"m.login.success","future":1}') == SuccessMessage()


def test_protocol_other_than_device_grant_parses_without_grant() -> None:
    parsed = parse_message(b'{"type":"m.login.protocol","protocol":"other","device_id":"D"}')

    assert parsed == ProtocolMessage("D", None, protocol="other")


# --- errors ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\xff\xfe", MalformedMessage),
        (b"not json", MalformedMessage),
        (b"[1, 2]", MalformedMessage),
        (b"[" * 100_000, MalformedMessage),
        (b'{"protocols": []}', MissingField),
        (b'{"type": 7}', InvalidField),
        (b'{"type": "m.login.nope"}', UnknownMessageType),
        (b'{"type": "m.login.protocols", "base_url": "https://a"}', MissingField),
        (b'{"type": "m.login.protocols", "protocols": "dag", "base_url": "https://a"}', InvalidField),
        (b'{"type": "m.login.protocols", "protocols": []}', MissingField),
        (b'{"type": "m.login.protocols", "protocols": [], "base_url": " "}', InvalidField),
        (b'{"type": "m.login.protocol", "protocol": "device_authorization_grant", "device_id": "D"}', MissingField),
        (
            b'{"type": "m.login.protocol", "protocol": "device_authorization_grant", "device_id": "D",'
            b' "device_authorization_grant": {"verification_uri": 5}}',
            InvalidField,
        ),
        (b'{"type": "m.login.protocol", "protocol": "device_authorization_grant"}', MissingField),
        (b'{"type": "m.login.failure"}', MissingField),
        (b'{"type": "m.login.failure", "reason": ""}', InvalidField),
        (b'{"type": "m.login.secrets"}', InvalidField),
        (b'{"type": "m.login.secrets", "cross_signing": {"master_key": "AAAA"}}', InvalidField),
    ],
)
def test_bad_messages_raise_named_errors(data: bytes, error: type[MessageError]) -> None:
    with pytest.raises(error):
        parse_message(data)


def test_missing_field_names_the_field() -> None:
    with pytest.raises(MissingField) as raised:
        parse_message(b'{"type": "m.login.protocol", "protocol": "x"}')

    assert raised.value.field == "device_id"
    assert raised.value.message_type == "m.login.protocol"


def test_secrets_errors_do_not_echo_key_material() -> None:
    seed = "S" * 43
    with pytest.raises(InvalidField) as raised:
        parse_message(dumps({"type": "m.login.secrets", "cross_signing": {"master_key": seed}}))

    assert seed not in str(raised.value)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
message_like = st.fixed_dictionaries(
    {"type": st.sampled_from([t.value for t in MessageType])},
    optional={
        "protocols": json_values,
        "base_url": json_values,
        "homeserver": json_values,
        "protocol": st.just("device_authorization_grant") | json_values,
        "device_id": json_values,
        "device_authorization_grant": st.fixed_dictionaries(
            {}, optional={"verification_uri": json_values, "verification_uri_complete": json_values}
        )
        | json_values,
        "reason": json_values,
        "cross_signing": st.fixed_dictionaries(
            {}, optional={"master_key": json_values, "self_signing_key": json_values, "user_signing_key": json_values}
        )
        | json_values,
        "backup": json_values,
    },
)


@settings(max_examples=200, deadline=None)
@given(st.binary())
def test_arbitrary_bytes_raise_only_library_errors(data: bytes) -> None:
    try:
        parse_message(data)
    except QrLinkError:
        pass


@settings(max_examples=300, deadline=None)
@given(message_like)
def test_arbitrary_message_shaped_json_raises_only_message_errors(obj: dict[str, Any]) -> None:
    try:
        parse_message(json.dumps(obj).encode())
    except MessageError:
        pass
