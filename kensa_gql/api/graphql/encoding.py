"""The JSON of every GraphQL response and WebSocket message, in both modes: orjson, compact.

Strawberry's view encodes with ``json.dumps``; ``encode_json`` is its documented hook, and the
view uses this ``dumps`` so that the stock path and the fast path (which writes its bodies
itself) answer byte for byte alike. orjson is several times faster on a page of videos.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(data: Any) -> str:
    try:
        return orjson.dumps(data).decode()
    except TypeError:  # something orjson does not know: the standard library's rendering
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)
    try:
        text.encode()
    except UnicodeEncodeError:
        # A lone surrogate echoed from a request (an operation name, a WebSocket id) has no UTF-8:
        # written as its JSON escape, the answer can still be sent.
        return json.dumps(data, separators=(",", ":"), ensure_ascii=True, default=str)
    return text
