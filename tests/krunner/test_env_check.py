"""The archive check `release verify` runs on krunner platform wheels (tools/krunner/envcheck)."""

from __future__ import annotations

import io
import json
import os
import platform
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

from tools.krunner.envcheck import check_environment
from tools.krunner.pins import WheelPin
from tools.krunner.sbom import ARCHIVE_MEMBER, InterpreterSource, build_sbom

SITE = "./lib/python3.12/site-packages"
MACHINE = platform.machine()
TAG = f"manylinux_2_26_{MACHINE}"
PIN = WheelPin("demo-1.0-py3-none-any.whl", "u", "0" * 64, name="demo", version="1.0")
WHEEL_SBOM = "backend_ai_krunner_static_gnu-1.0.dist-info/sboms/krunner-env.cdx.json"
Files = dict[str, bytes | None]


def this_interpreter() -> bytes:
    """An ELF file built on this machine, against its glibc."""
    return Path(os.path.realpath(sys.executable)).read_bytes()


def archive(files: Files) -> bytes:
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


def metadata(name: str, version: str) -> bytes:
    return (
        f"Metadata-Version: 2.4\nName: {name}\nVersion: {version}\nLicense-Expression: MIT\n"
        "License-File: LICENSE\n"
    ).encode()


def good_layout(python: bytes = b"#!/bin/sh\n") -> Files:
    return {
        "./bin/python3": python,
        "./bin/python": b"",
        "./include/python3.12/patchlevel.h": b'#define PY_VERSION "3.12.16"\n',
        "./lib/python3.12/os.py": b"",
        "./lib/python3.12/LICENSE.txt": b"PSF\n",
        f"{SITE}/ai/backend/kernel": None,
        f"{SITE}/ai/backend/helpers": None,
        f"{SITE}/demo-1.0.dist-info/METADATA": metadata("demo", "1.0"),
        f"{SITE}/demo-1.0.dist-info/licenses/LICENSE": b"MIT\n",
        # The interpreter's own.
        f"{SITE}/pip-24.0.dist-info/METADATA": metadata("pip", "24.0"),
        f"{SITE}/pip-24.0.dist-info/licenses/LICENSE": b"MIT\n",
    }


