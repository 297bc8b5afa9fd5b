"""Every decoder of what a peer or server sends raises only its documented errors, whatever the input.

Inputs are random and near-valid (a valid message with one character changed, cut or added; a valid object
with one field poisoned): bytes, text with lone surrogates, JSON nested deeper than the parser's stack,
integers of hundreds of digits, ``NaN``, wrong JSON types. :data:`DOCUMENTED` lists what each entry point may
raise; anything else fails the test. The OAuth responses come from an ``httpx.MockTransport``, on purpose: the
point is the exact bytes of each answer, which no real authorization server sends on demand. The rendezvous
discovery answers are fuzzed with the transports (``test_fuzz_transports.py``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qrlink_client._b64 import b64encode
from qrlink_client.channel import (
    ChannelError,
    CheckCode,
    DecryptionError,
    EciesChannel,
    HandshakeError,
    HpkeChannel,
    HpkeProfile,
    InvalidAadField,
    MessageDecodeError,
    NonContributoryKey,
)
from qrlink_client.e2ee.errors import InvalidRecoveryKey, InvalidSecretsBundle
from qrlink_client.e2ee.recovery_key import decode_recovery_key, encode_recovery_key
from qrlink_client.e2ee.secrets_bundle import SecretsBundle
from qrlink_client.flow.errors import MalformedMessage, MessageError
from qrlink_client.flow.messages import MessageType, ProtocolsMessage, parse_message
from qrlink_client.oauth import (
    DEVICE_CODE_GRANT_TYPE,
    AuthMetadata,
    ClientMetadata,
    DeviceAuthorization,
    DeviceGrantClient,
    OAuthError,
    OAuthProtocolError,
    discover_auth_metadata,
    register_client,
    whoami,
)
from qrlink_client.qr import QrCodeError, decode_qr
from qrlink_client.qr.codec import Gen1Mode, Gen1QrCode, Gen2Intent, Gen2Layout, Gen2QrCode
from qrlink_client.transport.push import parse_push_discovery, parse_push_header

from ._channels import BASE_URL, RENDEZVOUS_ID, ecies_pair

_CHANNEL_MESSAGE = (MessageDecodeError, NonContributoryKey, DecryptionError, HandshakeError)

DOCUMENTED: dict[str, tuple[type[Exception], ...]] = {
    "decode_qr": (QrCodeError,),
    "EciesChannel.accept_initiate": _CHANNEL_MESSAGE,
    "EciesChannel.accept_ok": _CHANNEL_MESSAGE,
    "EciesChannel.decrypt": _CHANNEL_MESSAGE,
    # The sequence token comes from the rendezvous server: too long or not Unicode is InvalidAadField.
    "HpkeChannel.accept_initiate": (*_CHANNEL_MESSAGE, InvalidAadField),
    "HpkeChannel.accept_ok": (*_CHANNEL_MESSAGE, InvalidAadField),
    "HpkeChannel.decrypt": (*_CHANNEL_MESSAGE, InvalidAadField),
    # The base URL and id come from the QR code the peer shows.
    "HpkeChannel()": (InvalidAadField,),
    "CheckCode.matches": (),
    "parse_message": (MessageError,),
    "SecretsBundle.from_content": (InvalidSecretsBundle,),
    "decode_recovery_key": (InvalidRecoveryKey,),
    "AuthMetadata.from_json": (OAuthError,),
    "oauth": (OAuthError,),
    "parse_push_header": (),
    "parse_push_discovery": (),
}
"""The errors each decoder may raise at hostile input (docs/client-transports.md, "Errors")."""

FUZZ = settings(max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.too_slow])

SURROGATES = st.characters(codec=None, min_codepoint=0xD800, max_codepoint=0xDFFF)
TEXT = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=st.one_of(st.characters(), SURROGATES), max_size=10),
    st.text(min_size=250, max_size=300),
)
BIG_INTS = st.one_of(st.integers(), st.integers(min_value=10**300, max_value=10**400), st.just(-(10**400)))
SCALARS = st.one_of(st.none(), st.booleans(), BIG_INTS, st.floats(), TEXT)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def deep(depth: int, kind: str) -> str:
    if kind == "array":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


DEEP_JSON = st.builds(deep, st.integers(min_value=1_000, max_value=100_000), st.sampled_from(["array", "object"]))


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


# Deep, but not so deep that the test's own json.dumps of the object runs out of stack.
DEEP_VALUE = st.integers(min_value=100, max_value=500).map(nested)


def raises_only(name: str, call: Callable[[], object]) -> object:
    """Run ``call``; return its result or the documented error it raised (anything else propagates)."""
    try:
        return call()
    except DOCUMENTED[name] as error:
        return error


# --- mutations of a valid message ---------------------------------------------------------------------------

B64_AND_MORE = st.sampled_from([*"ABCabc019+/=|- \n", "\ud800", "é", "\x00"])


@st.composite
def mutated(draw: st.DrawFn, valid: str) -> str:
    """``valid`` with one change: a character replaced, a cut, an insertion, or nothing at all."""
    kind = draw(st.sampled_from(["replace", "cut", "insert", "append", "same"]))
    if kind == "same" or not valid:
        return valid
    i = draw(st.integers(min_value=0, max_value=len(valid) - 1))
    if kind == "replace":
        return valid[:i] + draw(B64_AND_MORE) + valid[i + 1 :]
    if kind == "cut":
        return valid[:i] + valid[draw(st.integers(min_value=i, max_value=len(valid))) :]
    if kind == "insert":
        return valid[:i] + draw(st.text(B64_AND_MORE, min_size=1, max_size=4)) + valid[i:]
    return valid + draw(st.text(B64_AND_MORE, min_size=1, max_size=8))


def channel_messages(valid: str) -> st.SearchStrategy[str]:
    return st.one_of(mutated(valid), TEXT, DEEP_JSON)


# --- QR codes -----------------------------------------------------------------------------------------------

KEY = bytes(range(32))
VALID_QR = [
    Gen1QrCode(KEY, Gen1Mode.LOGIN, "https://rendezvous.test/abc").to_bytes(),
    Gen1QrCode(KEY, Gen1Mode.RECIPROCATE, "https://rendezvous.test/abc", "example.org").to_bytes(),
    Gen2QrCode(KEY, Gen2Intent.LOGIN, "abc", "https://hs.test").to_bytes(),
    Gen2QrCode(KEY, Gen2Intent.RECIPROCATE, "abc", "https://hs.test/", layout=Gen2Layout.ELEMENT_X).to_bytes(),
]


@st.composite
def mutated_bytes(draw: st.DrawFn) -> bytes:
    valid = bytearray(draw(st.sampled_from(VALID_QR)))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        i = draw(st.integers(min_value=0, max_value=len(valid) - 1))
        valid[i] = draw(st.integers(min_value=0, max_value=255))
    cut = draw(st.integers(min_value=0, max_value=len(valid)))
    return bytes(valid[:cut]) + draw(st.binary(max_size=8))


@FUZZ
@given(st.one_of(st.binary(max_size=300), mutated_bytes()))
def test_decode_qr(data: bytes) -> None:
    raises_only("decode_qr", lambda: decode_qr(data))


# --- channel messages ---------------------------------------------------------------------------------------

G_SECRET, S_SECRET = bytes([7]) * 32, bytes([9]) * 32
ECIES_INITIATE = EciesChannel.scanner(S_SECRET).initiate(EciesChannel.generator(G_SECRET).public_key)


def _ecies_awaiting_ok() -> tuple[EciesChannel, str]:
    generator, scanner = EciesChannel.generator(G_SECRET), EciesChannel.scanner(S_SECRET)
    generator.accept_initiate(scanner.initiate(generator.public_key))
    return scanner, generator.ok_message()


_, ECIES_OK = _ecies_awaiting_ok()


ECIES_MESSAGE = ecies_pair(G_SECRET, S_SECRET)[0].encrypt(b'{"type":"m.login.success"}')


@FUZZ
@given(channel_messages(ECIES_INITIATE))
def test_ecies_accept_initiate(message: str) -> None:
    raises_only("EciesChannel.accept_initiate", lambda: EciesChannel.generator(G_SECRET).accept_initiate(message))


@FUZZ
@given(channel_messages(ECIES_OK))
def test_ecies_accept_ok(message: str) -> None:
    scanner, _ = _ecies_awaiting_ok()
    raises_only("EciesChannel.accept_ok", lambda: scanner.accept_ok(message))


@FUZZ
@given(channel_messages(ECIES_MESSAGE))
def test_ecies_decrypt(message: str) -> None:
    _, scanner = ecies_pair(G_SECRET, S_SECRET)
    raises_only("EciesChannel.decrypt", lambda: scanner.decrypt(message))


def _hpke(profile: HpkeProfile) -> tuple[HpkeChannel, HpkeChannel]:
    return (
        HpkeChannel.generator(BASE_URL, RENDEZVOUS_ID, G_SECRET, profile),
        HpkeChannel.scanner(BASE_URL, RENDEZVOUS_ID, S_SECRET, profile),
    )


def _hpke_messages(profile: HpkeProfile) -> tuple[str, str, str]:
    generator, scanner = _hpke(profile)
    initiate = scanner.initiate(generator.public_key, sequence_token="1")
    generator.accept_initiate(initiate, sequence_token="1")
    ok = generator.ok_message(sequence_token="2", response_nonce=bytes(32))
    scanner.accept_ok(ok, sequence_token="2")
    return initiate, ok, generator.encrypt(b'{"type":"m.login.success"}', sequence_token="3")


HPKE_MESSAGES = {profile: _hpke_messages(profile) for profile in HpkeProfile}
TOKENS = st.one_of(st.sampled_from(["1", "2", "3"]), TEXT)
PROFILES = st.sampled_from(list(HpkeProfile))


@FUZZ
@given(st.data(), PROFILES, TOKENS)
def test_hpke_accept_initiate(data: st.DataObject, profile: HpkeProfile, token: str) -> None:
    message = data.draw(channel_messages(HPKE_MESSAGES[profile][0]))
    generator, _ = _hpke(profile)
    raises_only("HpkeChannel.accept_initiate", lambda: generator.accept_initiate(message, sequence_token=token))


@FUZZ
@given(st.data(), PROFILES, TOKENS)
def test_hpke_accept_ok(data: st.DataObject, profile: HpkeProfile, token: str) -> None:
    message = data.draw(channel_messages(HPKE_MESSAGES[profile][1]))
    generator, scanner = _hpke(profile)
    scanner.initiate(generator.public_key, sequence_token="1")
    raises_only("HpkeChannel.accept_ok", lambda: scanner.accept_ok(message, sequence_token=token))


@FUZZ
@given(st.data(), PROFILES, TOKENS)
def test_hpke_decrypt(data: st.DataObject, profile: HpkeProfile, token: str) -> None:
    message = data.draw(channel_messages(HPKE_MESSAGES[profile][2]))
    generator, scanner = _hpke(profile)
    scanner.initiate(generator.public_key, sequence_token="1")
    scanner.accept_ok(HPKE_MESSAGES[profile][1], sequence_token="2")
    raises_only("HpkeChannel.decrypt", lambda: scanner.decrypt(message, sequence_token=token))


@FUZZ
@given(TEXT, TEXT, PROFILES)
def test_hpke_channel_fields(base_url: str, rendezvous_id: str, profile: HpkeProfile) -> None:
    raises_only("HpkeChannel()", lambda: HpkeChannel.scanner(base_url, rendezvous_id, S_SECRET, profile))


@FUZZ
@given(st.one_of(TEXT, st.sampled_from(["42", " 42\n", "4\ud8002", "\udcff\udcfe"])))
def test_check_code_matches(entered: str) -> None:
    code = CheckCode.no_leading_zero(bytes([41, 2]))
    assert raises_only("CheckCode.matches", lambda: code.matches(entered)) is (entered.strip() == code.digits)


# --- m.login.* messages and the secrets bundle ----------------------------------------------------------------

SEED = st.binary(min_size=32, max_size=32).map(b64encode)
MESSAGE_FIELDS = (
    *("protocols", "base_url", "homeserver", "protocol", "device_id", "device_authorization_grant"),
    *("verification_uri", "verification_uri_complete", "reason", "cross_signing", "backup"),
)
VALID_SECRETS = st.fixed_dictionaries(
    {
        "cross_signing": st.fixed_dictionaries(
            {"master_key": SEED, "self_signing_key": SEED, "user_signing_key": SEED}
        ),
        "backup": st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {
                    "algorithm": st.just("m.megolm_backup.v1.curve25519-aes-sha2"),
                    "key": SEED,
                    "backup_version": st.just("1"),
                }
            ),
        ),
    }
)


@st.composite
def poisoned(draw: st.DrawFn, valid: dict[str, Any]) -> dict[str, Any]:
    """``valid`` with up to two members, at any depth, replaced by hostile values."""
    result = json.loads(json.dumps(valid))
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        target = result
        while isinstance(target, dict) and target:
            key = draw(st.sampled_from(sorted(target)))
            if isinstance(target[key], dict) and target[key] and draw(st.booleans()):
                target = target[key]
                continue
            target[key] = draw(st.one_of(VALUES, DEEP_VALUE))
            break
    return result


def message_objects() -> st.SearchStrategy[dict[str, Any]]:
    valid_grant = {"verification_uri": "https://auth.test/device", "verification_uri_complete": None}
    return st.one_of(
        st.fixed_dictionaries({"type": st.sampled_from([str(t) for t in MessageType])}).flatmap(
            lambda base: st.dictionaries(st.sampled_from(MESSAGE_FIELDS), VALUES, max_size=4).map(
                lambda extra: {**base, **extra}
            )
        ),
        poisoned({"type": "m.login.protocols", "protocols": ["device_authorization_grant"], "base_url": BASE_URL}),
        poisoned(
            {
                "type": "m.login.protocol",
                "protocol": "device_authorization_grant",
                "device_id": "ABC",
                "device_authorization_grant": valid_grant,
            }
        ),
        poisoned({"type": "m.login.failure", "reason": "user_cancelled", "homeserver": BASE_URL}),
        VALID_SECRETS.flatmap(lambda secrets: poisoned({"type": "m.login.secrets", **secrets})),
    )


def _json_text(value: Any) -> st.SearchStrategy[str]:
    # ensure_ascii writes lone surrogates as \ud800 escapes; the raw form keeps them as characters.
    return st.sampled_from([json.dumps(value), json.dumps(value, ensure_ascii=False)])


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=200),
        TEXT,
        DEEP_JSON,
        message_objects().flatmap(_json_text),
        message_objects().flatmap(_json_text).map(lambda text: text.encode("utf-8", "surrogatepass")),
        st.sampled_from(["NaN", "1e400", '{"type": NaN}', '{"type": "m.login.protocols", "protocols": [1e999]}']),
    )
)
def test_parse_message(data: str | bytes) -> None:
    message = raises_only("parse_message", lambda: parse_message(data))
    if isinstance(message, ProtocolsMessage):
        assert message.location.value  # a parsed message's homeserver is always usable


def test_protocols_message_with_unparsable_url_has_a_location() -> None:
    # Was ValueError ("Invalid IPv6 URL") out of urlsplit when the state machine read the homeserver.
    message = parse_message('{"type": "m.login.protocols", "protocols": [], "base_url": "https://[::1"}')
    assert isinstance(message, ProtocolsMessage)
    assert message.location.server_name == "https://[::1"


@FUZZ
@given(
    st.one_of(VALID_SECRETS.flatmap(poisoned), st.dictionaries(st.sampled_from(["cross_signing", "backup"]), VALUES))
)
def test_secrets_bundle(content: dict[str, Any]) -> None:
    raises_only("SecretsBundle.from_content", lambda: SecretsBundle.from_content(content))


VALID_RECOVERY_KEY = encode_recovery_key(bytes(range(32)))


@FUZZ
@given(st.one_of(mutated(VALID_RECOVERY_KEY), TEXT, st.text("123456789ABCabc ", min_size=60, max_size=5000)))
def test_recovery_key(text: str) -> None:
    raises_only("decode_recovery_key", lambda: decode_recovery_key(text))


# --- OAuth answers --------------------------------------------------------------------------------------------

METADATA = {
    "issuer": "https://auth.test/",
    "token_endpoint": "https://auth.test/token",
    "device_authorization_endpoint": "https://auth.test/device",
    "registration_endpoint": "https://auth.test/register",
    "grant_types_supported": [DEVICE_CODE_GRANT_TYPE],
}
DEVICE_AUTHORIZATION = {
    "device_code": "dc",
    "user_code": "UC",
    "verification_uri": "https://auth.test/link",
    "expires_in": 10,
    "interval": 1,
}
TOKEN = {"access_token": "at", "token_type": "Bearer", "refresh_token": "rt", "expires_in": 300}
WHOAMI = {"user_id": "@u:hs.test", "device_id": "ABC"}


def oauth_bodies(valid: dict[str, Any]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        poisoned(valid).map(lambda value: json.dumps(value).encode()),
        st.binary(max_size=50),
        DEEP_JSON.map(str.encode),
        st.sampled_from(
            [
                b"NaN",
                b'{"expires_in": 1e400}',
                b'{"interval": ' + b"9" * 400 + b"}",
                b'{"error": "authorization_pending"}',
                b'{"error": "slow_down"}',
            ]
        ),
    )


@FUZZ
@given(st.one_of(VALUES, poisoned(METADATA)))
def test_auth_metadata_from_json(data: Any) -> None:
    raises_only("AuthMetadata.from_json", lambda: AuthMetadata.from_json(data))


class FakeClock:
    """A clock that moves a second per reading, so that a grant expires after a few polls."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now

    async def sleep(self, seconds: float) -> None:
        return None


