"""Checks a built krunner archive against what its wheel promises; `release verify` runs it.

Layout (the agent's mount points, `bin/python`), the interpreter's minor version, the installed
distributions (exactly the pinned wheels) and every ELF file against auditwheel's policy of the
wheel's platform tag (tools/krunner/audit.py).
"""

from __future__ import annotations

import io
import re
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path

from packaging.utils import canonicalize_name

from tools.krunner.audit import AuditError, audit_tree
from tools.krunner.pins import WheelPin

# Distributions the interpreter archive itself ships.
INTERPRETER_DISTRIBUTIONS = {"pip"}
_DIST_INFO = re.compile(r"\./lib/python[\d.]+/site-packages/([^/]+)-([^-/]+)\.dist-info/METADATA")


def check_environment(
    archive: bytes, platform: str, python_minor: str, pins: Iterable[WheelPin]
) -> list[str]:
    """Every way ``archive`` breaks the promises of its wheel's platform tag ``platform``
    (e.g. manylinux_2_26_x86_64); empty when it keeps them all."""
    try:
        tar = tarfile.open(fileobj=io.BytesIO(archive), mode="r:xz")
    except (tarfile.TarError, EOFError) as error:
        return [f"is not a tar.xz archive: {error}"]
    problems: list[str] = []
    with tar, tempfile.TemporaryDirectory(prefix="krunner-check-") as scratch:
        root = Path(scratch)
        try:
            members = {member.name: member for member in tar.getmembers()}
            tar.extractall(root, filter="data")
        except (tarfile.TarError, EOFError, OSError) as error:
            return [f"cannot be unpacked: {error}"]
        installed: dict[str, str] = {
            canonicalize_name(match[1]): match[2]
            for name in members
            if (match := _DIST_INFO.fullmatch(name))
        }
        try:
            problems += audit_tree(root, platform)
        except AuditError as error:
            problems.append(str(error))
    problems += _layout_problems(members, python_minor)
    expected = {pin.name: pin.version for pin in pins}
    for name in sorted(set(expected) | (set(installed) - INTERPRETER_DISTRIBUTIONS)):
        if installed.get(name) != expected.get(name):
            problems.append(
                f"installs {name} {installed.get(name, '(none)')}, the lock pins"
                f" {expected.get(name, '(none)')}"
            )
    return problems


def _layout_problems(members: dict[str, tarfile.TarInfo], python_minor: str) -> list[str]:
    site = f"./lib/python{python_minor}/site-packages"
    problems = []
    if f"./lib/python{python_minor}/os.py" not in members:
        problems.append(f"holds no CPython {python_minor} (no ./lib/python{python_minor}/os.py)")
    for mount_point in (f"{site}/ai/backend/kernel", f"{site}/ai/backend/helpers"):
        member = members.get(mount_point)
        if member is None or not member.isdir():
            problems.append(f"lacks the mount point directory {mount_point}")
        elif any(name.startswith(mount_point + "/") for name in members):
            problems.append(f"{mount_point} is not empty: the agent mounts over it")
    for binary in ("./bin/python", "./bin/python3"):
        if binary not in members:
            problems.append(f"lacks {binary}")
    return problems
