"""Command line of the start scripts (``python -m asgi_launcher COMMAND``).

- ``start [--reload | --prestart-only | GUNICORN OPTIONS]``: all of /start.sh (asgi_launcher.start); a
  bad setting prints one line and exits with status 2.
- ``gunicorn [GUNICORN OPTIONS]``: Gunicorn with the image's features, as the start execs it
  (asgi_launcher.master, asgi_launcher.application).
- ``serve [--reload]``: one Uvicorn process (PROCESS_MANAGER=uvicorn, start-reload.sh).
- ``settings-table``: the README's table of every setting, from the registry.
"""

from __future__ import annotations

import gc
import sys

from asgi_launcher.settings import ConfigError

USAGE = (
    "usage: python -m asgi_launcher start [--reload|--prestart-only|GUNICORN OPTIONS] | "
    "gunicorn [GUNICORN OPTIONS] | serve [--reload] | settings-table"
)


def main(argv: list[str]) -> int:
    command, args = (argv[0], argv[1:]) if argv else ("", [])
    try:
        if command == "start":
            from asgi_launcher.start import start

            return start(args)
        elif command == "gunicorn":
            from asgi_launcher.master import run

            return run(args)
        elif command == "serve" and args in ([], ["--reload"]):
            from asgi_launcher.single import serve

            serve(reload=args == ["--reload"])
        elif command == "settings-table" and not args:
            from asgi_launcher.settings import settings_table

            sys.stdout.write(settings_table())
        else:
            print(USAGE, file=sys.stderr)
            return 2
    except ConfigError as error:
        from asgi_launcher.logs import report  # logging is not imported on the (common) success path

        report("error", str(error))
        return 2
    return 0


if __name__ == "__main__":
    status = main(sys.argv[1:])  # the master, and each worker of it, return here too
    # The interpreter's exit collects every object it ever made, in passes: 30 to 50 ms of an idle
    # stop of 60 ms in the Gunicorn master. Frozen objects are never collected; the exit is otherwise
    # Python's own (threads joined, atexit handlers, streams flushed, modules torn down).
    gc.freeze()
    sys.exit(status)
