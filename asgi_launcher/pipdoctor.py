"""The image's ``pip``: pip itself, and after an ``install``, ``wheel`` or ``download`` that fails, one
line of advice on stderr below pip's own output (doctor.build_advice: the tag to use instead).

pip runs as ``sys.executable -P -m pip ARGS`` with stdin inherited; its stdout and stderr come through
two pipes and go out unchanged, chunk by chunk as pip writes them. The exit status is pip's. Every
other command, and any failure of this wrapper before pip starts, execs plain pip: the advice may be
missing, pip never is.

Installed as /opt/venv/bin/pip (pip3, pip3.X): ``from asgi_launcher.pipdoctor import main; main()``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading

ADVISED = frozenset({"install", "wheel", "download"})
# -P, as in the pip script: no module of the working directory (a pip/ folder, a secrets.py) comes first.
PIP = [sys.executable, "-P", "-m", "pip"]
TAIL = 64 * 1024  # of each output: what build_advice reads
DRAIN = 5.0  # seconds for the pipes to close after pip exits (a build's daemon may hold them open)


def command(args: list[str]) -> str | None:
    """pip's subcommand: the first word that is not an option (after an option that takes a value it is
    that value, and pip runs plain). None under another Python (--python, --python-version), where the
    advice would name the wrong one."""
    if any(arg.startswith("--python") for arg in args):
        return None
    return next((arg for arg in args if not arg.startswith("-")), None)


def _pump(source: int, target: int, tail: bytearray) -> None:
    """Copy one of pip's outputs to ours. When ours is closed, close the pipe too: pip's next write
    fails as it would have without this wrapper."""
    with contextlib.suppress(OSError):
        while chunk := os.read(source, 64 * 1024):
            tail += chunk
            del tail[:-TAIL]
            while chunk:
                chunk = chunk[os.write(target, chunk) :]
    os.close(source)


def start(args: list[str]) -> tuple[subprocess.Popen, list[threading.Thread], tuple[bytearray, bytearray]]:
    """pip, with its outputs piped to ours. Raises only when pip did not start."""
    for fd in (1, 2):
        os.fstat(fd)  # closed: plain pip, as a pipe would take its number
    pipes, tails = (os.pipe(), os.pipe()), (bytearray(), bytearray())
    pumps = [
        threading.Thread(target=_pump, args=(read, target, tail), daemon=True)
        for (read, _), target, tail in zip(pipes, (1, 2), tails, strict=True)
    ]
    try:
        for pump in pumps:  # before pip: once it runs, a failure here must not run a second pip
            pump.start()
        process = subprocess.Popen(PIP + args, stdout=pipes[0][1], stderr=pipes[1][1])
    finally:
        for _, write in pipes:
            os.close(write)  # the pumps see the end when pip's copies close too
    return process, pumps, tails


def finish(process: subprocess.Popen, pumps: list[threading.Thread], tails: tuple[bytearray, bytearray]):
    """Wait for pip and its output, add the advice when it failed, and exit as it did."""
    # docker stop's SIGTERM reaches only us: pass it on. A terminal's SIGINT reaches pip too (one process
    # group): we outlive it, and exit as pip does.
    signal.signal(signal.SIGTERM, lambda number, _: process.send_signal(number))
    signal.signal(signal.SIGINT, lambda *_: None)
    status = process.wait()
    for pump in pumps:
        pump.join(DRAIN)
    if status > 0:
        with contextlib.suppress(Exception):  # no advice then: pip's output and status are what count
            from asgi_launcher.doctor import build_advice, full_variant

            output = (tails[0] + b"\n" + tails[1]).decode("utf-8", "replace")
            hint = build_advice(output, sys.version_info[:2], full_variant())
            if hint:
                os.write(2, f"{hint}\n".encode())
    if status < 0:  # pip was killed by a signal: die by the same one
        with contextlib.suppress(OSError, ValueError):  # SIGKILL has no handler to reset
            signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
    sys.exit(128 - status if status < 0 else status)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        started = start(args) if command(args) in ADVISED else None
    except Exception:
        started = None  # pip did not start: plain pip
    if started:
        finish(*started)
    os.execv(sys.executable, PIP + args)  # noqa: S606 - pip, with the arguments as given


if __name__ == "__main__":
    main()
