"""Gunicorn settings of tiangolo/uvicorn-gunicorn-fastapi, for the benchmark's `tiangolo` and
`uvicorn-worker` servers.

Written for this harness (not tiangolo's file): the values his image used by default, and the same
work at import (the core count from multiprocessing, the settings printed as one JSON line), so that
a start through benchmarks/tiangolo_start.sh costs what his did. The worker count and the bind
address come from the environment that benchmarks/run.py passes; the worker class comes from the
command line (`-k`), as in his start script.
"""

import json
import multiprocessing
import os

cores = multiprocessing.cpu_count()
workers = int(os.environ.get("WEB_CONCURRENCY") or max(cores, 2))
bind = os.environ["BIND"]
loglevel = "info"
accesslog = "-"
errorlog = "-"
keepalive = 5
timeout = 120
graceful_timeout = 120
worker_tmp_dir = "/dev/shm"  # noqa: S108 - the heartbeat file on tmpfs, as in his image
# Gunicorn >= 25.1 would otherwise open a control socket, which his Gunicorn did not have.
control_socket_disable = True

print(
    json.dumps(
        {
            "loglevel": loglevel,
            "workers": workers,
            "bind": bind,
            "graceful_timeout": graceful_timeout,
            "timeout": timeout,
            "keepalive": keepalive,
            "errorlog": errorlog,
            "accesslog": accesslog,
            "workers_per_core": 1.0,
            "use_max_workers": None,
        }
    ),
    flush=True,
)