def _serve(bodies: list[tuple[int, bytes]]) -> httpx.MockTransport:
    answers = itertools.cycle(bodies)

    def answer(request: httpx.Request) -> httpx.Response:
        status, body = next(answers)
        return httpx.Response(status, content=body)

    return httpx.MockTransport(answer)


OAUTH_CALLS = {
    "discover_auth_metadata": METADATA,
    "register_client": {"client_id": "cid"},
    "request_device_authorization": DEVICE_AUTHORIZATION,
    "poll_token": TOKEN,
    "refresh": TOKEN,
    "whoami": WHOAMI,
}


async def _oauth_call(name: str, http: httpx.AsyncClient) -> object:
    metadata = AuthMetadata.from_json(METADATA)
    clock = FakeClock()
    client = DeviceGrantClient(http, metadata, "cid", clock=clock, sleep=clock.sleep)
    if name == "discover_auth_metadata":
        return await discover_auth_metadata(http, "https://hs.test")
    if name == "register_client":
        return await register_client(http, metadata, ClientMetadata())
    if name == "request_device_authorization":
        return await client.request_device_authorization("ABC")
    if name == "poll_token":
        authorization = DeviceAuthorization("dc", "UC", "https://auth.test/link", None, 10.0, 1.0, 10.0)
        return await client.poll_token(authorization)
    if name == "refresh":
        return await client.refresh("rt")
    return await whoami(http, "https://hs.test", "at")


