"""Gunicorn config of the image, in the shape of tiangolo's: plain values, all from the environment.

Copy it to /app/gunicorn_conf.py (or /app/app/gunicorn_conf.py) and edit it: what you set wins over
the environment, and the image's features stay on whatever you write, because the launcher adds them
around any config file (asgi_launcher.application); hooks you define run with the image's own. The
start says in one line what your file changed of what the image manages.

``python gunicorn_conf.py`` prints the startup JSON line, which is how tiangolo's tests read it.
"""

import sys

from asgi_launcher.logs import report
from asgi_launcher.settings import ConfigError, current

try:
    _settings = current()  # under the launcher, the settings it already parsed: no second parse
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

if __name__ == "__main__":
    print(_settings.startup_line(), flush=True)
