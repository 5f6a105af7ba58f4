"""Packs the running CPython into an `install_only` archive: a stand-in for the pinned download.

python-build-standalone cannot be downloaded everywhere (CI cannot reach its host), so CI builds
the static-gnu x86_64 environment from this machine's CPython instead:

    python3.12 -m tools.krunner.standin OUTPUT.tar.gz
    KRUNNER_PYTHON_ARCHIVE_STATIC_GNU_X86_64=OUTPUT.tar.gz ./pants package ::

A local build (pyenv's, say) finds its libpython through an absolute RUNPATH; the stand-in
rewrites it in place to an $ORIGIN-relative one, so that the extracted copy is relocatable.
Its tests, site-packages and bytecode are left out. It links against this machine's glibc, so
`release verify` rejects wheels built from it.
"""

from __future__ import annotations

import gzip
import io
import os
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

EPOCH = 315532800
_SKIPPED_DIRS = {"__pycache__", "test", "idlelib", "tkinter", "turtledemo"}


class StandinError(Exception):
    """The interpreter cannot be made relocatable."""


def relocated_elf(data: bytes, absolute_lib: str, relative_dir: str) -> bytes:
    """``data`` with its RUNPATH ``absolute_lib`` replaced by $ORIGIN-relative, NUL padded."""
    old = absolute_lib.encode() + b"\0"
    count = data.count(old)
    if count == 0:
        return data
    if count > 1:
        raise StandinError(f"{absolute_lib!r} occurs {count} times: cannot tell the RUNPATH")
    target = os.path.relpath("lib", relative_dir)
    new = ("$ORIGIN" if target == "." else f"$ORIGIN/{target}").encode()
    return data.replace(old, new + b"\0" * (len(old) - len(new)))


def _files(prefix: Path) -> Iterator[Path]:
    site_packages = f"lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages"
    for directory, subdirs, files in os.walk(prefix):
        relative = Path(directory).relative_to(prefix).as_posix()
        subdirs[:] = sorted(d for d in subdirs if d not in _SKIPPED_DIRS)
        if relative == site_packages:
            subdirs.clear()
            files = [f for f in files if f == "README.txt"]
        elif relative.startswith("lib/python") and "/config-" in relative:
            files = [f for f in files if not f.endswith((".a", ".o"))]
        yield Path(directory)
        yield from (Path(directory, name) for name in sorted(files))


def make_standin(prefix: Path, output: Path) -> None:
    absolute_lib = str(prefix / "lib")
    handle, partial = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.")
    try:
        with os.fdopen(handle, "wb") as raw, gzip.GzipFile(
            fileobj=raw, mode="wb", mtime=EPOCH, compresslevel=1
        ) as compressed, tarfile.open(fileobj=compressed, mode="w") as tar:
            for path in _files(prefix):
                relative = path.relative_to(prefix).as_posix()
                info = tar.gettarinfo(
                    str(path), "python" if relative == "." else f"python/{relative}"
                )
                info.mtime, info.uid, info.gid, info.uname, info.gname = EPOCH, 0, 0, "", ""
                if not info.isreg():
                    tar.addfile(info)
                    continue
                data = path.read_bytes()
                if data.startswith(b"\x7fELF"):
                    data = relocated_elf(data, absolute_lib, os.path.dirname(relative))
                tar.addfile(info, io.BytesIO(data))
        os.chmod(partial, 0o644)
        os.replace(partial, output)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: python3.12 -m tools.krunner.standin OUTPUT.tar.gz", file=sys.stderr)
        return 2
    output = Path(sys.argv[1])
    output.parent.mkdir(parents=True, exist_ok=True)
    make_standin(Path(sys.base_prefix), output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
