"""Bad settings stop start.sh with one line naming the variable, before the pre-start script runs."""

from __future__ import annotations

import os

import pytest
from support.files import write

BAD_SETTINGS = [
    ({"WEB_CONCURRENCY": "abc"}, "WEB_CONCURRENCY='abc' is not valid: expected a whole number >= 1"),
    ({"WEB_CONCURRENCY": "0"}, "WEB_CONCURRENCY='0' is not valid: expected a whole number >= 1"),
    ({"WEB_CONCURRENCY": "-1"}, "WEB_CONCURRENCY='-1' is not valid: expected a whole number >= 1"),
    ({"WORKERS_PER_CORE": "x"}, "WORKERS_PER_CORE='x' is not valid: expected a number > 0"),
    ({"MAX_WORKERS": "-1"}, "MAX_WORKERS='-1' is not valid: expected a whole number >= 1"),
    ({"TIMEOUT": "soon"}, "TIMEOUT='soon' is not valid: expected a whole number >= 0"),
    ({"GRACEFUL_TIMEOUT": "later"}, "GRACEFUL_TIMEOUT='later' is not valid: expected a whole number >= 0"),
    ({"KEEP_ALIVE": "yes"}, "KEEP_ALIVE='yes' is not valid: expected a whole number >= 0"),
    ({"PORT": "http", "BIND": ""}, "PORT='http' is not valid: expected a TCP port number from 1 to 65535"),
    ({"MEMORY_PER_WORKER": "lots"}, "MEMORY_PER_WORKER='lots' is not valid: expected a size in bytes > 0"),
    (
        {"LOG_LEVEL": "loud"},
        "LOG_LEVEL='loud' is not valid: expected one of critical, error, warning, info, debug",
    ),
    ({"MODULE_NAME": "nope"}, "APP_MODULE='nope:app' is not valid: module 'nope' cannot be imported"),
    (
        {"APP_MODULE": "app.nope:app"},
        "APP_MODULE='app.nope:app' is not valid: module 'app.nope' cannot be imported",
    ),
    (
        {"WORKER_CLASS": "nope.Worker"},
        "WORKER_CLASS='nope.Worker' is not valid: module 'nope' is not installed",
    ),
    ({"GUNICORN_CONF": "/nonexistent.py"}, "GUNICORN_CONF='/nonexistent.py' is not valid: expected the path"),
    ({"LOG_FORMAT": "xml"}, "LOG_FORMAT='xml' is not valid: expected one of text, json"),
    (
        {"ACCESS_LOG_FORMAT": "%(h"},
        "ACCESS_LOG_FORMAT='%(h' is not valid: expected a Gunicorn access log format",
    ),
    (
        {"FORWARDED_ALLOW_IPS": "proxy"},
        "FORWARDED_ALLOW_IPS='proxy' is not valid: expected comma-separated IP",
    ),
    (
        {"METRICS": "maybe"},
        "METRICS='maybe' is not valid: expected one of on, off, true, false, 1, 0, yes, no",
    ),
    ({"METRICS_PORT": "0"}, "METRICS_PORT='0' is not valid: expected a TCP port number from 1 to 65535"),
    ({"PROCESS_MANAGER": "pm2"}, "PROCESS_MANAGER='pm2' is not valid: expected one of gunicorn, uvicorn"),
    ({"MAX_REQUESTS": "many"}, "MAX_REQUESTS='many' is not valid: expected a whole number >= 0"),
    ({"MAX_REQUESTS_JITTER": "-3"}, "MAX_REQUESTS_JITTER='-3' is not valid: expected a whole number >= 0"),
    ({"PRELOAD_APP": "sometimes"}, "PRELOAD_APP='sometimes' is not valid: expected one of on, off, true"),
    ({"BOOT_TIMEOUT": "1m"}, "BOOT_TIMEOUT='1m' is not valid: expected a whole number >= 0"),
    ({"HOST": "", "PORT": "99999", "BIND": ""}, "PORT='99999' is not valid: expected a TCP port number"),
    # Values that used to pass the check and break later, after the pre-start script had run.
    ({"BIND": "garbage:xx"}, "BIND='garbage:xx' is not valid: expected HOST:PORT, [IPv6]:PORT or unix:PATH"),
    ({"BIND": "", "HOST": "no-such-host.invalid"}, "HOST='no-such-host.invalid' is not valid: expected"),
    (
        {"BIND": "127.0.0.1:18099", "METRICS_PORT": "18099"},
        "METRICS_PORT='18099' is not valid: expected a port other than the app's",
    ),
    ({"WEB_CONCURRENCY": "100000000"}, "WEB_CONCURRENCY='100000000' is not valid: expected at most"),
    (
        {"PROCESS_MANAGER": "uvicorn", "MAX_REQUESTS": "100"},
        "MAX_REQUESTS='100' is not valid: expected 0 with PROCESS_MANAGER=uvicorn",
    ),
]


@pytest.mark.parametrize(
    ("env", "message"),
    BAD_SETTINGS,
    ids=[next(iter(e)) + "=" + next(iter(e.values())) for e, _ in BAD_SETTINGS],
)
def test_bad_setting_exits_with_one_line_before_the_pre_start(package_app, launch, env, message):
    server = launch(package_app, **env)
    assert server.wait_exit() == 2
    lines = server.output.splitlines()
    assert len(lines) == 1, server.output
    assert lines[0].startswith("ERROR: " + message), lines[0]
    assert "Traceback" not in server.output


def test_no_app_found(tmp_path, launch):
    empty = tmp_path / "empty"
    empty.mkdir()
    server = launch(empty)
    assert server.wait_exit() == 2
    assert server.output == (
        f"ERROR: no app found: put it in {empty}/app/main.py or {empty}/main.py, "
        "or set MODULE_NAME (and VARIABLE_NAME) or APP_MODULE\n"
    )


def test_bad_value_exported_by_the_pre_start_script(package_app, launch):
    """The pre-start may change settings; Gunicorn's config re-validates them, still without a traceback."""
    write(package_app / "prestart.sh", "export WEB_CONCURRENCY=zero\n")
    server = launch(package_app)
    assert server.wait_exit() == 2
    assert "ERROR: WEB_CONCURRENCY='zero' is not valid: expected a whole number >= 1" in server.output
    assert "Traceback" not in server.output
    assert "Booting worker" not in server.output


def test_valid_value_exported_by_the_pre_start_script_is_used(package_app, launch):
    write(package_app / "prestart.sh", "export WEB_CONCURRENCY=3\n")
    server = launch(package_app)
    server.wait_ready()
    assert len(server.wait_workers(3)) == 3


@pytest.mark.skipif(os.getuid() != 0, reason="the switch to APP_USER happens only when started as root")
def test_an_app_user_that_does_not_exist_stops_the_start(package_app, launch):
    server = launch(package_app, APP_USER="nosuchuser")
    assert server.wait_exit() == 2
    assert server.output == (
        "ERROR: APP_USER='nosuchuser' is not valid: expected a user (or user:group) that exists in the "
        "image, a UID[:GID], or root\n"
    )
