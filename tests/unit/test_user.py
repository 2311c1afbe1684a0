"""The switch from root to APP_USER (asgi_launcher/user.py) on fake inputs; for real in tests/container/."""

from __future__ import annotations

import os
import pwd
import stat

import pytest

from asgi_launcher.settings import ConfigError
from asgi_launcher.user import (
    User,
    can_switch,
    capabilities,
    mount_warning,
    resolve,
    switch_environment,
    unwritable_mounts,
    volumes_to_give,
)

# /proc/self/mountinfo of a container with a named volume on /data, a bind mount on /srv/code, a
# tmpfs on /tmp and Docker's own files and pseudo-filesystems.
MOUNTINFO = """\
820 700 0:52 / / rw,relatime master:1 - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w
821 820 0:55 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
822 820 0:56 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
823 822 0:57 / /dev/shm rw,nosuid,nodev,noexec,relatime - tmpfs shm rw,size=65536k
824 820 0:58 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro
825 820 8:1 /var/lib/docker/volumes/data/_data /data rw,relatime master:1 - ext4 /dev/vda rw
826 820 8:1 /home/me/code /srv/code rw,relatime - ext4 /dev/vda rw
827 820 0:60 / /tmp rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw
828 820 8:1 /var/lib/docker/containers/x/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/vda rw
829 820 8:1 /var/lib/docker/volumes/full/_data /var/lib/app\\040data rw,relatime - ext4 /dev/vda rw
"""


def test_resolve_names_and_numbers():
    root = pwd.getpwuid(0)
    assert resolve("root") == User(0, root.pw_gid, root.pw_dir)
    assert resolve("0:5") == User(0, 5, root.pw_dir)
    assert resolve("4321") == User(4321, 4321, None)  # a UID without a passwd entry, as Kubernetes allows
    assert resolve("4321:0") == User(4321, 0, None)


@pytest.mark.parametrize("value", ["nosuchuser", "root:nosuchgroup", "nosuchuser:0"])
def test_resolve_refuses_what_does_not_exist(value):
    with pytest.raises(ConfigError, match=f"APP_USER='{value}' is not valid: expected a user"):
        resolve(value)


def test_capabilities_from_proc_status():
    full = "Name:\tbash\nCapInh:\t0000000000000000\nCapEff:\t00000000a80425fb\n"
    dropped = "CapEff:\t0000000000000000\n"
    only_switch = f"CapEff:\t{(1 << 6) | (1 << 7):016x}\n"
    assert can_switch(capabilities(full))
    assert not can_switch(capabilities(dropped))
    assert can_switch(capabilities(only_switch))
    assert not can_switch(capabilities(f"CapEff:\t{1 << 7:016x}\n"))  # SETUID alone is not enough


def test_only_empty_root_owned_mount_points_are_given():
    owners = {"/data": 0, "/srv/code": 0, "/tmp": 0, "/var/lib/app data": 0, "/dev/shm": 0}
    empty = {"/data": True, "/srv/code": False, "/tmp": True, "/var/lib/app data": True, "/dev/shm": True}
    given = volumes_to_give(MOUNTINFO, owners.get, empty.get)
    # /srv/code has files; /dev/shm, /proc, /sys and /etc/resolv.conf belong to the runtime.
    assert given == ["/data", "/tmp", "/var/lib/app data"]


def test_volumes_already_owned_by_someone_are_left_alone():
    given = volumes_to_give(MOUNTINFO, lambda path: 10001, lambda path: True)
    assert given == []


def test_switch_environment_sets_the_users_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": "/root", "PATH": "/usr/bin"}
    switch_environment(env, User(10001, 10001, str(home)))
    assert env["HOME"] == str(home)
    env = {"HOME": "/root"}
    switch_environment(env, User(10001, 10001, None))
    assert env["HOME"] == "/root"


# More mounts: a read-only bind mount, the Docker socket, and two shared directories.
MORE_MOUNTS = (
    MOUNTINFO
    + """\
830 820 8:1 /home/me/ro /srv/ro ro,relatime - ext4 /dev/vda rw
831 820 0:22 /docker.sock /var/run/docker.sock rw,nosuid,nodev - tmpfs tmpfs rw
832 820 8:1 /home/me/shared /srv/shared rw,relatime - ext4 /dev/vda rw
833 820 8:1 /home/me/team /srv/team rw,relatime - ext4 /dev/vda rw
"""
)


def fake_stat(table: dict[str, tuple[int, int, int]]):
    """stat() over {path: (uid, gid, mode)}: directories, or a socket for the Docker socket."""

    def stat_of(path: str):
        uid, gid, mode = table[path]
        kind = stat.S_IFSOCK if path.endswith(".sock") else stat.S_IFDIR
        return os.stat_result((kind | mode, 0, 0, 0, uid, gid, 0, 0, 0, 0))

    return stat_of


def test_mounts_the_app_user_cannot_write_are_found():
    host_user = (1000, 1000, 0o755)
    table = dict.fromkeys(
        [
            "/data",
            "/srv/code",
            "/tmp",
            "/var/lib/app data",
            "/srv/ro",
            "/var/run/docker.sock",
            "/etc/resolv.conf",
        ],
        host_user,
    )
    table["/data"] = (10001, 10001, 0o755)  # the app user's own
    table["/srv/shared"] = (1000, 1000, 0o777)  # anyone may write
    table["/srv/team"] = (1000, 10001, 0o775)  # its group may
    found = unwritable_mounts(MORE_MOUNTS, 10001, 10001, fake_stat(table))
    # Not /srv/ro (read-only), the socket, /etc/resolv.conf, /proc, /sys, /dev or the tmpfs /tmp.
    assert [m.point for m in found] == ["/srv/code", "/var/lib/app data"]
    line = mount_warning(found[0], 10001)
    assert line.startswith(
        "/srv/code is mounted owned by UID 1000 (GID 1000, mode 755) and the app runs as UID 10001"
    )
    for fix in ('compose user: "1000:1000"', "APP_USER=1000:1000", "chown -R 10001", "APP_USER=root"):
        assert fix in line


def test_mounts_the_app_user_owns_are_not_reported():
    """The control: the same mounts, all the app user's."""
    table = {
        m: (10001, 10001, 0o755)
        for m in ["/data", "/srv/code", "/var/lib/app data", "/srv/shared", "/srv/team"]
    }
    assert unwritable_mounts(MORE_MOUNTS, 10001, 10001, fake_stat(table | {"/srv/ro": (0, 0, 0o555)})) == []
