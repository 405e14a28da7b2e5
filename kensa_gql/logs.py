"""Logging set-up: human-readable text by default, one JSON object per line when asked.

Logged values carry what clients send (a path, a header, an error's text), so both formats
escape control characters in them: ``GET /healthz%0a2026-... INFO forged`` stays one line, with
``\\n`` where the newline was, and no terminal escape or lone surrogate reaches the output.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any

_EXTRA = ("request_id", "method", "path", "status", "duration_ms", "video_uuid")

# C0, DEL, C1, the Unicode line and paragraph separators, bidirectional overrides and isolates
# (which reorder what a reader sees), and surrogates (which no encoder of the stream can write).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped_char(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def escape(value: str) -> str:
    """``value`` with every control character written as a backslash escape (printable text as is)."""
    if value.isprintable():  # everything _UNSAFE matches is unprintable: most values stop here
        return value
    return _UNSAFE.sub(_escaped_char, value)


def _escape_lines(text: str) -> str:
    """A traceback's lines, each escaped: its own line breaks stay, nothing else does."""
    return "\n".join(escape(line) for line in text.split("\n"))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname,
                                "logger": record.name, "message": escape(record.getMessage())}
        for key in _EXTRA:
            if hasattr(record, key):
                value = getattr(record, key)
                data[key] = escape(value) if isinstance(value, str) else value
        if record.exc_info:
            data["traceback"] = _escape_lines(self.formatException(record.exc_info))
        return json.dumps(data, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:
        # The line itself; a traceback, if any, is appended after it by format().
        return escape(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:
        # Indented, every line of it: an exception's message may carry a client's newline, and a
        # line it starts must not pass for a record of its own (records start at the margin).
        return "\n".join("  " + line for line in _escape_lines(super().formatException(ei)).split("\n"))

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", None)
        return f"{line} request_id={request_id}" if request_id else line


def configure(fmt: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs full URLs at INFO; vendor URLs can carry keys (Gemini's ?key=).
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
