"""Writes tiny sdists and wheels by hand, as `./pants package ::` would, with no build backend.

Also a stand-in package command for the tests: `python distfactory.py DIST_DIR NAME...` writes
one sdist and one wheel per NAME at the version in ./VERSION, deterministically; `NAME:sdist`
writes its sdist only, as the build does for a krunner whose platform wheels were skipped.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import re
import sys
import tarfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import Version

REQUIRES_PYTHON = ">=3.12,<3.13"
FIXED_TIME = (2024, 3, 1, 0, 0, 0)


@dataclass
class Dist:
    """One distribution's artifacts; fields default to a correct release."""

    name: str
    version: str
    files: dict[str, bytes] = field(default_factory=dict)
    requires: list[str] = field(default_factory=list)
    requires_python: str | None = REQUIRES_PYTHON
    tag: str = "py3-none-any"
    purelib: bool = True

    @property
    def stem(self) -> str:
        return f"{canonicalize_name(self.name).replace('-', '_')}-{Version(self.version)}"

    def metadata(self) -> bytes:
        lines = ["Metadata-Version: 2.1", f"Name: {self.name}", f"Version: {Version(self.version)}"]
        lines.append("Summary: A test distribution")
        if self.requires_python is not None:
            lines.append(f"Requires-Python: {self.requires_python}")
        lines += [f"Requires-Dist: {requirement}" for requirement in self.requires]
        lines += ["Description-Content-Type: text/markdown", "", f"# {self.name}", ""]
        return "\n".join(lines).encode()


def default_files(name: str, version: str) -> dict[str, bytes]:
    """`ai/backend/<last word of name>/__init__.py` carrying the version, like the real packages."""
    package = re.sub(r"\W", "_", name.rsplit("-", 1)[-1])
    init = f'__version__ = "{Version(version)}"\n'.encode()
    return {f"ai/backend/{package}/__init__.py": init}


def write_wheel(directory: Path, dist: Dist) -> Path:
    dist_info = f"{dist.stem}.dist-info"
    wheel_text = (
        f"Wheel-Version: 1.0\nGenerator: distfactory\n"
        f"Root-Is-Purelib: {'true' if dist.purelib else 'false'}\nTag: {dist.tag}\n"
    )
    files = {
        **dist.files,
        f"{dist_info}/METADATA": dist.metadata(),
        f"{dist_info}/WHEEL": wheel_text.encode(),
    }
    record = [_record_line(path, data) for path, data in files.items()] + [f"{dist_info}/RECORD,,"]
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    path = directory / f"{dist.stem}-{dist.tag}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, data in files.items():
            archive.writestr(zipfile.ZipInfo(member, date_time=FIXED_TIME), data)
    return path


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def write_sdist(directory: Path, dist: Dist, extra: Mapping[str, bytes] | None = None) -> Path:
    files = {"PKG-INFO": dist.metadata(), "setup.py": b"from setuptools import setup\nsetup()\n"}
    files.update(dist.files)
    files.update(extra or {})
    path = directory / f"{dist.stem}.tar.gz"
    with gzip.GzipFile(path, "wb", mtime=0) as compressed:
        with tarfile.open(fileobj=compressed, mode="w") as archive:
            for member, data in sorted(files.items()):
                info = tarfile.TarInfo(f"{dist.stem}/{member}")
                info.size, info.mtime, info.mode = len(data), 1709251200, 0o644
                archive.addfile(info, io.BytesIO(data))
    return path


def write_release(
    directory: Path, version: str, names: Sequence[str], sdist_only: Sequence[str] = ()
) -> list[Dist]:
    """A correct release: every name as an sdist and a wheel (only an sdist for those in
    `sdist_only`), first-party pins at `version` on every name before it."""
    directory.mkdir(parents=True, exist_ok=True)
    dists = []
    for index, name in enumerate(names):
        pins = [f"{other}=={Version(version)}" for other in names[:index]]
        dist = Dist(name, version, default_files(name, version), requires=pins)
        if name not in sdist_only:
            write_wheel(directory, dist)
        write_sdist(directory, dist)
        dists.append(dist)
    return dists


if __name__ == "__main__":
    specs = [spec.partition(":") for spec in sys.argv[2:]]
    sdist_only = [name for name, _, kind in specs if kind == "sdist"]
    write_release(
        Path(sys.argv[1]), Path("VERSION").read_text().strip(), [s[0] for s in specs], sdist_only
    )
