"""The one line of advice next to errors a move from tiangolo's image causes (asgi_launcher/doctor.py)."""

from __future__ import annotations

import logging
import sqlite3

from asgi_launcher.doctor import Doctor, advice


def raised(error: BaseException) -> BaseException:
    try:
        raise error
    except BaseException as caught:
        return caught


def test_a_missing_fastapi_all_package_names_it():
    error = ModuleNotFoundError("No module named 'multipart'", name="multipart")
    assert advice(error) == (
        "HINT: 'multipart' is not installed: add python-multipart to your requirements "
        "(tiangolo's image had it as part of fastapi[all])"
    )


def test_any_missing_module_through_the_import_chain():
    try:
        try:
            raise ModuleNotFoundError("No module named 'humanize.time'", name="humanize.time")
        except ImportError as error:
            raise RuntimeError("the app failed to import") from error
    except RuntimeError as error:
        hint = advice(error)
    assert hint == "HINT: 'humanize' is not installed: add the package that provides it to your requirements"


def test_starlettes_form_error():
    error = RuntimeError('Form data requires "python-multipart" to be installed.')
    assert "add python-multipart" in advice(error)


def test_a_permission_error_names_the_path_and_the_fixes():
    error = PermissionError(13, "Permission denied", "/app/data.db")
    hint = advice(error, uid=10001)
    assert "the app runs as UID 10001, not root as in tiangolo's image" in hint
    assert "RUN chown 10001 /app/data.db" in hint
    assert "APP_USER=root" in hint
    # As root the cause is elsewhere: no advice about users.
    assert advice(error, uid=0) is None


def test_sqlite_that_cannot_write_its_file():
    hint = advice(sqlite3.OperationalError("attempt to write a readonly database"), uid=10001)
    assert hint.startswith("HINT: SQLite could not write its file: the app runs as UID 10001")


def test_unrelated_errors_get_no_advice():
    assert advice(ValueError("bad value")) is None
    assert advice(sqlite3.IntegrityError("UNIQUE constraint failed")) is None
    assert advice(None) is None


def test_the_filter_appends_the_advice_and_keeps_the_traceback():
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append((self.format(record), record))

    handler = Keep()
    handler.addFilter(Doctor())
    logger = logging.getLogger("test-doctor")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        error = raised(ModuleNotFoundError("No module named 'jinja2'", name="jinja2"))
        logger.error("Exception in worker %s", "process", exc_info=error)
        logger.error("no exception here")
    finally:
        logger.removeHandler(handler)
    (text, _), (plain, _) = records
    assert text.splitlines()[0] == (
        "Exception in worker process -- HINT: 'jinja2' is not installed: add jinja2 to your requirements "
        "(tiangolo's image had it as part of fastapi[all])"
    )
    assert "Traceback (most recent call last)" in text
    assert plain == "no exception here"
