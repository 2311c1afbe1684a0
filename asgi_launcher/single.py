"""One Uvicorn process: PROCESS_MANAGER=uvicorn (clusters replicate containers instead) and --reload.

Same settings, validation, startup line, access log, log formats, proxy settings and metrics as the
Gunicorn mode; `python -m asgi_launcher serve [--reload]`, exec'd by start.sh.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

from asgi_launcher import compat, watchdog
from asgi_launcher.doctor import advise
from asgi_launcher.logs import JsonFormatter, apply_logging_conf, json_root_handler, report
from asgi_launcher.metrics import with_request_totals
from asgi_launcher.observe import Observed, RequestMetrics, access_log_for, access_renderer
from asgi_launcher.probe import write_address
from asgi_launcher.protocol import LimitedHttpToolsProtocol, count_head_timeouts, has_httptools
from asgi_launcher.settings import Settings, Sizing, current, parse_address

ACCESS_LOGGER = "asgi_launcher.access"
APP_LOAD_ERROR = 4
# Gunicorn's error-log line, so that both modes read alike.
TEXT_FORMAT = logging.Formatter(
    "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s", "%Y-%m-%d %H:%M:%S %z"
)


def _handler(target: str | None, stream) -> logging.Handler | None:
    if target is None:
        return None
    return logging.StreamHandler(stream) if target == "-" else logging.FileHandler(target)


def configure_logging(settings: Settings) -> None:
    formatter = JsonFormatter() if settings.log_format == "json" else TEXT_FORMAT
    for name, target, stream in (
        ("uvicorn.error", settings.errorlog, sys.stderr),
        (ACCESS_LOGGER, settings.accesslog, sys.stdout),
    ):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = False
        logger.setLevel(settings.loglevel.upper() if name == "uvicorn.error" else logging.INFO)
        handler = _handler(target, stream)
        if handler:
            handler.setFormatter(formatter)
            logger.addHandler(handler)
    advise(logging.getLogger("uvicorn.error"))
    if settings.log_format == "json":
        json_root_handler(formatter)
    if settings.logging_conf:
        apply_logging_conf(settings.logging_conf)  # ConfigError: one line, exit status 2
        advise(logging.getLogger("uvicorn.error"))


class _WithRequestTotals:
    def __init__(self, registry):
        self.registry = registry

    def collect(self):
        return with_request_totals(self.registry.collect())


def build_app():
    """Uvicorn's app factory, run in the serving process (also in each reload of --reload)."""
    from uvicorn.importer import import_from_string

    settings = current()  # parsed by serve() in this process; once in each reloaded process
    configure_logging(settings)
    try:
        app = import_from_string(os.environ["APP_MODULE"])
    except Exception:
        # One logged entry (JSON with LOG_FORMAT=json, with the doctor's advice), not a raw traceback
        # out of the event loop; 4 is Gunicorn's status for an app that does not load.
        logging.getLogger("uvicorn.error").exception("The app %s failed to load", os.environ["APP_MODULE"])
        sys.exit(APP_LOAD_ERROR)
    render = access_renderer(settings.log_format, settings.access_log_format)
    access_log = access_log_for(
        logging.getLogger(ACCESS_LOGGER), render, bool(settings.accesslog), bool(settings.logging_conf)
    )
    metrics = None
    if settings.metrics and os.environ.get("ASGI_LAUNCHER_RELOAD") != "1":
        from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

        from asgi_launcher.cgroups import Cgroup
        from asgi_launcher.resources import ResourceMetrics

        metrics = RequestMetrics(registry=REGISTRY)
        count_head_timeouts(REGISTRY)  # asgi_launcher.protocol: connections closed by HEADER_TIMEOUT
        exported = CollectorRegistry()
        exported.register(_WithRequestTotals(REGISTRY))  # the app's own metrics are in REGISTRY too
        pid = os.getpid()
        exported.register(ResourceMetrics(lambda: [(0, pid)], Cgroup()))  # the one process is worker 0
        start_http_server(settings.metrics_port, addr=settings.host, registry=exported)
    if access_log or metrics:
        app = Observed(app, access_log, metrics, settings.access_log_probes)
    if os.environ.get("ASGI_LAUNCHER_RELOAD") == "1":  # a development server: no TIMEOUT
        return app
    return watchdog.watch(app, settings.timeout)  # TIMEOUT without a Gunicorn master


def serve(reload: bool) -> None:
    output = None
    if current().log_format == "json":
        from asgi_launcher.output import JsonOutput

        output = JsonOutput()
    try:
        _serve(reload)
    finally:
        if output:
            output.close()


def _serve(reload: bool) -> None:
    import uvicorn

    settings = current()
    address = parse_address(settings.bind)
    if reload:
        settings = settings.replace(process_manager="uvicorn", sizing=Sizing(1, "reload"))
    for warning in settings.warnings:
        report("warning", warning, as_json=settings.log_format == "json")
    print(settings.startup_line(), flush=True)
    write_address(settings.bind)  # for the healthcheck
    configure_logging(settings)
    if reload:
        os.environ["ASGI_LAUNCHER_RELOAD"] = "1"  # the reloaded processes come and go: no metrics port
    # Uvicorn re-raises the stop signal once it has shut down gracefully; end with status 0 then, as
    # Gunicorn does, rather than die by the signal (exit 143 in `docker ps`).
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, lambda *_: sys.exit(0))
    uvicorn.run(
        "asgi_launcher.single:build_app",
        factory=True,
        **address,
        reload=reload,
        workers=1,  # Uvicorn would take WEB_CONCURRENCY: one process is this mode's point
        reload_dirs=[settings.app_root] if reload else None,
        log_config=None,
        log_level=settings.loglevel,
        access_log=False,  # ours, in build_app
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        timeout_keep_alive=settings.keepalive,
        timeout_graceful_shutdown=settings.graceful_timeout or None,
        limit_max_requests=settings.max_requests or None,
        root_path=settings.root_path,
        # Gunicorn's default limits; a module-level class, which --reload can pickle for its process.
        **({"http": LimitedHttpToolsProtocol} if has_httptools() and compat.ours_supported() else {}),
    )
