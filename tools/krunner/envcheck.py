"""Checks a built krunner archive against what its wheel promises; `release verify` runs it.

Layout (the agent's mount points, `bin/python`), the interpreter's minor version, the installed
distributions (exactly the pinned wheels) and every ELF file's glibc symbol versions, which must
stay within the platform tag: at most GLIBC_2.N for manylinux_2_N, none at all for musllinux.
"""

from __future__ import annotations

import io
import re
import struct
import tarfile
from collections.abc import Iterable, Iterator

from packaging.utils import canonicalize_name

from tools.krunner.pins import WheelPin

SHT_GNU_VERNEED = 0x6FFFFFFE
# Distributions the interpreter archive itself ships.
INTERPRETER_DISTRIBUTIONS = {"pip"}
_DIST_INFO = re.compile(r"\./lib/python[\d.]+/site-packages/([^/]+)-([^-/]+)\.dist-info/METADATA")


def required_symbol_versions(elf: bytes) -> set[str]:
    """The versions (e.g. GLIBC_2.17) an ELF file's .gnu.version_r asks of its libraries."""
    if len(elf) < 64 or not elf.startswith(b"\x7fELF"):
        return set()
    is64, order = elf[4] == 2, "<" if elf[5] == 1 else ">"
    if is64:
        shoff, shentsize, shnum = (
            struct.unpack_from(order + f, elf, o)[0]
            for f, o in (("Q", 0x28), ("H", 0x3A), ("H", 0x3C))
        )
    else:
        shoff, shentsize, shnum = (
            struct.unpack_from(order + f, elf, o)[0]
            for f, o in (("I", 0x20), ("H", 0x2E), ("H", 0x30))
        )
    sections = [_section(elf, order, is64, shoff + i * shentsize) for i in range(shnum)]
    found: set[str] = set()
    for sh_type, offset, _size, link, info in sections:
        if sh_type != SHT_GNU_VERNEED or link >= len(sections):
            continue
        strtab = sections[link][1]
        entry = offset
        for _ in range(info):
            _, count, _, aux, following = struct.unpack_from(order + "HHIII", elf, entry)
            auxiliary = entry + aux
            for _ in range(count):
                _, _, _, name, next_aux = struct.unpack_from(order + "IHHII", elf, auxiliary)
                found.add(_string(elf, strtab + name))
                auxiliary += next_aux
            entry += following
    return found


def _section(elf: bytes, order: str, is64: bool, at: int) -> tuple[int, int, int, int, int]:
    if is64:
        _, sh_type, _, _, offset, size, link, info = struct.unpack_from(order + "IIQQQQII", elf, at)
    else:
        _, sh_type, _, _, offset, size, link, info = struct.unpack_from(order + "IIIIIIII", elf, at)
    return sh_type, offset, size, link, info


def _string(data: bytes, at: int) -> str:
    return data[at : data.index(b"\0", at)].decode("ascii", "replace")


def glibc_versions(versions: Iterable[str]) -> Iterator[tuple[int, int]]:
    for version in versions:
        if match := re.fullmatch(r"GLIBC_(\d+)\.(\d+)(?:\.\d+)?", version):
            yield int(match[1]), int(match[2])


def symbol_problems(name: str, versions: set[str], platform: str) -> list[str]:
    glibc = sorted(glibc_versions(versions))
    if platform.startswith("musllinux_"):
        return [f"{name} needs glibc symbols, but {platform} has no glibc"] if glibc else []
    floor = (2, int(platform.split("_")[2]))
    allowed = f"GLIBC_{floor[0]}.{floor[1]}"
    too_new = [f"GLIBC_{a}.{b}" for a, b in glibc if (a, b) > floor]
    if too_new:
        return [f"{name} needs {too_new[-1]}, newer than {platform} allows ({allowed})"]
    return []


def check_environment(
    archive: bytes, platform: str, python_minor: str, pins: Iterable[WheelPin]
) -> list[str]:
    """Every way ``archive`` breaks its wheel's promises; empty when it keeps them all."""
    try:
        tar = tarfile.open(fileobj=io.BytesIO(archive), mode="r:xz")
    except (tarfile.TarError, EOFError) as error:
        return [f"is not a tar.xz archive: {error}"]
    problems: list[str] = []
    members: dict[str, tarfile.TarInfo] = {}
    installed: dict[str, str] = {}
    with tar:
        for member in tar:
            members[member.name] = member
            if match := _DIST_INFO.fullmatch(member.name):
                installed[canonicalize_name(match[1])] = match[2]
            stream = tar.extractfile(member) if member.isreg() else None
            head = stream.read(4) if stream else b""
            if stream and head == b"\x7fELF":
                versions = required_symbol_versions(head + stream.read())
                problems += symbol_problems(member.name, versions, platform)
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
