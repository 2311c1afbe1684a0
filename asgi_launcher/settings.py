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
        None,
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
    ),
    Setting("WEB_CONCURRENCY", whole(1), None, "unset", "Exact worker count; not capped by `MAX_WORKERS`."),
    Setting(
        "WORKERS_PER_CORE",
        positive_float,
        1.0,
        "`1`",
        "Workers = `max(int(WORKERS_PER_CORE * cores), 2)`, on the cores the container may use.",
    ),
    Setting("MAX_WORKERS", whole(1), None, "unset", "Caps the computed count (`1` gives one worker)."),
    Setting(
        "MEMORY_PER_WORKER",
        size,
        None,
        "unset",
        "Bytes or `512M`: with a memory limit, at most `limit // MEMORY_PER_WORKER` workers.",
        origin="new",
    ),
    Setting(
        "PRELOAD_APP",
        boolean,
        False,
        "`false`",
        "Import the app in the master before forking: shared memory, slower reload.",
        origin="new",
    ),
    Setting(
        "MAX_REQUESTS",
        whole(0),
        0,
        "`0` (off)",
        "Recycle a worker after this many requests (Gunicorn mode only).",
        origin="new",
    ),
    Setting(
        "MAX_REQUESTS_JITTER",
        whole(0),
        0,
        "`0`",
        "Plus a random 0 to this many, so that workers do not recycle together.",
        origin="new",
    ),
    # -- network
    Setting("HOST", text, "0.0.0.0", "`0.0.0.0`", "Bind host (also of the metrics port)."),
    Setting("PORT", port, 80, "`80`", "Bind port."),
    Setting(
        "BIND", bind, None, "`$HOST:$PORT`", "Overrides both; `unix:/path` and comma-separated lists work."
    ),
    Setting("KEEP_ALIVE", whole(0), 5, "`5`", "Seconds an idle keep-alive connection stays open."),
    Setting(
        "FORWARDED_ALLOW_IPS",
        addresses,
        "127.0.0.1,::1",
        "`127.0.0.1,::1`",
        "Addresses or CIDR networks whose `X-Forwarded-*` headers are trusted, or `*`.",
        origin="gunicorn",
    ),
    # -- time limits
    Setting(
        "TIMEOUT",
        whole(0),
        120,
        "`120`",
        "Seconds a worker may go without a heartbeat (blocked loop) before it is replaced (one process: "
        "exits 1 for the orchestrator); 0: never.",
    ),
    Setting("GRACEFUL_TIMEOUT", whole(0), 120, "`120`", "Seconds in-flight requests get after SIGTERM."),
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
        "LOG_LEVEL", choice(*LOG_LEVELS), "info", "`info`", "`critical`, `error`, `warning`, `info`, `debug`."
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
        "ACCESS_LOG", text, "-", "`-` (stdout)", "Access log file; empty disables it.", empty_disables=True
    ),
    Setting(
        "ERROR_LOG", text, "-", "`-` (stderr)", "Error log file; empty disables it.", empty_disables=True
    ),
    Setting(
        "ACCESS_LOG_FORMAT",
        access_log_format,
        None,
        "Uvicorn's line",
        "Gunicorn's `access_log_format` atoms, honoured under Uvicorn.",
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
        None,
        "/app",
        "`/app`",
        "Where the app, `prestart.sh` and `gunicorn_conf.py` are looked for.",
        origin="new",
    ),
    Setting(
        "BASE_GUNICORN_CONF",
        None,
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
        values["warnings"] = [w for w in (sizing.warning, *warnings) if w]
        return cls(values, limits, sizing, bind_value)

    def startup_line(self) -> str:
        """tiangolo's JSON line (same keys, meanings and types) plus how the worker count was reached."""
        return json.dumps(
            {
                "loglevel": self.loglevel,
                "workers": self.workers,
                "bind": self.bind,
                "worker_class": self.worker_class,
                "graceful_timeout": self.graceful_timeout,
                "timeout": self.timeout,
                "keepalive": self.keepalive,
                "errorlog": self.errorlog,
                "accesslog": self.accesslog,
                "workers_per_core": self.workers_per_core,
                "use_max_workers": self.max_workers,
                "host": self.host,
                "port": str(self.port),
                "workers_rule": self.sizing.rule,
                "cpu_affinity": self.limits.affinity,
                "cpu_quota": self.limits.cpu_quota,
                "cores": self.limits.cores,
                "memory_limit": self.limits.memory,
                "memory_per_worker": self.memory_per_worker,
                "process_manager": self.process_manager,
                "max_requests": self.max_requests,
                "preload_app": self.preload_app,
                "log_format": self.log_format,
                "forwarded_allow_ips": self.forwarded_allow_ips,
                "metrics_port": self.metrics_port if self.metrics else None,
            }
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
