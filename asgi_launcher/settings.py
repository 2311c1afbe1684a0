"""Every environment variable the image reads, in one registry, and the worker sizing.

Each ``Setting`` holds the variable's name, its parser, its default and its one-line description, in
the spirit of Gunicorn's setting classes: ``Settings.from_env`` parses through it, the startup line
reports from it, and the README's settings table is generated from it (``python -m asgi_launcher
settings-table``; a test fails when the two differ). A bad value raises ``ConfigError`` whose message
is the one line the operator sees: the variable, the value and what is accepted.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from asgi_launcher import compat
from asgi_launcher.cgroups import Limits, host_memory

DEFAULT_WORKER_CLASS = "asgi_launcher.workers.UvicornWorker"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
LOG_FORMATS = ("text", "json")
PROCESS_MANAGERS = ("gunicorn", "uvicorn")
_BOOLEANS = {
    **dict.fromkeys(("1", "true", "yes", "on"), True),
    **dict.fromkeys(("0", "false", "no", "off"), False),
}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:ib?|b)?$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
# Below this, WEB_CONCURRENCY workers cannot all exist: a Uvicorn worker with a small FastAPI app
# weighs about 45 MiB (benchmarks/results/breakdown); 30 MiB is a floor no real app goes under.
MIN_WORKER_MEMORY = 30 << 20
WORKERS_PER_CORE_WARNING = 8


class ConfigError(Exception):
    """A setting that cannot be used; ``str()`` is the one-line message for the operator."""


def _invalid(name: str, value: str, accepted: str) -> ConfigError:
    return ConfigError(f"{name}={value!r} is not valid: expected {accepted}")


# ---- parsers: (name, raw value) -> value; raw is stripped and never empty ----------------------------


def whole(minimum: int) -> Callable[[str, str], int]:
    def parse(name: str, value: str) -> int:
        accepted = f"a whole number >= {minimum}"
        try:
            number = int(value)
        except ValueError:
            raise _invalid(name, value, accepted) from None
        if number < minimum:
            raise _invalid(name, value, accepted)
        return number

    return parse


def port(name: str, value: str) -> int:
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise _invalid(name, value, "a TCP port number from 1 to 65535")
    return int(value)


def positive_float(name: str, value: str) -> float:
    accepted = "a number > 0, such as 1 or 0.5"
    try:
        number = float(value)
    except ValueError:
        raise _invalid(name, value, accepted) from None
    if not math.isfinite(number) or number <= 0:
        raise _invalid(name, value, accepted)
    return number


def size(name: str, value: str) -> int:
    """Bytes, with an optional binary suffix: 536870912, 512M, 1.5G (K, M, G, T; KiB/MB spellings too)."""
    match = _SIZE.match(value)
    number = int(float(match.group(1)) * _UNITS[match.group(2).lower()]) if match else 0
    if number < 1:
        raise _invalid(name, value, "a size in bytes > 0, optionally with K, M or G (e.g. 512M)")
    return number


def choice(*choices: str) -> Callable[[str, str], str]:
    def parse(name: str, value: str) -> str:
        if value.lower() not in choices:
            raise _invalid(name, value, "one of " + ", ".join(choices))
        return value.lower()

    return parse


def boolean(name: str, value: str) -> bool:
    if value.lower() not in _BOOLEANS:
        raise _invalid(name, value, "one of on, off, true, false, 1, 0, yes, no")
    return _BOOLEANS[value.lower()]


def addresses(name: str, value: str) -> str:
    """Comma-separated IP addresses or networks (CIDR), or ``*`` for any."""
    for item in (part.strip() for part in value.split(",")):
        if item == "*":
            continue
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise _invalid(
                name, value, "comma-separated IP addresses or networks (10.0.0.0/8), or *"
            ) from None
    return value


def access_log_format(name: str, value: str) -> str:
    """Gunicorn's access log format (atoms such as ``%(h)s``)."""
    try:
        value % _AnyAtom()
    except (ValueError, TypeError):
        raise _invalid(
            name, value, "a Gunicorn access log format such as '%(h)s \"%(r)s\" %(s)s %(M)s'"
        ) from None
    return value


