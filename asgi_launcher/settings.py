"""The environment interface of the image: parsing, validation and worker sizing.

``Settings.from_env`` is the one place that reads the environment. A bad value raises ``ConfigError``
whose message is the single line the operator sees: the variable, the value and what is accepted.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import re
from collections.abc import Mapping
from typing import NamedTuple

from asgi_launcher.cgroups import Limits

DEFAULT_WORKER_CLASS = "asgi_launcher.workers.UvicornWorker"
# On by default: measured below 3 % of throughput on the seed app (README, "Metrics").
METRICS_DEFAULT = True
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
LOG_FORMATS = ("text", "json")
PROCESS_MANAGERS = ("gunicorn", "uvicorn")
_BOOLEANS = {
    "1": True,
    "true": True,
    "yes": True,
    "on": True,
    "0": False,
    "false": False,
    "no": False,
    "off": False,
}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:ib?|b)?$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


class ConfigError(Exception):
    """A setting that cannot be used; ``str()`` is the one-line message for the operator."""


def _get(env: Mapping[str, str], name: str) -> str | None:
    """The value of ``name``, or None when unset or empty (tiangolo treats both as unset)."""
    value = env.get(name, "").strip()
    return value or None


def _invalid(name: str, value: str, accepted: str) -> ConfigError:
    return ConfigError(f"{name}={value!r} is not valid: expected {accepted}")


def parse_int(env: Mapping[str, str], name: str, default: int | None, minimum: int = 0) -> int | None:
    value = _get(env, name)
    if value is None:
        return default
    accepted = f"a whole number >= {minimum}"
    try:
        number = int(value)
    except ValueError:
        raise _invalid(name, value, accepted) from None
    if number < minimum:
        raise _invalid(name, value, accepted)
    return number


def parse_port(env: Mapping[str, str], name: str, default: int) -> int:
    value = _get(env, name)
    if value is None:
        return default
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise _invalid(name, value, "a TCP port number from 1 to 65535")
    return int(value)


def parse_positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    value = _get(env, name)
    if value is None:
        return default
    accepted = "a number > 0, such as 1 or 0.5"
    try:
        number = float(value)
    except ValueError:
        raise _invalid(name, value, accepted) from None
    if not math.isfinite(number) or number <= 0:
        raise _invalid(name, value, accepted)
    return number


def parse_size(env: Mapping[str, str], name: str) -> int | None:
    """Bytes, with an optional binary suffix: 536870912, 512M, 1.5G (K, M, G, T; KiB/MB spellings too)."""
    value = _get(env, name)
    if value is None:
        return None
    match = _SIZE.match(value)
    size = int(float(match.group(1)) * _UNITS[match.group(2).lower()]) if match else 0
    if size < 1:
        raise _invalid(name, value, "a size in bytes > 0, optionally with K, M or G (e.g. 512M)")
    return size


def parse_choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = _get(env, name)
    if value is None:
        return default
    if value.lower() not in choices:
        raise _invalid(name, value, "one of " + ", ".join(choices))
    return value.lower()


def parse_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = _get(env, name)
    if value is None:
        return default
    if value.lower() not in _BOOLEANS:
        raise _invalid(name, value, "one of on, off, true, false, 1, 0, yes, no")
    return _BOOLEANS[value.lower()]


def parse_addresses(env: Mapping[str, str], name: str, default: str) -> str:
    """Comma-separated IP addresses or networks (CIDR), or ``*`` for any."""
    value = _get(env, name) or default
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


def parse_access_log_format(env: Mapping[str, str], name: str) -> str | None:
    """Gunicorn's access log format (atoms such as ``%(h)s``); None keeps Uvicorn's familiar line."""
    value = _get(env, name)
    if value is None:
        return None
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


def parse_bind(bind: str) -> dict:
    """Uvicorn's host/port (or uds) for a Gunicorn-style BIND: ``host:port``, ``[v6]:port``, ``unix:path``."""
    if "," in bind:
        raise ConfigError(f"BIND={bind!r} is not valid: expected one address with PROCESS_MANAGER=uvicorn")
    if bind.startswith("unix:"):
        return {"uds": bind[len("unix:") :]}
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"BIND={bind!r} is not valid: expected HOST:PORT, [IPv6]:PORT or unix:PATH")
    return {"host": host.strip("[]"), "port": int(port)}


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