def sbom_of(files: Files) -> bytes:
    """The SBOM the builder would make of these files."""
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        for name, data in files.items():
            path = root / name
            if data is None:
                path.mkdir(parents=True, exist_ok=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
        source = InterpreterSource("1" * 64, "cpython.tar.gz", None)
        return build_sbom(root, "3.12", "env", source, {PIN.filename: PIN.sha256}, 0)


def check(
    files: Files, tag: str = TAG, sbom: bytes | None = None, wheel_sbom: bytes | None = None
) -> list[str]:
    """check_environment of an archive of ``files`` plus the SBOM (by default, theirs) in
    the archive and in the wheel."""
    sbom = sbom_of(files) if sbom is None else sbom
    wheel_sbom = sbom if wheel_sbom is None else wheel_sbom
    wheel = {WHEEL_SBOM: wheel_sbom} if wheel_sbom else {}
    files = {**files, ARCHIVE_MEMBER: sbom} if sbom else files
    return check_environment(archive(files), tag, "3.12", [PIN], wheel)


def test_a_layout_keeping_its_promises_passes() -> None:
    assert check(good_layout()) == []


def test_an_interpreter_built_against_a_newer_glibc_fails_manylinux() -> None:
    # What a stand-in-built wheel looks like: this machine's glibc is far above 2.17.
    problems = check(good_layout(this_interpreter()), f"manylinux_2_17_{MACHINE}")
    symbols = [p for p in problems if "symbol versions" in p]
    assert len(symbols) == 1, problems
    assert symbols[0].startswith("./bin/python3: needs symbol versions GLIBC_2.")
    assert f"beyond manylinux_2_17_{MACHINE} (auditwheel: at most manylinux_2_" in symbols[0]


def test_a_glibc_interpreter_fails_musllinux() -> None:
    problems = check(good_layout(this_interpreter()), f"musllinux_1_2_{MACHINE}")
    assert f"./bin/python3: is linked against glibc, but musllinux_1_2_{MACHINE} is for musl" in (
        problems
    )


def test_an_unknown_platform_tag_is_named() -> None:
    [problem] = check(good_layout(), "win_amd64")
    assert problem.startswith("win_amd64 is not a manylinux or musllinux platform tag")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"./lib/python3.12/os.py": "drop"}, "holds no CPython 3.12"),
        ({f"{SITE}/ai/backend/kernel": "drop"}, "lacks the mount point directory"),
        ({f"{SITE}/ai/backend/helpers/x.py": b""}, "helpers is not empty"),
        ({"./bin/python": "drop"}, "lacks ./bin/python"),
        (
            {
                f"{SITE}/demo-1.0.dist-info/METADATA": "drop",
                f"{SITE}/demo-1.0.dist-info/licenses/LICENSE": "drop",
            },
            "installs demo (none), the lock pins 1.0",
        ),
        (
            {
                f"{SITE}/extra-2.0.dist-info/METADATA": metadata("extra", "2.0"),
                f"{SITE}/extra-2.0.dist-info/licenses/LICENSE": b"",
            },
            "installs extra 2.0, the lock pins (none)",
        ),
        (
            {f"{SITE}/demo-1.0.dist-info/licenses/LICENSE": "drop"},
            "./lib/python3.12/site-packages/demo-1.0.dist-info lacks the licence files its"
            " METADATA names: LICENSE",
        ),
        (
            {"./lib/python3.12/LICENSE.txt": "drop"},
            "ships no CPython licence ./lib/python3.12/LICENSE.txt",
        ),
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
    problems = check(files)
    assert len(problems) == 1 and problem in problems[0], problems


def test_not_an_archive() -> None:
    assert check_environment(b"xz", TAG, "3.12", [], {})[0].startswith("is not a tar.xz")


def test_an_archive_without_sbom_fails() -> None:
    assert check(good_layout(), sbom=b"") == [f"has no SBOM {ARCHIVE_MEMBER}"]


def test_the_wheels_sbom_must_be_the_archives() -> None:
    files = good_layout()
    assert check(files, wheel_sbom=b"") == [
        "the wheel has no .dist-info/sboms/krunner-env.cdx.json"
    ]
    other = sbom_of({**files, "./include/python3.12/patchlevel.h": b'#define PY_VERSION "3.12.1"'})
    assert check(files, wheel_sbom=other) == [
        f"the wheel's .dist-info/sboms/krunner-env.cdx.json differs from {ARCHIVE_MEMBER}"
    ]


def test_an_sbom_listing_other_contents_fails() -> None:
    files = good_layout()
    document = json.loads(sbom_of(files))
    for component in document["components"]:
        if component["name"] == "demo":
            component["version"] = "0.9"
        if component["name"] == "cpython":
            component["version"] = "3.12.1"
    document["components"].append(
        {"type": "library", "bom-ref": "x", "name": "x", "version": "1", "purl": "pkg:pypi/x@1"}
    )
    assert check(files, sbom=json.dumps(document).encode()) == [
        f"{ARCHIVE_MEMBER} lists demo 0.9, the archive installs 1.0",
        f"{ARCHIVE_MEMBER} lists x 1, the archive installs (none)",
        f"{ARCHIVE_MEMBER} lists CPython 3.12.1, the archive holds 3.12.16",
    ]


def test_an_sbom_the_schema_refuses_fails() -> None:
    document = json.loads(sbom_of(good_layout()))
    document["components"][0]["type"] = "spaceship"
    [problem] = check(good_layout(), sbom=json.dumps(document).encode())
    assert problem.startswith(f"{ARCHIVE_MEMBER} is not valid CycloneDX 1.6: ")
    assert "spaceship" in problem
