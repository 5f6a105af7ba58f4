"""Reading built sdists and wheels: what a file name claims, and what the archive holds."""

from __future__ import annotations

import email.parser
import stat
import tarfile
import time
import zipfile
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Literal

from packaging.tags import Tag
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

from release.errors import ReleaseError

Kind = Literal["sdist", "wheel"]


@dataclass(frozen=True)
class Artifact:
    path: Path
    kind: Kind
    name: NormalizedName
    version: Version
    tags: frozenset[Tag] = frozenset()

    @property
    def platform_key(self) -> str:
        """What distinguishes two wheels of one release: their tags ("" for the sdist)."""
        return ".".join(sorted(str(tag) for tag in self.tags))


@dataclass(frozen=True)
class Member:
    """One archive entry, with the attributes a file listing shows."""

    path: str
    mode: int
    size: int
    is_dir: bool
    owner: str
    mtime: str

    def listing_line(self) -> str:
        kind = stat.S_IFDIR if self.is_dir else stat.S_IFREG
        mode = stat.filemode(kind | self.mode)
        return f"{mode} {self.owner:>13} {self.size:>9} {self.mtime} {self.path}"


def parse_artifact(path: Path) -> Artifact | None:
    """The artifact a file name describes; None for files that are not sdists or wheels."""
    try:
        if path.name.endswith(".whl"):
            name, version, _, tags = parse_wheel_filename(path.name)
            return Artifact(path, "wheel", name, version, tags)
        if path.name.endswith(".tar.gz"):
            name, version = parse_sdist_filename(path.name)
            return Artifact(path, "sdist", name, version)
    except (InvalidWheelFilename, InvalidSdistFilename) as error:
        raise ReleaseError(f"{path}: not a valid artifact name: {error}") from None
    return None


def list_artifacts(directory: Path) -> list[Artifact]:
    if not directory.is_dir():
        raise ReleaseError(f"dist directory {directory} does not exist")
    found = (parse_artifact(path) for path in sorted(directory.iterdir()) if path.is_file())
    return [artifact for artifact in found if artifact is not None]


@dataclass(frozen=True)
class Contents:
    """Everything in one archive, read in a single pass."""

    members: dict[str, Member]
    data: dict[str, bytes]

    def metadata_path(self, kind: Kind) -> str | None:
        """The core metadata file: `<dir>/PKG-INFO` (sdist) or `*.dist-info/METADATA` (wheel)."""
        if kind == "sdist":
            return self._top_dir_file("PKG-INFO")
        return self._top_dir_file("METADATA", ".dist-info")

    def wheel_file(self) -> Message | None:
        path = self._top_dir_file("WHEEL", ".dist-info")
        return None if path is None else parse_metadata(self.data[path])

    def _top_dir_file(self, name: str, dir_suffix: str = "") -> str | None:
        """`<dir>/<name>`, for the first top-level directory whose name ends in `dir_suffix`."""
        for path in sorted(self.data):
            top, _, rest = path.partition("/")
            if rest == name and top.endswith(dir_suffix):
                return path
        return None


def read_contents(artifact: Artifact) -> Contents:
    try:
        if artifact.kind == "wheel":
            return _read_zip(artifact.path)
        return _read_tar(artifact.path)
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as error:
        raise ReleaseError(f"{artifact.path}: cannot read the archive: {error}") from None


def _read_zip(path: Path) -> Contents:
    members: dict[str, Member] = {}
    data: dict[str, bytes] = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            member = _zip_member(info)
            members[member.path] = member
            if not info.is_dir():
                data[member.path] = archive.read(info)
    return Contents(members, data)


def _read_tar(path: Path) -> Contents:
    members: dict[str, Member] = {}
    data: dict[str, bytes] = {}
    with tarfile.open(path, "r:*") as archive:
        for entry in archive:
            member = _tar_member(entry)
            members[member.path] = member
            handle = archive.extractfile(entry) if entry.isfile() else None
            if handle is not None:
                data[member.path] = handle.read()
    return Contents(members, data)


def _zip_member(info: zipfile.ZipInfo) -> Member:
    mode = (info.external_attr >> 16) & 0o7777
    stamp = "{:04d}-{:02d}-{:02d} {:02d}:{:02d}:{:02d}".format(*info.date_time)
    return Member(info.filename.rstrip("/"), mode, info.file_size, info.is_dir(), "", stamp)


def _tar_member(entry: tarfile.TarInfo) -> Member:
    owner = f"{entry.uname or entry.uid}/{entry.gname or entry.gid}"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(entry.mtime))
    return Member(
        entry.name.rstrip("/"), entry.mode & 0o7777, entry.size, entry.isdir(), owner, stamp
    )


def read_metadata(artifact: Artifact, contents: Contents) -> Message:
    path = contents.metadata_path(artifact.kind)
    if path is None:
        raise ReleaseError(f"{artifact.path.name}: no core metadata (PKG-INFO or METADATA) found")
    return parse_metadata(contents.data[path])


def parse_metadata(data: bytes) -> Message:
    return email.parser.BytesParser().parsebytes(data)
