"""The patterns the served OpenAPI document states beside the app's own checks say what those checks do (issue 19.8).

A pattern in the document is only worth stating if a request it admits is one the app accepts, and one it refuses is
one the app refuses (schemathesis' ``positive_data_acceptance`` and ``negative_data_rejection``). The app keeps its
validators, whose 400s say what is wrong; these tests hold each pattern to its validator:

- free text (``NO_CONTROLS_PATTERN``) against ``_no_controls``, for every code point;
- times (``INSTANT_PATTERN`` with ``format: date-time``) against the query models' parsing, at every year and at the
  bounds with the widest offsets;
- StartSession's ``labels`` as JSON text (``LABELS_JSON_TEXT_PATTERN``) against the query's parsing, for every
  ``\\u`` escape, at each limit, and for generated objects;
- callback URLs (``CALLBACK_URL_PATTERN``): every URL ``callback_refusal`` accepts matches it (the address rules
  that it cannot state are in the descriptions), so that the document never refuses what the app takes.

The patterns are checked with the engines that read them: Python's ``re`` (the app's tests, hypothesis) and
jsonschema-rs (schemathesis' validator), with the document's own ``format``.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import azure.functions as func
import jsonschema_rs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arr_core.api.views import (
    CALLBACK_URL_PATTERN,
    LABELS_JSON_TEXT_PATTERN,
    MAX_LABEL_KEY,
    MAX_LABELS,
    MAX_TEXT,
    NO_CONTROLS_PATTERN,
    StartSessionRequest,
    _no_controls,
)
from arr_core.errors import InvalidInput
from arr_core.outbound.url_rules import callback_refusal
from blueprints.openapi import openapi_document
from blueprints.queries import FIRST_YEAR, INSTANT_PATTERN, LAST_YEAR, RunsQuery, parse_query

RULES = settings(max_examples=400, derandomize=True, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def schema_check(**schema: Any) -> Any:
    """How schemathesis' validator reads a string schema, formats included."""
    return jsonschema_rs.validator_for({"type": "string", **schema}, validate_formats=True).is_valid


def accepted(check: Any, value: Any) -> bool:
    try:
        check(value)
    except (ValueError, InvalidInput):
        return False
    return True


def get(**params: str) -> func.HttpRequest:
    return func.HttpRequest("GET", "http://127.0.0.1:7071/api/sessions", body=b"", params=params)


# -- free text -------------------------------------------------------------------------------------------------------

def test_the_free_text_pattern_refuses_exactly_the_characters_the_app_refuses() -> None:
    pattern = re.compile(NO_CONTROLS_PATTERN)
    differ = [code for code in range(sys.maxunicode + 1)
              if bool(pattern.fullmatch(chr(code))) != accepted(_no_controls, chr(code))]
    assert differ == []
    rust = schema_check(pattern=NO_CONTROLS_PATTERN)
    edges = [0x00, 0x1F, 0x20, 0x7E, 0x7F, 0x9F, 0xA0, 0x2029, 0x202A, 0x202E, 0x202F, 0x2065, 0x2066, 0x2069, 0x206A,
             0xFEFF, 0x1F600, sys.maxunicode]
    assert [code for code in edges if rust(chr(code)) != accepted(_no_controls, chr(code))] == []
    assert rust("") and rust("ünïcödé 👩‍👩‍👧 text") and not rust("two\nlines")


def test_free_text_in_the_document_has_the_pattern_and_a_query_still_refuses_an_empty_value() -> None:
    document = openapi_document("https://app.example/api/")
    stop = document["definitions"]["StopSessionRequest"]["properties"]
    assert stop["reason"]["pattern"] == stop["requestedBy"]["pattern"] == NO_CONTROLS_PATTERN
    labels = document["definitions"]["StartSessionRequest"]["properties"]["labels"]
    assert labels["additionalProperties"]["pattern"] == NO_CONTROLS_PATTERN
    query = next(p for p in document["paths"]["/sessions/{id}/stop"]["post"]["parameters"] if p["in"] == "query")
    assert (query["pattern"], query["minLength"], query["maxLength"]) == (NO_CONTROLS_PATTERN, 1, MAX_TEXT)


# -- times -----------------------------------------------------------------------------------------------------------

def app_takes_time(text: str) -> bool:
    return accepted(lambda value: RunsQuery.model_validate({"before": value}), text)


def document_takes_time(text: str) -> bool:
    return schema_check(format="date-time", pattern=INSTANT_PATTERN)(text)


