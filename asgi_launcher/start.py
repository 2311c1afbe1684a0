"""Everything /start.sh decides, decided here: ``python -m asgi_launcher plan [--reload | --prestart-only]``.

It finds the app module and the Gunicorn config as tiangolo's start script did, checks every setting
(one line and exit status 2 on a bad one, before the pre-start script runs its migrations), and
prints shell assignments for start.sh to ``eval``: the exports, the pre-start script to source, the
log lines to print, and the command to ``exec``. No code of the app runs here.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from asgi_launcher.cgroups import read_limits
from asgi_launcher.settings import DEFAULT_WORKER_CLASS, ConfigError, Settings, parse_address, read

# Gunicorn and Uvicorn read these two themselves and fail on an empty value, which compose passes
# for a variable that is listed but unset (`WEB_CONCURRENCY: ""`): empty means unset here.
UNSET_WHEN_EMPTY = ("WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS")


def find_app_module(env: Mapping[str, str], app_root: str) -> str:
    """tiangolo's detection: APP_MODULE, else MODULE_NAME:VARIABLE_NAME, else app.main or main."""
    app_module = read(env, "APP_MODULE")
    if app_module is None:
        module = read(env, "MODULE_NAME")
        if module is None:
            if os.path.isfile(os.path.join(app_root, "app", "main.py")):
                module = "app.main"
            elif os.path.isfile(os.path.join(app_root, "main.py")):
                module = "main"
            else:
                raise ConfigError(
                    f"no app found: put it in {app_root}/app/main.py or {app_root}/main.py, "
                    "or set MODULE_NAME (and VARIABLE_NAME) or APP_MODULE"
                )
        app_module = f"{module}:{read(env, 'VARIABLE_NAME')}"
    module = app_module.split(":", 1)[0].strip()
    if not module_exists(module):
        raise ConfigError(
            f"APP_MODULE={app_module!r} is not valid: module {module!r} cannot be imported "
            f"from {os.getcwd()} or PYTHONPATH (expected 'module:variable', e.g. 'app.main:app')"
        )
    return app_module


def module_exists(module: str) -> bool:
    """Whether ``module`` can be found on sys.path, without running any of it (not even its parents)."""
    path = None
    spec = None
    parts = module.split(".")
    for depth in range(1, len(parts) + 1):
        if depth > 1:
            path = spec.submodule_search_locations
            if path is None:  # a plain module has no submodules
                return False
        spec = _find_spec(".".join(parts[:depth]), path)
        if spec is None:
            return False
    return True


def _find_spec(name: str, path):
    if not all(part.isidentifier() for part in name.split(".")):
        return None
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        if find is None:
            continue
        try:
            spec = find(name, path)
        except (ImportError, ValueError, OSError):
            continue
        if spec is not None:
            return spec
    return None


def find_config(env: Mapping[str, str], app_root: str) -> str:
    """GUNICORN_CONF, else the first of /app/gunicorn_conf.py, /app/app/gunicorn_conf.py, the base one."""
    conf = read(env, "GUNICORN_CONF")
    if conf is not None:
        if not os.path.isfile(conf):
            raise ConfigError(f"GUNICORN_CONF={conf!r} is not valid: expected the path of an existing file")
        return conf
    for candidate in (
        os.path.join(app_root, "gunicorn_conf.py"),
        os.path.join(app_root, "app", "gunicorn_conf.py"),
    ):
        if os.path.isfile(candidate):
            return candidate
    return read(env, "BASE_GUNICORN_CONF")


def config_sets_worker_class(path: str) -> bool:
    """Whether a config file assigns ``worker_class`` anywhere (annotated, indented, in an ``if``)."""
    import ast  # only for a config of the app's own: the start's imports are its time

    try:
        with open(path, "rb") as file:
            tree = ast.parse(file.read(), path)
    except (OSError, SyntaxError, ValueError):
        return False  # Gunicorn will report a broken config itself
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            targets = [node.target]
        for target in targets:
            names = target.elts if isinstance(target, ast.Tuple | ast.List) else [target]
            if any(isinstance(name, ast.Name) and name.id == "worker_class" for name in names):
                return True
    return False


def check_worker_class(worker_class: str) -> None:
    # Gunicorn's own short names ("sync", "gthread") have no dot; dotted names must be importable.
    if worker_class == DEFAULT_WORKER_CLASS or "." not in worker_class:
        return
    module = worker_class.rsplit(".", 1)[0]
    if not module_exists(module):
        raise ConfigError(
            f"WORKER_CLASS={worker_class!r} is not valid: module {module!r} is not installed "
            f"(expected a worker class such as {DEFAULT_WORKER_CLASS!r})"
        )


def check_logging_conf(value: str | None) -> None:
    """A LOGGING_CONF module must be importable (looked for, not run: it may import the app's code)."""
    if value and not value.endswith((".json", ".py")) and not module_exists(value):
        raise ConfigError(
            f"LOGGING_CONF={value!r} is not valid: module {value!r} cannot be imported from "
            f"{os.getcwd()} or PYTHONPATH (expected a .json file, a .py file, or a module defining "
            "LOGGING_CONFIG)"
        )


