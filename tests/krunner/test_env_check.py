"""The archive check `release verify` runs on krunner platform wheels (tools/krunner/envcheck)."""

from __future__ import annotations

import io
import os
import platform
import sys
import tarfile
from pathlib import Path

import pytest

from tools.krunner.envcheck import check_environment
from tools.krunner.pins import WheelPin

SITE = "./lib/python3.12/site-packages"
MACHINE = platform.machine()
TAG = f"manylinux_2_26_{MACHINE}"
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


def test_a_layout_keeping_its_promises_passes() -> None:
    assert check_environment(archive(good_layout()), TAG, "3.12", [PIN]) == []


def test_an_interpreter_built_against_a_newer_glibc_fails_manylinux() -> None:
    # What a stand-in-built wheel looks like: this machine's glibc is far above 2.17.
    problems = check_environment(
        archive(good_layout(this_interpreter())), f"manylinux_2_17_{MACHINE}", "3.12", [PIN]
    )
    symbols = [p for p in problems if "symbol versions" in p]
    assert len(symbols) == 1, problems
    assert symbols[0].startswith("./bin/python3: needs symbol versions GLIBC_2.")
    assert f"beyond manylinux_2_17_{MACHINE} (auditwheel: at most manylinux_2_" in symbols[0]


def test_a_glibc_interpreter_fails_musllinux() -> None:
    problems = check_environment(
        archive(good_layout(this_interpreter())), f"musllinux_1_2_{MACHINE}", "3.12", [PIN]
    )
    assert f"./bin/python3: is linked against glibc, but musllinux_1_2_{MACHINE} is for musl" in (
        problems
    )


def test_an_unknown_platform_tag_is_named() -> None:
    [problem] = check_environment(archive(good_layout()), "win_amd64", "3.12", [PIN])
    assert problem.startswith("win_amd64 is not a manylinux or musllinux platform tag")


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
    problems = check_environment(archive(files), TAG, "3.12", [PIN])
    assert len(problems) == 1 and problem in problems[0], problems


def test_not_an_archive() -> None:
    assert check_environment(b"xz", TAG, "3.12", [])[0].startswith("is not a tar.xz")
