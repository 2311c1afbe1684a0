"""The image's ``pip``: pip itself, and after an ``install``, ``wheel`` or ``download`` that fails, one
line of advice on stderr (doctor.build_advice: the tag to use instead), below pip's own output.

pip runs as ``sys.executable -P -m pip ARGS`` with stdin inherited; its stdout and stderr come through two
pipes and go out unchanged, chunk by chunk as pip writes them, to this process's stdout and stderr. The
exit status is pip's. Every other command, and any failure of this wrapper before pip starts, execs
plain pip with the same arguments: the advice may be missing, pip never is. When both outputs are
terminals, pip gets FORCE_COLOR=1 so that it keeps its colours and progress bars behind the pipes.

Installed as /opt/venv/bin/pip (pip3, pip3.X): ``from asgi_launcher.pipdoctor import main; main()``.
Only what starting pip needs is imported up front; the doctor is imported after a failure.
"""

from __future__ import annotations

import contextlib
import os
import sys

ADVISED = frozenset({"install", "wheel", "download"})
TAIL = 64 * 1024  # of each stream: what build_advice reads
CHUNK = 64 * 1024
DRAIN = 5.0  # seconds to wait for the pipes' end after pip exits (a build daemon may hold them open)
# pip's general options that take their value as the next argument (pip 23 to 26).
VALUED = frozenset(
    {
        "--log",
        "--log-file",
        "--local-log",
        "--keyring-provider",
        "--proxy",
        "--retries",
        "--timeout",
        "--exists-action",
        "--trusted-host",
        "--cert",
        "--client-cert",
        "--cache-dir",
        "--use-feature",
        "--use-deprecated",
        "--resume-retries",
    }
)


def command(args: list[str]) -> str | None:
    """pip's subcommand in these arguments, as pip finds it (the first word after the general options);
    None when there is none or when pip would run under another Python (--python)."""
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--python" or arg.startswith("--python="):
            return None
        elif arg in VALUED:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def pip_argv(args: list[str]) -> list[str]:
    """pip's command line. -P: like the pip script, and unlike a bare -m, no module of the working
    directory (a project's secrets.py, a pip/ folder) comes before pip's and the standard library's."""
    return [sys.executable, "-P", "-m", "pip", *args]


def exec_pip(args: list[str]) -> None:
    """Become plain pip."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:  # noqa: S110 - a closed stream: pip reports that itself
        pass
    try:
        os.execv(sys.executable, pip_argv(args))  # noqa: S606 - pip, with the arguments as given
    except OSError as error:
        sys.stderr.write(f"pip: cannot run {sys.executable} -P -m pip: {error}\n")
        sys.exit(127)


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:  # an O_NONBLOCK stdout (shared with a parent): wait until it takes more
            import select

            select.select([], [fd], [])


def _pump(source: int, target: int, tail: bytearray) -> None:
    """Copy one of pip's outputs to ours as it comes, keeping its last TAIL bytes. If ours is closed,
    close the pipe too, so that pip's next write fails as it would have without this wrapper."""
    try:
        while chunk := os.read(source, CHUNK):
            tail += chunk
            if len(tail) > 2 * TAIL:
                del tail[:-TAIL]
            try:
                _write(target, chunk)
            except OSError:
                break
    except OSError:
        pass
    finally:
        os.close(source)


def _on_signal(child):
    """Signals while pip runs: the terminal's (SIGINT, SIGQUIT) reach pip with ours, as its process
    group's; the others (docker stop's SIGTERM, a closed terminal's SIGHUP) are passed on to it."""
    import signal

    def forward(number, _frame):
        if child and number not in (signal.SIGINT, signal.SIGQUIT):
            with contextlib.suppress(OSError):
                os.kill(child[0].pid, number)

    for number in (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, forward)


def start(args: list[str]):
    """pip, started with its outputs piped to ours: (process, pumps, tails). Raises only when pip did
    not start (then the caller execs plain pip)."""
    import subprocess
    import threading

    for fd in (1, 2):
        os.fstat(fd)  # a closed stdout or stderr: plain pip (a new pipe would take its number)
    env = None
    if (
        os.isatty(1)
        and os.isatty(2)
        and not {"FORCE_COLOR", "NO_COLOR"} & os.environ.keys()
        and "--no-color" not in args
    ):
        env = {**os.environ, "FORCE_COLOR": "1"}
    tails = (bytearray(), bytearray())
    pipes = (os.pipe(), os.pipe())
    pumps = [
        threading.Thread(target=_pump, args=(read, target, tail), daemon=True)
        for (read, _), target, tail in zip(pipes, (1, 2), tails, strict=True)
    ]
    child = []  # the process, once started: for the signal handlers
    try:
        for pump in pumps:
            pump.start()
        _on_signal(child)
        child.append(subprocess.Popen(pip_argv(args), stdout=pipes[0][1], stderr=pipes[1][1], env=env))
    finally:
        for _, write in pipes:
            os.close(write)  # the pumps see the pipes' end when pip's side closes (or now, if it never ran)
    return child[0], pumps, tails


def supervise(process, pumps, tails: tuple[bytearray, bytearray]) -> int:
    """pip's exit status, once its output is out, and the advice after it when it failed. Never raises:
    pip ran, so its status is the one to exit with, whatever happens here."""
    status = None
    while status is None:
        try:
            status = process.wait()
        except KeyboardInterrupt:
            continue
        except Exception:
            status = 1 if process.returncode is None else process.returncode
    try:
        for pump in pumps:
            pump.join(DRAIN)
        if status > 0:
            from asgi_launcher.doctor import build_advice, full_variant

            output = (bytes(tails[0]) + b"\n" + bytes(tails[1])).decode("utf-8", "replace")
            hint = build_advice(output, tuple(sys.version_info[:2]), full_variant())
            if hint:
                newline = b"" if not tails[1] or tails[1].endswith(b"\n") else b"\n"
                _write(2, newline + hint.encode("utf-8", "replace") + b"\n")
    except Exception:  # noqa: S110 - no advice then; pip's output and status are what count
        pass
    return status


def _exit(status: int) -> None:
    """Exit as pip did: with its code, or killed by the signal that killed it."""
    if status < 0:
        import signal

        try:
            signal.signal(-status, signal.SIG_DFL)
            os.kill(os.getpid(), -status)
        except (OSError, ValueError):
            pass
        status = 128 - status
    sys.exit(status)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        advised = command(args) in ADVISED
    except Exception:
        advised = False
    if advised:
        try:
            started = start(args)
        except Exception:
            exec_pip(args)  # the wrapper failed before pip started
        else:
            _exit(supervise(*started))
    exec_pip(args)


if __name__ == "__main__":
    main()
