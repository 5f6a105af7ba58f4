"""Builds a krunner platform wheel from the package's sdist plus one environment archive.

The sdist holds the package files, PKG-INFO (the wheel's METADATA) and the egg-info's
entry_points.txt; the wheel adds `krunner-env.<distro>.<arch>.tar.xz` next to the package
files and the archive's SBOM as `.dist-info/sboms/krunner-env.cdx.json` (PEP 770), declares the
platform in WHEEL (`Root-Is-Purelib: false`) and lists everything in RECORD.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

from packaging.utils import canonicalize_name

from tools.krunner.sbom import wheel_sbom_path

GENERATOR = "backend.ai-krunner-build"
ZIP_EPOCH_FLOOR = 315532800  # 1980-01-01, the earliest time a zip entry can hold


class SdistError(Exception):
    """The sdist lacks what a wheel needs."""


@dataclass(frozen=True)
class Sdist:
    name: str
    version: str
    metadata: bytes
    entry_points: bytes
    files: dict[str, bytes]  # package files by wheel path: ai/backend/krunner/...


def read_sdist(path: Path) -> Sdist:
    with tarfile.open(path, "r:gz") as tar:
        contents = {m.name: _read(tar, m) for m in tar.getmembers() if m.isfile() and "/" in m.name}
    top = next(iter(contents)).split("/", 1)[0]
    inner = {name.split("/", 1)[1]: data for name, data in contents.items()}
    if "PKG-INFO" not in inner:
        raise SdistError(f"{path.name} has no {top}/PKG-INFO")
    headers = HeaderParser().parsestr(inner["PKG-INFO"].decode("utf-8"))
    entry_points = [n for n in inner if n.endswith(".egg-info/entry_points.txt")]
    if len(entry_points) != 1:
        raise SdistError(f"{path.name} has {len(entry_points)} egg-info entry_points.txt, not one")
    files = {n: d for n, d in inner.items() if n.startswith("ai/")}
    return Sdist(
        headers["Name"], headers["Version"], inner["PKG-INFO"], inner[entry_points[0]], files
    )


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    stream = tar.extractfile(member)
    assert stream is not None  # called for regular files only
    return stream.read()


def wheel_filename(name: str, version: str, platform_tag: str) -> str:
    return f"{canonicalize_name(name).replace('-', '_')}-{version}-py3-none-{platform_tag}.whl"


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def build_wheel(
    sdist: Sdist,
    package_dir: str,
    archive: Path,
    sbom: bytes,
    platform_tag: str,
    out: Path,
    epoch: int,
) -> Path:
    """Write the platform wheel into ``out`` atomically; return its path."""
    dist_info = f"{canonicalize_name(sdist.name).replace('-', '_')}-{sdist.version}.dist-info"
    wheel_meta = (
        f"Wheel-Version: 1.0\nGenerator: {GENERATOR}\nRoot-Is-Purelib: false\n"
        f"Tag: py3-none-{platform_tag}\n"
    ).encode()
    small = {
        **sdist.files,
        f"{dist_info}/METADATA": sdist.metadata,
        f"{dist_info}/WHEEL": wheel_meta,
        f"{dist_info}/entry_points.txt": sdist.entry_points,
        wheel_sbom_path(dist_info): sbom,
    }
    archive_name, archive_bytes = f"{package_dir}/{archive.name}", archive.read_bytes()
    records = [f"{n},{_record_hash(d)},{len(d)}" for n, d in small.items()]
    records.append(f"{archive_name},{_record_hash(archive_bytes)},{len(archive_bytes)}")
    records.append(f"{dist_info}/RECORD,,")
    small[f"{dist_info}/RECORD"] = ("\n".join(sorted(records)) + "\n").encode()
    date_time = time.gmtime(max(epoch, ZIP_EPOCH_FLOOR))[:6]
    target = out / wheel_filename(sdist.name, sdist.version, platform_tag)
    handle, partial = tempfile.mkstemp(dir=out, prefix=f".{target.name}.")
    os.close(handle)
    try:
        with zipfile.ZipFile(partial, "w") as wheel:
            # Package files first, dist-info last, as wheel builders order them.
            for name in sorted(n for n in [*small, archive_name] if ".dist-info/" not in n):
                if name == archive_name:
                    _add(wheel, name, date_time, archive_bytes, zipfile.ZIP_STORED)
                else:
                    _add(wheel, name, date_time, small[name], zipfile.ZIP_DEFLATED)
            for name in sorted(n for n in small if ".dist-info/" in n and not n.endswith("RECORD")):
                _add(wheel, name, date_time, small[name], zipfile.ZIP_DEFLATED)
            _add(
                wheel,
                f"{dist_info}/RECORD",
                date_time,
                small[f"{dist_info}/RECORD"],
                zipfile.ZIP_DEFLATED,
            )
        os.chmod(partial, 0o644)
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return target


def _add(
    wheel: zipfile.ZipFile, name: str, date_time: tuple[int, ...], data: bytes, compression: int
) -> None:
    info = zipfile.ZipInfo(name, date_time=date_time)  # type: ignore[arg-type]
    info.external_attr = 0o644 << 16
    info.compress_type = compression
    wheel.writestr(info, data)
