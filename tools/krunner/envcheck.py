"""Checks a built krunner archive against what its wheel promises; `release verify` runs it.

Layout (the agent's mount points, `bin/python`), the interpreter's minor version, the installed
distributions (exactly the pinned wheels), every ELF file against auditwheel's policy of the
wheel's platform tag (tools/krunner/audit.py), the SBOM (tools/krunner/sbom.py) against the
archive and the wheel's copy, and the licence files of CPython and of every distribution.
"""

from __future__ import annotations

import io
import re
import tarfile
import tempfile
from collections.abc import Iterable, Mapping
from email.parser import BytesHeaderParser
from pathlib import Path

from packaging.utils import canonicalize_name

from tools.krunner.audit import AuditError, audit_tree
from tools.krunner.pins import WheelPin
from tools.krunner.sbom import SBOM_FILE, SbomError, check_sbom, cpython_version, find_wheel_sbom

# Distributions the interpreter archive itself ships.
INTERPRETER_DISTRIBUTIONS = {"pip"}
_DIST_INFO = re.compile(r"\./lib/python[\d.]+/site-packages/([^/]+)-([^-/]+)\.dist-info/METADATA")
_LICENCE_FILE = re.compile(r"(LICEN[CS]E|COPYING|NOTICE)", re.IGNORECASE)


def check_environment(
    archive: bytes,
    platform: str,
    python_minor: str,
    pins: Iterable[WheelPin],
    wheel_files: Mapping[str, bytes],
) -> list[str]:
    """Every way ``archive`` breaks the promises of its wheel's platform tag ``platform``
    (e.g. manylinux_2_26_x86_64); empty when it keeps them all. ``wheel_files`` are the files
    of the wheel carrying it (by path), whose SBOM must be the archive's."""
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
        sbom = root / SBOM_FILE
        problems += check_sbom(
            sbom.read_bytes() if sbom.is_file() else None,
            find_wheel_sbom(wheel_files),
            installed,
            _cpython_version(root, python_minor),
        )
        problems += licence_problems(root, python_minor)
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


def _cpython_version(root: Path, python_minor: str) -> str | None:
    try:
        return cpython_version(root, python_minor)
    except SbomError:
        return None  # the layout check names the missing interpreter


def licence_problems(root: Path, python_minor: str) -> list[str]:
    """CPython's LICENSE.txt, and for every installed distribution the licence files its
    METADATA names (License-File, under .dist-info/licenses/ or .dist-info/), or at least one
    (licenses/*, LICENSE*, COPYING*, NOTICE*) where it names none."""
    lib = root / "lib" / f"python{python_minor}"
    problems = []
    if not (lib / "os.py").is_file():
        return []  # no CPython at all: the layout check says so
    if not (lib / "LICENSE.txt").is_file():
        problems.append(f"ships no CPython licence ./lib/python{python_minor}/LICENSE.txt")
    for dist_info in sorted((lib / "site-packages").glob("*.dist-info")):
        shown = "./" + dist_info.relative_to(root).as_posix()
        try:
            metadata = BytesHeaderParser().parsebytes((dist_info / "METADATA").read_bytes())
        except OSError as error:
            problems.append(f"{shown} has no readable METADATA: {error.strerror}")
            continue
        named = metadata.get_all("License-File") or []
        missing = [
            name
            for name in named
            if not (dist_info / "licenses" / name).is_file() and not (dist_info / name).is_file()
        ]
        present = [
            path
            for path in dist_info.rglob("*")
            if path.is_file()
            and (
                path.relative_to(dist_info).parts[0] == "licenses" or _LICENCE_FILE.match(path.name)
            )
        ]
        if missing:
            problems.append(
                f"{shown} lacks the licence files its METADATA names: {', '.join(missing)}"
            )
        elif not present:
            problems.append(
                f"{shown} ships no licence file (licenses/, LICENSE*, COPYING*, NOTICE*)"
            )
    return problems
