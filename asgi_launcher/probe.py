"""Where the image's healthcheck finds the server: the first address it binds, written by the server
once it listens. The healthcheck (plain bash, no Python start per probe) reads it instead of parsing
BIND, HOST and PORT a second time.

The file is ``$ASGI_SERVER_ADDRESS_FILE`` if set (tests give each server its own), else
``asgi-server.address`` on /dev/shm, the container's own tmpfs (or the temporary directory).
"""

from __future__ import annotations

import contextlib
import os
import tempfile

from asgi_launcher.settings import parse_address


def address_file() -> str:
    directory = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()  # noqa: S108
    return os.environ.get("ASGI_SERVER_ADDRESS_FILE") or os.path.join(directory, "asgi-server.address")


def target(bind: str) -> str:
    """``HOST PORT`` to connect to for the first of ``bind``'s addresses, or ``unix PATH``."""
    address = parse_address(bind.split(",")[0].strip())
    if "uds" in address:
        return f"unix {address['uds']}"
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "*": "127.0.0.1", "::": "::1"}.get(
        address["host"], address["host"]
    )
    return f"{host} {address['port']}"


def write_address(bind: str) -> None:
    """Best effort: a server that cannot write it still serves (the healthcheck then says why)."""
    path = address_file()
    with contextlib.suppress(OSError):
        with tempfile.NamedTemporaryFile("w", dir=os.path.dirname(path), delete=False) as file:
            file.write(target(bind) + "\n")
        os.chmod(file.name, 0o644)
        os.replace(file.name, path)
