"""Gunicorn settings, all taken from the environment (the README has the table).

Gunicorn loads this file in the master, before any worker exists. ``python gunicorn_conf.py``
prints the same startup JSON line, which is how tiangolo's tests read the configuration.
"""

import os
import sys

from asgi_launcher.cgroups import read_limits
from asgi_launcher.settings import ConfigError, Settings, heartbeat_dir

try:
    _settings = Settings.from_env(os.environ, read_limits())
except ConfigError as error:
    print(f"ERROR: {error}", file=sys.stderr, flush=True)
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
# The control socket (Gunicorn >= 25.1) is a runtime admin channel nobody in a container talks to,
# and it needs a writable $HOME, which a read-only root filesystem does not have.
control_socket_disable = True

if _settings.sizing.warning:
    print(f"WARNING: {_settings.sizing.warning}", file=sys.stderr, flush=True)
print(_settings.startup_line(), flush=True)