class _AnyAtom(dict):
    def __missing__(self, key: str) -> str:
        return "-"


def text(name: str, value: str) -> str:
    return value


def worker_memory(name: str, value: str) -> int:
    """A size, at least what the smallest worker needs to boot (a lower bound would recycle in a loop)."""
    number = size(name, value)
    if number < MIN_WORKER_MEMORY:
        raise _invalid(
            name,
            value,
            f"a size of at least {_mib(MIN_WORKER_MEMORY)}M: below that no worker can even boot, "
            "so every worker would be recycled as soon as it started",
        )
    return number


def root_path(name: str, value: str) -> str:
    """The path prefix the app is mounted under behind a proxy: ``/api``; a trailing slash is dropped."""
    if not value.startswith("/") or any(c.isspace() or c in "?#" for c in value):
        raise _invalid(name, value, "a path starting with / such as /api (no spaces, ? or #)")
    return value.rstrip("/")


def logging_conf(name: str, value: str) -> str:
    """A dictConfig file (``.json``), a Python file (``.py``) or a module name, both with ``LOGGING_CONFIG``.

    A JSON file is read and checked here; Python is only looked for (start.py), never run before the
    server starts.
    """
    accepted = (
        "a .json file holding a logging.config.dictConfig dictionary, or a .py file or a module "
        "name defining LOGGING_CONFIG"
    )
    if value.endswith(".json"):
        try:
            with open(value, encoding="utf-8") as file:
                config = json.load(file)
        except OSError as error:
            raise _invalid(name, value, f"{accepted} ({error.strerror})") from None
        except ValueError as error:
            raise _invalid(name, value, f"{accepted} (not JSON: {error})") from None
        if not isinstance(config, dict) or config.get("version") != 1:
            raise _invalid(name, value, f'{accepted} (with "version": 1)')
    elif value.endswith(".py"):
        if not os.path.isfile(value):
            raise _invalid(name, value, f"{accepted} (no such file)")
    elif not all(part.isidentifier() for part in value.split(".")):
        raise _invalid(name, value, accepted)
    return value


def bind(name: str, value: str) -> str:
    """One or more comma-separated ``host:port``, ``[v6]:port`` or ``unix:path`` (Gunicorn's BIND)."""
    for address in value.split(","):
        parse_address(address.strip(), name)
    return value


def parse_address(address: str, name: str = "BIND") -> dict:
    """Uvicorn's host/port (or uds) for one Gunicorn-style address."""
    if address.startswith("unix:") and len(address) > len("unix:"):
        return {"uds": address[len("unix:") :]}
    host, _, port_text = address.rpartition(":")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(
            f"{name}={address!r} is not valid: expected HOST:PORT, [IPv6]:PORT or unix:PATH "
            "(several separated by commas)"
        )
    return {"host": host.strip("[]"), "port": int(port_text)}


# ---- the registry ------------------------------------------------------------------------------------


class Setting(NamedTuple):
    name: str
    parse: Callable[[str, str], Any] | None  # None: read by a script or by Gunicorn, not parsed here
    default: Any  # the parsed value when unset or empty
    shown: str  # the default as the README's table shows it
    doc: str
    origin: str = "tiangolo"  # "tiangolo": his image had it, same meaning; "changed"; "new"; "gunicorn"
    empty_disables: bool = False  # set but empty turns the feature off instead of meaning "unset"
    # The Gunicorn setting this variable feeds: the application (asgi_launcher.application) sets it
    # from ``Settings``'s attribute of that name, as the layer below the config file.
    gunicorn: str | None = None

    @property
    def key(self) -> str:
        return self.name.lower()

    def read(self, env: Mapping[str, str]) -> Any:
        raw = env.get(self.name)
        if raw is None:
            return self.default
        value = raw.strip()
        if not value:
            return None if self.empty_disables else self.default
        return self.parse(self.name, value) if self.parse else value


