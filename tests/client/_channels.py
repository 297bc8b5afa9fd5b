"""Builders for channel pairs used across the channel tests."""

from __future__ import annotations

from qrlink_client.channel import EciesChannel, HpkeChannel, HpkeProfile

BASE_URL = "https://matrix-client.matrix.org"
RENDEZVOUS_ID = "e8da6355-550b-4a32-a193-1619d9830668"


def ecies_pair(g_secret: bytes | None = None, s_secret: bytes | None = None) -> tuple[EciesChannel, EciesChannel]:
    """An established Gen-1 (generator, scanner) pair."""
    generator, scanner = EciesChannel.generator(g_secret), EciesChannel.scanner(s_secret)
    generator.accept_initiate(scanner.initiate(generator.public_key))
    scanner.accept_ok(generator.ok_message())
    return generator, scanner


def hpke_pair(
    g_secret: bytes | None = None,
    s_secret: bytes | None = None,
    profile: HpkeProfile = HpkeProfile.MSC,
) -> tuple[HpkeChannel, HpkeChannel]:
    """An established Gen-2 (generator, scanner) pair; handshake tokens T1 then T2."""
    generator = HpkeChannel.generator(BASE_URL, RENDEZVOUS_ID, g_secret, profile)
    scanner = HpkeChannel.scanner(BASE_URL, RENDEZVOUS_ID, s_secret, profile)
    generator.accept_initiate(scanner.initiate(generator.public_key, sequence_token="T1"), sequence_token="T1")
    scanner.accept_ok(generator.ok_message(sequence_token="T2"), sequence_token="T2")
    return generator, scanner
