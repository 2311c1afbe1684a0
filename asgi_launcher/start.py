"""/start.sh, in Python: ``python -m asgi_launcher start [--reload | --prestart-only | GUNICORN OPTIONS]``.

It parses every setting once (one line and exit status 2 on a bad one, before the pre-start script
runs its migrations), switches from root to the app user, finds the app module and the Gunicorn
config as tiangolo's start script did, runs the pre-start script, and execs the server, which keeps
this process's pid (the container's main process) and gets its signals. No code of the app runs here.

The pre-start script is sourced by a bash child under ``set -e``, as tiangolo's start script sourced
it, and its environment comes back: what it exports reaches the server. Meanwhile the container's
stop signals are passed on to it, and with LOG_FORMAT=json its output becomes JSON lines.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from asgi_launcher.settings import DEFAULT_WORKER_CLASS, ConfigError, Settings, current, parse_address

# Gunicorn and Uvicorn read these two themselves and fail on an empty value, which compose passes
# for a variable that is listed but unset (`WEB_CONCURRENCY: ""`): empty means unset here.
UNSET_WHEN_EMPTY = ("WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS")
MODES = ("--reload", "--prestart-only")
# Forwarded to the pre-start script while it runs: what `docker stop`, Ctrl-C and a reload send.
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
# The child sources the script, then hands its exported environment back on a pipe (NUL-separated).
# PRE_START_PATH is set for the script, not exported, as in tiangolo's start script.
SOURCE = (
    'PRE_START_PATH=$1 __asgi_fd=$2; shift 2; set -e; . "$PRE_START_PATH"; command -p env -0 >&"$__asgi_fd"'
)
# Set by bash itself, not by the script.
SHELL_OWN = ("_", "SHLVL", "PWD", "OLDPWD")


def find_app_module(settings: Settings, app_root: str) -> str:
    """tiangolo's detection: APP_MODULE, else MODULE_NAME:VARIABLE_NAME, else app.main or main."""
    app_module = settings.app_module
    if app_module is None:
        module = settings.module_name
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
        app_module = f"{module}:{settings.variable_name}"
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


def find_config(settings: Settings, app_root: str) -> str:
    """GUNICORN_CONF, else the first of /app/gunicorn_conf.py, /app/app/gunicorn_conf.py, the base one."""
    conf = settings.gunicorn_conf
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
    return settings.base_gunicorn_conf


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
            name = "BIND" if env.get("BIND", "").strip() else "HOST"
            value = env.get(name, "").strip()
            raise ConfigError(
                f"{name}={value!r} is not valid: expected an IP address or a host name that resolves "
                f"here ({host!r}: {getattr(error, 'strerror', None) or error})"
            ) from None


def server_command(settings: Settings, app_module: str, conf: str, args: Sequence[str]) -> list[str]:
    """The server to exec; ``args`` beyond the modes are Gunicorn options (``/start.sh --workers 3``)."""
    options = [arg for arg in args if arg not in MODES]
    if "--reload" in args or settings.process_manager == "uvicorn":
        if options:
            raise ConfigError(
                f"/start.sh {' '.join(options)!r} is not valid: expected no Gunicorn options with "
                + ("--reload" if "--reload" in args else "PROCESS_MANAGER=uvicorn")
                + " (one Uvicorn process)"
            )
        return [sys.executable, "-m", "asgi_launcher", "serve", *(["--reload"] if "--reload" in args else [])]
    # The worker class is the application's to decide (asgi_launcher.application), from WORKER_CLASS
    # and the config file; tiangolo's `-k` on the command line beat any config's worker_class.
    return [sys.executable, "-m", "asgi_launcher", "gunicorn", "-c", conf, *options, app_module]


class Plan(NamedTuple):
    exports: dict[str, str]  # APP_MODULE, GUNICORN_CONF
    unset: list[str]
    said: list[str]  # tiangolo's lines about the pre-start script
    prestart: str | None  # the script to source, if there is one to run
    command: list[str]  # empty: --prestart-only


