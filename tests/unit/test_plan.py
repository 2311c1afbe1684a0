"""What /start.sh runs, decided in Python (asgi_launcher/start.py), as pure functions."""

from __future__ import annotations

import sys

import pytest
from support.files import write
from support.proc import BASE_CONF

from asgi_launcher.cgroups import read_limits
from asgi_launcher.settings import ConfigError, Settings
from asgi_launcher.start import make_plan, module_exists

GUNICORN = [sys.executable, "-m", "asgi_launcher", "gunicorn"]


def test_module_lookup_runs_no_code_of_the_app(tmp_path, monkeypatch):
    """The plan may run as root: finding app.main must not execute app/__init__.py."""
    marker = tmp_path / "executed"
    write(tmp_path / "pkg" / "__init__.py", f"open({str(marker)!r}, 'w').close()\n")
    write(tmp_path / "pkg" / "main.py", "app = None\n")
    write(tmp_path / "plain.py", "app = None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert module_exists("pkg.main")
    assert module_exists("plain")
    assert not module_exists("pkg.nope")
    assert not module_exists("plain.sub")  # a module, not a package
    assert not module_exists("nope.main")
    assert not module_exists("not a module")
    assert not marker.exists()
    assert "pkg" not in sys.modules


def plan_of(root, args=(), **env):
    env = {"APP_ROOT": str(root), "BASE_GUNICORN_CONF": str(BASE_CONF), "BIND": "127.0.0.1:8080", **env}
    return make_plan(Settings.from_env(env, read_limits()), env, list(args))


@pytest.fixture
def app_root(tmp_path, monkeypatch):
    write(tmp_path / "app" / "__init__.py", "")
    write(tmp_path / "app" / "main.py", "app = None\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_plan_for_gunicorn(app_root):
    plan = plan_of(app_root, WEB_CONCURRENCY="")
    assert plan.exports == {"APP_MODULE": "app.main:app", "GUNICORN_CONF": str(BASE_CONF)}
    # No -k: the worker class is the application's to decide, from WORKER_CLASS and the config file.
    assert plan.command == [*GUNICORN, "-c", str(BASE_CONF), "app.main:app"]
    assert plan.prestart is None
    assert plan.unset == ["WEB_CONCURRENCY"]  # empty means unset: Gunicorn would fail on ""


def test_gunicorn_options_after_the_config_and_before_the_app(app_root):
    plan = plan_of(app_root, ["--workers", "3"])
    assert plan.command == [*GUNICORN, "-c", str(BASE_CONF), "--workers", "3", "app.main:app"]


@pytest.mark.parametrize("env", [{"PROCESS_MANAGER": "uvicorn"}, {}])
def test_gunicorn_options_are_refused_without_gunicorn(app_root, env):
    args = ["--workers", "3"] + ([] if env else ["--reload"])
    with pytest.raises(ConfigError, match="expected no Gunicorn options"):
        plan_of(app_root, args, **env)
    assert plan_of(app_root, args[2:], **env).command[-1] in ("serve", "--reload")  # the control


@pytest.mark.parametrize("value", ["uvicorn", " uvicorn", "UVICORN "])
def test_process_manager_is_read_once_whatever_its_spaces(app_root, value):
    """Issue: PROCESS_MANAGER=" uvicorn" ran Gunicorn while the startup line said uvicorn."""
    assert plan_of(app_root, PROCESS_MANAGER=value).command == [
        sys.executable,
        "-m",
        "asgi_launcher",
        "serve",
    ]


def test_pre_start_lines_and_path(app_root):
    write(app_root / "prestart.sh", "echo hi\n")
    plan = plan_of(app_root)
    assert plan.said == [
        f"Checking for script in {app_root}/prestart.sh",
        f"Running script {app_root}/prestart.sh",
    ]
    assert plan.prestart == f"{app_root}/prestart.sh"
    assert plan_of(app_root, PRE_START_PATH="").said == ["Pre-start step disabled (PRE_START_PATH is empty)"]
    assert plan_of(app_root, PRE_START_PATH="").prestart is None
    assert plan_of(app_root, ["--prestart-only"]).command == []


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"BIND": "garbage:xx"}, "BIND='garbage:xx' is not valid: expected HOST:PORT"),
        ({"BIND": "", "HOST": "no-such-host.invalid"}, "HOST='no-such-host.invalid' is not valid"),
        (
            {"BIND": "127.0.0.1:9100"},
            "METRICS_PORT='9100' is not valid: expected a port other than the app's",
        ),
        (
            {"PROCESS_MANAGER": "uvicorn", "MAX_REQUESTS": "100"},
            "MAX_REQUESTS='100' is not valid: expected 0",
        ),
        ({"WEB_CONCURRENCY": "100000000"}, "WEB_CONCURRENCY='100000000' is not valid: expected at most"),
    ],
)
def test_settings_that_would_fail_late_fail_in_the_plan(app_root, env, message):
    with pytest.raises(ConfigError) as raised:
        plan_of(app_root, **env)
    assert str(raised.value).startswith(message)


def test_the_metrics_port_may_equal_the_app_port_when_metrics_are_off(app_root):
    assert plan_of(app_root, BIND="127.0.0.1:9100", METRICS="off").command