@pytest.mark.parametrize("name", sorted(OAUTH_CALLS))
@settings(max_examples=100, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_oauth_answers(name: str, data: st.DataObject) -> None:
    statuses = data.draw(st.lists(st.sampled_from([200, 201, 400, 401, 403, 404, 500]), min_size=1, max_size=3))
    bodies = [(status, data.draw(oauth_bodies(OAUTH_CALLS[name]))) for status in statuses]

    async def go() -> object:
        async with asyncio.timeout(5), httpx.AsyncClient(transport=_serve(bodies)) as http:
            return await _oauth_call(name, http)

    raises_only("oauth", lambda: asyncio.run(go()))


# --- the push extension's advertisements ----------------------------------------------------------------------


@FUZZ
@given(st.one_of(st.none(), TEXT, st.builds(lambda n: f"long-poll; max-wait-ms={n}, websocket", BIG_INTS)))
def test_parse_push_header(value: str | None) -> None:
    support = parse_push_header(value)  # documented to raise nothing
    if support is not None:
        assert support.max_wait_ms is None or 0 <= support.max_wait_ms <= 3_600_000


@FUZZ
@given(
    st.one_of(
        VALUES,
        st.fixed_dictionaries(
            {"io.qrlink.push": st.dictionaries(st.sampled_from(["long_poll", "max_timeout_ms", "websocket"]), VALUES)}
        ),
    )
)
def test_parse_push_discovery(body: Any) -> None:
    raises_only("parse_push_discovery", lambda: parse_push_discovery(body))


# --- regressions ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("entered", ["\ud800", "4\udcff", " \udfff "])
def test_check_code_with_lone_surrogate_does_not_match(entered: str) -> None:
    # Was UnicodeEncodeError out of matches(); a terminal decoding bad bytes with surrogateescape produces this.
    assert CheckCode.allow_leading_zero(bytes([4, 2])).matches(entered) is False


@pytest.mark.parametrize("profile", list(HpkeProfile))
def test_hpke_fields_with_lone_surrogates_are_invalid_aad_fields(profile: HpkeProfile) -> None:
    # Was UnicodeEncodeError building the AAD.
    with pytest.raises(InvalidAadField):
        HpkeChannel.scanner("https://hs.test/\ud800", RENDEZVOUS_ID, S_SECRET, profile)
    with pytest.raises(InvalidAadField):
        HpkeChannel.scanner(BASE_URL, "id\udfff", S_SECRET, profile)
    generator, scanner = _hpke(profile)
    with pytest.raises(InvalidAadField):
        scanner.initiate(generator.public_key, sequence_token="\ud800")


@pytest.mark.parametrize(
    "text",
    [
        '{"type": "m.login.protocols", "protocols": [], "base_url": "\\ud800"}',
        '{"type": "m.login.failure", "reason": "x", "homeserver": "\\udfff"}',
    ],
)
def test_message_with_lone_surrogate_is_malformed(text: str) -> None:
    # Was accepted: the surrogate then failed wherever the homeserver was used (a URL, the AAD).
    with pytest.raises(MalformedMessage):
        parse_message(text)


def test_secrets_bundle_with_deeply_nested_algorithm_names_no_value() -> None:
    # The error message used the repr of the peer's value: RecursionError for a deep list, and an echo of it.
    seeds = {name: b64encode(bytes(32)) for name in ("master_key", "self_signing_key", "user_signing_key")}
    content = {"cross_signing": seeds, "backup": {"algorithm": nested(900), "key": "", "backup_version": "1"}}
    with pytest.raises(InvalidSecretsBundle, match="not shown"):
        SecretsBundle.from_content(content)


@pytest.mark.parametrize(
    "body",
    [
        b'{"device_code": "dc", "user_code": "u", "verification_uri": "https://a.test", "expires_in": '
        + b"9" * 400
        + b"}",
        b'{"device_code": "d\\u00e9", "user_code": "u", "verification_uri": "https://a.test", "expires_in": 10}',
    ],
    ids=["400-digit-expires_in", "non-ascii-device_code"],
)
def test_device_authorization_out_of_range_is_a_protocol_error(body: bytes) -> None:
    # Was OverflowError converting 400 digits to float; a non-ASCII device code is not a VSCHAR token.
    async def go() -> object:
        async with httpx.AsyncClient(transport=_serve([(200, body)])) as http:
            return await _oauth_call("request_device_authorization", http)

    with pytest.raises(OAuthError):
        asyncio.run(go())


def test_recovery_key_of_huge_length_is_refused_quickly() -> None:
    with pytest.raises(InvalidRecoveryKey):
        decode_recovery_key("2" * 1_000_000)


def test_channel_errors_are_channel_errors() -> None:
    assert all(issubclass(kind, ChannelError) for kind in (*_CHANNEL_MESSAGE, InvalidAadField))


@pytest.mark.parametrize("endpoint", ["https://[::1", "https://auth.test/\x00"])
def test_oauth_endpoint_httpx_cannot_request_is_a_protocol_error(endpoint: str) -> None:
    # Was httpx.InvalidURL, which is not an httpx.HTTPError, out of the request helper.
    metadata = AuthMetadata.from_json({**METADATA, "device_authorization_endpoint": endpoint})

    async def go() -> object:
        async with httpx.AsyncClient(transport=_serve([(200, b"{}")])) as http:
            return await DeviceGrantClient(http, metadata, "cid").request_device_authorization("ABC")

    with pytest.raises(OAuthProtocolError):
        asyncio.run(go())
