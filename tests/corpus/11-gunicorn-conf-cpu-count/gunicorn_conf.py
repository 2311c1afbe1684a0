import json
import multiprocessing
import os

cores = multiprocessing.cpu_count()
workers = cores * 2 + 1
bind = os.getenv("BIND", "0.0.0.0:80")
loglevel = os.getenv("LOG_LEVEL", "info")
keepalive = 120
errorlog = "-"
accesslog = "-"

print(json.dumps({"workers": workers, "bind": bind, "cores": cores}))
