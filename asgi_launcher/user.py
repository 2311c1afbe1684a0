"""Started as root (tiangolo's default: no USER in the Dockerfile), the app still runs as APP_USER.

``switch`` runs first when /start.sh starts as root, in the Python process that plans the start. It
gives empty root-owned volumes to the app user (as the official database images do with their data
directory: a fresh named volume is root's, and the app could not write to it), then switches user
and group for good: the pre-start script, the server and the app never run as root.
``APP_USER=root`` keeps tiangolo's root run time. Without the SETUID/SETGID capabilities
(``--cap-drop ALL``) the switch is impossible: one line says how to start instead.
"""

from __future__ import annotations

import glob
import grp
import os
import pwd
import stat
from typing import NamedTuple

from asgi_launcher.cgroups import parse_mountinfo
from asgi_launcher.settings import ConfigError

DEFAULT_UID = 10001
CAP_SETGID, CAP_SETUID = 6, 7
# Mounts of the runtime itself, never the app's volumes.
SYSTEM_PREFIXES = ("/proc", "/sys", "/dev", "/run/secrets", "/etc/")
SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")  # a socket handed in, not a place to write


class User(NamedTuple):
    uid: int
    gid: int
    home: str | None


def resolve(app_user: str) -> User:
    """``name``, ``uid``, ``name:group`` or ``uid:gid``; a name must exist in the image."""
    user_part, _, group_part = app_user.partition(":")
    try:
        if user_part.isdigit():
            uid = int(user_part)
            try:
                entry = pwd.getpwuid(uid)
                gid, home = entry.pw_gid, entry.pw_dir
            except KeyError:
                gid, home = uid, None
        else:
            entry = pwd.getpwnam(user_part)
            uid, gid, home = entry.pw_uid, entry.pw_gid, entry.pw_dir
        if group_part:
            gid = int(group_part) if group_part.isdigit() else grp.getgrnam(group_part).gr_gid
    except KeyError:
        raise ConfigError(
            f"APP_USER={app_user!r} is not valid: expected a user (or user:group) that exists in the "
            "image, a UID[:GID], or root"
        ) from None
    return User(uid, gid, home)


def capabilities(status: str) -> int:
    """The effective capability set from /proc/self/status."""
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def can_switch(caps: int) -> bool:
    return bool(caps & (1 << CAP_SETUID)) and bool(caps & (1 << CAP_SETGID))


def volumes_to_give(mountinfo: str, owner_of, is_empty) -> list[str]:
    """Mount points that are empty, root-owned directories: fresh volumes, nothing anyone wrote to yet."""
    found = []
    for mount in parse_mountinfo(mountinfo):
        point = mount.point
        if point == "/" or point.startswith(SYSTEM_PREFIXES):
            continue
        if owner_of(point) == 0 and is_empty(point):
            found.append(point)
    return found


class Unwritable(NamedTuple):
    point: str
    uid: int
    gid: int
    mode: int


def unwritable_mounts(mountinfo: str, uid: int, gid: int, stat_of=os.stat) -> list[Unwritable]:
    """Directories mounted into the container (bind mounts, volumes) that ``uid``:``gid`` cannot
    write: not read-only ones, not the runtime's own, not tmpfs, and not the empty root-owned ones,
    which the switch gives to the app user first."""
    found = []
    for mount in parse_mountinfo(mountinfo):
        point = mount.point
        if point == "/" or point.startswith(SYSTEM_PREFIXES) or point in SOCKETS:
            continue
        if "ro" in mount.options or mount.fstype == "tmpfs":
            continue
        try:
            info = stat_of(point)
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode):
            continue
        if info.st_uid == uid:
            writable = info.st_mode & stat.S_IWUSR
        elif info.st_gid == gid:
            writable = info.st_mode & stat.S_IWGRP
        else:
            writable = info.st_mode & stat.S_IWOTH
        if not writable:
            found.append(Unwritable(point, info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)))
    return found


def mount_warning(mount: Unwritable, uid: int) -> str:
    owner = f"{mount.uid}:{mount.gid}"
    return (
        f"{mount.point} is mounted owned by UID {mount.uid} (GID {mount.gid}, mode {mount.mode:o}) and "
        f"the app runs as UID {uid}: it cannot write there. Run as that owner (compose user: "
        f'"{owner}", or APP_USER={owner}), change the owner on the host (chown -R {uid} on the '
        "host's directory), or set APP_USER=root"
    )


def _owner_of_directory(path: str) -> int | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_uid if stat.S_ISDIR(info.st_mode) else None


def _is_empty(path: str) -> bool:
    try:
        return not os.listdir(path)
    except OSError:
        return False


def switch_environment(env: dict[str, str], user: User) -> None:
    """What the app user needs of the environment: its own home, and root's `pip install --user` packages."""
    if user.home and os.path.isdir(user.home):
        env["HOME"] = user.home
    # `pip install --user` during the build (as root) went to /root/.local; the image keeps /root
    # traversable so that the app user can import them.
    if glob.glob("/root/.local/lib/python3*/site-packages") and "PYTHONUSERBASE" not in env:
        env["PYTHONUSERBASE"] = "/root/.local"
        if os.path.isdir("/root/.local/bin"):
            env["PATH"] = "/root/.local/bin:" + env.get("PATH", "")


def switch(env: dict[str, str], app_user: str, as_json: bool = False) -> None:
    """Become ``app_user`` (APP_USER) for good (this process and all it starts), unless it is root."""
    from asgi_launcher.logs import report

    if app_user == "root":
        return
    user = resolve(app_user)
    if user.uid == 0:
        return
    with open("/proc/self/status") as status:
        caps = capabilities(status.read())
    if not can_switch(caps):
        raise ConfigError(
            "the container started as root without the SETUID and SETGID capabilities (--cap-drop ALL), "
            f"so the app cannot switch to UID {user.uid}: start it as that user "
            f"(--user {user.uid}:{user.gid}; compose user:, Kubernetes runAsUser), "
            "or add those two capabilities, or set APP_USER=root"
        )
    with open("/proc/self/mountinfo") as file:
        mountinfo = file.read()
    for point in volumes_to_give(mountinfo, _owner_of_directory, _is_empty):
        try:
            os.chown(point, user.uid, user.gid)
        except OSError:  # read-only, or no CAP_CHOWN: the app will say what it cannot write
            continue
        report("info", f"gave the empty volume {point} to UID {user.uid} (it was root's)", as_json=as_json)
    # A directory with content is the host's (or another container's): said, never chowned.
    for mount in unwritable_mounts(mountinfo, user.uid, user.gid):
        report("warning", mount_warning(mount, user.uid), as_json=as_json)
    switch_environment(env, user)
    os.setgroups([])
    os.setresgid(user.gid, user.gid, user.gid)
    os.setresuid(user.uid, user.uid, user.uid)
