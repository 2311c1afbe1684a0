"""The launcher's Gunicorn application: the image's settings and features under any config file.

Gunicorn's settings come in layers, lowest first:

1. the registry (asgi_launcher.settings), parsed once in this process: ``Setting.gunicorn`` names the
   Gunicorn setting each variable feeds;
2. the config file that tiangolo's search order found (``-c``);
3. ``GUNICORN_CMD_ARGS``;
4. the command line.

Layers 2 to 4 are Gunicorn's own ``Application.load_config``. One exception, as documented: a
``WORKER_CLASS`` that is set beats a ``worker_class`` in the config file (tiangolo passed ``-k``).

The features are not settings a config file could drop: the launcher's hooks run around any hook
the file defines, the logger, heartbeat directory and control socket are set below the file, and the
workers get the parsed settings with the application they are forked with (``worker.app.settings``).
"""

from __future__ import annotations

import sys
from typing import Any

from gunicorn.app.wsgiapp import WSGIApplication
from gunicorn.util import get_arity

from asgi_launcher.hooks import Hooks
from asgi_launcher.settings import Settings, heartbeat_dir

# The launcher's hooks, and whether a config file's own hook of that name runs before ours (the
# cleanups) or after (everything else: it sees the image's set-up done).
HOOKS = {
    "on_starting": "after",
    "when_ready": "after",
    "pre_fork": "after",
    "post_fork": "after",
    "post_worker_init": "after",
    "worker_exit": "before",
    "child_exit": "after",
    "on_reload": "after",
    "on_exit": "before",
}
# What the startup line reports from Gunicorn's final values (tiangolo's keys).
REPORTED = (
    "bind",
    "workers",
    "worker_class",
    "loglevel",
    "graceful_timeout",
    "timeout",
    "keepalive",
    "errorlog",
    "accesslog",
    "max_requests",
    "preload_app",
    "forwarded_allow_ips",
)


def chain(ours, theirs, theirs_first: bool):
    """One hook that calls both, with Gunicorn's arity for that hook (it checks it)."""
    first, second = (theirs, ours) if theirs_first else (ours, theirs)
    if get_arity(ours) == 1:

        def hook(arg):
            first(arg)
            second(arg)

    else:

        def hook(server, worker):
            first(server, worker)
            second(server, worker)

    return hook


class LauncherApplication(WSGIApplication):
    def __init__(self, settings: Settings):
        self.settings = settings  # workers read it here: they never parse the environment
        self.hooks = Hooks(settings)
        self.notes: list[str] = []  # what a config file changed of what the image manages
        super().__init__("%(prog)s [OPTIONS] [APP_MODULE]")

    def load_default_config(self) -> None:
        super().load_default_config()
        for name, value in self.settings.gunicorn_values().items():
            self.cfg.set(name, value)
        directory = heartbeat_dir()
        if directory:
            self.cfg.set("worker_tmp_dir", directory)
        # The control socket (Gunicorn >= 25.1) is a runtime admin channel nobody in a container talks
        # to, and it needs a writable $HOME, which a read-only root filesystem does not have.
        if "control_socket_disable" in self.cfg.settings:
            self.cfg.set("control_socket_disable", True)
        self.cfg.set("logger_class", self.hooks.logger_class)
        self._gunicorn_defaults = {name: self.cfg.settings[name].get() for name in HOOKS}
        self._file: tuple[str, dict[str, Any]] | None = None

    def load_config_from_file(self, filename: str):
        values = super().load_config_from_file(filename)
        self._file = (filename, {k: v for k, v in values.items() if k in self.cfg.settings})
        return values

    def load_config(self) -> None:
        super().load_config()
        self.notes = []
        self._worker_class_variable()
        self._chain_hooks()
        self._note_managed()

    # ---- the layers' outcome
    def _sources(self) -> dict[str, str]:
        """Which layer above the registry set each Gunicorn setting: the file, then the later layers."""
        parser = self.cfg.parser()
        sources = {}
        if self._file:
            sources.update(dict.fromkeys(self._file[1], f"the config file {self._file[0]}"))
        for label, args in (
            ("GUNICORN_CMD_ARGS", self.cfg.get_cmd_args_from_env()),
            ("the command line", sys.argv[1:]),
        ):
            parsed = vars(parser.parse_args(args))
            sources.update({k: label for k, v in parsed.items() if v is not None and k != "args"})
        return sources

    def _worker_class_variable(self) -> None:
        wanted = self.settings.worker_class
        if not self.settings.worker_class_set or self.cfg.worker_class_str == wanted:
            return
        if self._sources().get("worker_class", "").startswith("the config file"):
            self.notes.append(
                f"WORKER_CLASS={wanted} wins over worker_class={self.cfg.worker_class_str!r} "
                f"in {self._file[0]}"
            )
            self.cfg.set("worker_class", wanted)

    def _chain_hooks(self) -> None:
        theirs = []
        for name, order in HOOKS.items():
            user_hook = self.cfg.settings[name].get()
            ours = getattr(self.hooks, name)
            if user_hook is self._gunicorn_defaults[name]:
                self.cfg.set(name, ours)
            else:
                theirs.append(name)
                self.cfg.set(name, chain(ours, user_hook, theirs_first=order == "before"))
        if theirs:
            self.notes.append(
                f"{', '.join(theirs)} from {self._source_of(theirs[0])} run too, with the image's own "
                "hooks (metrics, memory guard, access log, recycling)"
            )

    def _source_of(self, name: str) -> str:
        return self._sources().get(name, "the config file")

    def _note_managed(self) -> None:
        if self.cfg.settings["logger_class"].get() is not self.hooks.logger_class:
            self.notes.append(
                f"logger_class from {self._source_of('logger_class')} wins: LOG_FORMAT, LOGGING_CONF and "
                "the doctor's advice are off; metrics, memory guard and access log stay on"
            )
        if self.cfg.workers != self.settings.workers:
            self.notes.append(
                f"workers={self.cfg.workers} from {self._source_of('workers')} wins over the image's "
                f"{self.settings.workers} ({self.settings.sizing.rule}); MAX_WORKER_MEMORY and the "
                "metrics apply to each worker as before"
            )
        if self.cfg.worker_class_str != self.settings.worker_class:
            self.notes.append(
                f"worker_class={self.cfg.worker_class_str!r} from {self._source_of('worker_class')} wins "
                f"over {self.settings.worker_class!r}; the access log and request metrics need a "
                "Uvicorn worker"
            )

    def final(self) -> dict[str, Any]:
        """Gunicorn's values as they run, in the registry's shapes, for the startup line."""
        values = {name: self.cfg.settings[name].get() for name in REPORTED}
        values["worker_class"] = self.cfg.worker_class_str
        for name in ("bind", "forwarded_allow_ips"):
            if isinstance(values[name], list):
                values[name] = ",".join(values[name])
        return values
