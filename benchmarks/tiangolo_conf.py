"""Gunicorn settings of tiangolo/uvicorn-gunicorn-fastapi, for the benchmark's `tiangolo` server.

Written for this harness (not tiangolo's file): the values his image used by default. The worker
count and the bind address come from the environment that benchmarks/run.py passes; the worker class
comes from the command line (`-k uvicorn.workers.UvicornWorker`), as in his start script.
"""

import os

workers = int(os.environ["WEB_CONCURRENCY"])
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
