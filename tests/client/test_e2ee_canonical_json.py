"""Canonical JSON, checked against the examples in the Matrix spec appendix."""

from __future__ import annotations

import json

import pytest

from qrlink_client.e2ee import CanonicalJsonError, canonical_json

# (input JSON text, expected canonical JSON) pairs from the spec appendix "Canonical JSON > Examples".
SPEC_EXAMPLES = [
    ("{}", "{}"),
    ('{\n    "one": 1,\n    "two": "Two"\n}', '{"one":1,"two":"Two"}'),
    ('{\n    "b": "2",\n    "a": "1"\n}', '{"a":"1","b":"2"}'),
    ('{"b":"2","a":"1"}', '{"a":"1","b":"2"}'),
    (
        '{"auth": {"success": true, "mxid": "@john.doe:example.com", "profile": {"display_name": "John Doe", '
        '"three_pids": [{"medium": "email", "address": "john.doe@example.org"}, '
        '{"medium": "msisdn", "address": "123456789"}]}}}',
        '{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":'
        '[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},'
        '"success":true}}',
    ),
    ('{\n    "a": "日本語"\n}', '{"a":"日本語"}'),
    ('{\n    "本": 2,\n    "日": 1\n}', '{"日":1,"本":2}'),
    ('{\n    "a": "\\u65E5"\n}', '{"a":"日"}'),
    ('{\n    "a": null\n}', '{"a":null}'),
]


@pytest.mark.parametrize(("source", "expected"), SPEC_EXAMPLES)
def test_spec_examples_encode_to_the_spec_canonical_form(source: str, expected: str) -> None:
    assert canonical_json(json.loads(source)) == expected.encode("utf-8")


def test_control_characters_use_short_escapes_or_lowercase_u_escapes() -> None:
    assert canonical_json({"k": "\n\t\x1f\x0b"}) == b'{"k":"\\n\\t\\u001f\\u000b"}'


def test_safe_integer_bounds_are_accepted() -> None:
    assert canonical_json([2**53 - 1, -(2**53) + 1]) == b"[9007199254740991,-9007199254740991]"


@pytest.mark.parametrize("number", [2**53, -(2**53)])
def test_integers_outside_the_safe_range_are_rejected(number: int) -> None:
    with pytest.raises(CanonicalJsonError):
        canonical_json({"n": number})


def test_floats_are_rejected() -> None:
    with pytest.raises(CanonicalJsonError):
        canonical_json({"n": 1.0})


def test_non_string_keys_are_rejected() -> None:
    with pytest.raises(CanonicalJsonError):
        canonical_json({1: "one"})


def test_lone_surrogates_are_rejected() -> None:
    with pytest.raises(CanonicalJsonError):
        canonical_json({"k": "\ud800"})


def test_tuples_encode_as_arrays() -> None:
    assert canonical_json({"a": ("x", 1)}) == b'{"a":["x",1]}'
