"""Text we can keep: no lone surrogates, no NUL, anywhere in a request; the error names the field."""

from __future__ import annotations

import pytest

from kensa_gql.domain.errors import BadUserInput
from kensa_gql.domain.text import check_strings, check_text


@pytest.mark.parametrize("value", ["", "plain", "accents é, CJK 視頻, emoji 🎬 (a pair in JSON)", "tab\tnewline\n"])
def test_text_we_can_keep_passes(value: str) -> None:
    assert check_text(value, "prompt") == value
    check_strings({"prompt": value, "nested": [{"k": value}]})


@pytest.mark.parametrize(("value", "words"), [
    ("a \ud800 b", "surrogates"), ("k\udc00", "surrogates"), ("\udfff", "surrogates"),
    ("a \x00 b", "NUL"), ("\x00", "NUL"),
])
def test_a_lone_surrogate_or_nul_is_bad_user_input_naming_the_field(value: str, words: str) -> None:
    with pytest.raises(BadUserInput) as info:
        check_text(value, "startImageUrl")
    assert info.value.field == "startImageUrl" and info.value.message.startswith("startImageUrl: ")
    assert words in info.value.message and value not in info.value.message


@pytest.mark.parametrize(("body", "field"), [
    ({"prompt": "ok", "model": "a\x00"}, "model"),
    ({"prompt": "ok", "extra": {"tags": ["fine", "bad \ud800"]}}, "extra.tags[1]"),
    ({"prompt": "ok", "bad\udc00key": 1}, "bad\\udc00key"),
    ({"prompt": "ok", "nul\x00key": 1}, "nul\\u0000key"),
])
def test_every_string_of_a_body_is_checked_keys_included(body: dict[str, object], field: str) -> None:
    with pytest.raises(BadUserInput) as info:
        check_strings(body)
    assert info.value.field == field
    info.value.message.encode("utf-8")  # the message itself is text we can send
    assert "\x00" not in info.value.message
