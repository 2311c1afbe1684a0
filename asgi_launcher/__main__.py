"""Command line of the start scripts (``python -m asgi_launcher COMMAND``).

- ``plan PID [--reload | --prestart-only | --after-prestart]``: what start.sh does, as shell code to
  ``eval`` (asgi_launcher.start); a bad setting prints one line and exits with status 2.
- ``start START_SH [ARGS]``: what start.sh runs first: the switch from root (asgi_launcher.user), the
  checks, then the server, or start.sh again with the plan when a pre-start script is to be sourced.
- ``gunicorn ARGS``: Gunicorn, as start.sh execs it (asgi_launcher.master).
- ``serve [--reload]``: one Uvicorn process (PROCESS_MANAGER=uvicorn, start-reload.sh).
- ``json-lines PID stdout|stderr``: the pre-start script's output as JSON log lines.
- ``settings-table``: the README's table of every setting, from the registry.
"""

from __future__ import annotations

import os
import sys

from asgi_launcher.settings import ConfigError

USAGE = (
    "usage: python -m asgi_launcher plan PID [--reload|--prestart-only|--after-prestart] | "
    "start START_SH [ARGS] | gunicorn ARGS | serve [--reload] | json-lines PID stdout|stderr | "
    "settings-table"
)


def main(argv: list[str]) -> int:
    command, args = (argv[0], argv[1:]) if argv else ("", [])
    try:
        if command == "plan" and args and args[0].isdigit():
            from asgi_launcher.start import plan

            sys.stdout.write(plan(os.environ, args[1:], int(args[0])))
        elif command == "start" and args:
            from asgi_launcher.start import start

            return start(args[0], args[1:])
        elif command == "gunicorn":
            from asgi_launcher.master import run

            return run(args)
        elif command == "serve" and args in ([], ["--reload"]):
            from asgi_launcher.single import serve

            serve(reload=args == ["--reload"])
        elif command == "json-lines" and len(args) == 2 and args[0].isdigit():
            from asgi_launcher.logs import json_lines

            json_lines("prestart", int(args[0]), args[1])
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
    sys.exit(main(sys.argv[1:]))
