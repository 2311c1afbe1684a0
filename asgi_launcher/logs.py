"""LOG_FORMAT=json: one JSON object per line; and the launcher's own messages in either format."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from datetime import UTC, datetime

_PREFIXES = {"ERROR: ": "error", "WARNING: ": "warning"}
# Tools log to stderr at every level (alembic: "INFO  [alembic...] ..."): a leading level word wins.
_LEVEL_WORD = re.compile(r"^\[?(DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL)\b")
_ERROR = re.compile(r"^(Traceback \(most recent call last\)|[\w.]+(Error|Exception)\b)")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        access = getattr(record, "access_fields", None)
        if access:  # an access record (LOGGING_CONF): the same entry as the batched JSON access log
            entry["logger"] = "access"
            entry.update(access)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def json_root_handler(formatter: logging.Formatter) -> None:
    """The app's own ``logging`` calls as JSON on stderr too, unless the app configured a handler."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(formatter)
        root.addHandler(handler)


def json_entry(logger: str, level: str, message: str, **fields) -> str:
    """One line of our own, shaped as JsonFormatter's; ``fields`` add keys or replace the pid."""
    entry = {
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "level": level,
        "logger": logger,
        "pid": os.getpid(),
        "message": message,
    }
    return json.dumps(entry | fields)


def json_logs(env=os.environ) -> bool:
    """LOG_FORMAT=json, for a message printed before (or without) the parsed settings: the registry's
    parser, with a bad value taken as text (the start refuses it in its own line)."""
    from asgi_launcher.settings import SETTINGS, ConfigError

    try:
        return SETTINGS["LOG_FORMAT"].read(env) == "json"
    except ConfigError:
        return False


def format_line(level: str, message: str, as_json: bool | None = None) -> str:
    """A launcher message as ``LEVEL: message`` (info: the bare message) or, with LOG_FORMAT=json, JSON.

    ``as_json``: from the parsed settings; None when there are none yet (read from the environment)."""
    if json_logs() if as_json is None else as_json:
        return json_entry("asgi_launcher", level, message)
    return message if level == "info" else f"{level.upper()}: {message}"


def report(level: str, message: str, stream=None, as_json: bool | None = None) -> None:
    """Print a launcher message: errors and warnings to stderr, the rest to stdout."""
    stream = stream or (sys.stdout if level == "info" else sys.stderr)
    stream.write(format_line(level, message, as_json) + "\n")
    stream.flush()


def stream_level(text: str, stream: str, previous: str = "") -> str:
    """The level of a raw output line: stdout is info; on stderr a leading level word decides (tools
    such as alembic log INFO there), an indented line continues the one before (a traceback), a
    traceback or an exception is an error, anything else a warning."""
    if stream == "stdout":
        return "info"
    if text[:1] in (" ", "\t") and previous:
        return previous
    word = _LEVEL_WORD.match(text)
    if word:
        return {"warn": "warning"}.get(word.group(1).lower(), word.group(1).lower())
    if _ERROR.match(text):
        return "error"
    return "warning"


def wrap_line(text: str, logger: str, stream: str, level: str, pid: int | None) -> str:
    """A raw line as a JSON entry; our own ``ERROR: `` / ``WARNING: `` prefix becomes the level."""
    for prefix, prefix_level in _PREFIXES.items():
        if text.startswith(prefix):
            text, level = text[len(prefix) :], prefix_level
            break
    return json_entry(logger, level, text, pid=pid, stream=stream)


def is_json_object(text: str) -> bool:
    return text.startswith("{") and text.rstrip().endswith("}")


def json_lines(logger: str, pid: int, stream: str = "stdout", lines=sys.stdin, out=sys.stdout) -> None:
    """Wrap each line the pre-start script writes to ``stream`` in a JSON log object (start.sh).

    ``pid`` is start.sh's, which becomes Gunicorn's master when it execs.
    """
    level = ""
    for line in lines:
        text = line.rstrip("\n")
        if not is_json_object(text):
            level = stream_level(text, stream, level)
            text = wrap_line(text, logger, stream, level, pid)
        out.write(text + "\n")
        out.flush()


# ---- LOGGING_CONF: the user's own logging.config.dictConfig, applied after LOG_FORMAT's set-up ------


def load_logging_config(value: str) -> dict:
    """The dictionary a LOGGING_CONF value names: a JSON file, or LOGGING_CONFIG in a .py file or module."""
    import importlib
    import runpy

    if value.endswith(".json"):
        with open(value, encoding="utf-8") as file:
            config = json.load(file)
    elif value.endswith(".py"):
        config = runpy.run_path(value).get("LOGGING_CONFIG")
    else:
        config = getattr(importlib.import_module(value), "LOGGING_CONFIG", None)
    if not isinstance(config, dict):
        raise ValueError("it defines no LOGGING_CONFIG dictionary")
    return config


def apply_logging_conf(value: str) -> None:
    """dictConfig on top of what LOG_FORMAT set up: the loggers the file names take its handlers;
    the others keep theirs (``disable_existing_loggers`` is false unless the file says otherwise).

    Raises ``ConfigError`` with the one line the operator sees.
    """
    import logging.config

    from asgi_launcher.settings import ConfigError

    try:
        config = dict(load_logging_config(value))
        config.setdefault("disable_existing_loggers", False)
        logging.config.dictConfig(config)
    except Exception as error:  # anything the user's file or module raises: one line, no traceback
        detail = f"{type(error).__name__}: {error}".replace("\n", " ")
        raise ConfigError(f"LOGGING_CONF={value!r} could not be applied: {detail}") from None
