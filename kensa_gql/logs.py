"""Logging set-up: human-readable text by default, one JSON object per line when asked.

JSON lines are rendered by structlog's ``ProcessorFormatter`` (stdlib records and structlog
loggers alike): ``time`` in RFC 3339 UTC with milliseconds and ``Z``, ``level``, ``logger``,
``message``, then every field the line carries: a record's ``extra=`` fields, and for lines
logged while a request is handled, the request's fields (``request_id``, ``user_id``, ``route``,
``operation``; ``trace_id`` and ``span_id`` when tracing is on). An API key is never one of them.

Writing is off the request path: records go onto a queue (``QueueHandler``) and one thread
formats and writes them in batches, in order; a normal exit drains the queue first. The access
line (``info()``) skips even the ``LogRecord`` when the queue is the only place it can go: it puts
a tuple of its parts on the queue, and the writer renders the same line a record would give.

Logged values carry what clients send (a path, a header, an error's text), so both formats
escape control characters in them: ``GET /healthz%0a2026-... INFO forged`` stays one line, with
``\\n`` where the newline was, and no terminal escape or lone surrogate reaches the output.
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import queue
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from contextvars import ContextVar
from typing import Any, Protocol, TextIO

import orjson
import structlog

# C0, DEL, C1, the Unicode line and paragraph separators, bidirectional overrides and isolates
# (which reorder what a reader sees), and surrogates (which no encoder of the stream can write).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

# The fields of the request being handled (set by api/middleware.py, filled in as they become known).
_request: ContextVar[dict[str, Any] | None] = ContextVar("kensa_request", default=None)
# Set by kensa_gql/tracing.py when tracing is on: the current (trace_id, span_id) as hex, or None.
current_trace: Callable[[], tuple[str, str] | None] | None = None

# Fields the text format leaves out: the access line's message already says them.
_TEXT_SKIP = frozenset({"method", "path", "status", "duration_ms"})
# (uvicorn adds color_message: the message again, with terminal colours)
_RECORD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime",
                                                                                     "color_message"}


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


# -- request fields -----------------------------------------------------------------------------
def begin_request(request_id: str) -> dict[str, Any]:
    """Start collecting the fields of a request (its log lines carry them); returns them."""
    fields: dict[str, Any] = {"request_id": request_id}
    _request.set(fields)
    return fields


def note(**fields: Any) -> None:
    """Add fields to the request being handled (``user_id``, ``operation``...); none outside one."""
    current = _request.get()
    if current is not None:
        current.update(fields)


def _add_context(record: logging.LogRecord) -> bool:
    """A filter run where the line is logged: copies the request's fields (and the trace) onto it."""
    fields = _request.get()
    if fields is not None and "request_id" not in record.__dict__:  # the access line has them already
        for key, value in fields.items():
            if key not in record.__dict__:
                record.__dict__[key] = value
    if current_trace is not None and "trace_id" not in record.__dict__:
        ids = current_trace()
        if ids is not None:
            record.trace_id, record.span_id = ids
    return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {key: value for key, value in record.__dict__.items() if key not in _RECORD_ATTRS and key[0] != "_"}


# The last whole second formatted and its text, the last millisecond and its text: under load a
# batch's lines share their milliseconds. Each is one tuple, replaced whole, so a formatter in
# another thread (a test's, a handler's) never reads a half-updated pair.
_second: tuple[int, str] = (-1, "")
_milli: tuple[int, str] = (-1, "")


def rfc3339(created: float) -> str:
    """A record time as RFC 3339 UTC with milliseconds: ``2026-12-03T12:00:00.123Z``."""
    global _second, _milli
    milli = int(created * 1000)
    cached = _milli
    if cached[0] == milli:
        return cached[1]
    whole = milli // 1000
    second = _second
    if second[0] != whole:
        second = _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    text = f"{second[1]}.{milli % 1000:03d}Z"
    _milli = (milli, text)
    return text


