"""One line of advice on the errors that moving from tiangolo's image causes, next to the traceback.

The two usual ones: a package his image installed that the app never listed (his image installed
fastapi[all]; this one does too, but a derived image may have replaced it), and a file the app
writes where its non-root user may not (his image ran the app as root). ``Doctor`` is a logging
filter on the error log's handlers: it appends the advice to the record's message, the traceback
stays as it was.
"""

from __future__ import annotations

import logging
import os

# Modules of fastapi[all] (and the extras his image had) -> the package that provides them.
FASTAPI_ALL = {
    "multipart": "python-multipart",
    "python_multipart": "python-multipart",
    "jinja2": "jinja2",
    "email_validator": "email-validator",
    "itsdangerous": "itsdangerous",
    "yaml": "pyyaml",
    "ujson": "ujson",
    "orjson": "orjson",
    "httpx": "httpx",
    "pydantic_settings": "pydantic-settings",
    "pydantic_extra_types": "pydantic-extra-types",
    "dotenv": "python-dotenv",
}
WRITE_ERRORS = ("unable to open database file", "attempt to write a readonly database")


def _chain(error: BaseException | None):
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def advice(error: BaseException | None, uid: int | None = None) -> str | None:
    """What to change, in one line, or None when the error is not one of these (``uid``: the app's)."""
    uid = os.getuid() if uid is None else uid
    for cause in _chain(error):
        if isinstance(cause, ModuleNotFoundError) and cause.name:
            module = cause.name.split(".")[0]
            package = FASTAPI_ALL.get(module)
            if package:
                return (
                    f"HINT: {module!r} is not installed: add {package} to your requirements "
                    "(tiangolo's image had it as part of fastapi[all])"
                )
            return f"HINT: {module!r} is not installed: add the package that provides it to your requirements"
        if isinstance(cause, RuntimeError) and "python-multipart" in str(cause):
            return "HINT: add python-multipart to your requirements (tiangolo's image had it in fastapi[all])"
        if uid == 0:
            continue
        if isinstance(cause, PermissionError) and cause.filename:
            return (
                f"HINT: the app runs as UID {uid}, not root as in tiangolo's image, and may not write "
                f"{cause.filename}: give it that path in your Dockerfile (RUN chown {uid} {cause.filename}), "
                "write under /tmp, or set APP_USER=root"
            )
        if any(text in str(cause) for text in WRITE_ERRORS):
            return (
                f"HINT: SQLite could not write its file: the app runs as UID {uid}, not root as in "
                f"tiangolo's image; keep the database where that user may write ({os.getcwd()} is "
                "writable in this image unless you replaced it), or set APP_USER=root"
            )
    return None


class Doctor(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and not getattr(record, "advised", False):
            hint = advice(record.exc_info[1])
            if hint:
                record.msg = f"{record.getMessage()} -- {hint}"
                record.args = ()
                record.advised = True
        return True


def advise(*loggers: logging.Logger) -> None:
    """Add the doctor to every handler of these loggers (Uvicorn's error log shares Gunicorn's)."""
    for logger in loggers:
        for handler in logger.handlers:
            if not any(isinstance(f, Doctor) for f in handler.filters):
                handler.addFilter(Doctor())
