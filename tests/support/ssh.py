"""A real SSH login into a runner's dropbear, shared by the kernel and the agent tests.

The login must not touch this machine's users, so the runner runs under nss_wrapper
(libnss-wrapper): its passwd file gives the runner's own user (root in CI) the work dir as
home, where the runner writes authorized_keys and ``id_container``.  A static dropbear (the
agent's musl ``dropbearmulti``) ignores ``LD_PRELOAD`` and reads ``/etc/passwd`` itself: for it,
``with_private_passwd`` runs the runner in a private mount namespace (``unshare -m``, root
only) where that passwd file is bind-mounted on ``/etc/passwd``; nothing outside changes.
"""

from __future__ import annotations

import glob
import grp
import os
import pwd
import shutil
import subprocess
from pathlib import Path

# Where the runner finds dropbear (it adds the sbin directories to PATH).
SEARCH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NSS_WRAPPER = next(iter(glob.glob("/usr/lib/*/libnss_wrapper.so")), None)  # Debian's multiarch dir


def ssh_tools_missing(dropbear: bool = True) -> str | None:
    """Why a real login cannot run here, or None; ``dropbear=False`` when the test brings its
    own dropbear (the agent's dropbearmulti)."""
    found = {
        "dropbear": shutil.which("dropbear", path=SEARCH_PATH) if dropbear else "brought",
        "ssh": shutil.which("ssh", path=SEARCH_PATH),
        "libnss_wrapper.so": NSS_WRAPPER,
    }
    missing = [name for name, path in found.items() if path is None]
    if not missing:
        return None
    return (
        f"{', '.join(missing)} not installed (Debian: dropbear-bin openssh-client libnss-wrapper)"
    )


def login_as_me(scratch: Path, home: Path) -> tuple[str, dict[str, str]]:
    """A user name and the runner environment that makes ``home`` that user's home."""
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    passwd, groups = scratch / "passwd", scratch / "group"
    passwd.write_text(f"{user}:x:{os.getuid()}:{os.getgid()}:test:{home}:/bin/sh\n")
    groups.write_text(f"{group}:x:{os.getgid()}:\n")
    env = {"NSS_WRAPPER_PASSWD": str(passwd), "NSS_WRAPPER_GROUP": str(groups)}
    return user, {**env, "LD_PRELOAD": str(NSS_WRAPPER)}


def private_passwd_missing() -> str | None:
    """Why ``with_private_passwd`` cannot work here, or None."""
    if os.getuid() != 0:
        return "a private /etc/passwd (unshare -m, mount --bind) needs root"
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return "unshare or mount is not installed (util-linux, mount)"
    return None


def with_private_passwd(scratch: Path, argv: list[str]) -> list[str]:
    """``argv`` run in a private mount namespace where login_as_me's passwd and group files
    (in ``scratch``) are ``/etc/passwd`` and ``/etc/group``."""
    script = 'mount --bind "$1" /etc/passwd && mount --bind "$2" /etc/group && shift 2 && exec "$@"'
    files = [str(scratch / "passwd"), str(scratch / "group")]
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *files, *argv]


def ssh_run(user: str, key: Path, port: int, command: str) -> subprocess.CompletedProcess[str]:
    """``command`` run over SSH on 127.0.0.1:``port`` with ``key``, trusting any host key."""
    return subprocess.run(
        ["ssh", "-F", "/dev/null", "-i", str(key), "-p", str(port)]
        + ["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no"]
        + ["-o", "UserKnownHostsFile=/dev/null", f"{user}@127.0.0.1", command],
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_login_sees_environment(user: str, home: Path, port: int, marker: str) -> None:
    """Log in with the runner's ``id_container``: the session sees ``marker`` (a line of
    environ.txt, ``NAME=value``) and starts in ``home``."""
    login = ssh_run(user, home / "id_container", port, "env; pwd")
    assert login.returncode == 0, login.stderr
    lines = login.stdout.splitlines()
    name, value = marker.split("=", 1)
    session_env = dict(line.split("=", 1) for line in lines if "=" in line)
    assert session_env[name] == value
    assert lines[-1] == str(home)
