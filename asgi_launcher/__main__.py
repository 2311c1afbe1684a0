"""Command line of the start scripts (``python -m asgi_launcher COMMAND``).

- ``plan PID [--reload | --prestart-only | --after-prestart]``: what start.sh does, as shell code to
  ``eval`` (asgi_launcher.start); a bad setting prints one line and exits with status 2.
- ``as-app-user START_SH [ARGS]``: started as root, switch to APP_USER and run start.sh again
  (asgi_launcher.user).
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
    "as-app-user START_SH [ARGS] | serve [--reload] | json-lines PID stdout|stderr | settings-table"
)


def main(argv: list[str]) -> int:
    command, args = (argv[0], argv[1:]) if argv else ("", [])
    try:
        if command == "plan" and args and args[0].isdigit():
            from asgi_launcher.start import plan

            sys.stdout.write(plan(os.environ, args[1:], int(args[0])))
        elif command == "as-app-user" and args:
            from asgi_launcher.user import as_app_user

            as_app_user(args, dict(os.environ))
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
