import os

bind = os.environ.get("BIND", "0.0.0.0:80")
workers = 2


def on_starting(server):
    print("user hook: on_starting", flush=True)


def post_fork(server, worker):
    server.log.info("user hook: post_fork in %s", os.getpid())
