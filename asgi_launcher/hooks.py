"""Gunicorn integration: server hooks that wire the metrics and the access log in, and the JSON logger."""

from __future__ import annotations

import gc
import logging
import os
import shutil
import sys

from gunicorn.config import AccessLogFormat
from gunicorn.glogging import Logger

from asgi_launcher.doctor import advise
from asgi_launcher.logs import JsonFormatter, apply_logging_conf, json_root_handler, report
from asgi_launcher.metrics import MasterMetrics, default_directory, reset_directory
from asgi_launcher.probe import write_address
from asgi_launcher.recycling import Lifecycle, MemoryGuard, OwnMemoryCheck
from asgi_launcher.settings import ConfigError, Settings


class Hooks:
    """Owned by the application (asgi_launcher.application), which lives as long as the master: a
    SIGHUP re-reads the config file, not this. Workers are forked with it."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.lifecycle = Lifecycle()  # its pipe, before any worker is forked
        self.guard: MemoryGuard | None = None
        self.metrics = None
        if settings.metrics:
            preset = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
            directory = preset or default_directory(os.getpid())
            # Set before any worker is forked: prometheus_client picks its multiprocess mode from it.
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
            self.metrics = MasterMetrics(directory, owns_directory=not preset)
        base = JsonLogger if settings.log_format == "json" else AdvisingLogger
        self.logger_class = type(base.__name__, (base,), {"settings": settings})

    # ---- in the master
    def on_starting(self, server) -> None:
        if self.metrics:
            reset_directory(self.metrics.directory)

    def when_ready(self, server) -> None:
        write_address(",".join(server.cfg.bind))  # for the healthcheck: the address that really runs
        if server.cfg.preload_app:  # the final value: a config file may set it
            # The preloaded app's objects go to a generation the collector never scans, so that
            # garbage collection in the workers does not write to (and so copy) the shared pages.
            gc.freeze()
        if self.settings.max_worker_memory and self.guard is None:
            self.guard = MemoryGuard(server, self.lifecycle, self.settings.max_worker_memory)
            self.guard.start()
        if self.metrics and self.metrics.server is None:
            from asgi_launcher.cgroups import Cgroup
            from asgi_launcher.resources import ResourceMetrics

            self.metrics.workers = lambda: len(server.WORKERS)
            self.metrics.recycles = self.lifecycle.recycles
            slots = lambda: [(getattr(w, "slot", 0), pid) for pid, w in list(server.WORKERS.items())]  # noqa: E731
            self.metrics.collectors.append(ResourceMetrics(slots, Cgroup()))
            host = self.settings.host
            try:
                self.metrics.serve(host, self.settings.metrics_port)
            except Exception as error:  # the app keeps serving; only the scrape endpoint is missing
                server.log.error(
                    "Metrics: cannot serve on %s:%s: %s", host, self.settings.metrics_port, error
                )
            else:
                server.log.info("Metrics at http://%s:%s/metrics", host, self.settings.metrics_port)

    def pre_fork(self, server, worker) -> None:
        self.lifecycle.assign_slot(server, worker)
        if self.metrics:
            self.metrics.worker_starts += 1

    def on_reload(self, server) -> None:
        self.lifecycle.on_reload(server)

    def child_exit(self, server, worker) -> None:
        self.lifecycle.exited(server, worker)
        if self.metrics:
            self.metrics.worker_exited(worker.pid)

    def on_exit(self, server) -> None:
        if self.metrics and self.metrics.owns_directory:
            shutil.rmtree(self.metrics.directory, ignore_errors=True)

    # ---- in each worker
    def post_fork(self, server, worker) -> None:
        self.lifecycle.in_worker()
        if self.metrics:
            self.metrics.close_in_child()

    def worker_exit(self, server, worker) -> None:
        self.lifecycle.worker_exiting()

    def post_worker_init(self, worker) -> None:
        from uvicorn.config import Config

        from asgi_launcher.observe import (  # the worker's, not the master's
            Observed,
            RequestMetrics,
            access_log_for,
            access_renderer,
        )

        config = getattr(worker, "config", None)
        if not isinstance(config, Config):
            return  # not a Uvicorn worker (a WSGI worker class, say): nothing to wrap
        if self.settings.root_path:
            config.root_path = self.settings.root_path  # read by each connection's protocol
        self._report_boot(config)
        # Only a worker whose boot the master hears of: the guard never replaces one it did not see boot,
        # and a worker that retired itself must be replaced.
        if self.settings.max_worker_memory and config.callback_notify is not None:
            from asgi_launcher import protocol

            limit = self.settings.max_worker_memory
            protocol.PROCESS.after_response = OwnMemoryCheck(self.lifecycle, limit, protocol.retire)
        fmt = worker.cfg.access_log_format  # ACCESS_LOG_FORMAT, a config file or the command line
        render = access_renderer(self.settings.log_format, None if fmt == AccessLogFormat.default else fmt)
        access_log = access_log_for(
            worker.log.access_log, render, bool(worker.cfg.accesslog), bool(self.settings.logging_conf)
        )
        # Ours replaces Uvicorn's: without handlers, Uvicorn skips its access logging entirely.
        uvicorn_access = logging.getLogger("uvicorn.access")
        uvicorn_access.handlers = []
        uvicorn_access.propagate = False
        metrics = RequestMetrics(worker=getattr(worker, "slot", 0)) if self.metrics else None
        if access_log or metrics:
            worker.wsgi = Observed(worker.wsgi, access_log, metrics, self.settings.access_log_probes)

    def _report_boot(self, config) -> None:
        """Tell the master once the worker serves (Uvicorn's first heartbeat comes after the app's
        startup), with its memory then: the memory guard leaves booting workers alone."""
        heartbeat = config.callback_notify
        if heartbeat is None:
            return

        lifecycle = self.lifecycle

        async def first_heartbeat():
            config.callback_notify = heartbeat  # once: later heartbeats go straight to Gunicorn's
            lifecycle.worker_booted()
            await heartbeat()

        config.callback_notify = first_heartbeat


class AdvisingLogger(Logger):
    """Gunicorn's logger, with a line of advice on the errors a move from tiangolo's image causes,
    and LOGGING_CONF applied last. ``Hooks`` makes the subclass that carries the settings."""

    settings: Settings
    _logging_configured = False

    def setup(self, cfg) -> None:
        super().setup(cfg)  # also on SIGHUP, which makes new handlers
        self.set_format()
        advise(self.error_log)
        self.apply_logging_conf()

    def set_format(self) -> None:
        pass  # text: Gunicorn's own

    def apply_logging_conf(self) -> None:
        value = self.settings.logging_conf
        if not value:
            return
        try:
            apply_logging_conf(value)
        except ConfigError as error:
            if not type(self)._logging_configured:  # at start: stop, as for any bad setting
                report("error", str(error), as_json=self.settings.log_format == "json")
                sys.exit(2)
            self.error_log.error("%s; keeping the logging configuration as it was", error)  # SIGHUP
            return
        type(self)._logging_configured = True
        advise(self.error_log)  # the file's own handlers get the advice too


class JsonLogger(AdvisingLogger):
    """Every handler formats JSON (Uvicorn's loggers share these handlers).

    The app's own ``logging`` calls come out as JSON too, unless the app configured a handler itself.
    """

    def set_format(self) -> None:
        formatter = JsonFormatter()
        for logger in (self.error_log, self.access_log):
            for handler in logger.handlers:
                handler.setFormatter(formatter)
        json_root_handler(formatter)
