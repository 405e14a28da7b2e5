"""Text we can keep: what every string a client sends must be before anything stores or hashes it.

JSON can carry strings that are not text anywhere else: a lone surrogate (``"\\ud800"``) has no
UTF-8 encoding, so neither database, the idempotency hash nor a response can hold it; NUL
(``"\\u0000"``) is refused by PostgreSQL's ``text`` type. Both are refused on every backend alike,
as BadUserInput naming the field, before the request is validated further: a message that echoes
the value (``unknown model '...'``) could not be rendered either.
"""

from __future__ import annotations

from collections.abc import Mapping

from kensa_gql.domain.errors import BadUserInput


def problem(value: str) -> str | None:
    """What makes ``value`` impossible to store, or None for text we can keep."""
    if "\x00" in value:
        return "must not contain NUL characters (\\u0000)"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "must not contain unpaired surrogates (\\ud800 to \\udfff): they are not text"
    return None


def check_text(value: str, field: str) -> str:
    """``value``, or BadUserInput naming ``field`` if it cannot be stored."""
    found = problem(value)
    if found is not None:
        raise BadUserInput(f"{field}: {found}", field=field)
    return value


def check_strings(value: object, field: str = "") -> None:
    """Check every string in a JSON value, object keys included; the error names its path
    (``prompt``, ``extra.tags[2]``). Walked without recursion: nesting is bounded elsewhere."""
    stack: list[tuple[object, str]] = [(value, field)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            check_text(item, path or "body")
        elif isinstance(item, Mapping):
            for key, child in item.items():
                if isinstance(key, str):
                    named = _printable(key)
                    check_text(key, f"{path}.{named}" if path else named)
                    stack.append((child, f"{path}.{named}" if path else named))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{index}]") for index, child in enumerate(item))


def _printable(key: str) -> str:
    """A key as it can be named in an error message: what cannot be shown, escaped."""
    if problem(key) is None:
        return key
    return key.replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode("utf-8")