REGISTRY: tuple[Setting, ...] = (
    # -- the app
    Setting(
        "MODULE_NAME",
        text,
        None,
        "`app.main` or `main`, whichever exists",
        "Module holding the app (`/app/app/main.py` wins over `/app/main.py`).",
    ),
    Setting("VARIABLE_NAME", text, "app", "`app`", "The ASGI app's variable in that module."),
    Setting(
        "APP_MODULE",
        text,
        None,
        "`$MODULE_NAME:$VARIABLE_NAME`",
        "Overrides both. Checked before the pre-start script, without importing your code.",
    ),
    Setting(
        "GUNICORN_CONF",
        text,
        None,
        "first of `/app/gunicorn_conf.py`, `/app/app/gunicorn_conf.py`, `/gunicorn_conf.py`",
        "Gunicorn config file; must exist.",
    ),
    Setting(
        "PRE_START_PATH",
        text,
        "",  # unset: $APP_ROOT/prestart.sh; set but empty: None, no pre-start step
        "`/app/prestart.sh`",
        "Script sourced by bash before the server starts; set but empty: no pre-start step.",
        empty_disables=True,
    ),
    Setting(
        "APP_USER",
        text,
        "asgi",
        "`asgi` (UID/GID 10001)",
        "User the app runs as when the container starts as root; `root` keeps tiangolo's root run time. "
        "A `USER` in your Dockerfile (or `--user`) wins.",
        origin="new",
    ),
    # -- processes
    Setting(
        "PROCESS_MANAGER",
        choice(*PROCESS_MANAGERS),
        "gunicorn",
        "`gunicorn`",
        "`uvicorn`: one Uvicorn process, for clusters that replicate containers.",
        origin="new",
    ),
    Setting(
        "WORKER_CLASS",
        text,
        None,
        "`asgi_launcher.workers.UvicornWorker`",
        "Gunicorn worker class; wins over a `worker_class` in a custom config, which is honoured.",
        origin="changed",
        gunicorn="worker_class",
    ),
    Setting(
        "WEB_CONCURRENCY",
        whole(1),
        None,
        "unset",
        "Exact worker count; not capped by `MAX_WORKERS`.",
        gunicorn="workers",
    ),
    Setting(
        "WORKERS_PER_CORE",
        positive_float,
        1.0,
        "`1`",
        "Workers = `max(int(WORKERS_PER_CORE * cores), 2)`, on the cores the container may use.",
        gunicorn="workers",
    ),
    Setting(
        "MAX_WORKERS",
        whole(1),
        None,
        "unset",
        "Caps the computed count (`1` gives one worker).",
        gunicorn="workers",
    ),
    Setting(
        "MEMORY_PER_WORKER",
        size,
        None,
        "unset",
        "Bytes or `512M`: with a memory limit, at most `limit // MEMORY_PER_WORKER` workers.",
        origin="new",
        gunicorn="workers",
    ),
    Setting(
        "PRELOAD_APP",
        boolean,
        False,
        "`false`",
        "Import the app in the master before forking: shared memory, slower reload.",
        origin="new",
        gunicorn="preload_app",
    ),
    Setting(
        "MAX_REQUESTS",
        whole(0),
        0,
        "`0` (off)",
        "Recycle a worker after this many requests (Gunicorn mode only).",
        origin="new",
        gunicorn="max_requests",
    ),
    Setting(
        "MAX_REQUESTS_JITTER",
        whole(0),
        0,
        "`0`",
        "Plus a random 0 to this many, so that workers do not recycle together.",
        origin="new",
        gunicorn="max_requests_jitter",
    ),
    Setting(
        "MAX_WORKER_MEMORY",
        worker_memory,
        None,
        "unset",
        "Bytes or `300M`: a worker whose memory (PSS) passes it is replaced gracefully, one at a time "
        "(Gunicorn mode only).",
        origin="new",
    ),
    # -- network
    Setting("HOST", text, "0.0.0.0", "`0.0.0.0`", "Bind host (also of the metrics port).", gunicorn="bind"),
    Setting("PORT", port, 80, "`80`", "Bind port.", gunicorn="bind"),
    Setting(
        "BIND",
        bind,
        None,
        "`$HOST:$PORT`",
        "Overrides both; `unix:/path` and comma-separated lists work.",
        gunicorn="bind",
    ),
    Setting(
        "KEEP_ALIVE",
        whole(0),
        5,
        "`5`",
        "Seconds an idle keep-alive connection stays open.",
        gunicorn="keepalive",
    ),
    Setting(
        "FORWARDED_ALLOW_IPS",
        addresses,
        "127.0.0.1,::1",
        "`127.0.0.1,::1`",
        "Addresses or CIDR networks whose `X-Forwarded-*` headers are trusted, or `*`.",
        origin="gunicorn",
        gunicorn="forwarded_allow_ips",
    ),
    Setting(
        "ROOT_PATH",
        root_path,
        "",
        "unset",
        "Path prefix the app is served under behind a proxy that strips it (`/api`): links and the "
        "docs carry it.",
        origin="new",
    ),
    # -- time limits
    Setting(
        "TIMEOUT",
        whole(0),
        120,
        "`120`",
        "Seconds a worker may go without a heartbeat (blocked loop) before it is replaced (one process: "
        "exits 1 for the orchestrator); 0: never.",
        gunicorn="timeout",
    ),
    Setting(
        "GRACEFUL_TIMEOUT",
        whole(0),
        120,
        "`120`",
        "Seconds in-flight requests get after SIGTERM.",
        gunicorn="graceful_timeout",
    ),
    Setting(
        "HEADER_TIMEOUT",
        whole(0),
        10,
        "`10`",
        "Seconds a client may take to send a request head; past it the connection is closed (408).",
        origin="new",
    ),
    Setting(
        "BOOT_TIMEOUT",
        whole(0),
        600,
        "`600`",
        "Seconds a worker may take to import the app and run its startup; 0: no bound.",
        origin="new",
    ),
    # -- logs
    Setting(
        "LOG_LEVEL",
        choice(*LOG_LEVELS),
        "info",
        "`info`",
        "`critical`, `error`, `warning`, `info`, `debug`.",
        gunicorn="loglevel",
    ),
    Setting(
        "LOG_FORMAT",
        choice(*LOG_FORMATS),
        "text",
        "`text`",
        "`json`: every line, from start-up to shutdown, is one JSON object.",
        origin="new",
    ),
    Setting(
        "ACCESS_LOG",
        text,
        "-",
        "`-` (stdout)",
        "Access log file; empty disables it.",
        empty_disables=True,
        gunicorn="accesslog",
    ),
    Setting(
        "ACCESS_LOG_PROBES",
        boolean,
        False,
        "`false`",
        "Log the image's own healthcheck requests too (counted apart in the metrics either way).",
        origin="new",
    ),
    Setting(
        "ERROR_LOG",
        text,
        "-",
        "`-` (stderr)",
        "Error log file; empty disables it.",
        empty_disables=True,
        gunicorn="errorlog",
    ),
    Setting(
        "ACCESS_LOG_FORMAT",
        access_log_format,
        None,
        "Uvicorn's line",
        "Gunicorn's `access_log_format` atoms, honoured under Uvicorn.",
        origin="new",
        gunicorn="access_log_format",
    ),
    Setting(
        "LOGGING_CONF",
        logging_conf,
        None,
        "unset",
        "A `logging.config.dictConfig` file (`.json`, or `.py`/module with `LOGGING_CONFIG`), applied "
        "after `LOG_FORMAT`'s set-up.",
        origin="new",
    ),
    # -- metrics
    Setting(
        "METRICS",
        boolean,
        True,
        "`on`",
        "Prometheus metrics of all workers on `METRICS_PORT`; `off` closes the port.",
        origin="new",
    ),
    Setting("METRICS_PORT", port, 9100, "`9100`", "The metrics port, served by the master.", origin="new"),
    Setting(
        "PROMETHEUS_MULTIPROC_DIR",
        None,
        None,
        "a directory on `/dev/shm`",
        "Where workers write their samples; emptied at every start.",
        origin="new",
    ),
    # -- read by others
    Setting(
        "GUNICORN_CMD_ARGS",
        None,
        None,
        "unset",
        "Extra Gunicorn options; they beat the config file.",
        origin="gunicorn",
    ),
    Setting(
        "HEALTHCHECK_PATH",
        None,
        "/",
        "`/` (base), `/health` (app)",
        "Path the image's `HEALTHCHECK` requests (healthy below 500); empty disables it.",
        origin="new",
    ),
    Setting(
        "APP_ROOT",
        text,
        "/app",
        "`/app`",
        "Where the app, `prestart.sh` and `gunicorn_conf.py` are looked for.",
        origin="new",
    ),
    Setting(
        "BASE_GUNICORN_CONF",
        text,
        "/gunicorn_conf.py",
        "`/gunicorn_conf.py`",
        "The last config in the search order.",
        origin="new",
    ),
)
SETTINGS = {setting.name: setting for setting in REGISTRY}