def test_the_time_pattern_admits_the_years_the_app_admits_and_no_other() -> None:
    for year in [1000, *range(1900, 2400), 9999]:
        text = f"{year}-06-15T12:00:00Z"
        assert document_takes_time(text) == app_takes_time(text) == (FIRST_YEAR <= year <= LAST_YEAR), text


@pytest.mark.parametrize(("text", "taken"), [
    (f"{FIRST_YEAR}-01-01T00:00:00+23:59", True),  # the year as written, whatever the offset
    (f"{FIRST_YEAR - 1}-12-31T23:59:59-23:59", False),
    (f"{LAST_YEAR}-12-31T23:59:59.999999999-23:59", True),
    (f"{LAST_YEAR + 1}-01-01T00:00:00Z", False),
    (f"{LAST_YEAR + 1}-01-01T00:00:00+23:59", False),
    ("2024-02-29t10:00:00z", True),
    ("2100-02-29T10:00:00Z", False),  # not a leap year
    ("2026-11-31T10:00:00Z", False),
    ("2026-06-30T23:59:60Z", False),  # a leap second: RFC 3339 has it, the app's parser does not
    ("2026-06-30T24:00:00Z", False),
    ("2026-06-30T10:00:00+24:00", False),
    ("2026-06-30T10:00:00.Z", False),
])
def test_the_time_pattern_and_the_app_agree_at_the_edges(text: str, taken: bool) -> None:
    assert (document_takes_time(text), app_takes_time(text)) == (taken, taken)


@RULES
@given(st.from_regex(INSTANT_PATTERN, fullmatch=True).filter(schema_check(format="date-time")))
def test_every_time_the_document_admits_the_app_takes(text: str) -> None:
    assert app_takes_time(text), text


def test_every_time_parameter_states_the_pattern() -> None:
    document = openapi_document("https://app.example/api/")
    times = [p for ops in document["paths"].values() for op in ops.values() if isinstance(op, dict)
             for p in op.get("parameters", []) if p.get("format") == "date-time"]
    assert sorted(p["name"] for p in times) == ["before", "from", "from", "to", "to"]
    assert all(p["pattern"] == INSTANT_PATTERN for p in times)


# -- labels as JSON text -----------------------------------------------------------------------------------------------

def app_takes_labels(text: str) -> bool:
    return accepted(lambda value: parse_query(get(labels=value), StartSessionRequest), text)


def document_takes_labels(text: str) -> bool:
    return bool(re.search(LABELS_JSON_TEXT_PATTERN, text)) and schema_check(pattern=LABELS_JSON_TEXT_PATTERN)(text)


def test_every_escape_in_a_label_value_is_judged_as_the_app_judges_it() -> None:
    pattern = re.compile(LABELS_JSON_TEXT_PATTERN)
    differ = []
    for code in range(0x10000):
        for escape in (f"\\u{code:04x}", f"\\u{code:04X}"):
            text = f'{{"k":"{escape}"}}'
            if bool(pattern.fullmatch(text)) != app_takes_labels(text):
                differ.append(escape)
    assert differ == []


def test_every_ascii_character_and_escape_in_a_label_key_is_judged_as_the_app_judges_it() -> None:
    pattern = re.compile(LABELS_JSON_TEXT_PATTERN)
    keys = [json.dumps(chr(code))[1:-1] for code in range(0x80)] + [f"\\u{code:04x}" for code in range(0x100)]
    differ = [key for key in keys if bool(pattern.fullmatch(f'{{"{key}":"v"}}')) != app_takes_labels(f'{{"{key}":"v"}}')]
    assert differ == []


@pytest.mark.parametrize(("labels", "taken"), [
    ({}, True),
    ({"k" * MAX_LABEL_KEY: "v" * MAX_TEXT}, True),
    ({"k" * (MAX_LABEL_KEY + 1): "v"}, False),
    ({"k": "v" * (MAX_TEXT + 1)}, False),
    ({"": "v"}, False),
    ({f"k{i}": "v" for i in range(MAX_LABELS)}, True),
    ({f"k{i}": "v" for i in range(MAX_LABELS + 1)}, False),
    ({"k": "v" * (MAX_TEXT - 1) + "\U0001f600"}, True),  # a surrogate pair is one character
    ({"k": "\u202e"}, False),
    ({"team": "viz", "build.id": "42", "a:b-c_d": "ünï"}, True),
])
def test_labels_at_each_limit(labels: dict[str, str], taken: bool) -> None:
    for text in (json.dumps(labels), json.dumps(labels, ensure_ascii=False), json.dumps(labels, indent=2),
                 json.dumps(labels, separators=(",", ":"))):
        assert (document_takes_labels(text), app_takes_labels(text)) == (taken, taken), text


