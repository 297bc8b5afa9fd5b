"""Both login machines driven against each other in-process, every message encrypted by a real secure channel.

The rendezvous is a list of ciphertexts per direction with a shared ``sequence_token`` counter (the Gen-2 AAD
takes the token the writer PUTs with, which under the protocol's strict ping-pong is also the reader's). The
driver answers each work action from a :class:`Scenario` (what the OAuth server, the homeserver and the users
do) instead of HTTP: these tests are about the message protocol; the OAuth client has its own tests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from qrlink_client.channel import EciesChannel, HpkeChannel, SecureChannel
from qrlink_client.e2ee import BackupKey, BackupSecret, CrossSigningKeys, SecretsBundle
from qrlink_client.flow import (
    Action,
    AuthorizationExpired,
    CheckCodeMismatch,
    CheckDeviceUnused,
    DeviceAlreadyExists,
    DeviceNotFound,
    Done,
    EstablishingSecureChannel,
    ExistingDeviceLogin,
    ExistingDeviceResult,
    Failed,
    FlowState,
    FlowTimeout,
    FlowTimeouts,
    Homeserver,
    LoginAborted,
    LoginCancelled,
    LoginDeclined,
    LoginFailed,
    LoginMachine,
    NewDeviceLogin,
    NewDeviceResult,
    OpenVerificationUri,
    PollToken,
    Progress,
    SendMessage,
    StartDeviceAuthorization,
    UnexpectedMessage,
    UnsupportedProtocol,
    VerificationUriUnavailable,
    WaitForDevice,
)

HOMESERVER = "https://matrix.example.org/"
RENDEZVOUS_ID = "0a1b2c3d-rendezvous"
DEVICE_ID = "Vq3/XGd+0Plv8nLk1JYnZ0A2cQJtG0uY3QdYBqkQ1Qs"  # rust-sdk style: base64 with / and +


@dataclass(frozen=True)
class Grant:
    """An RFC 8628 device authorization response, as the OAuth client hands it to the machine."""

    user_code: str = "WDJB-MJHT"
    verification_uri: str = "https://auth.example.org/link"
    verification_uri_complete: str | None = "https://auth.example.org/link?code=WDJB-MJHT"
    expires_in: float = 600.0


@dataclass
class Scenario:
    """What the world outside the two machines does."""

    token: Literal["granted", "denied", "expired", "pending"] = "granted"
    device_status: int = 404  # what GET /devices/{id} answers the existing device's check (404: the ID is free)
    verification_uri: Literal["opened", "unavailable", "refused"] = "opened"
    device_appears: bool = True
    wrong_code: bool = False
    cancel_new_during_authorization: bool = False
    timeouts: FlowTimeouts = field(default_factory=FlowTimeouts)
    # (sender, message type) -> replacement plaintext, applied before encryption
    rewrite: dict[tuple[str, str], bytes] = field(default_factory=dict)


def make_secrets() -> SecretsBundle:
    return SecretsBundle(
        cross_signing=CrossSigningKeys.generate(),
        backup=BackupSecret(key=BackupKey.generate(), backup_version="7"),
    )


class Link:
    """The two devices, their channels, and the rendezvous between them."""

    def __init__(self, generation: Literal[1, 2], new_shows_qr: bool, scenario: Scenario) -> None:
        self.generation = generation
        self.scenario = scenario
        self.secrets = make_secrets()
        self.now = 1000.0
        self.token_counter = 1
        t = scenario.timeouts
        if new_shows_qr:
            self.new: LoginMachine = NewDeviceLogin.showing_qr(DEVICE_ID, timeouts=t)
            self.existing: LoginMachine = ExistingDeviceLogin.scanning_qr(
                HOMESERVER, self.secrets, generation=generation, timeouts=t
            )
        else:
            self.new = NewDeviceLogin.scanning_qr(DEVICE_ID, Homeserver(base_url=HOMESERVER), timeouts=t)
            self.existing = ExistingDeviceLogin.showing_qr(HOMESERVER, self.secrets, generation=generation, timeouts=t)
        self.names = {id(self.new): "new", id(self.existing): "existing"}
        generator_name = "new" if new_shows_qr else "existing"
        if generation == 1:
            g: SecureChannel = EciesChannel.generator()
            s: SecureChannel = EciesChannel.scanner()
        else:
            g = HpkeChannel.generator(HOMESERVER, RENDEZVOUS_ID)
            s = HpkeChannel.scanner(HOMESERVER, RENDEZVOUS_ID)
        self.channels = {generator_name: g, ("existing" if new_shows_qr else "new"): s}
        self.generator_name = generator_name
        self.inbox: dict[str, list[tuple[str, str]]] = {"new": [], "existing": []}
        self.wire: list[tuple[str, dict[str, Any]]] = []  # (sender, plaintext JSON) in sending order
        self.events: list[tuple[str, Any]] = []  # (device, action or marker) in order
        self.code_typed = False

    # --- the machines' actions ------------------------------------------------------------------------------

    def name(self, machine: LoginMachine) -> str:
        return self.names[id(machine)]

    def peer(self, name: str) -> str:
        return "existing" if name == "new" else "new"

    def next_token(self) -> str:
        token = f"T{self.token_counter}"
        self.token_counter += 1
        return token

    def feed(self, machine: LoginMachine, actions: list[Action]) -> None:
        name = self.name(machine)
        for action in actions:
            self.events.append((name, action))
            self.now += 0.5
            if isinstance(action, SendMessage):
                self.send(name, action.message.to_json())
            elif isinstance(action, StartDeviceAuthorization):
                assert isinstance(machine, NewDeviceLogin)
                if self.scenario.cancel_new_during_authorization:
                    self.feed(machine, machine.cancel())
                else:
                    self.feed(machine, machine.device_authorization_ready(Grant(), now=self.now))
            elif isinstance(action, PollToken):
                assert isinstance(machine, NewDeviceLogin)
                outcome = self.scenario.token
                if outcome == "granted":
                    self.feed(machine, machine.token_granted(now=self.now))
                elif outcome == "denied":
                    self.feed(machine, machine.access_denied())
                elif outcome == "expired":
                    self.feed(machine, machine.grant_expired())
            elif isinstance(action, CheckDeviceUnused):
                assert isinstance(machine, ExistingDeviceLogin)
                assert action.device_id == DEVICE_ID
                self.feed(machine, machine.device_checked(self.scenario.device_status, now=self.now))
            elif isinstance(action, OpenVerificationUri):
                assert isinstance(machine, ExistingDeviceLogin)
                outcome_uri = self.scenario.verification_uri
                if outcome_uri == "opened":
                    self.feed(machine, machine.verification_uri_opened(now=self.now))
                elif outcome_uri == "unavailable":
                    self.feed(machine, machine.verification_uri_unavailable())
                else:
                    self.feed(machine, machine.cancel())
            elif isinstance(action, WaitForDevice):
                assert isinstance(machine, ExistingDeviceLogin)
                if self.scenario.device_appears:
                    self.feed(machine, machine.device_appeared(now=self.now))
                # otherwise the clock runs to action.deadline in run()

    def send(self, sender: str, plaintext: bytes) -> None:
        message_type = json.loads(plaintext)["type"]
        plaintext = self.scenario.rewrite.get((sender, message_type), plaintext)
        try:
            self.wire.append((sender, json.loads(plaintext)))
        except ValueError:
            self.wire.append((sender, {"type": "<unreadable>"}))
        token = self.next_token()
        ciphertext = self.channels[sender].encrypt(plaintext, sequence_token=token)
        self.inbox[self.peer(sender)].append((ciphertext, token))

    # --- the loop -----------------------------------------------------------------------------------------

    def handshake(self) -> None:
        g = self.channels[self.generator_name]
        s = self.channels[self.peer(self.generator_name)]
        t1, t2 = self.next_token(), self.next_token()
        g.accept_initiate(s.initiate(g.public_key, sequence_token=t1), sequence_token=t1)
        s.accept_ok(g.ok_message(sequence_token=t2), sequence_token=t2)

    def machine(self, name: str) -> LoginMachine:
        return self.new if name == "new" else self.existing

    def run(self) -> Link:
        self.feed(self.new, self.new.start(now=self.now))
        self.feed(self.existing, self.existing.start(now=self.now))
        self.handshake()
        g_name, s_name = self.generator_name, self.peer(self.generator_name)
        g, s = self.machine(g_name), self.machine(s_name)
        self.feed(g, g.channel_established(self.channels[g_name].check_code, now=self.now))
        self.feed(s, s.channel_established(self.channels[s_name].check_code, now=self.now))
        for _ in range(100):
            if self.new.finished and self.existing.finished:
                break
            if self.deliver_one():
                continue
            if g.state is FlowState.AWAITING_CHECK_CODE and not self.code_typed:
                self.type_code(g, s_name)
                continue
            if not self.fire_next_deadline():
                break
        return self

    def deliver_one(self) -> bool:
        for name in ("new", "existing"):
            machine = self.machine(name)
            if self.inbox[name] and not machine.finished:
                ciphertext, token = self.inbox[name].pop(0)
                plaintext = self.channels[name].decrypt(ciphertext, sequence_token=token)
                self.feed(machine, machine.message_received(plaintext, now=self.now))
                return True
        return False

    def type_code(self, g: LoginMachine, s_name: str) -> None:
        self.code_typed = True
        shown = self.channels[s_name].check_code.digits
        entered = f"{(int(shown) + 1) % 100:02d}" if self.scenario.wrong_code else f" {shown} "
        self.events.append((self.name(g), "code typed"))
        self.feed(g, g.check_code_entered(entered, now=self.now))

    def fire_next_deadline(self) -> bool:
        waiting = [m for m in (self.new, self.existing) if not m.finished and m.deadline is not None]
        if not waiting:
            return False
        machine = min(waiting, key=lambda m: m.deadline or 0.0)
        assert machine.deadline is not None
        self.now = max(self.now, machine.deadline)
        self.feed(machine, machine.timeout(now=self.now))
        return True

    # --- observations -------------------------------------------------------------------------------------

    def wire_types(self) -> list[tuple[str, str]]:
        return [(sender, body["type"]) for sender, body in self.wire]

    def outcome(self, name: str) -> Done | Failed:
        ends = [a for n, a in self.events if n == name and isinstance(a, Done | Failed)]
        assert len(ends) == 1, ends
        return ends[0]

    def error(self, name: str) -> LoginFailed:
        end = self.outcome(name)
        assert isinstance(end, Failed), end
        return end.error

    def progress(self, name: str) -> list[str]:
        return [type(a).__name__ for n, a in self.events if n == name and isinstance(a, Progress)]


COMBINATIONS = [
    pytest.param(1, True, id="gen1-new-shows-qr"),
    pytest.param(1, False, id="gen1-existing-shows-qr"),
    pytest.param(2, True, id="gen2-new-shows-qr"),
    pytest.param(2, False, id="gen2-existing-shows-qr"),
]


def run(generation: Literal[1, 2], new_shows_qr: bool, **scenario: Any) -> Link:
    return Link(generation, new_shows_qr, Scenario(**scenario)).run()


# --- happy path -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("generation", "new_shows_qr"), COMBINATIONS)
def test_happy_path_delivers_the_secrets_to_the_new_device(generation: Literal[1, 2], new_shows_qr: bool) -> None:
    link = run(generation, new_shows_qr)

    new_end, existing_end = link.outcome("new"), link.outcome("existing")
    assert isinstance(new_end, Done) and isinstance(new_end.result, NewDeviceResult)
    assert new_end.result.device_id == DEVICE_ID
    assert new_end.result.secrets.to_content() == link.secrets.to_content()
    assert isinstance(existing_end, Done) and existing_end.result == ExistingDeviceResult(DEVICE_ID)


@pytest.mark.parametrize("generation", [1, 2])
def test_new_device_showing_qr_hears_protocols_first(generation: Literal[1, 2]) -> None:
    link = run(generation, new_shows_qr=True)

    assert link.wire_types() == [
        ("existing", "m.login.protocols"),
        ("new", "m.login.protocol"),
        ("existing", "m.login.protocol_accepted"),
        ("new", "m.login.success"),
        ("existing", "m.login.secrets"),
    ]


@pytest.mark.parametrize("generation", [1, 2])
def test_new_device_scanning_qr_speaks_first_with_protocol(generation: Literal[1, 2]) -> None:
    link = run(generation, new_shows_qr=False)

    assert link.wire_types() == [
        ("new", "m.login.protocol"),
        ("existing", "m.login.protocol_accepted"),
        ("new", "m.login.success"),
        ("existing", "m.login.secrets"),
    ]


@pytest.mark.parametrize(("generation", "key"), [(1, "homeserver"), (2, "base_url")])
def test_protocols_names_the_homeserver_in_the_generations_field(generation: Literal[1, 2], key: str) -> None:
    link = run(generation, new_shows_qr=True)

    protocols = link.wire[0][1]
    assert protocols == {"type": "m.login.protocols", "protocols": ["device_authorization_grant"], key: HOMESERVER}


def test_protocol_message_carries_the_grant_and_device_id() -> None:
    link = run(2, new_shows_qr=False)

    assert link.wire[0][1] == {
        "type": "m.login.protocol",
        "protocol": "device_authorization_grant",
        "device_authorization_grant": {
            "verification_uri": Grant.verification_uri,
            "verification_uri_complete": Grant.verification_uri_complete,
        },
        "device_id": DEVICE_ID,
    }


@pytest.mark.parametrize(("generation", "new_shows_qr"), COMBINATIONS)
def test_progress_reads_like_the_rust_sdk_steps(generation: Literal[1, 2], new_shows_qr: bool) -> None:
    link = run(generation, new_shows_qr)

    assert link.progress("new") == [
        "Starting",
        "EstablishingSecureChannel",
        "WaitingForToken",
        "SyncingSecrets",
        "Done",
    ]
    assert link.progress("existing") == [
        "Starting",
        "EstablishingSecureChannel",
        "WaitingForAuth",
        "SyncingSecrets",
        "Done",
    ]


@pytest.mark.parametrize(("generation", "new_shows_qr"), COMBINATIONS)
def test_only_the_scanning_device_is_given_the_check_code_to_show(
    generation: Literal[1, 2], new_shows_qr: bool
) -> None:
    link = run(generation, new_shows_qr)

    prompts = {n: a for n, a in link.events if isinstance(a, EstablishingSecureChannel)}
    shower, scanner = ("new", "existing") if new_shows_qr else ("existing", "new")
    assert prompts[shower].check_code is None and prompts[shower].must_enter_code
    assert prompts[scanner].check_code == link.channels[scanner].check_code
    assert not prompts[scanner].must_enter_code


@pytest.mark.parametrize(("generation", "new_shows_qr"), COMBINATIONS)
def test_qr_showing_device_acts_on_nothing_before_the_code_is_typed(
    generation: Literal[1, 2], new_shows_qr: bool
) -> None:
    link = run(generation, new_shows_qr)

    shower = "new" if new_shows_qr else "existing"
    mine = [a for n, a in link.events if n == shower]
    typed_at = mine.index("code typed")
    work_before = [a for a in mine[:typed_at] if not isinstance(a, Progress)]
    assert work_before == []
    # ...even though the peer's first message had already arrived (it was held unread).
    first_peer_message = next(i for i, (sender, _) in enumerate(link.wire) if sender != shower)
    assert first_peer_message == 0


# --- failures: each ends with the right message on the wire and a named error on both sides -------------


@pytest.mark.parametrize(("generation", "new_shows_qr"), COMBINATIONS)
def test_denied_grant_sends_declined(generation: Literal[1, 2], new_shows_qr: bool) -> None:
    link = run(generation, new_shows_qr, token="denied")

    assert link.wire_types()[-1] == ("new", "m.login.declined")
    assert type(link.error("new")) is LoginDeclined and not link.error("new").by_peer
    assert type(link.error("existing")) is LoginDeclined and link.error("existing").by_peer


@pytest.mark.parametrize(("generation", "new_shows_qr"), COMBINATIONS)
def test_expired_grant_sends_authorization_expired(generation: Literal[1, 2], new_shows_qr: bool) -> None:
    link = run(generation, new_shows_qr, token="expired")

    assert link.wire[-1] == ("new", {"type": "m.login.failure", "reason": "authorization_expired"})
    assert type(link.error("new")) is AuthorizationExpired
    assert type(link.error("existing")) is AuthorizationExpired and link.error("existing").by_peer


@pytest.mark.parametrize(("generation", "new_shows_qr"), COMBINATIONS)
def test_grant_expiring_while_polling_is_reported_when_its_deadline_passes(
    generation: Literal[1, 2], new_shows_qr: bool
) -> None:
    link = run(generation, new_shows_qr, token="pending")

    assert link.wire[-1] == ("new", {"type": "m.login.failure", "reason": "authorization_expired"})
    assert type(link.error("new")) is AuthorizationExpired
    assert type(link.error("existing")) is AuthorizationExpired


@pytest.mark.parametrize(("generation", "new_shows_qr"), COMBINATIONS)
@pytest.mark.parametrize("status", [200, 403, 500])
def test_a_device_id_the_homeserver_does_not_answer_404_for_ends_with_device_already_exists(
    generation: Literal[1, 2], new_shows_qr: bool, status: int
) -> None:
    link = run(generation, new_shows_qr, device_status=status)

    # The new device is told right after its m.login.protocol: no URI opened, no protocol_accepted, no secrets.
    assert link.wire_types()[-2:] == [("new", "m.login.protocol"), ("existing", "m.login.failure")]
    assert link.wire[-1] == ("existing", {"type": "m.login.failure", "reason": "device_already_exists"})
    assert not [a for n, a in link.events if isinstance(a, OpenVerificationUri | PollToken)]
    assert type(link.error("existing")) is DeviceAlreadyExists and not link.error("existing").by_peer
    assert type(link.error("new")) is DeviceAlreadyExists and link.error("new").by_peer


@pytest.mark.parametrize(("generation", "new_shows_qr"), COMBINATIONS)
def test_device_that_never_appears_is_not_found_and_gets_no_secrets(
    generation: Literal[1, 2], new_shows_qr: bool
) -> None:
    link = run(generation, new_shows_qr, device_appears=False)

    assert link.wire[-1] == ("existing", {"type": "m.login.failure", "reason": "device_not_found"})
    assert "m.login.secrets" not in [t for _, t in link.wire_types()]
    assert type(link.error("existing")) is DeviceNotFound
    assert type(link.error("new")) is DeviceNotFound and link.error("new").by_peer


@pytest.mark.parametrize(("generation", "new_shows_qr"), COMBINATIONS)
def test_wrong_check_code_stops_the_qr_showing_device(generation: Literal[1, 2], new_shows_qr: bool) -> None:
    link = run(generation, new_shows_qr, wrong_code=True)

    shower, scanner = ("new", "existing") if new_shows_qr else ("existing", "new")
    assert link.wire[-1] == (shower, {"type": "m.login.failure", "reason": "user_cancelled"})
    assert [sender for sender, _ in link.wire].count(shower) == 1  # nothing else left the unconfirmed device
    assert type(link.error(shower)) is CheckCodeMismatch
    assert type(link.error(scanner)) is LoginCancelled and link.error(scanner).by_peer


@pytest.mark.parametrize("generation", [1, 2])
def test_protocols_without_device_grant_is_unsupported(generation: Literal[1, 2]) -> None:
    other = json.dumps({"type": "m.login.protocols", "protocols": ["something_else"], "base_url": HOMESERVER})
    link = run(generation, True, rewrite={("existing", "m.login.protocols"): other.encode()})

    assert link.wire[-1] == ("new", {"type": "m.login.failure", "reason": "unsupported_protocol"})
    assert type(link.error("new")) is UnsupportedProtocol
    assert type(link.error("existing")) is UnsupportedProtocol and link.error("existing").by_peer


@pytest.mark.parametrize(("generation", "new_shows_qr"), COMBINATIONS)
def test_protocol_other_than_device_grant_is_unsupported(generation: Literal[1, 2], new_shows_qr: bool) -> None:
    other = json.dumps({"type": "m.login.protocol", "protocol": "carrier_pigeon", "device_id": DEVICE_ID})
    link = run(generation, new_shows_qr, rewrite={("new", "m.login.protocol"): other.encode()})

    assert link.wire[-1] == ("existing", {"type": "m.login.failure", "reason": "unsupported_protocol"})
    assert type(link.error("existing")) is UnsupportedProtocol
    assert type(link.error("new")) is UnsupportedProtocol and link.error("new").by_peer


@pytest.mark.parametrize(("generation", "new_shows_qr"), COMBINATIONS)
def test_unexpected_message_is_reported(generation: Literal[1, 2], new_shows_qr: bool) -> None:
    link = run(generation, new_shows_qr, rewrite={("new", "m.login.success"): b'{"type":"m.login.protocol_accepted"}'})

    assert link.wire[-1] == ("existing", {"type": "m.login.failure", "reason": "unexpected_message_received"})
    assert type(link.error("existing")) is UnexpectedMessage
    assert type(link.error("new")) is UnexpectedMessage and link.error("new").by_peer


@pytest.mark.parametrize(("generation", "new_shows_qr"), COMBINATIONS)
def test_unreadable_message_is_reported_as_unexpected(generation: Literal[1, 2], new_shows_qr: bool) -> None:
    link = run(generation, new_shows_qr, rewrite={("new", "m.login.success"): b"\xff not json"})

    assert link.wire_types()[-1] == ("existing", "m.login.failure")
    assert type(link.error("existing")) is UnexpectedMessage
    assert type(link.error("new")) is UnexpectedMessage


@pytest.mark.parametrize(("generation", "new_shows_qr"), COMBINATIONS)
def test_existing_user_refusing_the_browser_step_cancels_both(generation: Literal[1, 2], new_shows_qr: bool) -> None:
    link = run(generation, new_shows_qr, verification_uri="refused")

    assert link.wire[-1] == ("existing", {"type": "m.login.failure", "reason": "user_cancelled"})
    assert "m.login.protocol_accepted" not in [t for _, t in link.wire_types()]
    assert type(link.error("existing")) is LoginCancelled and not link.error("existing").by_peer
    assert type(link.error("new")) is LoginCancelled and link.error("new").by_peer


@pytest.mark.parametrize(("generation", "new_shows_qr"), COMBINATIONS)
def test_new_user_cancelling_tells_the_existing_device(generation: Literal[1, 2], new_shows_qr: bool) -> None:
    link = run(generation, new_shows_qr, cancel_new_during_authorization=True)

    assert link.wire[-1] == ("new", {"type": "m.login.failure", "reason": "user_cancelled"})
    assert "m.login.protocol" not in [t for _, t in link.wire_types()]
    assert type(link.error("new")) is LoginCancelled and not link.error("new").by_peer
    assert type(link.error("existing")) is LoginCancelled and link.error("existing").by_peer


@pytest.mark.parametrize(("generation", "new_shows_qr"), COMBINATIONS)
def test_verification_uri_that_cannot_be_opened(generation: Literal[1, 2], new_shows_qr: bool) -> None:
    link = run(generation, new_shows_qr, verification_uri="unavailable")

    assert link.wire[-1] == ("existing", {"type": "m.login.failure", "reason": "unable_to_open_verification_uri"})
    assert type(link.error("existing")) is VerificationUriUnavailable
    assert type(link.error("new")) is VerificationUriUnavailable and link.error("new").by_peer


@pytest.mark.parametrize(("generation", "new_shows_qr"), COMBINATIONS)
def test_silent_peer_times_out_and_is_told(generation: Literal[1, 2], new_shows_qr: bool) -> None:
    # The user never approves and the grant outlives the existing device's patience.
    link = run(generation, new_shows_qr, token="pending", timeouts=FlowTimeouts(message=60.0))

    assert link.wire[-1] == ("existing", {"type": "m.login.failure", "reason": "user_cancelled"})
    assert type(link.error("existing")) is FlowTimeout
    assert type(link.error("new")) is LoginCancelled and link.error("new").by_peer


@pytest.mark.parametrize(("generation", "new_shows_qr"), COMBINATIONS)
def test_broken_channel_aborts_without_a_message(generation: Literal[1, 2], new_shows_qr: bool) -> None:
    link = Link(generation, new_shows_qr, Scenario())
    link.feed(link.new, link.new.start(now=0.0))
    sent_before = len(link.wire)
    failure = ValueError("decryption failed")

    actions = link.new.abort(failure, reason=None)

    assert len(link.wire) == sent_before
    assert len(actions) == 1 and isinstance(actions[0], Failed)
    assert type(actions[0].error) is LoginAborted and actions[0].error.__cause__ is failure
