"""The Gunicorn master as start.sh execs it: ``python -m asgi_launcher gunicorn ARGS``.

Gunicorn itself, plus two things its own command cannot do: with LOG_FORMAT=json every line of the
master and of every worker is JSON (asgi_launcher.output), and a worker that cannot load the app
while the master already stops for another one ends the master with Gunicorn's own exit status and
one line, not with a raw HaltServer traceback and status 1 (a race in Gunicorn's arbiter).
"""

from __future__ import annotations

import contextlib
import shutil
import sys

from asgi_launcher.logs import json_logs, report


def run(args: list[str]) -> int:
    from gunicorn.app.wsgiapp import WSGIApplication
    from gunicorn.errors import HaltServer

    output = None
    if json_logs():
        from asgi_launcher.output import JsonOutput

        output = JsonOutput()
    # Gunicorn re-executes sys.argv on USR2 (binary upgrade): the plain gunicorn command.
    sys.argv = [shutil.which("gunicorn") or "gunicorn", *args]
    # The process name its own command has, for `pgrep gunicorn` and `ps -o comm` (workers inherit it).
    with contextlib.suppress(OSError), open("/proc/self/comm", "w") as comm:
        comm.write("gunicorn")
    try:
        WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]").run()
    except HaltServer as halt:
        report("error", f"Gunicorn stopped: {halt.reason} (exit status {halt.exit_status})")
        return halt.exit_status
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    finally:
        if output:
            output.close()
    return 0
