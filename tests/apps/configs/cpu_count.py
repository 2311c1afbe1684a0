# The way tiangolo's README showed it: the worker count from the CPU count and the environment.
import multiprocessing
import os

workers_per_core = float(os.getenv("WORKERS_PER_CORE", "1"))
max_workers = int(os.getenv("MAX_WORKERS", "2"))
workers = min(max(int(workers_per_core * multiprocessing.cpu_count()), 2), max_workers)
bind = os.getenv("BIND") or f"{os.getenv('HOST', '0.0.0.0')}:{os.getenv('PORT', '80')}"
loglevel = os.getenv("LOG_LEVEL", "info")
keepalive = 120
errorlog = "-"