# -- JSON (structlog) ---------------------------------------------------------------------------
def _shape(logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """The line's fields in their fixed order, every string escaped, a traceback as text."""
    record: logging.LogRecord | None = event.pop("_record", None)
    event.pop("_from_structlog", None)
    exc_info = event.pop("exc_info", None)
    out: dict[str, Any] = {}
    if record is not None:
        out["time"] = rfc3339(record.created)
        out["level"] = record.levelname
        out["logger"] = record.name
    else:
        out["time"] = rfc3339(time.time())
        out["level"] = method.upper()
        out["logger"] = event.pop("logger", "")
    out["message"] = event.pop("event", "")
    out.update(event)
    if record is not None:
        out.update((key, value) for key, value in _extras(record).items() if key not in out)
    for key, value in out.items():
        if isinstance(value, str):
            out[key] = escape(value)
    if exc_info:
        if record is not None and record.exc_info:
            exc_info = record.exc_info
        elif not isinstance(exc_info, tuple):
            exc_info = sys.exc_info()
        out["traceback"] = _escape_lines(logging.Formatter().formatException(exc_info))
    return out


def _render(logger: Any, method: str, event: MutableMapping[str, Any]) -> str:
    return orjson.dumps(event, default=str).decode()


class JsonFormatter(structlog.stdlib.ProcessorFormatter):
    """structlog's formatter, with the processors above. A stdlib record (every line the gateway
    logs itself) goes straight through those processors: ProcessorFormatter would first copy the
    record and format it again, which doubled the cost of the per-request line."""

    def __init__(self) -> None:
        super().__init__(processors=[_shape, _render], foreign_pre_chain=[], use_get_message=True)

    def format(self, record: logging.LogRecord) -> str:
        if isinstance(record.msg, dict):  # from a structlog logger
            return super().format(record)
        if record.exc_info:
            return _render(None, "", _shape(None, "", {"event": record.getMessage(), "_record": record,
                                                        "exc_info": record.exc_info}))
        return self.format_line(record.created, record.levelname, record.name, record.getMessage(),
                                ((key, value) for key, value in record.__dict__.items() if key not in _RECORD_ATTRS))

    def format_line(self, created: float, level: str, name: str, message: str,
                    fields: Iterable[tuple[str, Any]]) -> str:
        """_shape, unrolled for the common line (no traceback): the same fields in the same order."""
        out = {"time": rfc3339(created), "level": level, "logger": name, "message": message}
        for key, value in fields:
            if key[0] != "_":
                out[key] = value
        try:
            line = orjson.dumps(out, default=str)
        except orjson.JSONEncodeError:  # a lone surrogate: escaped below
            line = b"\\"
        # Plain ASCII with no backslash: no string in it had a character to escape (orjson writes
        # C0 controls as backslash escapes, DEL as is, and the rest beyond ASCII), so it stands.
        if line.isascii() and b"\\" not in line and b"\x7f" not in line:
            return line.decode()
        for key, value in out.items():
            if value.__class__ is str and not value.isprintable():
                out[key] = escape(value)
        return orjson.dumps(out, default=str).decode()


# -- text ---------------------------------------------------------------------------------------
class TextFormatter(logging.Formatter):
    """``time level logger: message key=value ...``; with no ``fmt``, written without the stdlib's
    %-formatting (the per-request line is formatted thousands of times a second)."""

    converter = time.gmtime  # type: ignore[assignment]
    default_time_format = "%Y-%m-%dT%H:%M:%S"
    default_msec_format = "%s.%03dZ"

    def __init__(self, fmt: str | None = None) -> None:
        super().__init__(fmt)
        self._lean = fmt is None

    def format(self, record: logging.LogRecord) -> str:
        if not self._lean or record.exc_info or record.stack_info:
            return super().format(record)
        return self.format_line(record.created, record.levelname, record.name, record.getMessage(),
                                _extras(record).items())

    def format_line(self, created: float, level: str, name: str, message: str,
                    fields: Iterable[tuple[str, Any]]) -> str:
        """The lean line: ``time level logger: message key=value ...``."""
        line = f"{rfc3339(created)} {level} {name}: {message}"
        extra = " ".join(f"{key}={value}" for key, value in fields if key[0] != "_" and key not in _TEXT_SKIP)
        return escape(f"{line} {extra}" if extra else line)

    def formatMessage(self, record: logging.LogRecord) -> str:
        # The line itself, then its fields as key=value; a traceback, if any, follows (format()).
        line = super().formatMessage(record)
        extra = " ".join(f"{key}={value}" for key, value in _extras(record).items() if key not in _TEXT_SKIP)
        return escape(f"{line} {extra}" if extra else line)

    def formatException(self, ei: Any) -> str:
        # Indented, every line of it: an exception's message may carry a client's newline, and a
        # line it starts must not pass for a record of its own (records start at the margin).
        return "\n".join("  " + line for line in _escape_lines(super().formatException(ei)).split("\n"))


# -- writing off the request path -----------------------------------------------------------------
BATCH_SECONDS = 0.02  # how long a line may wait to be written with the ones after it

# What the queue carries: a record; a line from info(), as (time, level name, logger name, message,
# its %-arguments, its fields); or None, the end.
_Line = tuple[float, str, str, str, tuple[Any, ...], Mapping[str, Any]]
_Item = logging.LogRecord | _Line | None


class _LineFormatter(Protocol):
    def format(self, record: logging.LogRecord) -> str: ...

    def format_line(self, created: float, level: str, name: str, message: str,
                    fields: Iterable[tuple[str, Any]]) -> str: ...


class _BatchWriter(threading.Thread):
    """Takes records off the queue and writes them, formatted, in order, several per write."""

    def __init__(self, records: queue.SimpleQueue[_Item], formatter: _LineFormatter, stream: TextIO) -> None:
        super().__init__(name="log-writer", daemon=True)
        self._records = records
        self._formatter = formatter
        self._stream = stream

    def run(self) -> None:
        records = self._records
        while True:
            first = records.get()
            if first is not None:
                # Let a batch gather: one wake-up and one write per batch, not a thread switch per
                # line (under load that switch cost more than formatting the line).
                time.sleep(BATCH_SECONDS)
            batch = [first]
            while len(batch) < 10_000:
                try:
                    batch.append(records.get_nowait())
                except queue.Empty:
                    break
            stop = None in batch
            lines = []
            for item in batch:
                if item is None:
                    continue
                try:
                    lines.append(self._format(item))
                except Exception:  # a bad record must not end logging for the process
                    lines.append(f"{rfc3339(time.time())} ERROR kensa_gql.logs: unformattable record "
                                 f"from {item[2] if isinstance(item, tuple) else item.name}")
            if lines:
                try:
                    self._stream.write("\n".join(lines) + "\n")
                    self._stream.flush()
                except (OSError, ValueError):
                    pass  # stderr closed: nothing left to tell
            if stop:
                return

    def _format(self, item: logging.LogRecord | _Line) -> str:
        if not isinstance(item, tuple):
            return self._formatter.format(item)
        created, level, name, msg, args, fields = item
        if args:  # as LogRecord.getMessage() does it, a lone mapping included
            msg = msg % (args[0] if len(args) == 1 and isinstance(args[0], Mapping) and args[0] else args)
        return self._formatter.format_line(created, level, name, msg, fields.items())


class _Enqueue(logging.handlers.QueueHandler):
    def handle(self, record: logging.LogRecord) -> bool:
        # No handler lock: the queue is thread-safe, and the record goes on it as it is (no
        # prepare(): it is formatted by the writer thread, not here on the request path).
        if _add_context(record):
            self.queue.put_nowait(record)
        return True


_writer: _BatchWriter | None = None
_records: queue.SimpleQueue[_Item] | None = None
_handler: _Enqueue | None = None
_direct = True  # configure(direct=False): info() always goes through a LogRecord


def _only_to_the_queue(logger: logging.Logger) -> bool:
    """Whether a line of ``logger`` can go nowhere but the queue, unfiltered: no handler or filter
    on the way to the root, and the root's one handler ours (pytest's caplog adds its own)."""
    node: logging.Logger | None = logger
    while node is not None:
        if node.filters or node.disabled:
            return False
        if node.parent is None:  # the root
            return len(node.handlers) == 1 and node.handlers[0] is _handler and not _handler.filters and \
                _handler.level <= logging.INFO
        if node.handlers or not node.propagate:
            return False
        node = node.parent
    return False


def info(logger: logging.Logger, msg: str, *args: Any, extra: Mapping[str, Any] | None = None) -> None:
    """``logger.info(msg, *args, extra=extra)``, the same line, for less: when only the queue would
    see the record, the line's parts go on it without one (the per-request access line is logged
    thousands of times a second). ``extra`` is kept, not copied: pass a mapping no one changes."""
    if not logger.isEnabledFor(logging.INFO):
        return
    records = _records
    if records is None or not _direct or not _only_to_the_queue(logger) or \
            (extra and not _RECORD_ATTRS.isdisjoint(extra)):  # (a record refuses those: its KeyError)
        logger.info(msg, *args, extra=extra, stacklevel=2)
        return
    fields: Mapping[str, Any] = extra or {}
    # _add_context, for a line without a record: the same fields in the same order.
    request = _request.get()
    if request is not None and "request_id" not in fields:
        fields = {**fields, **{key: value for key, value in request.items()
                               if key not in fields and key not in _RECORD_ATTRS}}
    if current_trace is not None and "trace_id" not in fields:
        ids = current_trace()
        if ids is not None:
            fields = {**fields, "trace_id": ids[0], "span_id": ids[1]}
    records.put_nowait((time.time(), "INFO", logger.name, msg, args, fields))


def flush() -> None:
    """Write every record logged so far and stop the writer (at exit; configure() starts a new one)."""
    global _writer, _records
    if _writer is not None and _records is not None:
        _records.put(None)
        _writer.join(timeout=10)
    _writer = _records = None


def configure(fmt: str, level: str, *, stream: TextIO | None = None, direct: bool = True) -> None:
    """The process's logging: ``fmt`` "text" or "json" to ``stream`` (stderr) from ``level`` up;
    ``direct=False`` sends info()'s lines through a LogRecord too (the stock path)."""
    global _writer, _records, _handler, _direct
    flush()
    formatter: JsonFormatter | TextFormatter = JsonFormatter() if fmt == "json" else TextFormatter()
    # Where a line was logged from (a stack walk per line), thread and process names: the formats
    # use none of them (the "Optimization" section of the logging documentation).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    _records = queue.SimpleQueue()
    _writer = _BatchWriter(_records, formatter, stream or sys.stderr)
    _writer.start()
    _handler = _Enqueue(_records)
    _direct = direct
    root = logging.getLogger()
    root.handlers[:] = [_handler]
    root.setLevel(level.upper())
    # httpx logs full URLs at INFO; vendor URLs can carry keys (Gemini's ?key=).
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    # structlog loggers (structlog.get_logger()) go through the same handler and format.
    structlog.configure(processors=[structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
                        logger_factory=structlog.stdlib.LoggerFactory(),
                        wrapper_class=structlog.stdlib.BoundLogger, cache_logger_on_first_use=True)


atexit.register(flush)
