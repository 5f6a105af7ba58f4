"""Typed view of the data files of a krunner package.

A krunner package ``ai.backend.krunner.<name>`` ships, next to its ``plugin`` module:

- ``versions.txt``: the distro keys it provides, one per line;
- ``krunner-version.<distro>.txt``: the volume version, an integer;
- ``krunner-python.<distro>.txt``: the ``major.minor`` version of the bundled CPython;
- ``krunner-env.<distro>.<arch>.tar.xz``: the environment archive, once built.

The agent depends on these exact names. This module reads them with importlib.resources, so it
works wherever the package is installed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Final, Literal, get_args

__all__ = [
    "ARCHES",
    "Arch",
    "DistroManifest",
    "KrunnerManifest",
    "KrunnerManifestError",
    "Libc",
    "MissingArchiveError",
    "load_manifest",
]

Arch = Literal["x86_64", "aarch64"]
Libc = Literal["gnu", "musl"]
ARCHES: Final[tuple[Arch, ...]] = get_args(Arch)

_DISTRO_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_PYTHON_VERSION = re.compile(r"\d+\.\d+")
_VOLUME_VERSION = re.compile(r"\d+")


class KrunnerManifestError(Exception):
    """A krunner package's data files are missing or malformed."""


class MissingArchiveError(KrunnerManifestError):
    """The environment archive of a distro and architecture is not in the package."""

    def __init__(self, package: str, distro: str, arch: str, filename: str) -> None:
        super().__init__(
            f"{package} has no krunner environment for distro {distro!r} on {arch}: "
            f"expected {filename} in the package (the archive is built separately, "
            "so source distributions and checkouts lack it)"
        )
        self.package = package
        self.distro = distro
        self.arch = arch
        self.filename = filename


@dataclass(frozen=True)
class DistroManifest:
    """What a krunner package provides for one distro key."""

    package: str
    key: str
    python_version: str
    volume_version: int

    def archive_name(self, arch: Arch) -> str:
        return f"krunner-env.{self.key}.{arch}.tar.xz"

    def archive(self, arch: Arch) -> Traversable:
        """The environment archive for ``arch``.

        Use ``importlib.resources.as_file()`` where a file system path is needed.
        """
        if arch not in ARCHES:
            raise ValueError(f"unknown architecture {arch!r}; expected one of {ARCHES}")
        name = self.archive_name(arch)
        archive = files(self.package).joinpath(name)
        if not archive.is_file():
            raise MissingArchiveError(self.package, self.key, arch, name)
        return archive

    def available_arches(self) -> tuple[Arch, ...]:
        root = files(self.package)
        return tuple(arch for arch in ARCHES if root.joinpath(self.archive_name(arch)).is_file())


@dataclass(frozen=True)
class KrunnerManifest:
    """All distros of one krunner package, in the order of its ``versions.txt``."""

    package: str
    libc: Libc
    distros: tuple[DistroManifest, ...]

    @property
    def distro_keys(self) -> tuple[str, ...]:
        return tuple(distro.key for distro in self.distros)

    def distro(self, key: str) -> DistroManifest:
        for distro in self.distros:
            if distro.key == key:
                return distro
        raise KeyError(f"{self.package} provides no distro {key!r}; it has {self.distro_keys}")


def load_manifest(package: str, libc: Libc) -> KrunnerManifest:
    """Read the manifest of the krunner package ``package`` (e.g. ai.backend.krunner.alpine)."""
    root = files(package)
    distros = tuple(_read_distro(package, root, key) for key in _read_distro_keys(package, root))
    return KrunnerManifest(package=package, libc=libc, distros=distros)


def _read_distro(package: str, root: Traversable, key: str) -> DistroManifest:
    python_file, volume_file = f"krunner-python.{key}.txt", f"krunner-version.{key}.txt"
    python_version = _read_field(package, root, python_file, _PYTHON_VERSION, "major.minor")
    volume_version = _read_field(package, root, volume_file, _VOLUME_VERSION, "an integer")
    return DistroManifest(package, key, python_version, int(volume_version))


def _read_text(package: str, root: Traversable, name: str) -> str:
    resource = root.joinpath(name)
    if not resource.is_file():
        raise KrunnerManifestError(f"{package} lacks its data file {name}")
    return resource.read_text(encoding="utf-8")


def _read_distro_keys(package: str, root: Traversable) -> tuple[str, ...]:
    keys = tuple(line.strip() for line in _read_text(package, root, "versions.txt").splitlines())
    keys = tuple(key for key in keys if key)
    if not keys:
        raise KrunnerManifestError(f"{package}: versions.txt lists no distro")
    for key in keys:
        if not _DISTRO_KEY.fullmatch(key):
            raise KrunnerManifestError(
                f"{package}: versions.txt has a malformed distro key {key!r}"
            )
    if len(set(keys)) != len(keys):
        raise KrunnerManifestError(f"{package}: versions.txt lists a distro twice: {keys}")
    return keys


def _read_field(
    package: str, root: Traversable, name: str, pattern: re.Pattern[str], expected: str
) -> str:
    value = _read_text(package, root, name).strip()
    if not pattern.fullmatch(value):
        raise KrunnerManifestError(f"{package}: {name} holds {value!r}, not {expected}")
    return value
