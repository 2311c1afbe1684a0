"""Gunicorn settings, all taken from the environment (the README has the table).

Gunicorn loads this file in the master, before any worker exists. ``python gunicorn_conf.py``
prints the same startup JSON line, which is how tiangolo's tests read the configuration.
"""

import os
import sys

from asgi_launcher.cgroups import read_limits
from asgi_launcher.hooks import Hooks
from asgi_launcher.logs import report
from asgi_launcher.settings import ConfigError, Settings, heartbeat_dir

try:
    _settings = Settings.from_env(os.environ, read_limits())
except ConfigError as error:
    report("error", str(error))
    sys.exit(2)  # SystemExit passes through Gunicorn's config loader: no traceback

bind = _settings.bind
workers = _settings.workers
worker_class = _settings.worker_class
loglevel = _settings.loglevel
accesslog = _settings.accesslog
errorlog = _settings.errorlog
timeout = _settings.timeout
graceful_timeout = _settings.graceful_timeout
keepalive = _settings.keepalive
worker_tmp_dir = heartbeat_dir()
max_requests = _settings.max_requests
max_requests_jitter = _settings.max_requests_jitter
preload_app = _settings.preload_app
forwarded_allow_ips = _settings.forwarded_allow_ips
if _settings.access_log_format:
    access_log_format = _settings.access_log_format
logger_class = "asgi_launcher.hooks." + ("JsonLogger" if _settings.log_format == "json" else "AdvisingLogger")
# The control socket (Gunicorn >= 25.1) is a runtime admin channel nobody in a container talks to,
# and it needs a writable $HOME, which a read-only root filesystem does not have.
control_socket_disable = True

# Metrics (master: one endpoint for all workers), the access log (each worker), recycling (both).
_hooks = Hooks(_settings)
on_starting = _hooks.on_starting
when_ready = _hooks.when_ready
pre_fork = _hooks.pre_fork
post_fork = _hooks.post_fork
post_worker_init = _hooks.post_worker_init
worker_exit = _hooks.worker_exit
child_exit = _hooks.child_exit
on_reload = _hooks.on_reload
on_exit = _hooks.on_exit

for _warning in _settings.warnings:
    report("warning", _warning)
print(_settings.startup_line(), flush=True)
