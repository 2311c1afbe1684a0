"""LOG_FORMAT=json for every line, also those that never pass through ``logging``.

The app's ``print()``, ``warnings``, a traceback Python prints on its way out, Gunicorn's own raw
lines and whatever C code or a child process writes go to file descriptors 1 and 2, which every
worker inherits from the master. ``JsonOutput`` turns both into pipes that a thread of this process
reads: a line that is already a JSON object (every logger's, every access line) is passed on as it
is, any other line is wrapped into one, with ``logger`` "stdout" or "stderr". One process writes
the container's output, so lines from different workers never mix inside each other.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

from asgi_launcher.logs import stream_level, wrap_line


class JsonOutput:
    def __init__(self):
        self._saved: dict[int, int] = {}
        self._threads = []
        for fd, stream in ((1, "stdout"), (2, "stderr")):
            (sys.stdout if fd == 1 else sys.stderr).flush()
            self._saved[fd] = os.dup(fd)
            read_end, write_end = os.pipe()
            os.dup2(write_end, fd)
            os.close(write_end)
            thread = threading.Thread(
                target=self._pump,
                args=(read_end, self._saved[fd], stream),
                name=f"json-{stream}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def _pump(self, read_end: int, out: int, stream: str) -> None:
        pending, previous = b"", [""]
        try:
            while chunk := os.read(read_end, 1 << 16):
                *lines, pending = (pending + chunk).split(b"\n")
                converted = [self._convert(line, stream, previous) for line in lines if line.strip()]
                if converted:
                    _write_all(out, b"\n".join(converted) + b"\n")
            if pending.strip():
                _write_all(out, self._convert(pending, stream, previous) + b"\n")
        except Exception:  # never leave the writers blocked on a full pipe: pass the rest on raw
            with contextlib.suppress(OSError):
                while chunk := os.read(read_end, 1 << 16):
                    _write_all(out, chunk)
        finally:
            os.close(read_end)

    @staticmethod
    def _convert(line: bytes, stream: str, previous: list[str]) -> bytes:
        if line.startswith(b"{") and line.rstrip().endswith(b"}"):
            return line  # every logger's line and every access line: as it is
        text = line.decode("utf-8", "replace").rstrip("\r")
        previous[0] = stream_level(text, stream, previous[0])
        # Any process may have written it: no pid rather than a wrong one.
        return wrap_line(text, stream, stream, previous[0], None).encode()

    def close(self, timeout: float = 5) -> None:
        """Back to the real streams; waits for what is still in the pipes (children gone first)."""
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, saved in self._saved.items():
            os.dup2(saved, fd)
        for thread in self._threads:
            thread.join(timeout)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