def read(env: Mapping[str, str], name: str) -> Any:
    return SETTINGS[name].read(env)


# ---- sizing --------------------------------------------------------------------------------------------


class Sizing(NamedTuple):
    workers: int
    rule: str  # which rule decided the count, for the startup line
    warning: str | None = None


def decide_workers(
    limits: Limits,
    web_concurrency: int | None,
    workers_per_core: float,
    max_workers: int | None,
    memory_per_worker: int | None,
) -> Sizing:
    """tiangolo's formula on the container's cores, then the memory budget.

    ``WEB_CONCURRENCY`` is taken as given (only warned about when it exceeds the memory budget);
    otherwise ``max(int(WORKERS_PER_CORE * cores), 2)``, capped by ``MAX_WORKERS``, then by
    ``memory limit // MEMORY_PER_WORKER`` (at least 1).
    """
    budget = None
    if memory_per_worker and limits.memory:
        budget = max(limits.memory // memory_per_worker, 1)
    if web_concurrency is not None:
        warning = None
        if budget is not None and web_concurrency > budget:
            warning = (
                f"WEB_CONCURRENCY={web_concurrency} exceeds the memory budget of {budget} workers "
                f"({limits.memory} bytes limit / MEMORY_PER_WORKER={memory_per_worker})"
            )
        return Sizing(web_concurrency, "web_concurrency", warning)
    per_core = int(workers_per_core * limits.cores)
    workers, rule = (per_core, "workers_per_core") if per_core >= 2 else (2, "minimum")
    if max_workers is not None and max_workers < workers:
        workers, rule = max_workers, "max_workers"
    if budget is not None and budget < workers:
        workers, rule = budget, "memory_per_worker"
    return Sizing(workers, rule)


def check_count(sizing: Sizing, limits: Limits, memory: int | None) -> Sizing:
    """Refuse a worker count that cannot fit in memory; warn about one far above the cores.

    ``memory`` is what the container may use: its limit, else the host's memory.
    """
    count = sizing.workers
    if memory and count * MIN_WORKER_MEMORY > memory:
        raise ConfigError(
            f"WEB_CONCURRENCY='{count}' is not valid: expected at most {memory // MIN_WORKER_MEMORY} workers "
            f"({_mib(memory)} MiB of memory at {_mib(MIN_WORKER_MEMORY)} MiB per worker at least)"
        )
    if sizing.warning is None and count > WORKERS_PER_CORE_WARNING * limits.cores:
        memory_text = f"{_mib(memory)} MiB of memory" if memory else "no memory limit"
        return sizing._replace(
            warning=f"WEB_CONCURRENCY={count} is more than {WORKERS_PER_CORE_WARNING} workers per core "
            f"({limits.cores} cores, {memory_text}): each worker holds its own copy of the app"
        )
    return sizing


def _mib(size: int) -> int:
    return size >> 20


# ---- the parsed settings -----------------------------------------------------------------------------


class Settings:
    """The registry's values as attributes (``settings.web_concurrency``), plus what derives from them."""

    limits: Limits
    sizing: Sizing
    bind: str
    warnings: list[str]  # one line each, printed next to the startup line

    def __init__(self, values: dict[str, Any], limits: Limits, sizing: Sizing, bind_value: str):
        self.__dict__.update(values)
        self.limits = limits
        self.sizing = sizing
        self.bind = bind_value

    @property
    def workers(self) -> int:
        return self.sizing.workers

    @property
    def loglevel(self) -> str:
        return self.log_level

    @property
    def accesslog(self) -> str | None:
        return self.access_log

    @property
    def errorlog(self) -> str | None:
        return self.error_log

    @property
    def keepalive(self) -> int:
        return self.keep_alive

    def replace(self, **changes: Any) -> Settings:
        copy = Settings.__new__(Settings)
        copy.__dict__.update(self.__dict__, **changes)
        return copy

    @classmethod
    def from_env(cls, env: Mapping[str, str], limits: Limits, stack: compat.Stack | None = None) -> Settings:
        """Parse every registered setting; ``stack`` (the installed server packages) picks the defaults."""
        stack = stack or compat.detect()
        values = {setting.key: setting.read(env) for setting in REGISTRY if setting.parse}
        warnings = []
        values["worker_class_set"] = values["worker_class"] is not None  # WORKER_CLASS beats a config file
        if values["worker_class"] is None:
            values["worker_class"], warning = compat.default_worker(stack)
            warnings.append(warning)
        if values["metrics"]:
            warning = compat.metrics_unsupported(stack)
            values["metrics"] = warning is None
            warnings.append(warning)
        bind_value = values["bind"] or f"{values['host']}:{values['port']}"
        if values["process_manager"] == "uvicorn":  # one process per container: the orchestrator replicates
            if "," in bind_value:
                raise ConfigError(
                    f"BIND={bind_value!r} is not valid: expected one address with PROCESS_MANAGER=uvicorn"
                )
            if values["max_requests"]:
                raise ConfigError(
                    f"MAX_REQUESTS='{values['max_requests']}' is not valid: expected 0 with "
                    "PROCESS_MANAGER=uvicorn (no master would replace the process; recycle with "
                    "the orchestrator, or use PROCESS_MANAGER=gunicorn)"
                )
            if values["max_worker_memory"]:
                raise ConfigError(
                    f"MAX_WORKER_MEMORY={env['MAX_WORKER_MEMORY'].strip()!r} "
                    "is not valid: expected it unset with PROCESS_MANAGER=uvicorn (no master would "
                    "replace the process; set the orchestrator's memory limit, or use "
                    "PROCESS_MANAGER=gunicorn)"
                )
            concurrency = values["web_concurrency"]
            ignored = f"WEB_CONCURRENCY={concurrency} is ignored: PROCESS_MANAGER=uvicorn is one process"
            sizing = Sizing(1, "process_manager", ignored if concurrency else None)
        else:
            sizing = decide_workers(
                limits,
                values["web_concurrency"],
                values["workers_per_core"],
                values["max_workers"],
                values["memory_per_worker"],
            )
            if sizing.rule == "web_concurrency":
                sizing = check_count(sizing, limits, limits.memory or host_memory())
        if values["metrics"]:
            _check_metrics_port(values["metrics_port"], bind_value)
        warnings.append(_worker_memory_warning(values["max_worker_memory"], sizing.workers, limits.memory))
        values["warnings"] = [w for w in (sizing.warning, *warnings) if w]
        return cls(values, limits, sizing, bind_value)

    def gunicorn_values(self) -> dict[str, Any]:
        """The Gunicorn settings the registry feeds (``Setting.gunicorn``), from this object's attributes."""
        names = {setting.gunicorn for setting in REGISTRY if setting.gunicorn}
        values = {name: getattr(self, name) for name in sorted(names)}
        if values["access_log_format"] is None:  # unset: Gunicorn's default, which Uvicorn's line replaces
            del values["access_log_format"]
        return values

    def startup_line(self, final: Mapping[str, Any] | None = None) -> str:
        """tiangolo's JSON line (same keys, meanings and types) plus how the worker count was reached.

        ``final``: Gunicorn's values once the config file, GUNICORN_CMD_ARGS and the command line
        are applied (asgi_launcher.application), which the line reports instead of the registry's.
        """
        run = {**self.gunicorn_values(), **(final or {})}
        return json.dumps(
            {
                "loglevel": run["loglevel"],
                "workers": run["workers"],
                "bind": run["bind"],
                "worker_class": run["worker_class"],
                "graceful_timeout": run["graceful_timeout"],
                "timeout": run["timeout"],
                "keepalive": run["keepalive"],
                "errorlog": run["errorlog"],
                "accesslog": run["accesslog"],
                "workers_per_core": self.workers_per_core,
                "use_max_workers": self.max_workers,
                "host": self.host,
                "port": str(self.port),
                "workers_rule": self.sizing.rule if run["workers"] == self.workers else "config",
                "cpu_affinity": self.limits.affinity,
                "cpu_quota": self.limits.cpu_quota,
                "cores": self.limits.cores,
                "memory_limit": self.limits.memory,
                "memory_per_worker": self.memory_per_worker,
                "process_manager": self.process_manager,
                "max_requests": run["max_requests"],
                "preload_app": run["preload_app"],
                "log_format": self.log_format,
                "forwarded_allow_ips": run["forwarded_allow_ips"],
                "metrics_port": self.metrics_port if self.metrics else None,
                "max_worker_memory": self.max_worker_memory,
                "root_path": self.root_path,
            }
        )


_parsed: tuple[dict[str, str | None], Settings] | None = None


def current(env: Mapping[str, str] = os.environ) -> Settings:
    """This process's settings: parsed once, and again only when a registered variable changed.

    The start, the Gunicorn master and the single Uvicorn process each call it; workers inherit the
    master's ``Settings`` through the application (asgi_launcher.application) and never parse."""
    global _parsed
    snapshot = {setting.name: env.get(setting.name) for setting in REGISTRY if setting.parse}
    if _parsed is None or _parsed[0] != snapshot:
        from asgi_launcher.cgroups import read_limits

        _parsed = (snapshot, Settings.from_env(env, read_limits()))
    return _parsed[1]


def _worker_memory_warning(limit: int | None, workers: int, memory: int | None) -> str | None:
    """Workers that may each grow to MAX_WORKER_MEMORY but together pass the container's limit: the
    kernel's OOM killer comes first, and takes a worker mid-request."""
    if not limit or not memory or limit * workers < memory:
        return None
    return (
        f"MAX_WORKER_MEMORY={_mib(limit)}M times {workers} workers is {_mib(limit * workers)} MiB, not "
        f"below the container's memory limit ({_mib(memory)} MiB): the kernel may kill a worker before "
        f"it is recycled; lower it below {_mib(memory) // workers} MiB or run fewer workers"
    )


def _check_metrics_port(metrics_port: int, bind_value: str) -> None:
    for address in bind_value.split(","):
        parsed = parse_address(address.strip())
        if parsed.get("port") == metrics_port:
            raise ConfigError(
                f"METRICS_PORT={str(metrics_port)!r} is not valid: expected a port other than the app's "
                f"({address.strip()}), or METRICS=off"
            )


def settings_table() -> str:
    """The README's table of every setting, generated from the registry."""
    marks = {"new": " **new**", "changed": " **changed**", "gunicorn": "", "tiangolo": ""}
    rows = ["| variable | default | what it does |", "|---|---|---|"]
    for setting in REGISTRY:
        rows.append(f"| `{setting.name}` | {setting.shown} | {setting.doc}{marks[setting.origin]} |")
    return "\n".join(rows) + "\n"


def heartbeat_dir() -> str | None:
    """Gunicorn's worker heartbeat belongs on tmpfs: on overlayfs its fchmod can stall into timeouts."""
    shm = "/dev/shm"  # noqa: S108 - a per-container tmpfs, not a shared temporary directory
    return shm if os.path.isdir(shm) else None
