"""The environment shared by every child: user processes, the Jupyter kernel and bootstrap.sh."""

from __future__ import annotations

import glob
import logging
import os
import pwd
from collections.abc import Mapping
from pathlib import Path

from .languages import Language

log = logging.getLogger(__name__)

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def read_environ_file(path: Path) -> dict[str, str]:
    """Parse ``KEY=VALUE`` lines; a bad line is skipped without losing the others."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return {}
    except OSError as e:
        log.warning("cannot read %s: %s", path, e)
        return {}
    result: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep or not key or "\0" in line:
            log.warning("%s:%d: skipping a line that is not KEY=VALUE", path, lineno)
            continue
        result[key] = value
    return result


def promote_path(path_value: str, entry: str) -> str:
    """Move ``entry`` to the front of a PATH value, dropping its duplicates."""
    rest = [p for p in path_value.split(":") if p and p != entry]
    return ":".join([entry, *rest])


def _login_home() -> str | None:
    try:
        return pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        return None


def build_child_env(
    base: Mapping[str, str],
    lang: Language,
    work_dir: Path,
    config_dir: Path,
    extra: Mapping[str, str],
) -> dict[str, str]:
    env = dict(base)
    env.setdefault("LANG", "C.UTF-8")
    env.setdefault("HOME", _login_home() or str(work_dir))
    env.setdefault("TERM", "xterm")
    env.setdefault("PATH", DEFAULT_PATH)
    env.setdefault("SHELL", "/bin/ash" if os.path.exists("/bin/ash") else "/bin/bash")
    values = {"work_dir": str(work_dir)}
    env.update((key, value.format_map(values)) for key, value in lang.env)
    env.update(read_environ_file(config_dir / "environ.txt"))
    for pattern in lang.extra_path:
        for directory in sorted(glob.glob(pattern.format_map(values))):
            env["PATH"] = f"{env['PATH']}:{directory}"
    for directory in ("/usr/local/cuda/bin", "/usr/local/nvidia/bin"):
        if os.path.isdir(directory):
            env["PATH"] = promote_path(env["PATH"], directory)
    if os.path.isdir("/home/linuxbrew/.linuxbrew"):
        env["PATH"] = promote_path(env["PATH"], "/home/linuxbrew/.linuxbrew/bin")
    env["PATH"] = promote_path(env["PATH"], str(work_dir / ".local" / "bin"))
    env.update(extra)
    return env
