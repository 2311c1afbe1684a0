"""The switch from root to APP_USER (asgi_launcher/user.py) on fake inputs; for real in tests/container/."""

from __future__ import annotations

import pwd

import pytest

from asgi_launcher.settings import ConfigError
from asgi_launcher.user import (
    User,
    can_switch,
    capabilities,
    resolve,
    switch_environment,
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
