"""The Gunicorn master as the start execs it: ``python -m asgi_launcher gunicorn [GUNICORN OPTIONS]``.

Gunicorn with the launcher's application (asgi_launcher.application), plus what its own command
cannot do:

- with LOG_FORMAT=json every line of the master and of every worker is JSON (asgi_launcher.output);
- a worker that cannot load the app while the master already stops for another one ends the master
  with Gunicorn's own exit status and one line, not with a raw HaltServer traceback and status 1 (a
  race in Gunicorn's arbiter);
- a stop ends as soon as the last worker is gone: Gunicorn's arbiter checks every 0.1 s, and sleeps
  once more after the last one (``Arbiter.stop``); here each worker is reaped as it exits.

The arbiter is Gunicorn's, subclassed in two methods (``stop``, ``reap_workers``) and put in place
of ``gunicorn.app.base.Arbiter``; tests/process/test_upstream.py fails by name if one of them goes away.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time

from asgi_launcher.logs import report

REAP_INTERVAL = 0.1  # seconds: Gunicorn's stop loop sleeps this long between its reaps


class _AllGone(Exception):
    """Every worker has exited: what is left of Gunicorn's stop loop is its last sleep."""


def arbiter_class():
    from gunicorn.arbiter import Arbiter

    class QuickArbiter(Arbiter):
        _stopping = False

        def stop(self, graceful=True):
            self._stopping = True
            try:
                super().stop(graceful)
            except _AllGone:
                pass
            finally:
                self._stopping = False

        def reap_workers(self):
            if not self._stopping:
                return super().reap_workers()
            # The stop loop's interval, spent reaping each worker as it exits.
            deadline = time.monotonic() + REAP_INTERVAL
            while True:
                if self.WORKERS:
                    _wait_for_a_child(deadline - time.monotonic())
                super().reap_workers()
                if not self.WORKERS and not getattr(self, "dirty_arbiter_pid", 0):
                    raise _AllGone
                if time.monotonic() >= deadline:
                    return None

    return QuickArbiter


def _wait_for_a_child(timeout: float) -> None:
    """Until a child process has exited (without reaping it) or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return
        except ChildProcessError:
            return
        time.sleep(0.002)


def run(args: list[str]) -> int:
    import gunicorn.app.base
    from gunicorn.errors import HaltServer

    from asgi_launcher.application import LauncherApplication
    from asgi_launcher.settings import current

    settings = current()  # the one parse of this process (a ConfigError ends it in __main__)
    as_json = settings.log_format == "json"
    gunicorn.app.base.Arbiter = arbiter_class()
    output = None
    if as_json:
        from asgi_launcher.output import JsonOutput

        output = JsonOutput()
    # Gunicorn re-executes sys.argv on USR2 (binary upgrade): the plain gunicorn command.
    sys.argv = [shutil.which("gunicorn") or "gunicorn", *args]
    # The process name its own command has, for `pgrep gunicorn` and `ps -o comm` (workers inherit it).
    with contextlib.suppress(OSError), open("/proc/self/comm", "w") as comm:
        comm.write("gunicorn")
    try:
        application = LauncherApplication(settings)
        for line in settings.warnings:
            report("warning", line, as_json=as_json)
        if application.notes:  # what a config file changed of what the image manages, in one line
            report("warning", "; ".join(application.notes), as_json=as_json)
        print(settings.startup_line(application.final()), flush=True)
        application.run()
    except HaltServer as halt:
        report("error", f"Gunicorn stopped: {halt.reason} (exit status {halt.exit_status})", as_json=as_json)
        return halt.exit_status
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    finally:
        if output:
            output.close()
    return 0
