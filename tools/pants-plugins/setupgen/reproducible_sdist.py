"""Makes setuptools' sdists byte-reproducible. Runs inside the PEP 517 build, not inside Pants.

The setupgen plugin places this module and a dist-info that registers `finalize` under
`setuptools.finalize_distribution_options` in every distribution's build chroot. Wheels are
already reproducible once SOURCE_DATE_EPOCH is set; sdists are not, because their tar members
carry the build sandbox's file times and owners and the gzip header carries the current time.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from typing import Any

# 1980-01-01, the earliest time a zip archive (a wheel) can hold, for builds outside a checkout.
FALLBACK_EPOCH = 315532800


def source_date_epoch() -> int:
    return int(os.environ.get("SOURCE_DATE_EPOCH") or FALLBACK_EPOCH)


def normalize_member(member: tarfile.TarInfo, epoch: int) -> tarfile.TarInfo:
    member.mtime = epoch
    member.uid = member.gid = 0
    member.uname = member.gname = "root"
    member.pax_headers = {}
    executable = member.isdir() or member.mode & 0o100
    member.mode = 0o755 if executable else 0o644
    return member


def normalize_sdist(path: str, epoch: int) -> None:
    """Rewrites a .tar.gz in place with sorted members and fixed metadata and gzip header."""
    with tarfile.open(path, "r:gz") as source:
        members = sorted(source.getmembers(), key=lambda m: m.name)
        contents = {m.name: _read(source, m) for m in members if m.isfile()}
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=epoch) as compressed:
        with tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as target:
            for member in members:
                data = contents.get(member.name)
                target.addfile(
                    normalize_member(member, epoch), io.BytesIO(data) if data is not None else None
                )
    temporary = f"{path}.normalized"
    with open(temporary, "wb") as out:
        out.write(buffer.getvalue())
    os.replace(temporary, path)


def _read(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    stream = archive.extractfile(member)
    assert stream is not None, member.name  # only called for regular files
    return stream.read()


def finalize(dist: Any) -> None:
    """setuptools hook: fix the wheel's timestamps and make `sdist` normalize its archives."""
    os.environ.setdefault("SOURCE_DATE_EPOCH", str(FALLBACK_EPOCH))
    base = dist.get_command_class("sdist")

    class ReproducibleSdist(base):  # type: ignore[misc, valid-type]
        def make_distribution(self) -> None:
            super().make_distribution()
            for archive in self.archive_files:
                normalize_sdist(archive, source_date_epoch())

    dist.cmdclass["sdist"] = ReproducibleSdist
