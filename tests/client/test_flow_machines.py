"""Each login machine on its own: transitions the table forbids, deadlines, cancellation, tolerance rules, and
what the flow errors carry."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from qrlink_client.channel import CheckCode, HpkeProfile
from qrlink_client.e2ee import CrossSigningKeys, SecretsBundle
from qrlink_client.flow import (
    Action,
    AuthorizationExpired,
    CheckDeviceUnused,
    DeviceAlreadyExists,
    DeviceNotFound,
    EstablishingSecureChannel,
    ExistingDeviceLogin,
    Failed,
    FailureReason,
    FlowState,
    FlowTimeout,
    FlowTimeouts,
    Homeserver,
    IllegalTransition,
    InvalidField,
    LoginAborted,
    LoginCancelled,
    LoginDeclined,
    LoginFailed,
    MissingField,
    NewDeviceLogin,
    OpenVerificationUri,
    PollToken,
    SendMessage,
    StartDeviceAuthorization,
    UnknownMessageType,
    UnsupportedProtocol,
    WaitForDevice,
    WaitingForAuth,
    WaitingForToken,
)
from qrlink_client.transport import SessionExpired, SessionNotFound

CODE = CheckCode.no_leading_zero(b"\x07\x03")  # "83"
HS = "https://hs.example/"


@dataclass(frozen=True)
class Grant:
    user_code: str = "ABCD"
    verification_uri: str = "https://auth.example/link"
    verification_uri_complete: str | None = None
    expires_in: float = 100.0


def protocol_json(**grant: object) -> bytes:
    return json.dumps(
        {
            "type": "m.login.protocol",
            "protocol": "device_authorization_grant",
            "device_authorization_grant": {"verification_uri": "https://auth.example/link", **grant},
            "device_id": "DEV",
        }
    ).encode()


def existing_awaiting_protocol(timeouts: FlowTimeouts | None = None) -> ExistingDeviceLogin:
    machine = ExistingDeviceLogin.scanning_qr(
        HS, SecretsBundle(CrossSigningKeys.generate()), generation=2, timeouts=timeouts
    )
    machine.start(now=0.0)
    machine.channel_established(CODE, now=0.0)
    return machine


def existing_awaiting_outcome(timeouts: FlowTimeouts | None = None) -> ExistingDeviceLogin:
    machine = existing_awaiting_protocol(timeouts)
    machine.message_received(protocol_json(), now=1.0)
    machine.device_absent(now=2.0)
    machine.verification_uri_opened(now=3.0)
    assert machine.state is FlowState.AWAITING_OUTCOME
    return machine


def new_polling(expires_in: float = 100.0) -> NewDeviceLogin:
    machine = NewDeviceLogin.scanning_qr("DEV", Homeserver(base_url=HS))
    machine.start(now=0.0)
    machine.channel_established(CODE, now=0.0)
    machine.device_authorization_ready(Grant(expires_in=expires_in), now=10.0)
    machine.message_received(b'{"type":"m.login.protocol_accepted"}', now=11.0)
    assert machine.state is FlowState.POLLING_TOKEN
    return machine


def failure_reasons(actions: list[Action]) -> list[str]:
    return [
        json.loads(a.message.to_json())["reason"]
        for a in actions
        if isinstance(a, SendMessage) and a.message.type == "m.login.failure"
    ]


# --- the table ------------------------------------------------------------------------------------------


def test_input_not_in_the_table_raises_illegal_transition() -> None:
    machine = NewDeviceLogin.showing_qr("DEV")

    with pytest.raises(IllegalTransition):
        machine.token_granted(now=0.0)


def test_messages_before_the_channel_exists_are_illegal() -> None:
    machine = NewDeviceLogin.showing_qr("DEV")
    machine.start(now=0.0)

    with pytest.raises(IllegalTransition):
        machine.message_received(b'{"type":"m.login.success"}', now=0.0)


def test_scanning_device_has_no_check_code_to_enter() -> None:
    machine = existing_awaiting_protocol()

    with pytest.raises(IllegalTransition):
        machine.check_code_entered("83", now=1.0)


def test_inputs_after_the_end_are_illegal_but_cancel_is_a_no_op() -> None:
    machine = existing_awaiting_protocol()
    machine.cancel()

    assert machine.cancel() == []
    with pytest.raises(IllegalTransition):
        machine.message_received(protocol_json(), now=1.0)


def test_new_device_scanning_qr_authorizes_on_the_qr_homeserver_at_once() -> None:
    machine = NewDeviceLogin.scanning_qr("DEV", Homeserver(server_name="example.org"))
    machine.start(now=0.0)

    actions = machine.channel_established(CODE, now=0.0)

    assert StartDeviceAuthorization(Homeserver(server_name="example.org"), "DEV") in actions


def test_new_device_follows_a_server_name_in_protocols() -> None:
    machine = NewDeviceLogin.showing_qr("DEV")
    machine.start(now=0.0)
    machine.channel_established(CODE, now=0.0)
    machine.check_code_entered("83", now=1.0)

    actions = machine.message_received(
        b'{"type":"m.login.protocols","protocols":["device_authorization_grant"],"homeserver":"example.org"}', now=2.0
    )

    assert actions == [StartDeviceAuthorization(Homeserver(server_name="example.org"), "DEV")]
    assert machine.homeserver == Homeserver(server_name="example.org")


def test_null_verification_uri_complete_opens_the_plain_uri() -> None:
    machine = existing_awaiting_protocol()
    assert machine.message_received(protocol_json(verification_uri_complete=None), now=1.0) == [
        CheckDeviceUnused("DEV")
    ]

    actions = machine.device_absent(now=2.0)

    assert OpenVerificationUri("https://auth.example/link", "https://auth.example/link") in actions


def test_verification_uri_complete_is_preferred() -> None:
    machine = existing_awaiting_protocol()
    machine.message_received(protocol_json(verification_uri_complete="https://auth.example/link?c=1"), now=1.0)

    actions = machine.device_absent(now=2.0)

    assert OpenVerificationUri("https://auth.example/link?c=1", "https://auth.example/link") in actions


# --- the device ID check -------------------------------------------------------------------------------
# The check that stops a login from taking over a device the user already has: only 404 lets it go on.


def existing_checking_device() -> ExistingDeviceLogin:
    machine = existing_awaiting_protocol()
    assert machine.message_received(protocol_json(), now=1.0) == [CheckDeviceUnused("DEV")]
    assert machine.state is FlowState.CHECKING_DEVICE
    return machine


@pytest.mark.parametrize("status", [200, 401, 403, 429, 500, 502])
def test_any_answer_but_404_to_the_device_check_ends_the_login_with_device_already_exists(status: int) -> None:
    machine = existing_checking_device()

    actions = machine.device_checked(status, now=2.0)

    assert failure_reasons(actions) == ["device_already_exists"], f"GET /devices/DEV answered {status}: {actions}"
    assert not any(isinstance(a, OpenVerificationUri | WaitingForAuth) for a in actions)
    assert isinstance(actions[-1], Failed) and type(actions[-1].error) is DeviceAlreadyExists
    assert actions[-1].error.reason == "device_already_exists" and not actions[-1].error.by_peer
    assert machine.state is FlowState.FAILED


def test_a_404_to_the_device_check_opens_the_verification_uri() -> None:
    machine = existing_checking_device()

    actions = machine.device_checked(404, now=2.0)

    assert failure_reasons(actions) == []
    assert OpenVerificationUri("https://auth.example/link", "https://auth.example/link") in actions
    assert machine.state is FlowState.OPENING_VERIFICATION_URI


def test_device_exists_tells_the_new_device_and_raises_device_already_exists() -> None:
    machine = existing_checking_device()

    actions = machine.device_exists()

    assert failure_reasons(actions) == ["device_already_exists"]
    assert isinstance(actions[-1], Failed) and type(actions[-1].error) is DeviceAlreadyExists


def test_the_new_device_told_device_already_exists_raises_it_by_peer() -> None:
    machine = NewDeviceLogin.scanning_qr("DEV", Homeserver(base_url=HS))
    machine.start(now=0.0)
    machine.channel_established(CODE, now=0.0)
    machine.device_authorization_ready(Grant(), now=1.0)  # m.login.protocol is out; the device check answers
    assert machine.state is FlowState.AWAITING_PROTOCOL_ACCEPTED
    failure = json.dumps({"type": "m.login.failure", "reason": "device_already_exists"}).encode()

    actions = machine.message_received(failure, now=5.0)

    assert isinstance(actions[-1], Failed) and type(actions[-1].error) is DeviceAlreadyExists
    assert actions[-1].error.by_peer and actions[-1].error.reason == "device_already_exists"


# --- check code -----------------------------------------------------------------------------------------


def test_check_code_tolerates_surrounding_spaces() -> None:
    machine = NewDeviceLogin.showing_qr("DEV")
    machine.start(now=0.0)
    machine.channel_established(CODE, now=0.0)

    machine.check_code_entered(" 83\n", now=1.0)

    assert machine.state is FlowState.AWAITING_PROTOCOLS


def test_peer_failure_is_honoured_before_the_code_is_typed() -> None:
    machine = NewDeviceLogin.showing_qr("DEV")
    machine.start(now=0.0)
    machine.channel_established(CODE, now=0.0)

    actions = machine.message_received(b'{"type":"m.login.failure","reason":"user_cancelled"}', now=1.0)

    assert isinstance(actions[-1], Failed) and type(actions[-1].error) is LoginCancelled
    assert failure_reasons(actions) == []


def test_held_garbage_is_only_judged_after_the_code_is_typed() -> None:
    machine = NewDeviceLogin.showing_qr("DEV")
    machine.start(now=0.0)
    machine.channel_established(CODE, now=0.0)
    assert machine.message_received(b"garbage", now=1.0) == []

    actions = machine.check_code_entered("83", now=2.0)

    assert failure_reasons(actions) == ["unexpected_message_received"]


# --- peer reports ---------------------------------------------------------------------------------------


def test_js_sdk_user_cancelled_at_the_browser_step_reads_as_declined() -> None:
    machine = existing_awaiting_outcome()

    actions = machine.message_received(b'{"type":"m.login.failure","reason":"user_cancelled"}', now=4.0)

    assert isinstance(actions[-1], Failed)
    assert type(actions[-1].error) is LoginDeclined and actions[-1].error.reason == "user_cancelled"


def test_unknown_failure_reason_ends_with_the_base_error_and_keeps_the_reason() -> None:
    machine = existing_awaiting_protocol()

    actions = machine.message_received(b'{"type":"m.login.failure","reason":"solar_flare"}', now=1.0)

    assert isinstance(actions[-1], Failed)
    assert type(actions[-1].error) is LoginFailed and actions[-1].error.reason == "solar_flare"
    assert actions[-1].error.by_peer


# --- time -----------------------------------------------------------------------------------------------


def test_timeout_before_the_deadline_does_nothing() -> None:
    machine = existing_awaiting_protocol(FlowTimeouts(message=30.0))

    assert machine.deadline == 30.0
    assert machine.timeout(now=29.9) == []
    assert machine.state is FlowState.AWAITING_PROTOCOL


def test_timeout_at_the_deadline_tells_the_peer() -> None:
    machine = existing_awaiting_protocol(FlowTimeouts(message=30.0))

    actions = machine.timeout(now=30.0)

    assert failure_reasons(actions) == ["user_cancelled"]
    assert isinstance(actions[-1], Failed) and type(actions[-1].error) is FlowTimeout


def test_no_message_timeout_waits_for_ever() -> None:
    machine = existing_awaiting_protocol(FlowTimeouts(message=None))

    assert machine.deadline is None
    assert machine.timeout(now=1e12) == []


def test_handshake_timeout_sends_nothing() -> None:
    machine = NewDeviceLogin.showing_qr("DEV", timeouts=FlowTimeouts(message=5.0))
    machine.start(now=0.0)

    actions = machine.timeout(now=5.0)

    assert len(actions) == 1 and isinstance(actions[0], Failed) and actions[0].error.reason is None


def test_device_wait_ends_after_device_appearance_timeout() -> None:
    machine = existing_awaiting_outcome(FlowTimeouts(device_appearance=10.0))

    actions = machine.message_received(b'{"type":"m.login.success"}', now=50.0)

    assert actions == [WaitForDevice("DEV", 60.0)]
    assert machine.timeout(now=59.0) == []
    end = machine.timeout(now=60.0)
    assert failure_reasons(end) == ["device_not_found"]
    assert isinstance(end[-1], Failed) and type(end[-1].error) is DeviceNotFound


def test_polling_deadline_is_the_grant_expiry() -> None:
    machine = new_polling(expires_in=100.0)

    assert machine.deadline == 110.0
    actions = machine.timeout(now=110.0)
    assert failure_reasons(actions) == ["authorization_expired"]
    assert isinstance(actions[-1], Failed) and type(actions[-1].error) is AuthorizationExpired


def test_poll_token_action_carries_the_grant_expiry() -> None:
    machine = NewDeviceLogin.scanning_qr("DEV", Homeserver(base_url=HS))
    machine.start(now=0.0)
    machine.channel_established(CODE, now=0.0)
    machine.device_authorization_ready(Grant(expires_in=100.0), now=10.0)

    actions = machine.message_received(b'{"type":"m.login.protocol_accepted"}', now=11.0)

    assert PollToken(expires_at=110.0) in actions


def test_waiting_for_acceptance_also_ends_at_grant_expiry() -> None:
    machine = NewDeviceLogin.scanning_qr("DEV", Homeserver(base_url=HS))
    machine.start(now=0.0)
    machine.channel_established(CODE, now=0.0)

    machine.device_authorization_ready(Grant(expires_in=20.0), now=10.0)

    assert machine.deadline == 30.0
    assert failure_reasons(machine.timeout(now=30.0)) == ["authorization_expired"]


# --- cancellation and abort -----------------------------------------------------------------------------


def test_cancel_before_the_channel_sends_nothing() -> None:
    machine = NewDeviceLogin.showing_qr("DEV")
    machine.start(now=0.0)

    actions = machine.cancel()

    assert len(actions) == 1 and isinstance(actions[0], Failed) and type(actions[0].error) is LoginCancelled


def test_abort_tells_the_peer_the_given_reason() -> None:
    machine = new_polling()

    actions = machine.abort(RuntimeError("boom"), reason=None)

    assert failure_reasons(actions) == []
    assert machine.error is not None and isinstance(machine.error.__cause__, RuntimeError)


def test_unsupported_device_grant_on_the_server_is_reported_as_unsupported_protocol() -> None:
    machine = NewDeviceLogin.scanning_qr("DEV", Homeserver(base_url=HS))
    machine.start(now=0.0)
    machine.channel_established(CODE, now=0.0)

    actions = machine.abort(LookupError("no device grant"), reason=FailureReason.UNSUPPORTED_PROTOCOL)

    assert failure_reasons(actions) == ["unsupported_protocol"]


# --- secrets hygiene ------------------------------------------------------------------------------------


def test_existing_device_repr_holds_no_secrets() -> None:
    bundle = SecretsBundle(CrossSigningKeys.generate())
    machine = ExistingDeviceLogin.showing_qr(HS, bundle, generation=1)

    text = repr(machine)

    for seed in bundle.to_content()["cross_signing"].values():
        assert seed not in text


def test_check_code_never_appears_in_progress_repr() -> None:
    machine = ExistingDeviceLogin.scanning_qr(HS, SecretsBundle(CrossSigningKeys.generate()), generation=2)
    machine.start(now=0.0)

    actions = machine.channel_established(CODE, now=0.0)

    assert CODE.digits not in repr(actions)


@pytest.mark.parametrize("profile", [None, HpkeProfile.ELEMENT_X, HpkeProfile.MSC])
@pytest.mark.parametrize("scanned", [True, False])
def test_established_channel_reports_its_gen2_profile(profile: HpkeProfile | None, scanned: bool) -> None:
    machine = (
        NewDeviceLogin.scanning_qr("DEV", Homeserver(base_url=HS)) if scanned else NewDeviceLogin.showing_qr("DEV")
    )
    machine.start(now=0.0)

    actions = machine.channel_established(CODE, now=0.0, profile=profile)

    [step] = [action for action in actions if isinstance(action, EstablishingSecureChannel)]
    assert (step.profile, step.check_code, step.must_enter_code) == (profile, CODE if scanned else None, not scanned)


# --- what failures say ----------------------------------------------------------------------------------------


def failed_error(actions: list[Action]) -> LoginFailed:
    assert isinstance(actions[-1], Failed)
    return actions[-1].error


def test_an_expired_session_says_what_the_new_device_waited_for_and_how_long() -> None:
    machine = new_polling()  # polling since now=11

    error = failed_error(machine.abort(SessionExpired("gen2 session expired"), reason=None, now=191.0))

    assert type(error) is LoginAborted
    assert str(error) == (
        "the rendezvous session expired while waiting for the other device to approve this one on the "
        "verification page (waited 180 s)"
    )
    assert isinstance(error.__cause__, SessionExpired)


def test_an_abort_on_the_existing_device_names_the_browser_step() -> None:
    machine = existing_awaiting_outcome()  # since now=3

    error = failed_error(machine.abort(SessionNotFound("gen1 session not found"), now=33.0))

    assert str(error) == (
        "the rendezvous session is gone (the other device cancelled it, or the server dropped it) while waiting "
        "for the user to approve the new device on the verification page (waited 30 s)"
    )


def test_an_abort_without_a_clock_leaves_out_the_wait() -> None:
    machine = existing_awaiting_protocol()

    error = failed_error(machine.abort(RuntimeError("boom")))

    assert str(error) == "RuntimeError: boom while waiting for the new device to ask for a sign-in (m.login.protocol)"


def test_a_handshake_timeout_names_the_qr_code_and_the_wait() -> None:
    machine = NewDeviceLogin.showing_qr("DEV", timeouts=FlowTimeouts(message=120.0))
    machine.start(now=0.0)

    error = failed_error(machine.timeout(now=120.0))

    assert type(error) is FlowTimeout
    assert str(error) == (
        "timed out while waiting for the other device to scan the QR code and set up the secure channel (waited 120 s)"
    )


def test_an_expired_grant_says_what_was_awaited() -> None:
    machine = new_polling(expires_in=100.0)  # polling since 11, the grant ends at 110

    error = failed_error(machine.timeout(now=110.0))

    assert type(error) is AuthorizationExpired
    assert str(error) == (
        "the device authorization grant expired while waiting for the other device to approve this one on the "
        "verification page (waited 99 s)"
    )


def test_a_device_that_never_appears_says_how_long_it_was_awaited() -> None:
    machine = existing_awaiting_outcome(FlowTimeouts(device_appearance=10.0))
    machine.message_received(b'{"type":"m.login.success"}', now=50.0)

    error = failed_error(machine.timeout(now=60.0))

    assert str(error) == "the new device did not appear on the homeserver (waited 10 s)"


def test_waiting_for_follows_the_state() -> None:
    machine = existing_awaiting_outcome()

    assert machine.waiting_for == "the user to approve the new device on the verification page"
    assert machine.waited(10.0) == 7.0


# --- what the user is shown -----------------------------------------------------------------------------


def test_new_device_shows_the_user_code_and_both_verification_uris() -> None:
    machine = NewDeviceLogin.scanning_qr("DEV", Homeserver(base_url=HS))
    machine.start(now=0.0)
    machine.channel_established(CODE, now=0.0)
    grant = Grant(user_code="WDJB-MJHT", verification_uri_complete="https://auth.example/link?c=WDJB-MJHT")
    machine.device_authorization_ready(grant, now=10.0)

    actions = machine.message_received(b'{"type":"m.login.protocol_accepted"}', now=11.0)

    assert WaitingForToken("WDJB-MJHT", "https://auth.example/link", "https://auth.example/link?c=WDJB-MJHT") in actions


def test_existing_device_names_the_verification_uri_while_waiting_for_approval() -> None:
    machine = existing_awaiting_protocol()
    machine.message_received(protocol_json(verification_uri_complete="https://auth.example/link?c=1"), now=1.0)

    actions = machine.device_absent(now=2.0)

    assert WaitingForAuth("https://auth.example/link") in actions


# --- protocol checks ------------------------------------------------------------------------------------


def test_existing_device_refuses_another_protocol_even_with_a_grant() -> None:
    machine = existing_awaiting_protocol()
    message = json.loads(protocol_json())
    message["protocol"] = "some_other_grant"

    actions = machine.message_received(json.dumps(message).encode(), now=1.0)

    assert failure_reasons(actions) == ["unsupported_protocol"]
    assert isinstance(actions[-1], Failed) and type(actions[-1].error) is UnsupportedProtocol
    assert not any(isinstance(a, CheckDeviceUnused) for a in actions)


# --- the new device's deadlines around the grant --------------------------------------------------------


def _new_awaiting_acceptance(timeouts: FlowTimeouts, expires_in: float) -> NewDeviceLogin:
    machine = NewDeviceLogin.scanning_qr("DEV", Homeserver(base_url=HS), timeouts=timeouts)
    machine.start(now=0.0)
    machine.channel_established(CODE, now=0.0)
    machine.device_authorization_ready(Grant(expires_in=expires_in), now=10.0)
    assert machine.state is FlowState.AWAITING_PROTOCOL_ACCEPTED
    return machine


def test_waiting_for_acceptance_ends_at_the_message_timeout_when_that_comes_first() -> None:
    machine = _new_awaiting_acceptance(FlowTimeouts(message=5.0), expires_in=100.0)

    assert machine.deadline == 15.0
    actions = machine.timeout(now=15.0)

    assert failure_reasons(actions) == ["user_cancelled"]
    assert isinstance(actions[-1], Failed) and type(actions[-1].error) is FlowTimeout


def test_waits_after_the_token_are_not_bounded_by_the_spent_grant() -> None:
    machine = _new_awaiting_acceptance(FlowTimeouts(message=500.0), expires_in=100.0)
    machine.message_received(b'{"type":"m.login.protocol_accepted"}', now=11.0)

    machine.token_granted(now=50.0)

    assert machine.deadline == 550.0


def test_local_failure_carries_the_reason_sent_and_a_detail() -> None:
    machine = existing_awaiting_protocol(FlowTimeouts(message=30.0))

    actions = machine.timeout(now=30.0)

    assert isinstance(actions[-1], Failed)
    error = actions[-1].error
    assert error.reason == "user_cancelled" and not error.by_peer
    assert str(error) and str(error) != "None"


# --- messages held until the check code is typed --------------------------------------------------------


def test_every_held_message_is_handled_once_the_code_is_typed() -> None:
    machine = NewDeviceLogin.showing_qr("DEV")
    machine.start(now=0.0)
    machine.channel_established(CODE, now=0.0)
    protocols = b'{"type":"m.login.protocols","protocols":["device_authorization_grant"],"homeserver":"example.org"}'
    assert machine.message_received(protocols, now=1.0) == []
    assert machine.message_received(b"garbage", now=1.0) == []

    actions = machine.check_code_entered("83", now=2.0)

    assert StartDeviceAuthorization(Homeserver(server_name="example.org"), "DEV") in actions
    assert failure_reasons(actions) == ["unexpected_message_received"]


def test_held_messages_after_one_that_ends_the_login_are_dropped() -> None:
    machine = NewDeviceLogin.showing_qr("DEV")
    machine.start(now=0.0)
    machine.channel_established(CODE, now=0.0)
    machine.message_received(b"garbage", now=1.0)
    machine.message_received(b"more garbage", now=1.0)

    actions = machine.check_code_entered("83", now=2.0)

    assert failure_reasons(actions) == ["unexpected_message_received"]
    assert isinstance(actions[-1], Failed) and machine.finished


# --- what the errors carry -------------------------------------------------------------------------------


def test_illegal_transition_names_the_machine_the_state_and_the_input() -> None:
    machine = NewDeviceLogin.showing_qr("DEV")

    with pytest.raises(IllegalTransition) as raised:
        machine.token_granted(now=0.0)

    assert (raised.value.state, raised.value.input) == (FlowState.IDLE.name, "token_granted")
    assert str(raised.value) == "NewDeviceLogin: token_granted is not allowed in state IDLE"


def test_illegal_message_names_the_message_input() -> None:
    machine = NewDeviceLogin.showing_qr("DEV")
    machine.start(now=0.0)

    with pytest.raises(IllegalTransition) as raised:
        machine.message_received(b'{"type":"m.login.success"}', now=0.0)

    assert raised.value.input == "message_received"
    assert str(raised.value).startswith("NewDeviceLogin: message_received is not allowed in state ")


def test_unknown_message_type_keeps_the_type_and_shows_at_most_64_characters_of_it() -> None:
    long_type = "m.login." + "x" * 200

    error = UnknownMessageType(long_type)

    assert error.message_type == long_type
    assert str(error) == f"unknown message type {long_type[:64] + '…'!r}"


def test_unknown_message_type_of_64_characters_is_shown_whole() -> None:
    exact = "t" * 64

    assert str(UnknownMessageType(exact)) == f"unknown message type {exact!r}"


def test_field_errors_name_the_message_type_and_the_field() -> None:
    missing = MissingField("m.login.protocol", "device_id")
    invalid = InvalidField("m.login.protocol", "device_id", "must be a string")

    assert (missing.message_type, missing.field) == ("m.login.protocol", "device_id")
    assert (invalid.message_type, invalid.field) == ("m.login.protocol", "device_id")
    assert "m.login.protocol" in str(missing) and "device_id" in str(missing)
    assert "m.login.protocol" in str(invalid) and "must be a string" in str(invalid)


def test_login_failed_text_is_the_detail_or_the_default_of_its_kind() -> None:
    assert str(LoginFailed("the grant ran out")) == "the grant ran out"
    assert str(LoginFailed()) == LoginFailed.default_detail
    assert str(LoginCancelled()) == LoginCancelled.default_detail
    assert str(LoginCancelled(by_peer=True)) == f"the other device reported: {LoginCancelled.default_detail}"


@pytest.mark.parametrize("url", ["http://localhost:8008", "HTTPS://matrix.example.org/"])
def test_homeserver_web_urls_are_base_urls(url: str) -> None:
    assert Homeserver.parse(url) == Homeserver(base_url=url)


@pytest.mark.parametrize("name", ["example.org", "example.org:8448", "http:no-host"])
def test_homeserver_anything_else_is_a_server_name(name: str) -> None:
    assert Homeserver.parse(name) == Homeserver(server_name=name)