class Settings(NamedTuple):
    host: str
    port: int
    bind: str
    loglevel: str
    worker_class: str
    timeout: int
    graceful_timeout: int
    keepalive: int
    accesslog: str | None
    errorlog: str | None
    workers_per_core: float
    max_workers: int | None
    memory_per_worker: int | None
    process_manager: str
    max_requests: int
    max_requests_jitter: int
    preload_app: bool
    boot_timeout: int
    log_format: str
    access_log_format: str | None
    forwarded_allow_ips: str
    metrics: bool
    metrics_port: int
    limits: Limits
    sizing: Sizing

    @property
    def workers(self) -> int:
        return self.sizing.workers

    @classmethod
    def from_env(cls, env: Mapping[str, str], limits: Limits) -> Settings:
        host = _get(env, "HOST") or "0.0.0.0"
        port = parse_port(env, "PORT", 80)
        web_concurrency = parse_int(env, "WEB_CONCURRENCY", None, minimum=1)
        workers_per_core = parse_positive_float(env, "WORKERS_PER_CORE", 1.0)
        max_workers = parse_int(env, "MAX_WORKERS", None, minimum=1)
        memory_per_worker = parse_size(env, "MEMORY_PER_WORKER")
        # ACCESS_LOG/ERROR_LOG: unset means "-" (stdout/stderr); set but empty disables the log.
        accesslog = env.get("ACCESS_LOG", "-").strip() or None
        errorlog = env.get("ERROR_LOG", "-").strip() or None
        process_manager = parse_choice(env, "PROCESS_MANAGER", "gunicorn", PROCESS_MANAGERS)
        if process_manager == "uvicorn":  # one process per container: the orchestrator replicates
            ignored = f"WEB_CONCURRENCY={web_concurrency} is ignored: PROCESS_MANAGER=uvicorn is one process"
            sizing = Sizing(1, "process_manager", ignored if web_concurrency else None)
        else:
            sizing = decide_workers(limits, web_concurrency, workers_per_core, max_workers, memory_per_worker)
        return cls(
            host=host,
            port=port,
            bind=_get(env, "BIND") or f"{host}:{port}",
            loglevel=parse_choice(env, "LOG_LEVEL", "info", LOG_LEVELS),
            worker_class=_get(env, "WORKER_CLASS") or DEFAULT_WORKER_CLASS,
            timeout=parse_int(env, "TIMEOUT", 120),
            graceful_timeout=parse_int(env, "GRACEFUL_TIMEOUT", 120),
            keepalive=parse_int(env, "KEEP_ALIVE", 5),
            accesslog=accesslog,
            errorlog=errorlog,
            workers_per_core=workers_per_core,
            max_workers=max_workers,
            memory_per_worker=memory_per_worker,
            process_manager=process_manager,
            max_requests=parse_int(env, "MAX_REQUESTS", 0),
            max_requests_jitter=parse_int(env, "MAX_REQUESTS_JITTER", 0),
            preload_app=parse_bool(env, "PRELOAD_APP", False),
            boot_timeout=parse_int(env, "BOOT_TIMEOUT", 600),
            log_format=parse_choice(env, "LOG_FORMAT", "text", LOG_FORMATS),
            access_log_format=parse_access_log_format(env, "ACCESS_LOG_FORMAT"),
            # Gunicorn's own default, which it also reads from this variable.
            forwarded_allow_ips=parse_addresses(env, "FORWARDED_ALLOW_IPS", "127.0.0.1,::1"),
            metrics=parse_bool(env, "METRICS", METRICS_DEFAULT),
            metrics_port=parse_port(env, "METRICS_PORT", 9100),
            limits=limits,
            sizing=sizing,
        )

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


def heartbeat_dir() -> str | None:
    """Gunicorn's worker heartbeat belongs on tmpfs: on overlayfs its fchmod can stall into timeouts."""
    shm = "/dev/shm"  # noqa: S108 - a per-container tmpfs, not a shared temporary directory
    return shm if os.path.isdir(shm) else None
