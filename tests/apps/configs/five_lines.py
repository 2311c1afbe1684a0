import os

bind = os.environ.get("BIND", "0.0.0.0:80")
workers = 2
loglevel = "info"
accesslog = "-"