def check_hosts(settings: Settings, env: Mapping[str, str]) -> None:
    """Names that do not resolve fail here, not after the pre-start script and five retries in Gunicorn."""
    import ipaddress
    import socket

    for address in settings.bind.split(","):
        host = parse_address(address.strip()).get("host")
        if host is None:
            continue
        try:
            ipaddress.ip_address(host)
            continue  # an address: nothing to look up
        except ValueError:
            pass
        try:
            socket.getaddrinfo(host, None)
        except (OSError, UnicodeError) as error:
            name = "BIND" if read(env, "BIND") else "HOST"
            value = read(env, name)
            raise ConfigError(
                f"{name}={value!r} is not valid: expected an IP address or a host name that resolves "
                f"here ({host!r}: {getattr(error, 'strerror', None) or error})"
            ) from None


def server_command(
    settings: Settings, env: Mapping[str, str], app_module: str, conf: str, reload: bool
) -> list[str]:
    if reload:
        return [sys.executable, "-m", "asgi_launcher", "serve", "--reload"]
    if settings.process_manager == "uvicorn":
        return [sys.executable, "-m", "asgi_launcher", "serve"]
    # tiangolo passed -k unconditionally, which silently overrode a worker_class set in a custom
    # config. Here WORKER_CLASS wins, a config that sets worker_class is honoured, and any other
    # config gets the default worker rather than Gunicorn's WSGI default.
    worker = []
    if read(env, "WORKER_CLASS") or not config_sets_worker_class(conf):
        worker = ["-k", settings.worker_class]
    return [sys.executable, "-m", "asgi_launcher", "gunicorn", *worker, "-c", conf, app_module]


class Plan(NamedTuple):
    exports: dict[str, str]  # APP_MODULE, GUNICORN_CONF
    unset: list[str]
    json_logs: bool
    said: list[str]  # tiangolo's lines about the pre-start script, formatted for the log
    prestart: str | None  # PRE_START_PATH, None after the pre-start script ran
    run_prestart: bool
    command: list[str]  # empty: --prestart-only


def make_plan(env: Mapping[str, str], args: Sequence[str], pid: int) -> Plan:
    """Every check, and what start.sh runs. ``--after-prestart``: the pre-start script exported something."""
    app_root = read(env, "APP_ROOT")
    settings = Settings.from_env(env, read_limits())
    app_module = find_app_module(env, app_root)
    conf = find_config(env, app_root)
    check_worker_class(settings.worker_class)
    check_logging_conf(settings.logging_conf)
    check_hosts(settings, env)
    json_logs = settings.log_format == "json"

    said, path, run = [], None, False
    if "--after-prestart" not in args:
        path = env.get("PRE_START_PATH", os.path.join(app_root, "prestart.sh"))
        if not path.strip():
            said.append("Pre-start step disabled (PRE_START_PATH is empty)")
        else:
            run = os.path.isfile(path)
            said += [
                f"Checking for script in {path}",
                f"Running script {path}" if run else f"There is no script {path}",
            ]
        if json_logs:
            from asgi_launcher.logs import json_entry

            said = [json_entry("start.sh", "info", line, pid=pid) for line in said]
    command = (
        []
        if "--prestart-only" in args
        else server_command(settings, env, app_module, conf, "--reload" in args)
    )
    return Plan(
        exports={"APP_MODULE": app_module, "GUNICORN_CONF": conf},
        unset=[name for name in UNSET_WHEN_EMPTY if name in env and not env[name].strip()],
        json_logs=json_logs,
        said=said,
        prestart=path,
        run_prestart=run,
        command=command,
    )


def shell(plan: Plan) -> str:
    """The plan as shell code for start.sh to ``eval`` (its log lines are printed by Python)."""
    lines = ["export " + " ".join(f"{name}={shlex.quote(value)}" for name, value in plan.exports.items())]
    lines += [f"unset {name}" for name in plan.unset]
    lines.append(f"json_logs={'1' if plan.json_logs else ''}")
    if plan.prestart is not None:  # PRE_START_PATH stays set for the script, which tiangolo's template prints
        lines.append(
            f"PRE_START_PATH={shlex.quote(plan.prestart)} run_prestart={'1' if plan.run_prestart else ''}"
        )
    lines.append("server=(" + " ".join(shlex.quote(part) for part in plan.command) + ")")
    return "\n".join(lines) + "\n"


def start(start_sh: str, args: Sequence[str]) -> int:
    """``/start.sh`` as Python: switch from root, check everything, then exec the server, or go back
    to start.sh with the plan when there is a pre-start script to source (its exports must reach the
    server). The process keeps its pid: the server it becomes is the container's main process."""
    env = dict(os.environ)
    if os.geteuid() == 0:
        from asgi_launcher.user import switch

        switch(env)
    plan = make_plan(env, args, os.getpid())
    for line in plan.said:
        print(line, flush=True)
    if plan.run_prestart:
        env["ASGI_LAUNCHER_PLAN"] = shell(plan)
        os.execve(start_sh, [start_sh, *args], env)  # noqa: S606 - start.sh again, to source the script
    env.update(plan.exports)
    for name in plan.unset:
        env.pop(name, None)
    if not plan.command:
        return 0
    os.execve(plan.command[0], plan.command, env)  # noqa: S606 - the server, chosen above
    return 1  # not reached


def plan(env: Mapping[str, str], args: Sequence[str], pid: int) -> str:
    """``plan PID --after-prestart``: what start.sh evaluates again when the pre-start script exported."""
    return shell(make_plan(env, args, pid))
