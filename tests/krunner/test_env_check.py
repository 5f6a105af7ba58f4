"""The archive check `release verify` runs on krunner platform wheels (tools/krunner/envcheck)."""

from __future__ import annotations

import io
import os
import sys
import tarfile
from pathlib import Path

import pytest

from tools.krunner.envcheck import check_environment, required_symbol_versions, symbol_problems
from tools.krunner.pins import WheelPin

SITE = "./lib/python3.12/site-packages"
PIN = WheelPin("demo-1.0-py3-none-any.whl", "u", "0" * 64, name="demo", version="1.0")


def this_interpreter() -> bytes:
    """An ELF file built on this machine, against its glibc."""
    return Path(os.path.realpath(sys.executable)).read_bytes()


def archive(files: dict[str, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:xz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def good_layout(python: bytes = b"#!/bin/sh\n") -> dict[str, bytes | None]:
    return {
        "./bin/python3": python,
        "./bin/python": b"",
        "./lib/python3.12/os.py": b"",
        f"{SITE}/ai/backend/kernel": None,
        f"{SITE}/ai/backend/helpers": None,
        f"{SITE}/demo-1.0.dist-info/METADATA": b"",
        f"{SITE}/pip-24.0.dist-info/METADATA": b"",  # the interpreter's own
    }


def test_glibc_versions_are_read_from_a_real_elf_file() -> None:
    versions = required_symbol_versions(this_interpreter())
    assert any(v.startswith("GLIBC_2.") for v in versions), versions
    assert required_symbol_versions(b"#!/bin/sh\n") == set()


def test_a_layout_keeping_its_promises_passes() -> None:
    assert check_environment(archive(good_layout()), "manylinux_2_26", "3.12", [PIN]) == []


def test_an_interpreter_built_against_a_newer_glibc_fails_manylinux() -> None:
    # What a stand-in-built wheel looks like: this machine's glibc is far above 2.17.
    problems = check_environment(
        archive(good_layout(this_interpreter())), "manylinux_2_17", "3.12", [PIN]
    )
    assert len(problems) == 1
    assert problems[0].startswith("./bin/python3 needs GLIBC_2.")
    assert problems[0].endswith("newer than manylinux_2_17 allows (GLIBC_2.17)")


@pytest.mark.parametrize(
    ("versions", "platform", "problem"),
    [
        ({"GLIBC_2.2.5", "GLIBC_2.17"}, "manylinux_2_17", None),
        ({"GLIBC_2.17", "GLIBC_2.28", "GCC_3.0"}, "manylinux_2_26", "needs GLIBC_2.28"),
        ({"GLIBC_2.3"}, "musllinux_1_2", "has no glibc"),
        ({"GCC_3.0"}, "musllinux_1_2", None),
    ],
)
def test_symbol_policy(versions: set[str], platform: str, problem: str | None) -> None:
    problems = symbol_problems("x.so", versions, platform)
    assert (problem in problems[0]) if problem else problems == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"./lib/python3.12/os.py": "drop"}, "holds no CPython 3.12"),
        ({f"{SITE}/ai/backend/kernel": "drop"}, "lacks the mount point directory"),
        ({f"{SITE}/ai/backend/helpers/x.py": b""}, "helpers is not empty"),
        ({"./bin/python": "drop"}, "lacks ./bin/python"),
        (
            {f"{SITE}/demo-1.0.dist-info/METADATA": "drop"},
            "installs demo (none), the lock pins 1.0",
        ),
        ({f"{SITE}/extra-2.0.dist-info/METADATA": b""}, "installs extra 2.0, the lock pins (none)"),
    ],
)
def test_broken_promises_are_named(change: dict[str, bytes | str], problem: str) -> None:
    files = good_layout()
    for name, data in change.items():
        if data == "drop":
            del files[name]
        else:
            assert isinstance(data, bytes)
            files[name] = data
    problems = check_environment(archive(files), "manylinux_2_26", "3.12", [PIN])
    assert len(problems) == 1 and problem in problems[0], problems


def test_not_an_archive() -> None:
    assert check_environment(b"xz", "manylinux_2_26", "3.12", [])[0].startswith("is not a tar.xz")
