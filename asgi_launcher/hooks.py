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
from asgi_launcher.logs import JsonFormatter
from asgi_launcher.metrics import MasterMetrics, default_directory, reset_directory
from asgi_launcher.settings import Settings

# Gunicorn re-executes its config file on SIGHUP; the master's metrics must survive that.
_master_metrics: MasterMetrics | None = None


class Hooks:
    def __init__(self, settings: Settings):
        global _master_metrics
        self.settings = settings
        self.metrics = None
        if settings.metrics:
            if _master_metrics is None:
                preset = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
                directory = preset or default_directory(os.getpid())
                # Set before any worker is forked: prometheus_client picks its multiprocess mode from it.
                os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
                _master_metrics = MasterMetrics(directory, owns_directory=not preset)
            self.metrics = _master_metrics

    # ---- in the master
    def on_starting(self, server) -> None:
        if self.metrics:
            reset_directory(self.metrics.directory)

    def when_ready(self, server) -> None:
        if self.settings.preload_app:
            # The preloaded app's objects go to a generation the collector never scans, so that
            # garbage collection in the workers does not write to (and so copy) the shared pages.
            gc.freeze()
        if self.metrics and self.metrics.server is None:
            self.metrics.workers = lambda: len(server.WORKERS)
            host = self.settings.host
            try:
                self.metrics.serve(host, self.settings.metrics_port)
            except OSError as error:  # the app keeps serving; only the scrape endpoint is missing
                server.log.error(
                    "Metrics: cannot listen on %s:%s: %s", host, self.settings.metrics_port, error
                )
            else:
                server.log.info("Metrics at http://%s:%s/metrics", host, self.settings.metrics_port)

    def pre_fork(self, server, worker) -> None:
        if self.metrics:
            self.metrics.worker_starts += 1

    def child_exit(self, server, worker) -> None:
        if self.metrics:
            self.metrics.worker_exited(worker.pid)

    def on_exit(self, server) -> None:
        if self.metrics and self.metrics.owns_directory:
            shutil.rmtree(self.metrics.directory, ignore_errors=True)

    # ---- in each worker
    def post_fork(self, server, worker) -> None:
        worker.boot_timeout = self.settings.boot_timeout  # bounds the app's import and startup (our worker)
        if self.metrics:
            self.metrics.close_in_child()

    def post_worker_init(self, worker) -> None:
        from uvicorn.config import Config

        from asgi_launcher.observe import (
            AccessLog,
            Observed,
            RequestMetrics,
        )  # the worker's, not the master's

        if not isinstance(getattr(worker, "config", None), Config):
            return  # not a Uvicorn worker (a WSGI worker class, say): nothing to wrap
        access_log = None
        if worker.cfg.accesslog:
            access_log = AccessLog(worker.log.access_log, self._access_line(worker.cfg.access_log_format))
        # Ours replaces Uvicorn's: without handlers, Uvicorn skips its access logging entirely.
        uvicorn_access = logging.getLogger("uvicorn.access")
        uvicorn_access.handlers = []
        uvicorn_access.propagate = False
        metrics = RequestMetrics() if self.metrics else None
        if access_log or metrics:
            worker.wsgi = Observed(worker.wsgi, access_log, metrics)

    def _access_line(self, fmt: str):
        from asgi_launcher.observe import atoms_line, json_line, uvicorn_line

        if self.settings.log_format == "json":
            return json_line
        if fmt != AccessLogFormat.default:  # set by ACCESS_LOG_FORMAT, a config file or the command line
            return atoms_line(fmt)
        return uvicorn_line


class AdvisingLogger(Logger):
    """Gunicorn's logger, with a line of advice on the errors a move from tiangolo's image causes."""

    def setup(self, cfg) -> None:
        super().setup(cfg)  # also on SIGHUP, which makes new handlers
        advise(self.error_log)


class JsonLogger(AdvisingLogger):
    """Every handler formats JSON (Uvicorn's loggers share these handlers).

    The app's own ``logging`` calls come out as JSON too, unless the app configured a handler itself.
    """

    def setup(self, cfg) -> None:
        super().setup(cfg)
        formatter = JsonFormatter()
        for logger in (self.error_log, self.access_log):
            for handler in logger.handlers:
                handler.setFormatter(formatter)
        root = logging.getLogger()
        if not root.handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(formatter)
            root.addHandler(handler)
