"""LOG_FORMAT=json: one JSON object per line; and the launcher's own messages in either format."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime

_PREFIXES = {"ERROR: ": "error", "WARNING: ": "warning"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def json_entry(logger: str, level: str, message: str, pid: int | None = None) -> str:
    record = logging.LogRecord(logger, logging.getLevelName(level.upper()), "", 0, message, None, None)
    if pid is not None:
        record.process = pid
    return JsonFormatter().format(record)


def report(level: str, message: str, stream=sys.stderr) -> None:
    """A launcher message (an error, a warning) as ``LEVEL: message`` or, with LOG_FORMAT=json, JSON."""
    if os.environ.get("LOG_FORMAT", "").strip().lower() == "json":
        stream.write(json_entry("asgi_launcher", level, message) + "\n")
    else:
        stream.write(f"{level.upper()}: {message}\n")
    stream.flush()


def json_lines(logger: str, pid: int, stream=sys.stdin, out=sys.stdout) -> None:
    """Wrap each line of ``stream`` (start.sh's and the pre-start script's output) in a JSON log object.

    Lines that already are JSON objects pass through; ``ERROR: ``/``WARNING: `` prefixes set the level.
    ``pid`` is start.sh's, which becomes Gunicorn's master when it execs.
    """
    for line in stream:
        text = line.rstrip("\n")
        if not (text.startswith("{") and text.endswith("}")):
            level = "info"
            for prefix, prefix_level in _PREFIXES.items():
                if text.startswith(prefix):
                    text, level = text[len(prefix) :], prefix_level
            text = json_entry(logger, level, text, pid)
        out.write(text + "\n")
        out.flush()
