"""Command line used by the start scripts.

``python -m asgi_launcher check`` validates every setting and that the app module can be found, before
the pre-start script runs, so that a typo fails in a second instead of after the migrations. It prints
nothing on success, and one line naming the variable, the value and what is accepted on failure (exit
status 2). ``serve [--reload]`` runs one Uvicorn process (PROCESS_MANAGER=uvicorn, start-reload.sh);
``json-lines PID`` turns start.sh's output into JSON log lines.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Mapping

from asgi_launcher.cgroups import read_limits
from asgi_launcher.settings import DEFAULT_WORKER_CLASS, ConfigError, Settings, parse_bind

USAGE = "usage: python -m asgi_launcher check | serve [--reload] | json-lines PID"


def _module_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except Exception:  # a parent package that fails to import, or a malformed name
        return False


def check_app_module(app_module: str, app_root: str) -> None:
    module = app_module.split(":", 1)[0].strip()
    if not module:
        raise ConfigError(
            f"no app found: put it in {app_root}/app/main.py or {app_root}/main.py, "
            "or set MODULE_NAME (and VARIABLE_NAME) or APP_MODULE"
        )
    if not _module_exists(module):
        raise ConfigError(
            f"APP_MODULE={app_module!r} is not valid: module {module!r} cannot be imported "
            f"from {os.getcwd()} or PYTHONPATH (expected 'module:variable', e.g. 'app.main:app')"
        )


def check_worker_class(worker_class: str) -> None:
    # Gunicorn's own short names ("sync", "gthread") have no dot; dotted names must be importable.
    if worker_class == DEFAULT_WORKER_CLASS or "." not in worker_class:
        return
    module = worker_class.rsplit(".", 1)[0]
    if not _module_exists(module):
        raise ConfigError(
            f"WORKER_CLASS={worker_class!r} is not valid: module {module!r} is not installed "
            f"(expected a worker class such as {DEFAULT_WORKER_CLASS!r})"
        )


def check(env: Mapping[str, str]) -> Settings:
    settings = Settings.from_env(env, read_limits())
    if settings.process_manager == "uvicorn":
        parse_bind(settings.bind)
    check_worker_class(settings.worker_class)
    conf = env.get("GUNICORN_CONF", "")
    if conf and not os.path.isfile(conf):
        raise ConfigError(f"GUNICORN_CONF={conf!r} is not valid: expected the path of an existing file")
    check_app_module(env.get("APP_MODULE", ""), env.get("APP_ROOT", "/app"))
    return settings


def main(argv: list[str]) -> int:
    if argv[:1] == ["json-lines"] and len(argv) == 2 and argv[1].isdigit():
        from asgi_launcher.logs import json_lines

        json_lines("start.sh", int(argv[1]))
        return 0
    if argv not in (["check"], ["serve"], ["serve", "--reload"]):
        print(USAGE, file=sys.stderr)
        return 2
    try:
        if argv[0] == "check":
            check(os.environ)
        else:
            from asgi_launcher.single import serve

            serve(reload=argv[1:] == ["--reload"])
    except ConfigError as error:
        from asgi_launcher.logs import report  # logging is not imported on the (common) success path

        report("error", str(error))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
