"""The launcher's Gunicorn application, built on Gunicorn's own classes with a config file of the
user's: the layers and their precedence, the hooks chained, and the one line on what the file changed.

These double as canaries: the application relies on how Gunicorn's ``Application.load_config`` reads
the config file, ``GUNICORN_CMD_ARGS`` and the command line, and on its hook settings' arity; an
upgrade that changes any of it fails here, by name.
"""

from __future__ import annotations

import json
import sys

import pytest
from support.files import write

from asgi_launcher.application import HOOKS, LauncherApplication
from asgi_launcher.cgroups import Limits
from asgi_launcher.hooks import Hooks
from asgi_launcher.settings import Settings

HOOK_CALLS: list[str] = []  # what the hooks of both sides did, in order


@pytest.fixture
def application(tmp_path, monkeypatch):
    """Build the application as ``python -m asgi_launcher gunicorn`` does, with ``conf`` as the file."""
    monkeypatch.delenv("GUNICORN_CMD_ARGS", raising=False)
    monkeypatch.chdir(tmp_path)
    HOOK_CALLS.clear()

    def build(conf: str = "", args=(), env=None) -> LauncherApplication:
        path = write(tmp_path / "gunicorn_conf.py", conf)
        env = {"METRICS": "off", "BIND": "127.0.0.1:8000", **(env or {})}
        if "GUNICORN_CMD_ARGS" in env:
            monkeypatch.setenv("GUNICORN_CMD_ARGS", env["GUNICORN_CMD_ARGS"])
        monkeypatch.setattr(sys, "argv", ["gunicorn", "-c", str(path), *args, "app.main:app"])
        return LauncherApplication(Settings.from_env(env, Limits(2, None, None)))

    return build


def test_the_registry_is_the_lowest_layer(application):
    app = application(env={"WEB_CONCURRENCY": "4", "TIMEOUT": "33"})
    assert (app.cfg.workers, app.cfg.timeout, app.cfg.bind) == (4, 33, ["127.0.0.1:8000"])
    assert app.notes == []  # nothing of the image's was changed


@pytest.mark.parametrize(
    ("args", "env", "workers", "source"),
    [
        ((), {}, 2, "the config file "),
        ((), {"GUNICORN_CMD_ARGS": "--workers 3"}, 3, "GUNICORN_CMD_ARGS"),
        (("--workers", "5"), {"GUNICORN_CMD_ARGS": "--workers 3"}, 5, "the command line"),
    ],
)
def test_file_then_cmd_args_then_command_line(application, args, env, workers, source):
    app = application("workers = 2\n", args, {"WEB_CONCURRENCY": "4", **env})
    assert app.cfg.workers == workers, "Gunicorn's precedence of its layers changed"
    (note,) = app.notes
    assert note.startswith(f"workers={workers} from {source}")
    assert "wins over the image's 4 (web_concurrency)" in note
    assert app.final()["workers"] == workers


def test_what_a_file_does_not_set_still_comes_from_the_environment(application):
    app = application("workers = 2\n", env={"TIMEOUT": "33", "KEEP_ALIVE": "7"})
    assert (app.cfg.timeout, app.cfg.keepalive, app.cfg.workers) == (33, 7, 2)


def test_the_image_managed_settings_are_set_under_any_file(application):
    app = application("workers = 2\n")
    assert app.cfg.settings["logger_class"].get() is app.hooks.logger_class
    if "control_socket_disable" in app.cfg.settings:
        assert app.cfg.control_socket_disable is True


def test_worker_class_variable_beats_the_file_but_not_the_command_line(application):
    conf = 'worker_class = "uvicorn_worker.UvicornH11Worker"\n'
    env = {"WORKER_CLASS": "uvicorn_worker.UvicornWorker"}
    app = application(conf, env=env)
    assert app.cfg.worker_class_str == "uvicorn_worker.UvicornWorker"
    assert app.notes[0].startswith("WORKER_CLASS=uvicorn_worker.UvicornWorker wins over worker_class=")
    app = application(conf, ("-k", "uvicorn_worker.UvicornH11Worker"), env)
    assert app.cfg.worker_class_str == "uvicorn_worker.UvicornH11Worker"
    assert "worker_class='uvicorn_worker.UvicornH11Worker' from the command line wins" in app.notes[-1]


USER_HOOKS = """\
from test_application import HOOK_CALLS


def on_starting(server):
    HOOK_CALLS.append("theirs on_starting")


def worker_exit(server, worker):
    HOOK_CALLS.append("theirs worker_exit")
"""


def test_the_file_hooks_run_with_the_image_hooks(application, monkeypatch):
    monkeypatch.setattr(Hooks, "on_starting", lambda self, server: HOOK_CALLS.append("ours on_starting"))
    monkeypatch.setattr(Hooks, "worker_exit", lambda self, s, w: HOOK_CALLS.append("ours worker_exit"))
    app = application(USER_HOOKS)
    app.cfg.on_starting(None)
    app.cfg.worker_exit(None, None)
    # Theirs after the image's set-up, before its clean-up.
    assert HOOK_CALLS == ["ours on_starting", "theirs on_starting", "theirs worker_exit", "ours worker_exit"]
    assert any(n.startswith("on_starting, worker_exit from the config file ") for n in app.notes)


def test_without_hooks_in_the_file_the_image_hooks_are_set_as_they_are(application):
    app = application("workers = 2\n")
    for name in HOOKS:
        hook = app.cfg.settings[name].get()
        assert hook == getattr(app.hooks, name), f"{name} is not the image's own hook"


def test_a_logger_class_of_the_file_wins_and_says_what_is_off(application):
    app = application('logger_class = "gunicorn.glogging.Logger"\n')
    assert app.cfg.logger_class.__name__ == "Logger"
    assert any("LOG_FORMAT, LOGGING_CONF and the doctor's advice are off" in n for n in app.notes)


def test_the_startup_line_reports_the_final_values(application):
    app = application('bind = ["127.0.0.1:8001", "127.0.0.1:8002"]\nworkers = 3\n')
    final = app.final()
    assert (final["bind"], final["workers"]) == ("127.0.0.1:8001,127.0.0.1:8002", 3)
    line = json.loads(app.settings.startup_line(final))
    assert (line["workers"], line["workers_rule"]) == (3, "config")
