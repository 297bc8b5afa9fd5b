"""The ``url`` crate's serialisation of a base URL, one test per rule.

Every expected value is what a WHATWG URL parser (the standard the crate implements) gives for the input.
"""

from __future__ import annotations

import pytest

from qrlink_client.channel import serialise_url


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://matrix-client.matrix.org", "https://matrix-client.matrix.org/"),
        ("https://matrix-client.matrix.org/", "https://matrix-client.matrix.org/"),
    ],
)
def test_empty_path_becomes_root(given: str, expected: str) -> None:
    assert serialise_url(given) == expected


def test_scheme_and_host_are_lower_cased() -> None:
    assert serialise_url("HTTPS://Matrix-Client.Matrix.ORG") == "https://matrix-client.matrix.org/"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://example.org:443", "https://example.org/"),
        ("http://example.org:80/", "http://example.org/"),
        ("https://example.org:0443", "https://example.org/"),
        ("https://example.org:", "https://example.org/"),
    ],
)
def test_default_and_empty_ports_are_dropped(given: str, expected: str) -> None:
    assert serialise_url(given) == expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://example.org:8448", "https://example.org:8448/"),
        ("https://example.org:80", "https://example.org:80/"),
        ("http://example.org:443/", "http://example.org:443/"),
    ],
)
def test_other_ports_are_kept(given: str, expected: str) -> None:
    assert serialise_url(given) == expected


@pytest.mark.parametrize(
    "given",
    [
        "https://example.org/matrix",
        "https://example.org/matrix/",
        "https://example.org/Matrix/Client",
        "https://example.org/matrix?x=1",
        "https://example.org/?",
        "https://example.org/#f",
    ],
)
def test_path_query_and_fragment_are_kept(given: str) -> None:
    assert serialise_url(given) == given


def test_query_without_path_gets_a_root_path() -> None:
    assert serialise_url("https://example.org?x=1") == "https://example.org/?x=1"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://[0:0:0:0:0:0:0:1]:80", "http://[::1]/"),
        ("https://[2001:DB8:0:0:1:0:0:1]:8448/x", "https://[2001:db8::1:0:0:1]:8448/x"),
        ("http://[1:0:1:0:0:1:0:0]", "http://[1:0:1::1:0:0]/"),
        ("http://[0:0:1:0:0:0:0:0]", "http://[0:0:1::]/"),
        ("http://[1:0:1:1:1:1:1:1]", "http://[1:0:1:1:1:1:1:1]/"),
        ("http://[::ffff:192.0.2.128]/", "http://[::ffff:c000:280]/"),
    ],
)
def test_ipv6_hosts_are_written_in_the_compressed_hex_form(given: str, expected: str) -> None:
    assert serialise_url(given) == expected


def test_ipv4_host_and_user_info_are_kept() -> None:
    assert serialise_url("http://127.0.0.1:8008") == "http://127.0.0.1:8008/"
    assert serialise_url("https://user:pw@Host.example/") == "https://user:pw@host.example/"


@pytest.mark.parametrize(
    "given",
    [
        "matrix.org",
        "ftp://example.org",
        "https:example.org",
        "https://",
        "https://example.org:99999",
        "https://bücher.example",
        "http://[fe80::1%25eth0]/",
    ],
)
def test_what_it_cannot_serialise_is_a_value_error(given: str) -> None:
    with pytest.raises(ValueError):
        serialise_url(given)