@pytest.mark.parametrize("text", ["0", "", "[]", '["a"]', '{"k": 1}', '{"k": null}', '{"k": "v",}', "{'k': 'v'}",
                                  '{"k": "v"} x', '{"k": {"a": "b"}}'])
def test_what_is_not_an_object_of_strings_is_refused_by_both(text: str) -> None:
    assert (document_takes_labels(text), app_takes_labels(text)) == (False, False)


LABEL_KEYS = st.text(st.sampled_from("abcXYZ019_.:-/ é\u0007\u202e\""), min_size=0, max_size=MAX_LABEL_KEY + 2)
LABEL_VALUES = st.text(st.characters(codec="utf-8"), max_size=MAX_TEXT + 2)


@RULES
@given(st.dictionaries(LABEL_KEYS, LABEL_VALUES, max_size=MAX_LABELS + 1), st.booleans())
def test_generated_labels_are_judged_alike(labels: dict[str, str], ascii_only: bool) -> None:
    text = json.dumps(labels, ensure_ascii=ascii_only)
    assert document_takes_labels(text) == app_takes_labels(text), text


@settings(RULES, max_examples=100)  # drawing from this pattern is slow: 100 take about 1.5 s
@given(st.from_regex(LABELS_JSON_TEXT_PATTERN, fullmatch=True))
def test_every_labels_text_the_document_admits_the_app_takes(text: str) -> None:
    assert app_takes_labels(text), text


# -- callback URLs -----------------------------------------------------------------------------------------------------

URL_PIECES = st.sampled_from(["http", "https", "HTTPS", "hTtP", "ftp", "", "://", ":/", "//", ":", "@", "user@",
                              "u:p@", "[", "]", "::1", "[::1]", "127.0.0.1", "169.254.169.254", "localhost", "example",
                              ".", "..", "com", "bücher", "\u2603", ":8080", ":0", ":99999", ":abc", "/", "?", "#",
                              "path", "%20", " ", "\t", "\x7f", "\u0085", "a" * 64, "-", "_", "~"])
URLS = st.lists(URL_PIECES, max_size=12).map("".join)


@pytest.mark.parametrize("url", [
    "https://prod-12.westeurope.logic.azure.com:443/workflows/x/triggers/manual/paths/invoke?api-version=2016-06-01"
    "&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=abc",
    "http://localhost:8080/hook", "http://127.0.0.1:9/hook", "https://[::1]/x", "https://bücher.example/hook",
    "HTTPS://EXAMPLE.COM", "https://example.com:/x", "https://@example.com/", "https://example.com/a b",
])
def test_urls_the_app_takes_match_the_pattern(url: str) -> None:
    assert callback_refusal(url, development=True) is None
    assert re.search(CALLBACK_URL_PATTERN, url) and schema_check(pattern=CALLBACK_URL_PATTERN)(url)


@pytest.mark.parametrize("url", ["0", "", "example.com", "/relative", "ftp://example.com/", "https:example.com",
                                 "https:///path", "https://:443/", "https://user@example.com/",
                                 "https://user:pw@example.com/", "https://exa\tmple.com/", "https://example.com/\x7f",
                                 " https://example.com/"])
def test_urls_the_pattern_refuses_the_app_refuses(url: str) -> None:
    assert not re.search(CALLBACK_URL_PATTERN, url) and not schema_check(pattern=CALLBACK_URL_PATTERN)(url)
    assert callback_refusal(url, development=True) is not None


@RULES
@given(URLS)
def test_every_url_the_app_takes_matches_the_pattern(url: str) -> None:
    """The development host takes the most (http, local addresses); what it takes, Azure's may refuse, never the
    other way round. So a URL the pattern refuses is refused everywhere."""
    if callback_refusal(url, development=True) is None:
        assert re.search(CALLBACK_URL_PATTERN, url), url
        assert schema_check(pattern=CALLBACK_URL_PATTERN)(url), url


def test_the_url_fields_state_the_pattern_and_the_rest_in_words() -> None:
    document = openapi_document("https://app.example/api/")
    fields = [document["definitions"]["StartSessionRequest"]["properties"]["callbackUrl"],
              document["definitions"]["SubscriptionRequest"]["properties"]["notificationUrl"],
              next(p for p in document["paths"]["/sessions"]["post"]["parameters"] if p["name"] == "callbackUrl")]
    for field in fields:
        assert field["pattern"] == CALLBACK_URL_PATTERN
        assert "https to a public address" in field["description"] and "link-local" in field["description"]