def make_plan(settings: Settings, env: Mapping[str, str], args: Sequence[str], after_prestart=False) -> Plan:
    """Every check, and what the start runs. ``after_prestart``: the pre-start script changed the
    environment, and the plan is made again from what it left (it is not run again)."""
    app_root = settings.app_root
    app_module = find_app_module(settings, app_root)
    conf = find_config(settings, app_root)
    check_worker_class(settings.worker_class)
    check_logging_conf(settings.logging_conf)
    check_hosts(settings, env)
    command = [] if "--prestart-only" in args else server_command(settings, app_module, conf, args)

    said, run = [], None
    if not after_prestart:
        path = settings.pre_start_path
        if path is None:
            said.append("Pre-start step disabled (PRE_START_PATH is empty)")
        else:
            path = path or os.path.join(app_root, "prestart.sh")
            run = path if os.path.isfile(path) else None
            said += [
                f"Checking for script in {path}",
                f"Running script {path}" if run else f"There is no script {path}",
            ]
    return Plan(
        exports={"APP_MODULE": app_module, "GUNICORN_CONF": conf},
        unset=[name for name in UNSET_WHEN_EMPTY if name in env and not env[name].strip()],
        said=said,
        prestart=run,
        command=command,
    )


class PrestartFailed(Exception):
    def __init__(self, status: int):
        self.status = status


def run_prestart(path: str, env: dict[str, str], as_json: bool) -> dict[str, str]:
    """Source ``path`` in a bash child and return the environment it leaves (PrestartFailed: its status)."""
    from asgi_launcher.logs import json_lines

    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pipe = subprocess.PIPE if as_json else None
    child = subprocess.Popen(
        ["bash", "-c", SOURCE, "bash", path, str(write_end)],
        env=env,
        pass_fds=(write_end,),
        stdout=pipe,
        stderr=pipe,
        text=True,
        errors="replace",
    )
    os.close(write_end)
    previous = {sig: signal.signal(sig, lambda sig, _: child.send_signal(sig)) for sig in FORWARDED}
    wrappers = []
    if as_json:  # the script's lines as JSON entries, stdout and stderr apart, under the server's pid
        for stream, out in (("stdout", sys.stdout), ("stderr", sys.stderr)):
            lines = getattr(child, stream)
            args = ("prestart", os.getpid(), stream, lines, out)
            wrappers.append(threading.Thread(target=lambda a=args: json_lines(*a), daemon=True))
            wrappers[-1].start()
    dump = hand_back(read_end, child)
    for thread in wrappers:
        thread.join(timeout=2)  # a background process of the script may hold its output open
    for sig, handler in previous.items():
        signal.signal(sig, handler)
    status = child.returncode
    if status != 0 or not dump:  # failed, killed, or `exit` before its end: tiangolo's start stopped too
        raise PrestartFailed(128 - status if status < 0 else status)
    after = dict(
        item.split("=", 1) for item in dump.decode(errors="surrogateescape").split("\0") if "=" in item
    )
    directory = after.get("PWD")
    if directory and directory != os.getcwd() and os.path.isdir(directory):
        os.chdir(directory)  # a `cd` in a sourced script moved tiangolo's server too
    for name in SHELL_OWN:
        after.pop(name, None)
        if name in env:
            after[name] = env[name]
    return after


def hand_back(fd: int, child: subprocess.Popen) -> bytes:
    """What the child writes on ``fd`` until it exits (not until its own children close the pipe:
    a background process the script started inherits it)."""
    chunks = []
    os.set_blocking(fd, False)
    try:
        while True:
            if select.select([fd], [], [], 0.05)[0]:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    break  # every writer closed it
                chunks.append(chunk)
            elif child.poll() is not None:
                with contextlib.suppress(BlockingIOError):
                    while chunk := os.read(fd, 1 << 16):
                        chunks.append(chunk)
                break
        child.wait()
    finally:
        os.close(fd)
    return b"".join(chunks)


def start(args: Sequence[str]) -> int:
    """``/start.sh``: the process keeps its pid; the server it becomes is the container's main process."""
    from asgi_launcher.logs import json_entry, report

    env = dict(os.environ)
    settings = current(env)
    as_json = settings.log_format == "json"
    if os.geteuid() == 0:
        from asgi_launcher.user import switch

        switch(env, settings.app_user, as_json)
    plan = make_plan(settings, env, args)
    for line in plan.said:
        print(json_entry("start.sh", "info", line) if as_json else line, flush=True)
    if plan.prestart:
        try:
            after = run_prestart(plan.prestart, env, as_json)
        except PrestartFailed as failed:
            message = f"pre-start script {plan.prestart} exited with status {failed.status}"
            report("error", message + "; the server was not started", as_json=as_json)
            return failed.status
        if after != env:  # what it exported is checked too, and may change the command
            env = after
            settings = current(env)
            plan = make_plan(settings, env, args, after_prestart=True)
    env.update(plan.exports)
    for name in plan.unset:
        env.pop(name, None)
    if not plan.command:
        return 0
    os.execve(plan.command[0], plan.command, env)  # noqa: S606 - the server, chosen above
    return 1  # not reached
